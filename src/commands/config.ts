/**
 * `drover config push|get|diff`: the shared config in etcd (README "Shared config in etcd").
 *
 * - `push -c FILE --etcd URLS [--config-prefix P]` runs `drover check` on FILE, then writes its
 *   `routes:` and every `services.<name>` under the prefix in ONE transaction that also deletes
 *   the `services/*` keys FILE no longer has; prints the revision. The transaction only commits
 *   if nothing under the prefix changed since it was read (otherwise: run it again).
 * - `get --etcd URLS [--config-prefix P]` prints what is stored, as YAML.
 * - `diff -c FILE --etcd URLS [--config-prefix P]` prints what `push` would change; exit 0 when
 *   nothing, 1 when something would change, 2 on trouble (as diff(1)).
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Etcd3 } from 'etcd3';
import { parseDocument, stringify } from 'yaml';
import { checkConfigFile } from '../config/load.js';
import { DEFAULT_CONFIG_PREFIX, parseSharedConfig, ROUTES_KEY, SERVICES_DIR } from '../config/shared.js';
import { parseEtcdEndpoints } from '../config/values.js';
import { formatIssue } from '../core/errors.js';
import { DEFAULT_CONFIG_FILE } from './check.js';

interface EtcdFlags {
  readonly etcd: string;
  readonly configPrefix: string;
}

/** Adds `config` (with `push`, `get`, `diff`) to the program. Sets `process.exitCode`. */
export function addConfigCommand(program: Command): void {
  const config = program.command('config').description('the shared config in etcd (routes and services every drover on that etcd merges after its own file)');
  const etcdOptions = (cmd: Command): Command =>
    cmd
      .requiredOption('--etcd <urls>', 'etcd endpoints, comma-separated (http://127.0.0.1:2379)')
      .option('--config-prefix <prefix>', 'key prefix of the shared config (registry.etcd.config_prefix)', DEFAULT_CONFIG_PREFIX);
  etcdOptions(
    config
      .command('push')
      .description("check FILE, then write its routes: and services: under the prefix in one etcd transaction (stale services/* keys deleted in it); prints the revision")
      .option('-c, --config <file>', 'config file whose routes and services are pushed', DEFAULT_CONFIG_FILE),
  ).action(async (opts: EtcdFlags & { config: string }) => {
    process.exitCode = await push(opts);
  });
  etcdOptions(config.command('get').description('print the shared config stored in etcd, as YAML (with the revision it was read at)')).action(
    async (opts: EtcdFlags) => {
      process.exitCode = await get(opts);
    },
  );
  etcdOptions(
    config
      .command('diff')
      .description('print what `config push` would change: exit 0 nothing, 1 changes, 2 trouble')
      .option('-c, --config <file>', 'config file to compare with etcd', DEFAULT_CONFIG_FILE),
  ).action(async (opts: EtcdFlags & { config: string }) => {
    process.exitCode = await diff(opts);
  });
}

function normalisePrefix(p: string): string {
  return p.endsWith('/') ? p : `${p}/`;
}

async function connect(flags: EtcdFlags): Promise<Etcd3 | undefined> {
  const endpoints = parseEtcdEndpoints(flags.etcd);
  if (!endpoints.ok) {
    process.stderr.write(`drover config: --etcd: ${endpoints.reason}\n`);
    return undefined;
  }
  // Loaded on use: the etcd client (gRPC, protobufs) costs most of the CLI's start-up time.
  const { createEtcdClient } = await import('../registry/etcd-client.js');
  return createEtcdClient({ endpoints: endpoints.value, callTimeoutMs: 5000, hostRetryMs: 200 });
}

/**
 * Connects, runs `fn`, closes. Resolves `fn`'s exit code, or `failCode` when connecting or `fn`
 * fails (the error printed as `drover config NAME: message`).
 */
async function withClient(flags: EtcdFlags, name: string, failCode: number, fn: (client: Etcd3) => Promise<number>): Promise<number> {
  const client = await connect(flags);
  if (client === undefined) return failCode;
  try {
    return await fn(client);
  } catch (err) {
    process.stderr.write(`drover config ${name}: ${(err as Error).message}\n`);
    return failCode;
  } finally {
    client.close();
  }
}

/**
 * What a file would put under the prefix: full key -> value. Values are written as indented JSON
 * (valid YAML too): every drover parses them on each change, and JSON parses far faster than
 * YAML with positions. `config get` shows them as YAML.
 */
async function desiredKeys(file: string, prefix: string): Promise<Map<string, string>> {
  const doc = parseDocument(await readFile(file, 'utf8'), { merge: true });
  const raw = (doc.toJS({ maxAliasCount: 1000 }) ?? {}) as { routes?: unknown; services?: Record<string, unknown> };
  const out = new Map<string, string>();
  const text = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;
  out.set(`${prefix}${ROUTES_KEY}`, text(raw.routes ?? []));
  for (const [name, svc] of Object.entries(raw.services ?? {})) out.set(`${prefix}${SERVICES_DIR}${name}`, text(svc ?? {}));
  return out;
}

