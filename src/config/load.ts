/**
 * Config loading: YAML text -> located syntax errors -> zod (defaults, validation) -> cross
 * checks (routes name reachable services) -> resolved camelCase `DroverConfig` -> deep freeze.
 * Every problem is reported at once, each with the line and column of the node at fault, so
 * `drover check`, `drover start` and hot reload all print the same `FILE:LINE:COL: path: message`.
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { ConfigError, ErrorCodes, errorMessage, type ConfigIssue, type ErrorCode } from '../core/errors.js';
import { checkPair } from '../tls/certificate.js';
import type { MemberSpec } from '../../routing/types.js';
import type { ProbeTls } from '../../health/types.js';
import type { DroverConfig, ListenConfig, ListenerLimits, ListenerTlsConfig, RouteConfig, ServiceConfig, StaticBackendConfig, UpstreamTlsConfig } from './types.js';
import {
  configSchema,
  servicesFileMapSchema,
  SERVICE_NAME_PATTERN,
  SERVICE_ONLY_KEYS,
  type ParsedConfig,
} from './schema.js';
import { hostPortText } from './values.js';

export type { ConfigIssue };

type PathSeg = string | number;
type ZodIssue = z.core.$ZodIssue;

// ---------------------------------------------------------------------------------------------
// Public API.

/**
 * Reads, validates and resolves a config file. Relative paths in it are resolved against the
 * file's directory. Throws `ConfigError` carrying every issue (read error, YAML syntax, schema,
 * route to an unknown service). The result is deeply frozen.
 */
export async function loadConfigFile(file: string): Promise<DroverConfig> {
  const text = await readText(file);
  return parseConfig(text, file);
}

/**
 * Same as {@link loadConfigFile}, from text. `file` names the source in messages and anchors
 * relative paths (`''`: the current directory, and `DroverConfig.file` is empty).
 * Reads the registry file synchronously (if configured) to learn which services it provides.
 */
export function parseConfig(text: string, file: string): DroverConfig {
  const result = analyse(text, file);
  if (result.config === undefined) throw new ConfigError(result.issues);
  return result.config;
}

/**
 * Everything `drover check` reports: the issues of {@link loadConfigFile}, plus referenced
 * files that do not exist (registry file, TLS files, access log directory) and the registry
 * file's own problems. An empty list means the config is valid.
 */
export async function checkConfigFile(file: string): Promise<readonly ConfigIssue[]> {
  let text: string;
  try {
    text = await readText(file);
  } catch (err) {
    return err instanceof ConfigError ? err.issues : [docIssue(file, ErrorCodes.CONFIG_READ, String(err))];
  }
  const result = analyse(text, file);
  const issues = [...result.issues];
  if (result.doc !== undefined) issues.push(...checkReferencedFiles(result.raw, file, result.locator));
  return sortIssues(dedupe(issues), file);
}

/** What the registry file yields: its members per service, and its problems. */
export interface ServicesFileResult {
  /** members per service, `source: 'file'`; only entries that validated */
  readonly services: ReadonlyMap<string, readonly MemberSpec[]>;
  /** empty when the whole file is valid; otherwise callers should keep their previous members */
  readonly issues: readonly ConfigIssue[];
}

/**
 * Parses a registry file (`registry.file`): either a top-level `services:` map (its only key) or
 * directly a map `service -> {backends: [...]}`, with the same backend schema as `drover.yaml`.
 * An empty file is an empty registry. Never throws.
 */
export function parseServicesFile(text: string, file: string): ServicesFileResult {
  const parsed = parseYaml(text, file);
  const services = new Map<string, MemberSpec[]>();
  if (parsed.issues.length > 0) return { services, issues: parsed.issues };
  const issues: ConfigIssue[] = [];
  let body = parsed.raw;
  let prefix: PathSeg[] = [];
  if (isPlainObject(body) && Object.keys(body).length === 1 && 'services' in body && (isPlainObject(body['services']) || body['services'] === null)) {
    body = body['services'];
    prefix = ['services'];
  }
  if (body === null || body === undefined) return { services, issues };
  if (!isPlainObject(body)) {
    issues.push(parsed.locator.issue(prefix, 'value', ErrorCodes.CONFIG_INVALID, `expected a map of services, got ${describeValue(body)}`));
    return { services, issues: freezeDeep(issues) };
  }
  for (const [name, entry] of Object.entries(body)) {
    const r = servicesFileMapSchema.safeParse({ [name]: entry }, { reportInput: true });
    if (!r.success) {
      issues.push(...zodToIssues(r.error.issues, parsed.locator, prefix, fileEntryHints));
      continue;
    }
    const spec = r.data[name];
    if (spec === undefined) continue;
    services.set(
      name,
      spec.backends.map((b) => ({
        ...backendOf(b),
        source: 'file',
      })),
    );
  }
  return { services: freezeDeep(services), issues: freezeDeep(sortIssues(issues)) };
}

/** One value of the shared config in etcd (README "Shared config in etcd"): its key and its YAML/JSON text. */
export interface ConfigFragment {
  readonly key: string;
  readonly text: string;
}

