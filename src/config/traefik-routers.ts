/**
 * Traefik's KV routers (`layout: traefik`): `<prefix>http/routers/<r>/rule`, `service` and
 * `priority` -> drover routes, ordered as Traefik orders routers (higher priority first; the
 * default priority is the rule's length; ties by name). A router drover cannot express (a rule
 * outside the subset of `./traefik-rule.ts`, middlewares, no service) is skipped with an issue
 * naming it, as a bad registry value is: the other routers keep working.
 */
import { ErrorCodes, type ConfigIssue } from '../core/errors.js';
import { parseConfigFragments } from './load.js';
import type { SharedSnapshot } from './shared.js';
import { parseTraefikRule } from './traefik-rule.js';
import type { RouteConfig } from './types.js';

/** The routers under `<prefix>http/routers/` -> routes (indexed from 0) and the routers skipped. */
export function parseTraefikRouters(snapshot: SharedSnapshot): { routes: readonly RouteConfig[]; skipped: readonly ConfigIssue[] } {
  const routers = new Map<string, Map<string, string>>();
  for (const [key, value] of snapshot.values) {
    const rel = key.slice(snapshot.prefix.length);
    const slash = rel.indexOf('/');
    if (slash <= 0) continue;
    const name = rel.slice(0, slash);
    let fields = routers.get(name);
    if (fields === undefined) routers.set(name, (fields = new Map()));
    fields.set(rel.slice(slash + 1), value);
  }
  const skipped: ConfigIssue[] = [];
  const ok: { name: string; priority: number; routes: readonly RouteConfig[] }[] = [];
  for (const [name, fields] of [...routers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const key = `${snapshot.prefix}${name}/rule`;
    const skip = (message: string): void => {
      skipped.push({ file: key, key, line: 0, col: 0, path: `routers.${name}`, code: ErrorCodes.CONFIG_INVALID, message: `router "${name}" skipped: ${message}` });
    };
    const rule = fields.get('rule');
    const service = fields.get('service')?.replace(/@.*$/, '');
    if (rule === undefined) {
      skip('it has no rule');
      continue;
    }
    if (service === undefined || service === '') {
      skip('it has no service');
      continue;
    }
    if ([...fields.keys()].some((f) => f.startsWith('middlewares'))) {
      skip('middlewares are not supported (drover would route without them)');
      continue;
    }
    const priorityText = fields.get('priority');
    const priority = priorityText === undefined ? rule.length : Number(priorityText);
    if (!Number.isInteger(priority)) {
      skip(`priority "${priorityText}" is not a whole number`);
      continue;
    }
    let matches;
    try {
      matches = parseTraefikRule(rule);
    } catch (err) {
      skip(`rule ${JSON.stringify(rule)}: ${(err as Error).message}`);
      continue;
    }
    // The route schema checks what the rule's values must look like (paths start with "/", ...).
    const parsed = parseConfigFragments({ key, text: JSON.stringify(matches.map((match) => ({ match, service }))) }, []);
    if (parsed.issues.length > 0) {
      skip(parsed.issues.map((i) => `${i.path.replace(/^routes\.\d+\./, '')}: ${i.message}`).join('; '));
      continue;
    }
    ok.push({ name, priority, routes: parsed.routes });
  }
  ok.sort((a, b) => b.priority - a.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const routes = ok.flatMap((r) => r.routes).map((r, index) => ({ ...r, index }));
  return { routes, skipped };
}