interface Stored {
  readonly revision: string;
  /** full key -> value and its mod revision */
  readonly keys: Map<string, { value: string; modRevision: string }>;
}

async function readStored(client: Etcd3, prefix: string): Promise<Stored> {
  const res = await client.getAll().prefix(prefix).exec();
  const keys = new Map<string, { value: string; modRevision: string }>();
  for (const kv of res.kvs) keys.set(kv.key.toString('utf8'), { value: kv.value.toString('utf8'), modRevision: String(kv.mod_revision) });
  return { revision: String(res.header.revision), keys };
}

/**
 * What `config push` would write for FILE (full key -> value under `prefix`), or every problem
 * found: FILE is checked as `drover check` does, then its shared parts as every drover will
 * read them. Nothing is written. Exported for bench/config-fleet.ts, which times pushes.
 */
export async function planPush(file: string, prefix: string): Promise<{ readonly desired: Map<string, string> } | { readonly problems: string[] }> {
  const issues = await checkConfigFile(file);
  if (issues.length > 0) return { problems: issues.map(formatIssue) };
  const desired = await desiredKeys(file, prefix);
  const parsed = parseSharedConfig({ prefix, revision: '0', values: desired });
  if (!parsed.ok) return { problems: parsed.reason.map(formatIssue) };
  return { desired };
}

/** `planPush` for the commands: prints the problems (and that nothing was written). */
async function checkForPush(file: string, prefix: string): Promise<Map<string, string> | undefined> {
  const plan = await planPush(file, prefix);
  if ('problems' in plan) {
    process.stderr.write(`${plan.problems.join('\n')}\n${file}: not pushed (nothing was written)\n`);
    return undefined;
  }
  return plan.desired;
}

/** What `commitPush` did. */
export interface PushOutcome {
  /** false: something under the prefix changed since it was read; nothing was written */
  readonly succeeded: boolean;
  /** the etcd revision of the transaction */
  readonly revision: string;
  /** `services/*` keys deleted because the pushed file no longer has them */
  readonly deleted: readonly string[];
  /** keys under the prefix that are not shared-config keys (left alone; drovers refuse them) */
  readonly foreign: readonly string[];
}

/**
 * Writes `desired` (from `planPush`) under `prefix` in ONE transaction that also deletes the
 * `services/*` keys it does not have. The transaction commits only if nothing under the prefix
 * changed since it was read here. Exported for bench/config-fleet.ts.
 */
export async function commitPush(client: Etcd3, prefix: string, desired: ReadonlyMap<string, string>): Promise<PushOutcome> {
  const stored = await readStored(client, prefix);
  const stale = [...stored.keys.keys()].filter((k) => k.startsWith(`${prefix}${SERVICES_DIR}`) && !desired.has(k));
  const foreign = [...stored.keys.keys()].filter((k) => !desired.has(k) && !stale.includes(k));
  const { Range } = await import('etcd3');
  const end = Range.prefix(prefix).end;
  const res = await client.kv.txn({
    // Commit only if nothing under the prefix changed since it was read: every key read is
    // unchanged, and no key was created after that read.
    compare: [
      ...[...stored.keys].map(([k, v]) => ({ key: Buffer.from(k), target: 'Mod' as const, result: 'Equal' as const, mod_revision: v.modRevision })),
      { key: Buffer.from(prefix), range_end: end, target: 'Mod' as const, result: 'Less' as const, mod_revision: String(BigInt(stored.revision) + 1n) },
    ],
    success: [
      ...[...desired].map(([k, v]) => ({ request_put: { key: Buffer.from(k), value: Buffer.from(v) } })),
      ...stale.map((k) => ({ request_delete_range: { key: Buffer.from(k) } })),
    ],
    failure: [],
  });
  return { succeeded: res.succeeded, revision: String(res.header.revision), deleted: stale, foreign };
}

async function push(opts: EtcdFlags & { config: string }): Promise<number> {
  const prefix = normalisePrefix(opts.configPrefix);
  const desired = await checkForPush(opts.config, prefix);
  if (desired === undefined) return 1;
  return withClient(opts, 'push', 1, async (client) => {
    const res = await commitPush(client, prefix, desired);
    if (!res.succeeded) {
      process.stderr.write(`drover config push: the shared config under ${prefix} changed while pushing; nothing was written, run it again\n`);
      return 1;
    }
    for (const k of res.foreign) process.stderr.write(`drover config push: warning: ${k} is not a shared-config key; drovers refuse the config until it is removed\n`);
    const services = desired.size - 1;
    process.stdout.write(
      `${opts.config}: pushed routes and ${services} service${services === 1 ? '' : 's'} to ${prefix}${res.deleted.length > 0 ? `, deleted ${res.deleted.join(', ')}` : ''}\nrevision ${res.revision}\n`,
    );
    return 0;
  });
}

