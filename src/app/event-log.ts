/**
 * The recent events `GET /api/events` and the dashboard show: health transitions, registry
 * changes (a backend joined or left a pool) and config reloads, each kind in its own bounded log
 * so a churning registry never pushes health transitions out of the list.
 */
import type { Backend } from '../../routing/backend.js';
import type { HealthTransition } from '../../health/types.js';
import type { EventView } from '../admin/model.js';

/** Most health transitions kept. */
const MAX_HEALTH_EVENTS = 200;
/** Most registry changes and reloads kept, besides. */
const MAX_OTHER_EVENTS: Readonly<Record<'registry' | 'reload', number>> = { registry: 100, reload: 50 };

/** Bounded logs of recent events, by kind. */
export class EventLog {
  private readonly logs: Record<'health' | 'registry' | 'reload', EventView[]> = { health: [], registry: [], reload: [] };

  /** A health state change. */
  health(t: HealthTransition): void {
    this.push({ kind: 'health', at: new Date(t.at).toISOString(), service: t.service, backend: t.id, from: t.from, to: t.to, reason: t.reason });
  }

  /** One event per backend that joined or left a pool. */
  registry(service: string, added: readonly Backend[], removed: readonly Backend[]): void {
    const at = new Date().toISOString();
    for (const b of added) this.push({ kind: 'registry', at, service, backend: b.id, from: '', to: 'joined', reason: `${b.source}: ${b.url}` });
    for (const b of removed) this.push({ kind: 'registry', at, service, backend: b.id, from: '', to: 'left', reason: `${b.source}: ${b.url}` });
  }

  /** A config reload was applied (`ok`) or refused; `detail` says what triggered it or why it failed. */
  reload(ok: boolean, detail: string): void {
    this.push({ kind: 'reload', at: new Date().toISOString(), service: '', backend: '', from: '', to: ok ? 'applied' : 'refused', reason: detail });
  }

  /** Every kept event, oldest first. */
  list(): EventView[] {
    // Each log is in time order; ISO 8601 UTC strings sort as times, and the sort is stable.
    return [...this.logs.health, ...this.logs.registry, ...this.logs.reload].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  }

  private push(event: EventView): void {
    const kind = event.kind ?? 'health';
    const log = this.logs[kind];
    log.push(event);
    if (log.length > (kind === 'health' ? MAX_HEALTH_EVENTS : MAX_OTHER_EVENTS[kind])) log.shift();
  }
}
