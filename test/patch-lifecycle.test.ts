import { expect } from 'chai';
import { PatchLifecycle, replaceMethod, type Patch, type PatchProblems, type PatchSite } from '../src/orm/patching';

/**
 * The patch lifecycle both adapters share (src/orm/patching.ts), on plain prototypes: probes before
 * anything is applied, one application per patched prototype with a count of its users, and the
 * undo — the original descriptors back — when the last user goes, the last applied first.
 */
class Target {
  greet(): string {
    return 'hello';
  }
}

function wrapGreet(tag: string, log: string[] = []): Patch & { owner?: object } {
  return {
    name: `Target.prototype.greet (${tag})`,
    probe: () => (typeof (Target.prototype as any).greet === 'function' ? [] : ['Target.prototype.greet is not a function']),
    apply: () => {
      log.push(`apply ${tag}`);
      const undo = replaceMethod(
        Target.prototype,
        'greet',
        (base: () => string) =>
          function (this: Target) {
            return `${tag}(${base.call(this)})`;
          },
      );
      return () => {
        log.push(`undo ${tag}`);
        undo();
      };
    },
  };
}

const failing = (problems: PatchProblems) => new Error(problems.map((p) => `${p.patch}: ${p.problem}`).join('; '));
const descriptor = () => Object.getOwnPropertyDescriptor(Target.prototype, 'greet');

describe('the shared patch lifecycle (src/orm/patching.ts)', () => {
  const original = descriptor()!;
  afterEach(() => expect(descriptor()).to.deep.equal(original));

  it('applies a patch once per prototype, counts its users, and the last release restores the original descriptor', () => {
    const log: string[] = [];
    const lifecycle = new PatchLifecycle();
    const site: PatchSite = { owner: Target.prototype, patch: wrapGreet('a', log) };
    const first = lifecycle.acquire([site], failing);
    const second = lifecycle.acquire([site], failing);
    expect(new Target().greet()).to.equal('a(hello)');
    expect(lifecycle.patched()).to.deep.equal(['Target.prototype.greet (a)']);
    first.release();
    first.release(); // twice: no effect on the count
    expect(new Target().greet(), 'the second user still has it').to.equal('a(hello)');
    second.release();
    expect(lifecycle.patched()).to.deep.equal([]);
    expect(log).to.deep.equal(['apply a', 'undo a']);
    const d = descriptor()!;
    expect(d.enumerable, 'a class method stays non-enumerable').to.equal(false);
  });

  it('the same patch of another prototype (another copy of the ORM) is its own site', () => {
    const log: string[] = [];
    const lifecycle = new PatchLifecycle();
    const patch = wrapGreet('a', log);
    const lease = lifecycle.acquire(
      [
        { owner: Target.prototype, patch },
        { owner: {}, patch },
      ],
      failing,
    );
    expect(log).to.deep.equal(['apply a', 'apply a']);
    lease.release();
    expect(log).to.deep.equal(['apply a', 'apply a', 'undo a', 'undo a']);
  });

  it('a failed probe throws naming every reshaped internal, having applied nothing', () => {
    const log: string[] = [];
    const lifecycle = new PatchLifecycle();
    const bad = (name: string): Patch => ({ name, probe: () => [`${name} is reshaped`], apply: () => (log.push(`apply ${name}`), () => undefined) });
    expect(() =>
      lifecycle.acquire(
        [
          { owner: Target.prototype, patch: wrapGreet('a', log) },
          { owner: Target.prototype, patch: bad('X.prototype.x') },
          { owner: Target.prototype, patch: bad('Y.prototype.y') },
        ],
        failing,
      ),
    ).to.throw('X.prototype.x: X.prototype.x is reshaped; Y.prototype.y: Y.prototype.y is reshaped');
    expect(log).to.deep.equal([]);
    expect(lifecycle.patched()).to.deep.equal([]);
  });

  it('a patch applied already is not probed again; extend() adds what a later declaration needs, counted for the lease', () => {
    const log: string[] = [];
    const lifecycle = new PatchLifecycle();
    let probes = 0;
    const a = wrapGreet('a', log);
    const counted: Patch = { ...a, probe: () => (probes++, a.probe()) };
    const first = lifecycle.acquire([{ owner: Target.prototype, patch: counted }], failing);
    const second = lifecycle.acquire([{ owner: Target.prototype, patch: counted }], failing);
    expect(probes).to.equal(1);
    second.extend([{ owner: Target.prototype, patch: wrapGreet('b', log) }]);
    expect(new Target().greet()).to.equal('b(a(hello))');
    second.release(); // the last user of b
    expect(new Target().greet()).to.equal('a(hello)');
    first.release();
    second.extend([{ owner: Target.prototype, patch: wrapGreet('c', log) }]); // released: nothing
    expect(log).to.deep.equal(['apply a', 'apply b', 'undo b', 'undo a']);
  });

  it('patches released together are undone the last applied first, whatever order the lease lists them in', () => {
    const log: string[] = [];
    const lifecycle = new PatchLifecycle();
    const a = { owner: Target.prototype, patch: wrapGreet('a', log) };
    const b = { owner: Target.prototype, patch: wrapGreet('b', log) };
    const first = lifecycle.acquire([b], failing); // b applied first, then a wraps it
    const second = lifecycle.acquire([a, b], failing);
    expect(new Target().greet()).to.equal('a(b(hello))');
    first.release();
    second.release();
    expect(log).to.deep.equal(['apply b', 'apply a', 'undo a', 'undo b']);
  });
});
