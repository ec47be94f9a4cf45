import fs from 'node:fs';
import path from 'node:path';
import type { Scenario } from './scenario';

const DIR = path.join(__dirname, 'scenarios');

function isScenario(value: unknown): value is Scenario {
  const s = value as Partial<Scenario> | undefined;
  return !!s && typeof s.name === 'string' && typeof s.strategy === 'string' && typeof s.run === 'function';
}

/** Every scenario in examples/scenarios/ (one per file: `export const scenario` or a default export), in table order. */
export function loadScenarios(only?: string[]): Scenario[] {
  const scenarios: Scenario[] = [];
  for (const file of fs.readdirSync(DIR).sort()) {
    if (!/\.(ts|js)$/.test(file) || file.endsWith('.d.ts')) continue;
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const mod = require(path.join(DIR, file)) as { scenario?: unknown; default?: unknown };
    const found = [mod.scenario, mod.default].find(isScenario);
    if (!found) throw new Error(`examples/scenarios/${file} exports no scenario ({ name, strategy, run })`);
    scenarios.push(found);
  }
  const picked = only?.length ? scenarios.filter((s) => only.some((o) => s.name.includes(o))) : scenarios;
  return picked.sort((a, b) => (a.order ?? Infinity) - (b.order ?? Infinity) || a.name.localeCompare(b.name));
}
