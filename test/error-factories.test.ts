import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

/**
 * Errors come from named factories (src/faults/<area>.ts), one wording per fault: outside
 * src/faults/ and src/errors.ts, no file of the library (src/, decorators/) constructs one of the
 * error classes of src/errors.ts (`new LockConfigError(…)`); it throws what a factory returns.
 *
 * NOT_YET lists the files that still construct them and are left to be converted (their files are
 * being edited elsewhere); the test fails on any other file, and on a listed one that no longer
 * does (so that the list only shrinks).
 */
const ROOT = path.resolve(__dirname, '..');
const FOLDERS = ['src', 'decorators'];
const ALLOWED = ['src/errors.ts', 'src/faults/'];
const NOT_YET = [
  'decorators/AdvisoryLock.ts',
  'decorators/DistributedLock.ts',
  'decorators/RetryOnConflict.ts',
  'decorators/ScheduledLock.ts',
  'decorators/Semaphore.ts',
  'decorators/Transactional.ts',
  'decorators/wrap-method.ts',
  'src/dialects/check-row-lock.ts',
  'src/dialects/index.ts',
  'src/dialects/lost-connection.ts',
  'src/locks/advisory-options.ts',
  'src/locks/optimistic.ts',
  'src/locks/pessimistic.ts',
  'src/locks/pooler-guard.ts',
  'src/locks/retry.ts',
  'src/locks/row-lock.ts',
  'src/locks/semaphore-options.ts',
  'src/locks/semaphore-slots.ts',
  'src/locks/semaphore.ts',
  'src/redis/semaphore.ts',
];

/** The error classes src/errors.ts declares. */
export function errorClasses(source: string): Set<string> {
  const sf = ts.createSourceFile('errors.ts', source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  return new Set(sf.statements.filter(ts.isClassDeclaration).map((c) => c.name!.text));
}

/** `new X(…)` of one of `classes` in a source, with its line (comments and strings do not count). */
export function constructions(fileName: string, source: string, classes: Set<string>): Array<{ name: string; line: number }> {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Array<{ name: string; line: number }> = [];
  const visit = (node: ts.Node) => {
    if (ts.isNewExpression(node) && ts.isIdentifier(node.expression) && classes.has(node.expression.text)) {
      found.push({ name: node.expression.text, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

describe('errors come from named factories (src/faults/)', () => {
  const classes = errorClasses(fs.readFileSync(path.join(ROOT, 'src/errors.ts'), 'utf8'));

  it('the checker finds a construction, and not one in a comment or a string (it can fail)', () => {
    expect([...classes]).to.include.members(['LockError', 'LockConfigError', 'LockTimeoutError', 'PoolExhaustedError']);
    const source = [
      '// new LockConfigError(`in a comment`)',
      "const s = 'new LockTimeoutError(1)';",
      'throw new LockConfigError(`x: ${s}`);',
      'const e = new Error("not ours");',
    ].join('\n');
    expect(constructions('x.ts', source, classes)).to.deep.equal([{ name: 'LockConfigError', line: 3 }]);
  });

  it('no file outside src/faults/ and src/errors.ts constructs an error, but the listed ones; every listed one still does', () => {
    const offenders = new Map<string, string[]>();
    for (const file of FOLDERS.flatMap((d) => tsFiles(path.join(ROOT, d)))) {
      const rel = path.relative(ROOT, file).split(path.sep).join('/');
      if (ALLOWED.some((a) => rel === a || (a.endsWith('/') && rel.startsWith(a)))) continue;
      const found = constructions(rel, fs.readFileSync(file, 'utf8'), classes);
      if (found.length)
        offenders.set(
          rel,
          found.map((f) => `${rel}:${f.line} new ${f.name}(`),
        );
    }
    const unlisted = [...offenders.keys()].filter((f) => !NOT_YET.includes(f)).flatMap((f) => offenders.get(f)!);
    expect(unlisted, 'errors built inline: add a factory to src/faults/<area>.ts and throw what it returns').to.deep.equal([]);
    const converted = NOT_YET.filter((f) => !offenders.has(f));
    expect(converted, 'converted (or gone): remove them from NOT_YET').to.deep.equal([]);
  });
});
