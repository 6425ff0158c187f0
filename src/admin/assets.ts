/**
 * The dashboard's static files: the page (`assets/index.html`), its script and style
 * (`assets/dashboard.js`, `assets/dashboard.css`), and uPlot (the chart library) vendored
 * from the `uplot` npm dependency's `dist/` (resolved through Node's module resolution, so it is
 * found after `npm ci` and in a global install alike). Everything is served from the admin origin:
 * no CDN, no build step for users.
 *
 * `npm run build` copies `src/admin/assets/` next to the compiled module (`dist/src/admin/assets/`,
 * see `scripts/copy-assets.mjs`); run from the sources (tests) the same relative path holds.
 *
 * Files are read once, on first use, and kept in memory with their SHA-256: the page carries it
 * as each script's and stylesheet's `integrity` (Subresource Integrity), and it is each file's
 * ETag. The page is served with a CSP that allows scripts and styles from this origin only (no
 * inline script or style at all, no eval).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** One file ready to serve. */
export interface Asset {
  readonly body: Buffer;
  readonly contentType: string;
  /** `sha256-<base64>`, as SRI and CSP write it */
  readonly sha256: string;
  /** quoted strong ETag */
  readonly etag: string;
}

/** URL path prefix of the static files. */
export const ASSET_PREFIX = '/assets/';

/**
 * The Content-Security-Policy of the page: script and style only from this origin (the files
 * below), data from this origin only, nothing framed, no forms, no base rewriting.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self' data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const require = createRequire(import.meta.url);

/** name under `/assets/` -> where it is read from and its type */
const SOURCES: Readonly<Record<string, { readonly path: () => string; readonly type: string }>> = {
  'dashboard.js': { path: () => own('dashboard.js'), type: 'text/javascript; charset=utf-8' },
  'dashboard.css': { path: () => own('dashboard.css'), type: 'text/css; charset=utf-8' },
  'uPlot.iife.min.js': { path: () => require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  'uPlot.min.css': { path: () => require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

function own(name: string): string {
  return fileURLToPath(new URL(`./assets/${name}`, import.meta.url));
}

function load(body: Buffer, contentType: string): Asset {
  const sha256 = `sha256-${createHash('sha256').update(body).digest('base64')}`;
  return { body, contentType, sha256, etag: `"${sha256}"` };
}

let cache: { files: Map<string, Asset>; page: Asset } | undefined;

/** Reads every file (once) and builds the page with their integrity hashes; throws when one is missing. */
function loadAll(): { files: Map<string, Asset>; page: Asset } {
  if (cache !== undefined) return cache;
  const files = new Map<string, Asset>();
  for (const [name, src] of Object.entries(SOURCES)) files.set(name, load(readFileSync(src.path()), src.type));
  const template = readFileSync(own('index.html'), 'utf8');
  // `{{sri:NAME}}` in the template becomes that file's hash.
  const html = template.replace(/\{\{sri:([A-Za-z0-9.]+)\}\}/g, (_m, name: string) => {
    const f = files.get(name);
    if (f === undefined) throw new Error(`dashboard template names an unknown asset: ${name}`);
    return f.sha256;
  });
  cache = { files, page: load(Buffer.from(html, 'utf8'), 'text/html; charset=utf-8') };
  return cache;
}

/** The page (`GET /`). */
export function dashboardPage(): Asset {
  return loadAll().page;
}

/** A file under `/assets/`, or undefined for a name that is not one of them. */
export function dashboardAsset(name: string): Asset | undefined {
  return loadAll().files.get(name);
}