/** A `services/<name>` value: one service's settings, as `services.<name>` of a file. */
export interface ServiceFragment extends ConfigFragment {
  readonly name: string;
}

/** Routes and services of shared-config fragments, validated and resolved exactly like a file's. */
export interface FragmentsResult {
  /** indexed from 0 in list order; a merge re-indexes them after the file's */
  readonly routes: readonly RouteConfig[];
  /** in the order given */
  readonly services: readonly ServiceConfig[];
  /** every problem of every fragment, each with its `key`; empty when all are valid */
  readonly issues: readonly ConfigIssue[];
}

/**
 * Validates shared-config fragments with the file's own schema: the routes value is what a file
 * holds at `routes:` and each service value what it holds at `services.<name>` (`backends`
 * optional). Issues carry the etcd key, the same dotted path a file would show (`routes.0.service`,
 * `services.web.balancer`) and the line and column inside the value. Never throws.
 */
export function parseConfigFragments(routes: ConfigFragment | undefined, services: readonly ServiceFragment[]): FragmentsResult {
  return parseFragmentsAsJson(routes, services) ?? parseFragmentsLocated(routes, services);
}

/**
 * The fast path: when every value is JSON (what `drover config push` writes) and the whole set is
 * valid, JSON.parse is an order of magnitude cheaper than a YAML document with positions. Any
 * doubt (YAML text, a problem to report) returns undefined: the located path decides then.
 */
function parseFragmentsAsJson(routes: ConfigFragment | undefined, services: readonly ServiceFragment[]): FragmentsResult | undefined {
  const json = (text: string): unknown => {
    const t = text.trimStart();
    if (!t.startsWith('{') && !t.startsWith('[')) throw new Error('not JSON');
    return JSON.parse(text) as unknown;
  };
  const raw: { services: Record<string, unknown>; routes: unknown } = { services: {}, routes: [] };
  try {
    if (routes !== undefined) raw.routes = json(routes.text);
    for (const f of services) {
      if (!SERVICE_NAME_PATTERN.test(f.name)) return undefined;
      raw.services[f.name] = json(f.text);
    }
  } catch {
    return undefined;
  }
  const r = configSchema.safeParse(raw);
  if (!r.success) return undefined;
  const resolved = resolveConfig(r.data, '', process.cwd(), services.map((f) => f.name));
  return freezeDeep({ routes: resolved.routes, services: resolved.services, issues: [] });
}

function parseFragmentsLocated(routes: ConfigFragment | undefined, services: readonly ServiceFragment[]): FragmentsResult {
  const issues: ConfigIssue[] = [];
  const raw: { services: Record<string, unknown>; routes: unknown } = { services: {}, routes: [] };
  let routesLocator: Locator | undefined;
  const serviceLocators = new Map<string, Locator>();
  if (routes !== undefined) {
    const p = parseYaml(routes.text, routes.key, { skip: 1, key: routes.key });
    issues.push(...p.issues);
    routesLocator = p.locator;
    if (p.issues.length === 0) raw.routes = p.raw ?? [];
  }
  for (const f of services) {
    if (!SERVICE_NAME_PATTERN.test(f.name)) {
      issues.push({ file: f.key, line: 0, col: 0, path: `services.${f.name}`, key: f.key, code: ErrorCodes.CONFIG_INVALID, message: `"${f.name}" is not a valid service name (letters, digits, ".", "_", "-"; starts with a letter or digit)` });
      continue;
    }
    const p = parseYaml(f.text, f.key, { skip: 2, key: f.key });
    issues.push(...p.issues);
    serviceLocators.set(f.name, p.locator);
    if (p.issues.length === 0) raw.services[f.name] = p.raw ?? {};
  }
  const r = configSchema.safeParse(raw, { reportInput: true });
  if (!r.success) {
    for (const zi of r.error.issues) {
      const locator = zi.path[0] === 'routes' ? routesLocator : serviceLocators.get(String(zi.path[1]));
      if (locator === undefined) {
        issues.push({ file: '', line: 0, col: 0, path: zi.path.map(String).join('.'), code: ErrorCodes.CONFIG_INVALID, message: zi.message });
        continue;
      }
      issues.push(...zodToIssues([zi], locator, [], configHints));
    }
  }
  if (!r.success || issues.length > 0) {
    // by key, then position in the value (schema order would mix keys)
    const ordered = dedupe(issues).sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : a.line - b.line || a.col - b.col));
    return { routes: [], services: [], issues: freezeDeep(ordered) };
  }
  const resolved = resolveConfig(r.data, '', process.cwd(), services.map((f) => f.name));
  return freezeDeep({ routes: resolved.routes, services: resolved.services, issues: [] });
}

// ---------------------------------------------------------------------------------------------
// Analysis.

interface Analysis {
  readonly issues: readonly ConfigIssue[];
  readonly config?: DroverConfig | undefined;
  readonly doc?: Document | undefined;
  readonly raw: unknown;
  readonly locator: Locator;
}

