/**
 * The layering the README's Architecture section promises, checked on the source itself:
 * `health/` and `routing/` never import `src/`, `health/` never imports `routing/`, and no
 * module of the product imports itself back through a chain of others (an import circle).
 * Type-only imports count too: a layer that needs another's types depends on it.
 */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(import.meta.dirname, '..');
const LAYERS = ['src', 'routing', 'health'] as const;

/** Every .ts file below the product's layers, as paths relative to the repository root. */
function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts')) out.push(rel);
    }
  };
  for (const layer of LAYERS) walk(layer);
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

/** Every import circle, each as the chain of files that closes it. */
function circles(g: Map<string, string[]>): string[][] {
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

  it('health/ and routing/ never import src/, and health/ never imports routing/', () => {
    const g = graph();
    const upward: string[] = [];
    for (const [file, deps] of g) {
      for (const dep of deps) {
        const from = file.split(path.sep)[0];
        const to = dep.split(path.sep)[0];
        if ((from === 'health' || from === 'routing') && to === 'src') upward.push(`${file} -> ${dep}`);
        if (from === 'health' && to === 'routing') upward.push(`${file} -> ${dep}`);
      }
    }
    expect(g.size).toBeGreaterThan(50);
    expect(upward).toEqual([]);
  });

  it('no import circle', () => {
    expect(circles(graph()).map((c) => c.join(' -> '))).toEqual([]);
  });
});
