/**
 * Generates `config/drover.schema.json`, the JSON Schema editors use to complete and check
 * `drover.yaml` (e.g. `# yaml-language-server: $schema=./drover.schema.json`), from the same zod
 * schema the loader validates with, so the two cannot disagree. A test compares the committed
 * file with {@link renderJsonSchema}; regenerate after changing `schema.ts`:
 *
 *     npm run build && node dist/src/config/gen-schema.js [OUT]   # OUT defaults to config/drover.schema.json
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { configSchema } from './schema.js';

/** Where the schema lives, relative to the repository root. */
export const JSON_SCHEMA_PATH = 'config/drover.schema.json';

/**
 * The JSON Schema (draft-07, the dialect editors' YAML plugins support best) of what users may
 * write: the input side, so keys with defaults are optional and durations are strings.
 */
export function buildJsonSchema(): Record<string, unknown> {
  const generated = z.toJSONSchema(configSchema, { io: 'input', target: 'draft-07', unrepresentable: 'any' }) as Record<string, unknown>;
  const { $schema: _drop, ...rest } = generated;
  void _drop;
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'drover configuration (drover.yaml)',
    description: 'drover.yaml: listeners, admin, registries, services and routes. Durations are strings such as 250ms, 5s, 2m, 1h.',
    ...rest,
  };
}

/** The file's exact content: 2-space JSON and a final newline. */
export function renderJsonSchema(): string {
  return `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
}

function isMain(): boolean {
  const entry = process.argv[1];
  return entry !== undefined && path.resolve(entry) === fileURLToPath(import.meta.url);
}

if (isMain()) {
  const out = path.resolve(process.argv[2] ?? JSON_SCHEMA_PATH);
  writeFileSync(out, renderJsonSchema());
  process.stdout.write(`wrote ${out}\n`);
}