function analyse(text: string, file: string): Analysis {
  const parsed = parseYaml(text, file);
  if (parsed.issues.length > 0) return { issues: parsed.issues, raw: undefined, locator: parsed.locator };
  const raw = parsed.raw ?? {};
  const absFile = file === '' ? '' : path.resolve(file);
  const baseDir = absFile === '' ? process.cwd() : path.dirname(absFile);
  const issues: ConfigIssue[] = [];
  const r = configSchema.safeParse(raw, { reportInput: true });
  if (!r.success) issues.push(...zodToIssues(r.error.issues, parsed.locator, [], configHints));
  issues.push(...checkRouteServices(raw, baseDir, parsed.locator));
  if (!r.success || issues.length > 0) {
    return { issues: freezeDeep(sortIssues(dedupe(issues))), raw, doc: parsed.doc, locator: parsed.locator };
  }
  const order = mapKeyOrder(parsed.doc, ['services']);
  const config = freezeDeep(resolveConfig(r.data, absFile, baseDir, order));
  return { issues: [], config, raw, doc: parsed.doc, locator: parsed.locator };
}

interface ParsedYaml {
  readonly doc: Document;
  readonly raw: unknown;
  readonly issues: ConfigIssue[];
  readonly locator: Locator;
}

function parseYaml(text: string, file: string, fragment?: { skip: number; key: string }): ParsedYaml {
  const lineCounter = new LineCounter();
  // merge: true so `<<: *defaults` works as users of YAML anchors expect.
  const doc = parseDocument(text, { lineCounter, merge: true, prettyErrors: true });
  const locator = new Locator(doc, lineCounter, file, fragment?.skip, fragment?.key);
  const keyed = fragment === undefined ? {} : { key: fragment.key };
  const issues = doc.errors.map((e): ConfigIssue => {
    const pos = e.linePos?.[0];
    const message = (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
    return { file, line: pos?.line ?? 0, col: pos?.col ?? 0, path: '', message: `YAML syntax: ${message}`, code: ErrorCodes.CONFIG_SYNTAX, ...keyed };
  });
  if (issues.length > 0) return { doc, raw: undefined, issues, locator };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    // e.g. an alias bomb ("excessive alias count")
    issues.push({ ...docIssue(file, ErrorCodes.CONFIG_SYNTAX, `YAML: ${errorMessage(err)}`), ...keyed });
  }
  return { doc, raw, issues, locator };
}

async function readText(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : errorMessage(err);
    throw new ConfigError([docIssue(file, ErrorCodes.CONFIG_READ, `cannot read config: ${reason}`)]);
  }
}

function docIssue(file: string, code: ErrorCode, message: string): ConfigIssue {
  return { file, line: 0, col: 0, path: '', message, code };
}

// ---------------------------------------------------------------------------------------------
// Locating nodes.

/** Maps a data path to the line and column of its YAML node. */
class Locator {
  /**
   * @param skip leading path segments that are not in this document (a shared-config value in
   *   etcd holds what sits at `routes` or `services.NAME` of a file: 1 or 2 segments)
   * @param key the etcd key the document came from, copied into every issue
   */
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
    readonly file: string,
    private readonly skip = 0,
    private readonly key?: string,
  ) {}

  /**
   * Position of the node at `at`: its value, or its key (`which: 'key'`). Where the path stops
   * existing (a missing key), the position of the deepest existing node, i.e. the parent map.
   */
  position(at: readonly PathSeg[], which: 'value' | 'key'): { line: number; col: number } {
    let node: unknown = this.doc.contents;
    let last: YamlNode | undefined = isNode(node) ? node : undefined;
    for (let i = 0; i < at.length; i++) {
      if (isAlias(node)) node = node.resolve(this.doc);
      const seg = at[i];
      const isLast = i === at.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => String(isScalar(p.key) ? p.key.value : p.key) === String(seg));
        if (pair === undefined) break;
        if (isLast && which === 'key' && isNode(pair.key)) {
          last = pair.key;
          break;
        }
        if (!isNode(pair.value) || isEmptyScalar(pair.value)) {
          // `key:` with nothing after it: point at the key
          if (isNode(pair.key)) last = pair.key;
          break;
        }
        node = pair.value;
        last = pair.value;
      } else if (isSeq(node)) {
        const item = node.items[Number(seg)];
        if (!isNode(item)) break;
        node = item;
        last = item;
      } else {
        break;
      }
    }
    const offset = last?.range?.[0];
    if (offset === undefined) return { line: 1, col: 1 };
    return this.lines.linePos(offset);
  }

  issue(at: readonly PathSeg[], which: 'value' | 'key', code: ErrorCode, message: string): ConfigIssue {
    const { line, col } = this.position(at.slice(this.skip), which);
    return { file: this.file, line, col, path: at.join('.'), message, code, ...(this.key === undefined ? {} : { key: this.key }) };
  }
}

function isNode(v: unknown): v is YamlNode {
  return typeof v === 'object' && v !== null && 'range' in v;
}

