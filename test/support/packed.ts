import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The package as users get it, for the tests that install it in a fresh project
 * (test/package.test.ts, test/quick-start.test.ts, test/stress/package-nest-mikro-orm.stress.ts):
 * `npm pack` of an unbuilt checkout (prepack builds it), once per test process, then unpacked as
 * node_modules/ormlock of each consumer project, whose other packages are this checkout's, linked.
 */
const root = path.join(__dirname, '..', '..');

export interface Packed {
  /** The directory holding the tarball; consumer projects may be made inside it. */
  work: string;
  tarball: string;
  /** The files in the tarball, relative to the package root. */
  files: string[];
}

let packed: Packed | undefined;

/** Packs this checkout once per process: dist/ is removed first, so `npm pack` must build it. */
export function packOnce(): Packed {
  if (packed) return packed;
  fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ormlock-pack-'));
  process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));
  const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [info] = JSON.parse(out.slice(out.indexOf('['))) as Array<{ filename: string; files: Array<{ path: string }> }>;
  packed = { work, tarball: path.join(work, info.filename), files: info.files.map((f) => f.path) };
  return packed;
}

/**
 * A consumer project in `dir`: package.json (`type` as given), the packed ormlock unpacked as
 * node_modules/ormlock, and this checkout's packages the predicate keeps (`name` or
 * `@scope/name`), linked. Returns `dir`.
 */
export function consumerProject(dir: string, keep: (dep: string) => boolean, type: 'commonjs' | 'module' = 'commonjs'): string {
  const { tarball } = packOnce();
  const modules = path.join(dir, 'node_modules');
  const installed = path.join(modules, 'ormlock');
  fs.mkdirSync(installed, { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', installed, '--strip-components=1']);
  const link = (dep: string) => {
    fs.mkdirSync(path.dirname(path.join(modules, dep)), { recursive: true });
    fs.symlinkSync(path.join(root, 'node_modules', dep), path.join(modules, dep));
  };
  for (const dep of fs.readdirSync(path.join(root, 'node_modules'))) {
    if (dep.startsWith('.') || dep === 'ormlock') continue;
    if (!dep.startsWith('@')) {
      if (keep(dep)) link(dep);
      continue;
    }
    for (const sub of fs.readdirSync(path.join(root, 'node_modules', dep))) if (keep(`${dep}/${sub}`)) link(`${dep}/${sub}`);
  }
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: path.basename(dir).toLowerCase(), private: true, type }));
  return dir;
}
