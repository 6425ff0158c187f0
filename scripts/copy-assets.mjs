// Part of `npm run build`: tsc compiles only TypeScript, so the dashboard's static files
// (src/admin/assets/: the page, its script and style) are copied next to the compiled admin
// module, where src/admin/assets.ts looks for them (dist/src/admin/assets/).
import { cpSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const from = fileURLToPath(new URL('../src/admin/assets/', import.meta.url));
const to = fileURLToPath(new URL('../dist/src/admin/assets/', import.meta.url));
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