function isEmptyScalar(v: YamlNode): boolean {
  return isScalar(v) && v.value === null && (v.range === null || v.range === undefined || v.range[0] === v.range[1]);
}

function mapKeyOrder(doc: Document, at: readonly PathSeg[]): string[] {
  const node = doc.getIn(at, true);
  if (!isMap(node)) return [];
  return node.items.map((p) => String(isScalar(p.key) ? p.key.value : p.key));
}

// ---------------------------------------------------------------------------------------------
// zod issues -> located, human issues.

/** Known keys of the object at a path (for "did you mean"), found by walking the schema. */
type KeyHints = (at: readonly PathSeg[]) => readonly string[];

const configHints: KeyHints = (at) => keysAt(configSchema, at);
const fileEntryHints: KeyHints = (at) => keysAt(servicesFileMapSchema, at);

interface SchemaDef {
  readonly type: string;
  readonly shape?: Record<string, unknown>;
  readonly innerType?: unknown;
  readonly in?: unknown;
  readonly element?: unknown;
  readonly valueType?: unknown;
  readonly options?: readonly unknown[];
  readonly getter?: () => unknown;
}

function defOf(schema: unknown): SchemaDef | undefined {
  return (schema as { _zod?: { def?: SchemaDef } } | undefined)?._zod?.def;
}

function keysAt(schema: unknown, at: readonly PathSeg[]): readonly string[] {
  const def = defOf(schema);
  if (def === undefined) return [];
  switch (def.type) {
    case 'object':
      if (at.length === 0) return Object.keys(def.shape ?? {});
      return keysAt(def.shape?.[String(at[0])], at.slice(1));
    case 'array':
      return at.length === 0 ? [] : keysAt(def.element, at.slice(1));
    case 'record':
      return at.length === 0 ? [] : keysAt(def.valueType, at.slice(1));
    case 'pipe':
      return keysAt(def.in, at);
    case 'lazy':
      return keysAt(def.getter?.(), at);
    case 'union':
      for (const o of def.options ?? []) {
        const k = keysAt(o, at);
        if (k.length > 0) return k;
      }
      return [];
    default:
      return def.innerType !== undefined ? keysAt(def.innerType, at) : [];
  }
}

function zodToIssues(zodIssues: readonly ZodIssue[], locator: Locator, prefix: readonly PathSeg[], hints: KeyHints): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  const invalid = ErrorCodes.CONFIG_INVALID;
  for (const zi of zodIssues) {
    const rel = zi.path.map((p) => (typeof p === 'number' ? p : String(p)));
    const at = [...prefix, ...rel];
    if (!/^(Too small|Too big|Invalid|Unrecognized)/.test(zi.message) && zi.code !== 'unrecognized_keys' && zi.code !== 'invalid_key') {
      // a message the schema wrote itself: already human
      out.push(locator.issue(at, 'value', invalid, zi.message));
      continue;
    }
    switch (zi.code) {
      case 'unrecognized_keys':
        for (const key of zi.keys) {
          out.push(locator.issue([...at, key], 'key', invalid, unknownKeyMessage(key, hints(rel), rel)));
        }
        break;
      case 'invalid_key':
        out.push(locator.issue(at, 'key', invalid, zi.issues[0]?.message ?? `invalid key "${String(rel.at(-1))}"`));
        break;
      case 'invalid_type':
        out.push(locator.issue(at, 'value', invalid, invalidTypeMessage(zi, rel.at(-1))));
        break;
      case 'invalid_value':
        out.push(locator.issue(at, 'value', invalid, invalidValueMessage(zi.values, zi.input)));
        break;
      case 'too_small':
        out.push(locator.issue(at, 'value', invalid, sizeMessage('at least', zi.minimum, zi.inclusive !== false, zi.origin)));
        break;
      case 'too_big':
        out.push(locator.issue(at, 'value', invalid, sizeMessage('at most', zi.maximum, zi.inclusive !== false, zi.origin)));
        break;
      default:
        out.push(locator.issue(at, 'value', invalid, zi.message));
    }
  }
  return out;
}

function fileEntryHint(key: string, rel: readonly PathSeg[]): string | undefined {
  // A services-file entry is `NAME: {backends}`; service settings belong in drover.yaml.
  if (rel.length === 1 && SERVICE_ONLY_KEYS.includes(key)) {
    return `"${key}" is not read from a registry file (members only); set it under services: in drover.yaml`;
  }
  return undefined;
}

function unknownKeyMessage(key: string, known: readonly string[], rel: readonly PathSeg[]): string {
  const special = known.length === 1 && known[0] === 'backends' ? fileEntryHint(key, rel) : undefined;
  if (special !== undefined) return special;
  const guess = closest(key, known);
  return guess === undefined ? `unknown key "${key}"` : `unknown key "${key}" (did you mean "${guess}"?)`;
}

