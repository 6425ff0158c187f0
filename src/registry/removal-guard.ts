/**
 * The mass-removal guard of the etcd registry (`registry.etcd.min_members_ratio`).
 *
 * One etcd revision (one watch response: a transaction, e.g. `del --prefix`) or one full re-list
 * that would leave fewer than `ratio` of the members the registry currently reports is *held*:
 * its puts apply, its removals do not (the members stay in their pools). The rule that ends a
 * hold is deliberately the simplest one that neither empties pools by accident nor keeps dead
 * members forever:
 *
 * - a held member whose key is written again is simply updated (the hold on it ends): members
 *   coming back (`drover register` puts a vanished key back within a third of its TTL) refill
 *   nothing and confirm nothing, so a wiped prefix that its sidecars restore one key per
 *   revision never shrinks a pool to the first member back;
 * - every later revision is judged on its own merits; one that is not itself guarded and writes
 *   none of the held keys back confirms the held removals: they are applied with it (etcd moved
 *   on and those members are still gone);
 * - an etcd progress notification (etcd sends one to an idle watch every
 *   `--experimental-watch-progress-notify-interval`, 10 min by default) confirms them too, so a
 *   hold ends within two such intervals even when nothing else changes;
 * - a re-list is judged like a revision: against the members reported, held ones included.
 *
 * The first list is never guarded (there is no previous set to keep). Pure bookkeeping: the
 * caller applies what `planEvents` / `planList` return and reports applied effects back.
 */
import type { MemberSpec } from '../../routing/types.js';
import type { ModelEffect } from './etcd-values.js';

/** A removal held back, with the member as it was last reported. */
export interface HeldMember {
  readonly service: string;
  readonly member: MemberSpec;
}

/** What to do with one watch response. */
export interface EventsPlan {
  /** the effects to hand to the sink, in order (removals left out when guarded) */
  readonly apply: readonly ModelEffect[];
  /** held removals confirmed by this revision: delete them after `apply` */
  readonly confirm: readonly HeldMember[];
  /** set when this revision was guarded */
  readonly guarded?: { readonly removed: number; readonly total: number } | undefined;
}

/** What to do with one full list. */
export interface ListPlan {
  /** what to pass to `replaceAll` (the list, plus the held members when guarded) */
  readonly services: ReadonlyMap<string, readonly MemberSpec[]>;
  readonly guarded?: { readonly removed: number; readonly total: number } | undefined;
}

const keyOf = (service: string, id: string): string => `${service}\u0000${id}`;

/** Tracks the members reported to the sink and the removals held back. */
export class RemovalGuard {
  /** service\0id -> member, as reported to the sink (held members included) */
  private readonly reported = new Map<string, HeldMember>();
  /** keys whose removal is held */
  private readonly held = new Set<string>();

  /** @param ratio share in [0, 1] of the members that must remain; undefined: never guard (only bookkeeping) */
  constructor(private readonly ratio: number | undefined) {}

  /** Members currently reported (held ones included). */
  get total(): number {
    return this.reported.size;
  }

  /** Removals currently held. */
  get heldCount(): number {
    return this.held.size;
  }

  private trips(removed: number): boolean {
    const total = this.reported.size;
    // the name says what must stay: at least `ratio` of the members reported now
    return this.ratio !== undefined && total > 0 && removed > 0 && (total - removed) / total < this.ratio;
  }

  /** Judges the effects of one revision. */
  planEvents(effects: readonly ModelEffect[]): EventsPlan {
    // Which reported members would be gone once the whole revision applied (a delete then a
    // put of the same key in one transaction is no removal).
    const gone = new Set<string>();
    for (const e of effects) {
      if (e.type === 'put') gone.delete(keyOf(e.service, e.member.id));
      else if (e.type === 'delete' && this.reported.has(keyOf(e.service, e.id))) gone.add(keyOf(e.service, e.id));
    }
    if (this.trips(gone.size)) {
      const total = this.reported.size;
      for (const k of gone) this.held.add(k);
      const apply = effects.filter((e) => !(e.type === 'delete' && gone.has(keyOf(e.service, e.id))));
      return { apply, confirm: [], guarded: { removed: gone.size, total } };
    }
    const put = new Set(effects.flatMap((e) => (e.type === 'put' ? [keyOf(e.service, e.member.id)] : [])));
    // members coming back: their holds end as their puts apply, the others' stay held
    for (const k of put) if (this.held.has(k)) return { apply: effects, confirm: [] };
    return { apply: effects, confirm: this.takeHeld(put) };
  }

  /** Held removals confirmed without a change (an etcd progress notification). */
  confirmHeld(): readonly HeldMember[] {
    return this.takeHeld(new Set());
  }

  /** Judges a full list (a re-list after compaction, a wiped store, a token refresh). */
  planList(services: ReadonlyMap<string, readonly MemberSpec[]>, first: boolean): ListPlan {
    const listed = new Set<string>();
    for (const [svc, list] of services) for (const m of list) listed.add(keyOf(svc, m.id));
    const gone = [...this.reported.keys()].filter((k) => !listed.has(k));
    this.held.clear();
    if (first || !this.trips(gone.length)) return { services };
    const total = this.reported.size;
    const merged = new Map<string, MemberSpec[]>([...services].map(([svc, list]) => [svc, [...list]]));
    for (const k of gone) {
      const h = this.reported.get(k) as HeldMember;
      let list = merged.get(h.service);
      if (list === undefined) merged.set(h.service, (list = []));
      list.push(h.member);
      this.held.add(k);
    }
    return { services: merged, guarded: { removed: gone.length, total } };
  }

  /** Records what the sink was given by replaceAll. */
  replaced(services: ReadonlyMap<string, readonly MemberSpec[]>): void {
    this.reported.clear();
    for (const [service, list] of services) for (const member of list) this.reported.set(keyOf(service, member.id), { service, member });
  }

  /** Records one put handed to the sink (a held member written again is no longer held). */
  put(service: string, member: MemberSpec): void {
    const k = keyOf(service, member.id);
    this.reported.set(k, { service, member });
    this.held.delete(k);
  }

  /** Records one delete handed to the sink. */
  delete(service: string, id: string): void {
    const k = keyOf(service, id);
    this.reported.delete(k);
    this.held.delete(k);
  }

  private takeHeld(except: ReadonlySet<string>): HeldMember[] {
    const out: HeldMember[] = [];
    for (const k of this.held) {
      const h = this.reported.get(k);
      if (h !== undefined && !except.has(k)) out.push(h);
    }
    this.held.clear();
    return out;
  }
}
