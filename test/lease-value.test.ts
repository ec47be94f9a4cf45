import { expect } from 'chai';
import { leaseValue } from '../src/redis/lease-value';

describe('lease values (what release and extend compare against)', () => {
  it('are 32 hex digits and never repeat: 100,000 in a row are all distinct', () => {
    const values = Array.from({ length: 100_000 }, leaseValue);
    for (const v of values.slice(0, 100)) expect(v).to.match(/^[0-9a-f]{32}$/);
    expect(new Set(values).size).to.equal(values.length);
  });

  it('carry 96 random bits: a fresh module (as in another process) starts with another random part', () => {
    const path = require.resolve('../src/redis/lease-value');
    const first = leaseValue();
    delete require.cache[path];
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const fresh = (require(path) as typeof import('../src/redis/lease-value')).leaseValue();
    expect(fresh.slice(0, 24)).to.not.equal(first.slice(0, 24));
    expect(fresh).to.match(/^[0-9a-f]{32}$/);
  });
});