function invalidTypeMessage(zi: z.core.$ZodIssueInvalidType, key: PathSeg | undefined): string {
  if (zi.input === undefined) return key === undefined ? 'missing' : `missing required key "${String(key)}"`;
  const want: Record<string, string> = { object: 'a map', record: 'a map', array: 'a list', string: 'text', number: 'a number', int: 'a whole number', boolean: 'true or false' };
  return `expected ${want[zi.expected] ?? zi.expected}, got ${describeValue(zi.input)}`;
}

function invalidValueMessage(values: readonly unknown[], input: unknown): string {
  const list = values.map((v) => String(v)).join(', ');
  const guess = typeof input === 'string' ? closest(input, values.map(String)) : undefined;
  const hint = guess === undefined ? '' : ` (did you mean "${guess}"?)`;
  return `${describeValue(input)} is not one of: ${list}${hint}`;
}

function sizeMessage(bound: 'at least' | 'at most', limit: number | bigint, inclusive: boolean, origin: string): string {
  const n = Number(limit);
  if (origin === 'array') return `needs ${bound} ${n} item${n === 1 ? '' : 's'}`;
  if (origin === 'string') return n === 1 && bound === 'at least' ? 'must not be empty' : `must be ${bound} ${n} characters`;
  if (!inclusive) return `must be ${bound === 'at least' ? 'greater' : 'less'} than ${n}`;
  return `must be ${bound} ${n}`;
}

function describeValue(v: unknown): string {
  if (v === null) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  if (typeof v === 'string') return `"${v}"`;
  return `${typeof v} ${String(v)}`;
}

