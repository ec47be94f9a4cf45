import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

/**
 * No import cycles among the library's modules (src/, decorators/): every static import and
 * `export … from` counts, type-only ones included (a cycle of types is still two modules that
 * cannot be understood one without the other). `require()` inside a function — the lazy loading
 * of an optional peer or adapter — does not: it runs after both modules are loaded.
 */
const ROOT = path.resolve(__dirname, '..');
const FOLDERS = ['src', 'decorators'];
function tsFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return tsFiles(full);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [full] : [];
  });
}

/** The relative specifiers of a file's static imports and re-exports. */
export function staticImports(fileName: string, source: string): string[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: string[] = [];
  for (const s of sf.statements) {
    if ((ts.isImportDeclaration(s) || ts.isExportDeclaration(s)) && s.moduleSpecifier && ts.isStringLiteral(s.moduleSpecifier))
      out.push(s.moduleSpecifier.text);
    else if (ts.isImportEqualsDeclaration(s) && ts.isExternalModuleReference(s.moduleReference) && ts.isStringLiteral(s.moduleReference.expression)) {
      out.push(s.moduleReference.expression.text);
    }
  }
  return out.filter((x) => x.startsWith('.'));
}

/** The import graph: file (relative to the root) → the files it imports. */
export function importGraph(files: Map<string, string>): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, source] of files) {
    const deps = staticImports(file, source)
      .map((s) => {
        const base = path.join(path.dirname(file), s);
        if (files.has(`${base}.ts`)) return `${base}.ts`;
        if (files.has(path.join(base, 'index.ts'))) return path.join(base, 'index.ts');
        return files.has(base) ? base : undefined;
      })
      .filter((d): d is string => d !== undefined);
    graph.set(file, [...new Set(deps)]);
  }
  return graph;
}

/** The strongly connected components of more than one file, or of one file importing itself (Tarjan). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const strong = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);
  return out.sort((a, b) => a[0].localeCompare(b[0]));
}

describe('no import cycles in src/ and decorators/', () => {
  it('the checker finds a cycle, type-only imports included, and not a lazy require() (it can fail)', () => {
    const files = new Map([
      ['a.ts', "import { b } from './b';\nexport const a = 1;"],
      ['b.ts', "import type { C } from './c';\nexport const b = 2;"],
      ['c.ts', "export type { A } from './a';\nexport type C = 3;"],
      ['d.ts', "export function lazy() { return require('./e'); }"],
      ['e.ts', "import { lazy } from './d';"],
    ]);
    expect(cycles(importGraph(files))).to.deep.equal([['a.ts', 'b.ts', 'c.ts']]);
  });

  it('there is none', () => {
    const files = new Map(
      FOLDERS.flatMap((d) => tsFiles(path.join(ROOT, d))).map((f) => [path.relative(ROOT, f), fs.readFileSync(f, 'utf8')] as [string, string]),
    );
    const found = cycles(importGraph(files));
    expect(
      found.map((c) => c.join(' ↔ ')),
      'import cycles',
    ).to.deep.equal([]);
  });
});