async function get(opts: EtcdFlags): Promise<number> {
  const prefix = normalisePrefix(opts.configPrefix);
  return withClient(opts, 'get', 1, async (client) => {
    const stored = await readStored(client, prefix);
    const out: { routes?: unknown; services?: Record<string, unknown>; other?: Record<string, unknown> } = {};
    const services: Record<string, unknown> = {};
    const other: Record<string, unknown> = {};
    for (const [key, { value }] of [...stored.keys].sort(([a], [b]) => a.localeCompare(b))) {
      const rel = key.slice(prefix.length);
      const doc = parseDocument(value, { merge: true });
      // A value that does not parse is shown as its text, so nothing stored is hidden.
      const parsed: unknown = doc.errors.length > 0 ? value : doc.toJS({ maxAliasCount: 1000 });
      if (rel === ROUTES_KEY) out.routes = parsed;
      else if (rel.startsWith(SERVICES_DIR)) services[rel.slice(SERVICES_DIR.length)] = parsed;
      else other[rel] = parsed;
    }
    if (Object.keys(services).length > 0) out.services = services;
    if (Object.keys(other).length > 0) out.other = other;
    process.stdout.write(`# shared config under ${prefix} at etcd revision ${stored.revision}\n${stored.keys.size === 0 ? '{}\n' : stringify(out)}`);
    return 0;
  });
}

async function diff(opts: EtcdFlags & { config: string }): Promise<number> {
  const prefix = normalisePrefix(opts.configPrefix);
  const desired = await checkForPush(opts.config, prefix);
  if (desired === undefined) return 2;
  return withClient(opts, 'diff', 2, async (client) => {
    const stored = await readStored(client, prefix);
    const lines: string[] = [];
    const keys = [...new Set([...desired.keys(), ...stored.keys.keys()])].sort();
    for (const key of keys) {
      const want = desired.get(key);
      const have = stored.keys.get(key)?.value;
      const stale = want === undefined && key.startsWith(`${prefix}${SERVICES_DIR}`);
      if (want === undefined && !stale) continue; // push leaves it alone
      if (want !== undefined && have !== undefined && canonical(have) === canonical(want)) continue;
      lines.push(want === undefined ? `--- ${key} (deleted by push)` : have === undefined ? `+++ ${key} (new)` : `~~~ ${key}`);
      lines.push(...lineDiff(have === undefined ? [] : canonical(have).split('\n'), want === undefined ? [] : canonical(want).split('\n')));
    }
    if (lines.length === 0) {
      process.stdout.write(`no changes: ${prefix} at revision ${stored.revision} already holds ${opts.config}'s routes and services\n`);
      return 0;
    }
    process.stdout.write(`# ${opts.config} vs ${prefix} at etcd revision ${stored.revision}\n${lines.join('\n')}\n`);
    return 1;
  });
}

/** A value as YAML in one canonical form, so JSON and YAML of the same data compare equal. */
function canonical(text: string): string {
  const doc = parseDocument(text, { merge: true });
  if (doc.errors.length > 0) return text.replace(/\n$/, '');
  return stringify(doc.toJS({ maxAliasCount: 1000 }) ?? null).replace(/\n$/, '');
}

/**
 * `-`/`+`/` ` lines: common leading and trailing lines kept as context, a longest-common-
 * subsequence diff of what is between (values are small). Trimming the common tail first makes
 * a route inserted before unchanged ones show as an insertion, as git would show it.
 */
function lineDiff(a: readonly string[], b: readonly string[]): string[] {
  let tail = 0;
  while (tail < a.length && tail < b.length && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  let head = 0;
  while (head < a.length - tail && head < b.length - tail && a[head] === b[head]) head++;
  const context = (lines: readonly string[]): string[] => lines.map((l) => `  ${l}`);
  return [
    ...context(a.slice(0, head)),
    ...lcsDiff(a.slice(head, a.length - tail), b.slice(head, b.length - tail)),
    ...context(a.slice(a.length - tail)),
  ];
}

function lcsDiff(a: readonly string[], b: readonly string[]): string[] {
  const n = a.length;
  const m = b.length;
  const lcs: number[][] = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      const row = lcs[i] as number[];
      row[j] = a[i] === b[j] ? (lcs[i + 1]?.[j + 1] ?? 0) + 1 : Math.max(lcs[i + 1]?.[j] ?? 0, row[j + 1] ?? 0);
    }
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) {
      out.push(`  ${a[i]}`);
      i++;
      j++;
    } else if (i < n && (j === m || (lcs[i + 1]?.[j] ?? 0) >= (lcs[i]?.[j + 1] ?? 0))) {
      // a removal first when both keep the common subsequence as long: `-` before `+`, as
      // diff(1) and git print a changed line
      out.push(`- ${a[i]}`);
      i++;
    } else {
      out.push(`+ ${b[j]}`);
      j++;
    }
  }
  return out;
}