/** The known word nearest to `word` by edit distance, if it is plausibly a typo of it. */
function closest(word: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(word.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.min(3, Math.floor(best.length / 3))) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

// ---------------------------------------------------------------------------------------------
// Cross checks on the raw document (so they report alongside schema errors).

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function getRaw(raw: unknown, at: readonly PathSeg[]): unknown {
  let v = raw;
  for (const seg of at) {
    if (Array.isArray(v) && typeof seg === 'number') v = v[seg];
    else if (isPlainObject(v)) v = v[String(seg)];
    else return undefined;
  }
  return v;
}

/** A route must name a service under `services:`, in the registry file, or anything with etcd. */
function checkRouteServices(raw: unknown, baseDir: string, locator: Locator): ConfigIssue[] {
  const routes = getRaw(raw, ['routes']);
  if (!Array.isArray(routes)) return [];
  if (isPlainObject(getRaw(raw, ['registry', 'etcd']))) return []; // may appear in etcd later
  if (isPlainObject(getRaw(raw, ['registry', 'zookeeper']))) return []; // or in ZooKeeper
  const known = new Set(Object.keys(asObject(getRaw(raw, ['services']))));
  let fileNote = '';
  const regFile = getRaw(raw, ['registry', 'file']);
  if (typeof regFile === 'string' && regFile !== '') {
    const abs = path.resolve(baseDir, regFile);
    try {
      const parsed = parseServicesFile(readFileSync(abs, 'utf8'), abs);
      for (const name of parsed.services.keys()) known.add(name);
      fileNote = ` or in registry file ${regFile}`;
    } catch (err) {
      fileNote = ` (registry file ${regFile} could not be read: ${(err as NodeJS.ErrnoException).code ?? String(err)})`;
    }
  }
  const issues: ConfigIssue[] = [];
  routes.forEach((route: unknown, i) => {
    const service = getRaw(route, ['service']);
    if (typeof service !== 'string' || service === '' || known.has(service)) return;
    const guess = closest(service, [...known]);
    const hint = guess === undefined ? '' : ` (did you mean "${guess}"?)`;
    issues.push(
      locator.issue(['routes', i, 'service'], 'value', ErrorCodes.CONFIG_UNKNOWN_SERVICE, `route to unknown service "${service}": not defined under services:${fileNote}${hint}`),
    );
  });
  return issues;
}

function asObject(v: unknown): Record<string, unknown> {
  return isPlainObject(v) ? v : {};
}

/** `drover check` only: files the config names must exist. */
function checkReferencedFiles(raw: unknown, file: string, locator: Locator): ConfigIssue[] {
  const baseDir = file === '' ? process.cwd() : path.dirname(path.resolve(file));
  const issues: ConfigIssue[] = [];
  const want = (at: PathSeg[], kind: 'file' | 'dir'): string | undefined => {
    const v = getRaw(raw, at);
    if (typeof v !== 'string' || v === '') return undefined;
    const abs = path.resolve(baseDir, kind === 'dir' ? path.dirname(v) : v);
    let ok = false;
    try {
      const st = statSync(abs);
      ok = kind === 'dir' ? st.isDirectory() : st.isFile();
    } catch {
      ok = false;
    }
    if (!ok) {
      const what = kind === 'dir' ? `directory ${path.dirname(v)} does not exist` : `file ${v} does not exist (looked for ${abs})`;
      issues.push(locator.issue(at, 'value', ErrorCodes.CONFIG_MISSING_FILE, what));
      return undefined;
    }
    return abs;
  };
  const regFile = want(['registry', 'file'], 'file');
  if (regFile !== undefined) {
    try {
      issues.push(...parseServicesFile(readFileSync(regFile, 'utf8'), path.relative(process.cwd(), regFile) || regFile).issues);
    } catch (err) {
      issues.push(locator.issue(['registry', 'file'], 'value', ErrorCodes.CONFIG_READ, `cannot read: ${String(err)}`));
    }
  }
  for (const k of ['ca', 'cert', 'key']) want(['registry', 'etcd', 'tls', k], 'file');
  const listen = getRaw(raw, ['listen']);
  if (Array.isArray(listen)) {
    listen.forEach((l: unknown, i) => {
      for (const k of ['cert', 'key', 'client_ca']) want(['listen', i, 'tls', k], 'file');
      const certs = getRaw(l, ['tls', 'certificates']);
      if (Array.isArray(certs)) certs.forEach((_, j) => {
        for (const k of ['cert', 'key']) want(['listen', i, 'tls', 'certificates', j, k], 'file');
      });
      issues.push(...checkListenerPairs(raw, i, baseDir, locator));
    });
  }
  want(['acme', 'ca'], 'file');
  const services = getRaw(raw, ['services']);
  if (services !== null && typeof services === 'object' && !Array.isArray(services)) {
    for (const name of Object.keys(services)) want(['services', name, 'tls', 'ca'], 'file');
  }
  const log = getRaw(raw, ['access_log']);
  if (typeof log === 'string' && log !== 'off' && log !== 'stdout') want(['access_log'], 'dir');
  return issues;
}

/** Days before notAfter from which `drover check` warns about a certificate. */
export const CERT_EXPIRY_WARNING_DAYS = 30;

/**
 * `drover check` only: every certificate pair of listener `i` whose files exist must parse and
 * match (an error otherwise); one expired or expiring within `CERT_EXPIRY_WARNING_DAYS` gets a
 * warning (drover would still serve it).
 */
function checkListenerPairs(raw: unknown, i: number, baseDir: string, locator: Locator): ConfigIssue[] {
  const tls = getRaw(raw, ['listen', i, 'tls']);
  if (!isPlainObject(tls)) return [];
  const pairs: { at: PathSeg[]; cert: unknown; key: unknown }[] = [];
  if (tls['cert'] !== undefined) pairs.push({ at: ['listen', i, 'tls', 'cert'], cert: tls['cert'], key: tls['key'] });
  const list = tls['certificates'];
  if (Array.isArray(list)) {
    list.forEach((p: unknown, j) => pairs.push({ at: ['listen', i, 'tls', 'certificates', j, 'cert'], cert: getRaw(p, ['cert']), key: getRaw(p, ['key']) }));
  }
  const issues: ConfigIssue[] = [];
  for (const p of pairs) {
    if (typeof p.cert !== 'string' || typeof p.key !== 'string') continue;
    let certPem: string;
    let keyPem: string;
    try {
      certPem = readFileSync(path.resolve(baseDir, p.cert), 'utf8');
      keyPem = readFileSync(path.resolve(baseDir, p.key), 'utf8');
    } catch {
      continue; // missing files are reported by the existence check
    }
    try {
      const { info } = checkPair(p.cert, certPem, keyPem);
      const days = Math.floor((info.notAfter - Date.now()) / 86_400_000);
      if (info.notAfter <= Date.now()) {
        issues.push({ ...locator.issue(p.at, 'value', ErrorCodes.TLS_CERTIFICATE, `certificate expired on ${new Date(info.notAfter).toISOString()}`), severity: 'warning' });
      } else if (days < CERT_EXPIRY_WARNING_DAYS) {
        issues.push({ ...locator.issue(p.at, 'value', ErrorCodes.TLS_CERTIFICATE, `certificate expires in ${days} days (${new Date(info.notAfter).toISOString()})`), severity: 'warning' });
      }
    } catch (err) {
      issues.push(locator.issue(p.at, 'value', ErrorCodes.TLS_CERTIFICATE, (err as Error).message));
    }
  }
  return issues;
}

/** File order: line, then column; issues of other files (the registry file) after, as found. */
function sortIssues(issues: readonly ConfigIssue[], mainFile = issues[0]?.file): ConfigIssue[] {
  return issues
    .map((issue, i) => ({ issue, i, other: issue.file === mainFile ? 0 : 1 }))
    .sort((a, b) => a.other - b.other || (a.other === 1 ? a.i - b.i : a.issue.line - b.issue.line || a.issue.col - b.issue.col || a.i - b.i))
    .map((x) => x.issue);
}

function dedupe(issues: readonly ConfigIssue[]): ConfigIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.file}\0${i.line}\0${i.col}\0${i.path}\0${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Resolution: snake_case output of the schema -> DroverConfig.

type ParsedBackend = ParsedConfig['services'][string]['backends'][number];

function backendOf(b: ParsedBackend): StaticBackendConfig {
  // `zone` is left out rather than set to undefined so pools comparing member fields see equals.
  return {
    id: b.id ?? b.url.id,
    url: b.url.url,
    weight: b.weight,
    ...(b.zone === undefined ? {} : { zone: b.zone }),
    draining: b.draining,
  };
}

function resolveConfig(p: ParsedConfig, absFile: string, baseDir: string, serviceOrder: readonly string[]): DroverConfig {
  const abs = (f: string): string => path.resolve(baseDir, f);
  const listen = p.listen.map(
    (l): ListenConfig => ({
      address: hostPortText(l.address.host, l.address.port),
      host: l.address.host,
      port: l.address.port,
      ...(l.tls === undefined ? {} : { tls: resolveListenerTls(l.tls, abs) }),
      redirectHttps: l.redirect_https,
      hsts: l.hsts,
      limits: resolveLimits(p.limits, l.limits),
    }),
  );
  const names = Object.keys(p.services).sort((a, b) => rank(serviceOrder, a) - rank(serviceOrder, b));
  const services = names.map((name): ServiceConfig => {
    const s = p.services[name];
    if (s === undefined) throw new Error(`unreachable: service ${name}`);
    const tls = upstreamTls(s.tls, abs);
    const active = s.health.active;
    return {
      name,
      balancer: s.balancer,
      ...(s.balancer === 'hash' ? { hashKey: s.hash_key ?? { kind: 'ip' } } : {}),
      health: {
        ...(active === undefined
          ? {}
          : {
              active: {
                ...(active.path === undefined ? {} : { path: active.path }),
                tcp: active.tcp === true,
                interval: active.interval,
                timeout: active.timeout,
                rise: active.rise,
                fall: active.fall,
                expectStatus: active.expect_status,
                ...(tls === undefined ? {} : { tls: probeTls(tls) }),
              },
            }),
        passive: {
          consecutiveFailures: s.health.passive.consecutive_failures,
          ejection: s.health.passive.ejection,
          maxEjectedPercent: s.health.passive.max_ejected_percent,
        },
      },
      slowStart: s.slow_start,
      panicThreshold: s.panic_threshold,
      retries: s.retries,
      timeouts: { connect: s.timeouts.connect, responseHeaders: s.timeouts.response_headers, idle: s.timeouts.idle },
      ...(tls === undefined ? {} : { tls }),
      maxConns: s.max_conns,
      queue: { size: s.queue.size, timeout: s.queue.timeout },
      zoneAware: s.zone_aware,
      ...(s.request_buffering === undefined ? {} : { requestBuffering: { maxBytes: s.request_buffering.max_bytes } }),
      ...(tls === undefined ? {} : { tls }),
      backends: s.backends.map(backendOf),
      ...(s.dns === undefined ? {} : { dns: 'srv' in s.dns ? { srv: s.dns.srv } : { a: s.dns.a, port: s.dns.port } }),
    };
  });
  const routes = p.routes.map(
    (r, index): RouteConfig => ({
      index,
      match: {
        ...(r.match.host === undefined ? {} : { host: r.match.host.toLowerCase() }),
        ...(r.match.path_prefix === undefined ? {} : { pathPrefix: r.match.path_prefix }),
        ...(r.match.path === undefined ? {} : { path: r.match.path }),
        ...(r.match.method === undefined ? {} : { method: r.match.method.toUpperCase() }),
        headers: Object.entries(r.match.headers ?? {}).map(([name, value]) => ({ name: name.toLowerCase(), value })),
      },
      service: r.service,
      ...(r.strip_prefix === undefined ? {} : { stripPrefix: r.strip_prefix }),
      ...(r.upgrades === undefined ? {} : { upgrades: r.upgrades.map((u) => u.toLowerCase()) }),
      requestHeaders: {
        set: Object.entries(r.request_headers?.set ?? {}).map(([name, value]) => ({ name, value })),
        remove: (r.request_headers?.remove ?? []).map((n) => n.toLowerCase()),
      },
    }),
  );
  const etcd = p.registry.etcd;
  const prefix = etcd === undefined ? '' : (etcd.prefix ?? (etcd.layout === 'traefik' ? 'traefik/' : etcd.layout === 'skydns' ? '/skydns/' : '/drover/services/'));
  const zk = p.registry.zookeeper;
  const dns = p.registry.dns;
  return {
    file: absFile,
    listen,
    trustedProxies: p.trusted_proxies,
    mergeSlashes: p.merge_slashes,
    accessLog: p.access_log === 'off' || p.access_log === 'stdout' ? p.access_log : abs(p.access_log),
    shutdownGrace: p.shutdown_grace,
    workers: p.workers,
    admin: { address: hostPortText(p.admin.address.host, p.admin.address.port), host: p.admin.address.host, port: p.admin.address.port, tokenEnv: p.admin.token_env,
      ...(p.admin.allowed_hosts === undefined ? {} : { allowedHosts: p.admin.allowed_hosts.map((h) => h.toLowerCase()) }) },
    registry: {
      ...(p.registry.file === undefined ? {} : { file: abs(p.registry.file) }),
      ...(etcd === undefined
        ? {}
        : {
            etcd: {
              endpoints: etcd.endpoints,
              prefix: prefix.endsWith('/') ? prefix : `${prefix}/`,
              layout: etcd.layout,
              ...(etcd.config_prefix === undefined ? {} : { configPrefix: etcd.config_prefix.endsWith('/') ? etcd.config_prefix : `${etcd.config_prefix}/` }),
              ...(etcd.min_members_ratio === undefined ? {} : { minMembersRatio: etcd.min_members_ratio }),
              ...(etcd.username_env === undefined ? {} : { usernameEnv: etcd.username_env }),
              ...(etcd.password_env === undefined ? {} : { passwordEnv: etcd.password_env }),
              ...(etcd.tls === undefined
                ? {}
                : {
                    tls: {
                      ...(etcd.tls.ca === undefined ? {} : { ca: abs(etcd.tls.ca) }),
                      ...(etcd.tls.cert === undefined ? {} : { cert: abs(etcd.tls.cert) }),
                      ...(etcd.tls.key === undefined ? {} : { key: abs(etcd.tls.key) }),
                    },
                  }),
            },
          }),
      ...(zk === undefined
        ? {}
        : {
            zookeeper: {
              servers: zk.servers, // normalised by the schema (parseServerList)
              prefix: zk.prefix.length > 1 ? zk.prefix.replace(/\/$/, '') : zk.prefix,
              layout: zk.layout,
              sessionTimeout: zk.session_timeout,
            },
          }),
      ...(dns === undefined ? {} : { dns: { servers: dns.servers ?? [], refresh: dns.refresh, timeout: dns.timeout } }),
    },
    ...(p.acme === undefined
      ? {}
      : {
          acme: {
            directory: p.acme.directory,
            ...(p.acme.email === undefined ? {} : { email: p.acme.email }),
            domains: p.acme.domains.map((d) => d.toLowerCase()),
            storage: abs(p.acme.storage),
            ...(p.acme.ca === undefined ? {} : { ca: abs(p.acme.ca) }),
          },
        }),
    services,
    routes,
  };
}

/** `listen[].tls` with the `{cert, key}` shorthand turned into a one-item certificate list. */
function resolveListenerTls(t: NonNullable<ParsedConfig['listen'][number]['tls']>, abs: (f: string) => string): ListenerTlsConfig {
  const pairs = t.certificates ?? (t.cert !== undefined && t.key !== undefined ? [{ cert: t.cert, key: t.key }] : []);
  return {
    certificates: pairs.map((p) => ({ cert: abs(p.cert), key: abs(p.key) })),
    minVersion: t.min_version,
    alpn: t.alpn,
    ...(t.client_ca === undefined ? {} : { clientCa: abs(t.client_ca) }),
  };
}

/** `services.<name>.tls` resolved: the CA path made absolute and the CA read (see `UpstreamTlsConfig.caPem`). */
function upstreamTls(t: ParsedConfig['services'][string]['tls'], abs: (f: string) => string): UpstreamTlsConfig | undefined {
  if (t === undefined) return undefined;
  let ca: { ca: string; caPem: string[] } | undefined;
  if (t.ca !== undefined) {
    const file = abs(t.ca);
    let pem: string[];
    try {
      pem = [readFileSync(file, 'utf8')];
    } catch {
      pem = [];
    }
    ca = { ca: file, caPem: pem };
  }
  return { ...(ca ?? {}), ...(t.server_name === undefined ? {} : { serverName: t.server_name }), verify: t.verify };
}

/** The same TLS settings in the shape active health probes take (node:tls option names). */
function probeTls(t: UpstreamTlsConfig): ProbeTls {
  return {
    ...(t.caPem === undefined ? {} : { ca: t.caPem }),
    ...(t.serverName === undefined ? {} : { servername: t.serverName }),
    rejectUnauthorized: t.verify,
  };
}

/** The top-level `limits` with one listener's overrides applied, in camelCase. */
function resolveLimits(top: ParsedConfig['limits'], own: ParsedConfig['listen'][number]['limits']): ListenerLimits {
  const m = { ...top, ...Object.fromEntries(Object.entries(own ?? {}).filter(([, v]) => v !== undefined)) } as ParsedConfig['limits'];
  return {
    maxHeaderBytes: m.max_header_bytes,
    maxHeaders: m.max_headers,
    maxUrlBytes: m.max_url_bytes,
    headersTimeout: m.headers_timeout,
    requestTimeout: m.request_timeout,
    sendTimeout: m.send_timeout,
    keepAliveTimeout: m.keep_alive_timeout,
    maxConnections: m.max_connections,
  };
}

function rank(order: readonly string[], name: string): number {
  const i = order.indexOf(name);
  return i === -1 ? order.length : i;
}

/** Recursively freezes objects, arrays and the values of Maps (a Map itself stays mutable in JS). */
function freezeDeep<T>(value: T): T {
  if (value instanceof Map) {
    for (const v of value.values()) freezeDeep(v);
    return value;
  }
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) freezeDeep(v);
  }
  return value;
}
