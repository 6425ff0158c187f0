/**
 * The layering the README's Architecture section promises, checked on the source itself. Each
 * module belongs to one layer; a layer imports only layers below it (and itself), peers on one
 * row never import each other, and no module imports itself back through a chain of others (an
 * import circle). Type-only imports count too: a layer that needs another's types depends on it.
 */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const TREES = ['src', 'routing', 'health'] as const;

/**
 * The layers, lowest first; the groups on one row are peers. A group is a top-level folder
 * (`health`, `routing`), a folder of `src/`, or a file directly in `src/` (only the CLI's entry).
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['health', 'routing'], // pure: health state machine and checks; pools, policies, route table
  ['src/core'], // the error catalogue, file watching
  ['src/observability'], // logger, metrics, access log, the dashboard's series
  ['src/tls'], // certificates and their files
  ['src/config'], // the config's grammar, schema, loading and merging
  ['src/acme', 'src/registry'], // certificates from ACME; member sources and the register sidecar
  ['src/proxy'], // the data path
  ['src/admin'], // admin API and dashboard
  ['src/app'], // the running drover: runtime, service table, cluster, shared config
  ['src/commands'], // the command line's commands
  ['src/cli.ts'], // the command line's entry
];

/**
 * Imports that break the layering today, each with the reason it is still there (none: keep it so).
 */
const KNOWN_UPWARD: readonly string[] = [];

/** Every .ts file below the product's trees, as paths relative to the repository root. */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts')) out.push(rel);
    }
  };
  for (const tree of TREES) walk(tree);
  return out.sort();
}

const IMPORT = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'"`;]*?\sfrom\s+)?['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/g;

/** The relative imports of one file, resolved to repository-relative .ts paths. */
export function importsOf(file: string, text: string): string[] {
  const deps: string[] = [];
  for (const m of text.matchAll(IMPORT)) {
    const spec = m[1] ?? m[2];
    if (spec === undefined) continue;
    deps.push(path.normalize(path.join(path.dirname(file), spec)).replace(/\.js$/, '.ts'));
  }
  return deps;
}

function graph(): Map<string, string[]> {
  const g = new Map<string, string[]>();
  for (const f of sourceFiles()) g.set(f, importsOf(f, fs.readFileSync(path.join(ROOT, f), 'utf8')));
  return g;
}

/** The group a file belongs to (see `LAYERS`). */
export function groupOf(file: string): string {
  const parts = file.split(path.sep);
  if (parts[0] !== 'src') return parts[0] ?? file;
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : file;
}

/** The row of `LAYERS` a file's group is on; undefined for a group no row names. */
function layerOf(file: string, layers: readonly (readonly string[])[]): number | undefined {
  const group = groupOf(file);
  const i = layers.findIndex((row) => row.includes(group));
  return i === -1 ? undefined : i;
}

/**
 * Every import that goes up a layer or across to a peer, as `from -> to`, and every file whose
 * group is on no layer (a loose file in `src/`, a new folder nobody placed).
 */
export function layeringProblems(g: ReadonlyMap<string, readonly string[]>, layers: readonly (readonly string[])[] = LAYERS): string[] {
  const out: string[] = [];
  for (const [file, deps] of g) {
    const from = layerOf(file, layers);
    if (from === undefined) {
      out.push(`${file}: in no layer`);
      continue;
    }
    for (const dep of deps) {
      const to = layerOf(dep, layers);
      if (to === undefined || groupOf(dep) === groupOf(file)) continue;
      if (to >= from) out.push(`${file} -> ${dep}`);
    }
  }
  return out;
}

/** Every import circle, each as the chain of files that closes it. */
export function circles(g: ReadonlyMap<string, readonly string[]>): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (u: string): void => {
    state.set(u, 'open');
    stack.push(u);
    for (const v of g.get(u) ?? []) {
      if (!g.has(v)) continue;
      if (state.get(v) === 'open') found.push([...stack.slice(stack.indexOf(v)), v]);
      else if (state.get(v) === undefined) visit(v);
    }
    stack.pop();
    state.set(u, 'done');
  };
  for (const f of g.keys()) if (state.get(f) === undefined) visit(f);
  return found;
}

describe('architecture', () => {
  it('the import reader sees every form the code uses', () => {
    const cases: [string, string[]][] = [
      [`import { a } from './a.js';`, ['src/x/a.ts']],
      [`import type { B } from '../b.js';`, ['src/b.ts']],
      [`export { c } from './c.js';`, ['src/x/c.ts']],
      [`export * from './d.js';`, ['src/x/d.ts']],
      [`import './side.js';`, ['src/x/side.ts']],
      [`const m = await import('../../health/state.js');`, ['health/state.ts']],
      [`import {\n  e,\n  f,\n} from './ef.js';`, ['src/x/ef.ts']],
      [`import fs from 'node:fs';`, []],
    ];
    for (const [text, want] of cases) expect(importsOf('src/x/file.ts', text), text).toEqual(want);
  });

  it('the checks find upward imports, peer imports, unplaced files and circles', () => {
    const layers = [['health', 'routing'], ['src/core'], ['src/proxy', 'src/registry'], ['src/cli.ts']];
    const g = new Map<string, string[]>([
      ['health/a.ts', ['routing/b.ts']], // peer
      ['routing/b.ts', ['src/core/c.ts']], // upward
      ['src/core/c.ts', ['health/a.ts']], // downward: fine
      ['src/proxy/p.ts', ['src/registry/r.ts', 'src/proxy/q.ts', 'src/core/c.ts']], // peer, same group, downward
      ['src/proxy/q.ts', ['src/proxy/p.ts']], // same group, but a circle with p
      ['src/registry/r.ts', []],
      ['src/cli.ts', ['src/proxy/p.ts']],
      ['src/loose.ts', []], // in no layer
    ]);
    expect(layeringProblems(g, layers)).toEqual([
      'health/a.ts -> routing/b.ts',
      'routing/b.ts -> src/core/c.ts',
      'src/proxy/p.ts -> src/registry/r.ts',
      'src/loose.ts: in no layer',
    ]);
    expect(circles(g).map((c) => c.join(' -> '))).toEqual([
      'health/a.ts -> routing/b.ts -> src/core/c.ts -> health/a.ts',
      'src/proxy/p.ts -> src/proxy/q.ts -> src/proxy/p.ts',
    ]);
  });

  it('every module imports only its own layer and the layers below (health/ and routing/ never src/, nor each other)', () => {
    const g = graph();
    expect(g.size).toBeGreaterThan(50);
    expect(layeringProblems(g).filter((p) => !KNOWN_UPWARD.includes(p))).toEqual([]);
  });

  it('no import circle', () => {
    expect(circles(graph()).map((c) => c.join(' -> '))).toEqual([]);
  });
});
