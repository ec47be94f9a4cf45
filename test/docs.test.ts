import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * The docs stay one source per topic: no paragraph of the README appears again in docs/ (the
 * README links to the page instead), no relative link is dead, and the performance figures are
 * what scripts/perf-doc.js makes of bench/results.json.
 */
const ROOT = path.resolve(__dirname, '..');
const norm = (s: string) => s.replace(/\s+/g, ' ').trim();

/** The paragraphs of a Markdown text: blank-line separated blocks, a fenced code block as one. */
export function paragraphs(markdown: string): string[] {
  const out: string[] = [];
  let buf: string[] = [];
  let code = false;
  const flush = () => {
    if (buf.length) out.push(buf.join('\n'));
    buf = [];
  };
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) {
      if (!code) flush();
      buf.push(line);
      code = !code;
      if (!code) flush();
    } else if (code) buf.push(line);
    else if (line.trim() === '') flush();
    else buf.push(line);
  }
  flush();
  return out;
}

/** README paragraphs (of some substance) found again in one of the pages. */
export function repeated(readme: string, pages: Record<string, string>): string[] {
  const normalized = Object.entries(pages).map(([name, text]) => [name, norm(text)] as const);
  return paragraphs(readme)
    .map(norm)
    .filter((p) => p.length >= 60)
    .flatMap((p) => normalized.filter(([, text]) => text.includes(p)).map(([name]) => `${name}: ${p.slice(0, 100)}…`));
}

/** Relative links of a Markdown file whose target does not exist. */
export function deadLinks(file: string, markdown: string, exists: (p: string) => boolean = fs.existsSync): string[] {
  const dead: string[] = [];
  const text = markdown.replace(/```[\s\S]*?```/g, '');
  for (const m of text.matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)) {
    const target = m[1];
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue;
    const file_ = target.split('#')[0];
    if (!exists(path.resolve(path.dirname(file), decodeURI(file_)))) dead.push(`${path.relative(ROOT, file)}: ${target}`);
  }
  return dead;
}

const docsDir = path.join(ROOT, 'docs');
const pages = Object.fromEntries(
  fs
    .readdirSync(docsDir)
    .filter((f) => f.endsWith('.md'))
    .map((f) => [`docs/${f}`, fs.readFileSync(path.join(docsDir, f), 'utf8')]),
);
const markdownFiles = ['README.md', 'CONTRIBUTING.md', ...Object.keys(pages)].map((f) => path.join(ROOT, f));

describe('the docs: one source per topic, live links, generated figures', () => {
  it('the checks can fail: a repeated paragraph and a dead link are found', () => {
    const para = 'A paragraph long enough to count as one, about how a lock is taken and released.';
    expect(repeated(`# t\n\n${para}\n\nshort`, { 'docs/x.md': `intro\n\n${para.replace(/ /g, '\n')}` })).to.have.length(1);
    expect(repeated(`# t\n\n${para}`, { 'docs/x.md': 'something else' })).to.deep.equal([]);
    const dead = deadLinks(path.join(ROOT, 'README.md'), '[a](docs/nope.md) [b](docs/api.md#x) [c](https://x.y/z) [d](#top)');
    expect(dead).to.deep.equal(['README.md: docs/nope.md']);
  });

  it('the README is for users: at most 300 lines, opening with the demo and the test command', () => {
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    expect(readme.split('\n').length).to.be.at.most(300);
    const first = paragraphs(readme)[1];
    expect(first)
      .to.match(/^```bash\nnpm ci && npm run demo/)
      .and.to.contain('\nnpm test');
  });

  it('no paragraph of the README appears again in docs/', () => {
    const found = repeated(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'), pages);
    expect(found, found.join('\n')).to.deep.equal([]);
  });

  it('no relative link of the README, CONTRIBUTING.md or docs/ is dead', () => {
    const dead = markdownFiles.flatMap((f) => deadLinks(f, fs.readFileSync(f, 'utf8')));
    expect(dead, dead.join('\n')).to.deep.equal([]);
  });

  it('docs/performance.md holds what scripts/perf-doc.js makes of the recorded run (docs/performance-run.json)', () => {
    const { render, recorded } = require(path.join(ROOT, 'scripts', 'perf-doc.js')) as { render(page: string, results: unknown): string; recorded(): unknown };
    const page = pages['docs/performance.md'];
    expect(render(page, recorded()), 'run npm run perf:doc').to.equal(page);
  });

  it('the package ships docs/ and CONTRIBUTING.md, and the README links to them relatively, so the links work in the installed package', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { files: string[] };
    expect(pkg.files).to.include.members(['docs', 'README.md', 'CONTRIBUTING.md']);
    const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const links = [...readme.replace(/```[\s\S]*?```/g, '').matchAll(/\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    const absolute = links.filter((l) => /^[a-z][a-z0-9+.-]*:/i.test(l) && /docs\/|CONTRIBUTING/.test(l));
    expect(absolute, 'README links to the docs by URL').to.deep.equal([]);
    expect(links.filter((l) => l.startsWith('docs/')).length).to.be.greaterThan(10);
  });
});
