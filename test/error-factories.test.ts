import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

/**
 * Errors come from named factories (src/faults/<area>.ts), one wording per fault: outside
 * src/faults/ and src/errors.ts, no file of the library (src/, decorators/) constructs one of the
 * error classes of src/errors.ts (`new LockConfigError(…)`); it throws what a factory returns.
 */
const ROOT = path.resolve(__dirname, '..');
const FOLDERS = ['src', 'decorators'];
const ALLOWED = ['src/errors.ts', 'src/faults/'];
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

  it('no file outside src/faults/ and src/errors.ts constructs an error', () => {
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
    expect([...offenders.values()].flat(), 'errors built inline: add a factory to src/faults/<area>.ts and throw what it returns').to.deep.equal([]);
  });
});
