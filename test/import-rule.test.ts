import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

/**
 * The import rule (docs/architecture.md): the strategies (src/locks), the context
 * (src/context), the dialects (src/dialects), src/redis and the installations (src/installations)
 * talk to the ORM port and LockDialect only: from src/orm/ they import the port and nothing else. No file there imports an ORM package or an adapter — type-only imports count, and so do
 * `require()`, `import()`, `import x = require()`, `export … from` and `import('…').Type`.
 */

const ROOT = path.resolve(__dirname, '..');
const RULED = ['src/locks', 'src/context', 'src/dialects', 'src/redis', 'src/installations'];
/** What the ruled folders may import from src/orm/: the port, nothing above it. */
const PORT = ['src/orm/port.ts', 'src/orm/port-connection.ts'];
const ADAPTERS = ['src/orm/typeorm', 'src/orm/mikro-orm'].map((p) => path.join(ROOT, p));

/** A module specifier found in a source file, with its line. */
interface Found {
  specifier: string;
  line: number;
  form: string;
}

/** Every module specifier a TypeScript source names, whatever the form. */
export function specifiersOf(fileName: string, source: string): Found[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: Found[] = [];
  const add = (node: ts.Node, literal: ts.Node | undefined, form: string) => {
    if (literal && ts.isStringLiteralLike(literal)) {
      found.push({ specifier: literal.text, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1, form });
    }
  };
  const visit = (node: ts.Node) => {
    if (ts.isImportDeclaration(node)) add(node, node.moduleSpecifier, node.importClause?.isTypeOnly ? 'import type' : 'import');
    else if (ts.isExportDeclaration(node)) add(node, node.moduleSpecifier, node.isTypeOnly ? 'export type … from' : 'export … from');
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      add(node, node.moduleReference.expression, 'import = require()');
    } else if (ts.isImportTypeNode(node)) {
      const arg = node.argument;
      if (ts.isLiteralTypeNode(arg)) add(node, arg.literal, "import('…') type");
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      const isResolve =
        ts.isPropertyAccessExpression(callee) && ts.isIdentifier(callee.expression) && callee.expression.text === 'require' && callee.name.text === 'resolve';
      if (isRequire || isResolve || callee.kind === ts.SyntaxKind.ImportKeyword)
        add(node, node.arguments[0], isRequire ? 'require()' : isResolve ? 'require.resolve()' : 'import()');
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  for (const ref of [...sf.typeReferenceDirectives, ...sf.referencedFiles]) {
    found.push({ specifier: ref.fileName, line: sf.getLineAndCharacterOfPosition(ref.pos).line + 1, form: '/// <reference>' });
  }
  return found;
}

/** Why `specifier`, named in `file`, breaks the rule (undefined when it does not). */
export function violation(file: string, specifier: string): string | undefined {
  if (/^typeorm(-[\w.]+)?(\/|$)/.test(specifier)) return 'imports TypeORM';
  if (/^@mikro-orm(\/|$)/.test(specifier) || /^mikro-orm(\/|$)/.test(specifier)) return 'imports MikroORM';
  if (/^ormlock\/(typeorm|mikro-orm)(\/|$)/.test(specifier)) return 'imports an adapter through the package';
  if (specifier.startsWith('.')) {
    const resolved = path.resolve(path.dirname(file), specifier);
    for (const adapter of ADAPTERS) {
      if (resolved === adapter || resolved.startsWith(adapter + path.sep) || resolved === `${adapter}.ts`)
        return `imports the adapter ${path.relative(ROOT, adapter)}`;
    }
  }
  return undefined;
}

function tsFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(full);
    return /\.(c|m)?tsx?$/.test(e.name) ? [full] : [];
  });
}

/** The .ts file a relative specifier names (`x.ts`, `x/index.ts`), or undefined. */
function resolveSource(base: string): string | undefined {
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile() && candidate.endsWith('.ts')) return candidate;
  }
  return undefined;
}

function violationsIn(file: string, source: string): string[] {
  return specifiersOf(file, source).flatMap((f) => {
    const why = violation(file, f.specifier);
    return why ? [`${path.relative(ROOT, file)}:${f.line}: ${f.form} '${f.specifier}' ${why}`] : [];
  });
}

describe('the import rule: src/locks, src/context, src/dialects, src/redis and src/installations import no ORM and no adapter', () => {
  it('the checker finds every form of import (it can fail)', () => {
    const file = path.join(ROOT, 'src/locks/example.ts');
    const source = [
      "import { DataSource } from 'typeorm';",
      "import type { QueryRunner } from 'typeorm';",
      "import { type EntityManager } from '@mikro-orm/core';",
      "import type { X } from '../orm/typeorm/typeorm-port';",
      "export { dataSourceOf } from '../orm/typeorm/compat';",
      "export type { Y } from '../orm/mikro-orm';",
      "import fs = require('typeorm/driver/Driver');",
      "const a = require('@mikro-orm/postgresql');",
      "const b = import('../orm/typeorm/install');",
      "type C = import('typeorm').SelectQueryBuilder<any>;",
      '/// <reference types="typeorm" />',
      "import { ok } from '../orm/port';",
      "import { fine } from '../installations';",
      "import { alsoFine } from './row-lock';",
      "const note = 'typeorm'; // a string, not an import",
    ];
    // the reference directive must come first in a file to count
    const text = [source[10], ...source.slice(0, 10), ...source.slice(11)].join('\n');
    const found = violationsIn(file, text);
    expect(found).to.have.length(11);
    expect(found.join('\n')).to.not.include('../orm/port').and.not.include('installations').and.not.include('row-lock');
  });

  it('no file under those folders breaks it (type-only imports included)', () => {
    const files = RULED.flatMap((d) => tsFiles(path.join(ROOT, d)));
    expect(files.length, 'the ruled folders hold the strategies, context, dialects and Redis code').to.be.greaterThan(20);
    for (const d of RULED)
      expect(
        files.some((f) => f.startsWith(path.join(ROOT, d) + path.sep)),
        `${d} has .ts files`,
      ).to.equal(true);
    const problems = files.flatMap((f) => violationsIn(f, fs.readFileSync(f, 'utf8')));
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });

  it('nor through the project modules they import (src/orm/port, installations, metadata, observe, errors …)', () => {
    const problems: string[] = [];
    const seen = new Set<string>();
    const walk = (file: string, chain: string[]) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const f of specifiersOf(file, fs.readFileSync(file, 'utf8'))) {
        const why = violation(file, f.specifier);
        if (why) {
          problems.push(`${[...chain, path.relative(ROOT, file)].join(' → ')}:${f.line}: ${f.form} '${f.specifier}' ${why}`);
          continue;
        }
        if (!f.specifier.startsWith('.')) continue;
        const next = resolveSource(path.resolve(path.dirname(file), f.specifier));
        if (next) walk(next, [...chain, path.relative(ROOT, file)]);
      }
    };
    for (const file of RULED.flatMap((d) => tsFiles(path.join(ROOT, d)))) walk(file, []);
    expect(seen.size).to.be.greaterThan(20);
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });
  it('from src/orm/ they import the port only (installations and resolution live below the adapters)', () => {
    const problems = RULED.flatMap((d) => tsFiles(path.join(ROOT, d))).flatMap((file) =>
      specifiersOf(file, fs.readFileSync(file, 'utf8'))
        .filter((f) => f.specifier.startsWith('.'))
        .map((f) => ({ f, target: resolveSource(path.resolve(path.dirname(file), f.specifier)) }))
        .filter(({ target }) => target !== undefined && path.relative(ROOT, target).startsWith('src/orm/'))
        .filter(({ target }) => !PORT.includes(path.relative(ROOT, target!).split(path.sep).join('/')))
        .map(({ f, target }) => `${path.relative(ROOT, file)}:${f.line}: ${f.form} '${f.specifier}' (${path.relative(ROOT, target!)})`),
    );
    expect(problems, problems.join('\n')).to.deep.equal([]);
  });
});
