import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ServiceHealth, ejectionDuration, isPassiveFailure } from '../health/state.js';
import { formatDuration } from '../health/duration.js';
import { HealthStore } from '../health/store.js';
import type {
  ActiveCheckConfig,
  Availability,
  DrainSource,
  HealthState,
  HealthTransition,
  PassiveCheckConfig,
  PassiveOutcome,
  ServiceHealthConfig,
} from '../health/types.js';
import { waitFor } from './helpers/wait.js';

const ACTIVE: ActiveCheckConfig = {
  path: '/healthz',
  tcp: false,
  interval: 2000,
  timeout: 1000,
  rise: 2,
  fall: 3,
  expectStatus: { min: 200, max: 399 },
};
const PASSIVE: PassiveCheckConfig = { consecutiveFailures: 5, ejection: 30_000, maxEjectedPercent: 50 };
const WITH_ACTIVE: ServiceHealthConfig = { active: ACTIVE, passive: PASSIVE };
const PASSIVE_ONLY: ServiceHealthConfig = { passive: PASSIVE };

const S502: PassiveOutcome = { kind: 'status', status: 502 };
const S404: PassiveOutcome = { kind: 'status', status: 404 };
const OK: PassiveOutcome = { kind: 'success' };
const CONNECT: PassiveOutcome = { kind: 'connect' };

type Step =
  | { at: number; add: string; draining?: boolean }
  | { at: number; remove: string }
  | { at: number; active: string; ok: boolean; detail?: string; times?: number }
  | { at: number; passive: string; outcome: PassiveOutcome; times?: number }
  | { at: number; tick: true }
  | { at: number; drain: string; draining: boolean; source?: DrainSource }
  | { at: number; reconfigure: ServiceHealthConfig };

interface Case {
  name: string;
  cfg: ServiceHealthConfig;
  steps: Step[];
  /** every transition, in order, as `id:from->to` */
  transitions: string[];
  /** final shown state and availability per id */
  final: Record<string, { state: HealthState; available: boolean; reason?: string | RegExp }>;
  /** every availability notification, in order, as `id=availability` (optional) */
  availability?: string[];
}

function run(c: Case): { transitions: HealthTransition[]; availability: string[]; sh: ServiceHealth } {
  const seen: HealthTransition[] = [];
  const availability: string[] = [];
  const sh = new ServiceHealth('web', c.cfg, {
    onTransition: (t) => seen.push(t),
    setAvailable: (service, id, a) => {
      expect(service).toBe('web');
      availability.push(`${id}=${a}`);
    },
  });
  const returned: HealthTransition[] = [];
  for (const s of c.steps) {
    if ('add' in s) sh.add(s.add, s.at, { draining: s.draining ?? false });
    else if ('remove' in s) sh.remove(s.remove);
    else if ('active' in s) {
      for (let i = 0; i < (s.times ?? 1); i++) returned.push(...sh.activeResult(s.active, s.ok, s.detail ?? (s.ok ? 'status 200' : 'status 500'), s.at));
    } else if ('passive' in s) {
      for (let i = 0; i < (s.times ?? 1); i++) returned.push(...sh.passiveResult(s.passive, s.outcome, s.at));
    } else if ('tick' in s) returned.push(...sh.tick(s.at));
    else if ('drain' in s) returned.push(...sh.setDraining(s.drain, s.source ?? 'admin', s.draining, s.at));
    else returned.push(...sh.reconfigure(s.reconfigure, s.at));
  }
  // The returned arrays and the listener see the same transitions.
  expect(returned).toEqual(seen);
  return { transitions: seen, availability, sh };
}

const cases: Case[] = [
  {
    name: 'active: a new backend is unknown and pending (no traffic, not counted) until its first check',
    cfg: WITH_ACTIVE,
    steps: [{ at: 0, add: 'a' }],
    transitions: [],
    final: { a: { state: 'unknown', available: false, reason: 'added; waiting for its first check' } },
    availability: ['a=pending'],
  },
  {
    name: 'active: its first passing check makes it healthy at once (one pass, not rise)',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 20, active: 'a', ok: true },
    ],
    transitions: ['a:unknown->healthy'],
    final: { a: { state: 'healthy', available: true, reason: 'first check passed' } },
    availability: ['a=pending', 'a=available'],
  },
  {
    name: 'active: its first failing check makes it unhealthy at once; coming back then needs rise passes',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 20, active: 'a', ok: false, detail: 'status 503' },
      { at: 2000, active: 'a', ok: true },
      { at: 4000, active: 'a', ok: true },
    ],
    transitions: ['a:unknown->unhealthy', 'a:unhealthy->healthy'],
    final: { a: { state: 'healthy', available: true, reason: '2 passed checks' } },
    availability: ['a=pending', 'a=failed', 'a=available'],
  },
  {
    name: 'active: further passes change nothing',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 2000, active: 'a', ok: true, times: 2 },
      { at: 4000, active: 'a', ok: true, times: 5 },
    ],
    transitions: ['a:unknown->healthy'],
    final: { a: { state: 'healthy', available: true, reason: 'first check passed' } },
    availability: ['a=pending', 'a=available'],
  },
  {
    name: 'active: fall consecutive failures make it unhealthy, with the last detail',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, active: 'a', ok: false, detail: 'status 500', times: 2 },
      { at: 3, active: 'a', ok: false, detail: 'connect ECONNREFUSED' },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->unhealthy'],
    final: { a: { state: 'unhealthy', available: false, reason: '3 failed checks: connect ECONNREFUSED' } },
    availability: ['a=pending', 'a=available', 'a=failed'],
  },
  {
    name: 'active: flapping healthy backend is damped (a pass resets the failure run)',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, active: 'a', ok: false, times: 2 },
      { at: 3, active: 'a', ok: true },
      { at: 4, active: 'a', ok: false, times: 2 },
      { at: 5, active: 'a', ok: true },
      { at: 6, active: 'a', ok: false, times: 2 },
    ],
    transitions: ['a:unknown->healthy'],
    final: { a: { state: 'healthy', available: true } },
  },
  {
    name: 'active: a single pass does not bring an unhealthy backend back',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, active: 'a', ok: false, times: 3 },
      { at: 3, active: 'a', ok: true },
      { at: 4, active: 'a', ok: false },
      { at: 5, active: 'a', ok: true },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->unhealthy'],
    final: { a: { state: 'unhealthy', available: false } },
  },
  {
    name: 'active: rise passes bring an unhealthy backend back',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, active: 'a', ok: false, times: 3 },
      { at: 3, active: 'a', ok: true, times: 2 },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->unhealthy', 'a:unhealthy->healthy'],
    final: { a: { state: 'healthy', available: true, reason: '2 passed checks' } },
  },
  {
    name: 'active: a first probe that timed out is a verdict too; more failures change nothing',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: false, detail: 'timeout after 1000ms', times: 3 },
    ],
    transitions: ['a:unknown->unhealthy'],
    final: { a: { state: 'unhealthy', available: false, reason: 'first check failed: timeout after 1000ms' } },
    availability: ['a=pending', 'a=failed'],
  },
  {
    name: 'passive only: a new backend is unknown and available; stray active results are ignored',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: false, times: 5 },
    ],
    transitions: [],
    final: { a: { state: 'unknown', available: true, reason: 'added; no active checks' } },
    availability: ['a=available'],
  },
  {
    name: 'passive: consecutive 5xx eject; the ejection ends on time and restores the prior state',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 0, add: 'c' },
      { at: 1000, passive: 'a', outcome: S502, times: 5 },
      { at: 30_999, tick: true },
      { at: 31_000, tick: true },
    ],
    transitions: ['a:unknown->ejected', 'a:ejected->unknown'],
    final: {
      a: { state: 'unknown', available: true, reason: 'ejection ended after 30s' },
      b: { state: 'unknown', available: true },
    },
    availability: ['a=available', 'b=available', 'c=available', 'a=failed', 'a=available'],
  },
  {
    name: 'passive: an ejected healthy backend comes back healthy',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, passive: 'a', outcome: CONNECT, times: 5 },
      { at: 30_002, tick: true },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->ejected', 'a:ejected->healthy'],
    final: { a: { state: 'healthy', available: true } },
  },
  {
    name: 'passive: a success resets the failure run; 4xx counts as success',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, passive: 'a', outcome: S502, times: 4 },
      { at: 2, passive: 'a', outcome: OK },
      { at: 3, passive: 'a', outcome: S502, times: 4 },
      { at: 4, passive: 'a', outcome: S404 },
      { at: 5, passive: 'a', outcome: S502, times: 4 },
    ],
    transitions: [],
    final: { a: { state: 'unknown', available: true } },
  },
  {
    name: 'passive: mixed failure kinds eject with the last one named',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, passive: 'a', outcome: S502, times: 2 },
      { at: 1, passive: 'a', outcome: { kind: 'reset' }, times: 2 },
      { at: 1, passive: 'a', outcome: { kind: 'timeout' } },
    ],
    transitions: ['a:unknown->ejected'],
    final: { a: { state: 'ejected', available: false, reason: 'ejected: 5 consecutive failures (last: timeout) (for 30s)' } },
  },
  {
    name: 'passive: same-kind connect errors are named',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, passive: 'a', outcome: CONNECT, times: 5 },
    ],
    transitions: ['a:unknown->ejected'],
    final: { a: { state: 'ejected', available: false, reason: 'ejected: 5 consecutive connect errors (for 30s)' } },
  },
  {
    name: 'passive: outcomes while ejected are ignored; the next input after expiry ends the ejection lazily',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, passive: 'a', outcome: S502, times: 5 },
      { at: 2, passive: 'a', outcome: S502, times: 20 },
      { at: 30_001, passive: 'a', outcome: OK },
    ],
    transitions: ['a:unknown->ejected', 'a:ejected->unknown'],
    final: { a: { state: 'unknown', available: true } },
  },
  {
    name: 'max_ejected_percent: ejecting beyond it is refused; retried once room frees up',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 0, add: 'c' },
      { at: 0, add: 'd' },
      { at: 1, passive: 'a', outcome: S502, times: 5 },
      { at: 2, passive: 'b', outcome: S502, times: 5 },
      { at: 3, passive: 'c', outcome: S502, times: 10 },
      { at: 30_001, tick: true },
      { at: 30_002, passive: 'c', outcome: S502 },
    ],
    // b (ejected at 2) is still out at 30002: one slot of two is free again, so c goes
    transitions: ['a:unknown->ejected', 'b:unknown->ejected', 'a:ejected->unknown', 'c:unknown->ejected'],
    final: {
      a: { state: 'unknown', available: true },
      c: { state: 'ejected', available: false },
      d: { state: 'unknown', available: true },
    },
  },
  {
    name: 'max_ejected_percent: a lone backend is never ejected at 50%',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, passive: 'a', outcome: S502, times: 50 },
    ],
    transitions: [],
    final: { a: { state: 'unknown', available: true } },
  },
  {
    name: 'max_ejected_percent 100 ejects a lone backend; 0 never ejects',
    cfg: { passive: { ...PASSIVE, maxEjectedPercent: 100 } },
    steps: [
      { at: 0, add: 'a' },
      { at: 1, passive: 'a', outcome: S502, times: 5 },
      { at: 2, reconfigure: { passive: { ...PASSIVE, maxEjectedPercent: 0 } } },
      { at: 30_001, tick: true },
      { at: 30_002, passive: 'a', outcome: S502, times: 50 },
    ],
    transitions: ['a:unknown->ejected', 'a:ejected->unknown'],
    final: { a: { state: 'unknown', available: true } },
  },
  {
    name: 'drain overrides the shown state; undrain restores it',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, drain: 'a', draining: true },
      { at: 3, drain: 'a', draining: true },
      { at: 4, active: 'a', ok: true, times: 3 },
      { at: 5, drain: 'a', draining: false },
      { at: 6, drain: 'a', draining: false },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->draining', 'a:draining->healthy'],
    final: { a: { state: 'healthy', available: true, reason: 'undrained through the admin API' } },
    availability: ['a=pending', 'a=available', 'a=draining', 'a=available'],
  },
  {
    name: 'drain hides health changes underneath; undrain shows the current underlying state',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, drain: 'a', draining: true },
      { at: 3, active: 'a', ok: false, times: 3 },
      { at: 4, drain: 'a', draining: false },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->draining', 'a:draining->unhealthy'],
    final: { a: { state: 'unhealthy', available: false } },
    availability: ['a=pending', 'a=available', 'a=draining', 'a=failed'],
  },
  {
    name: 'an ejection that ends while draining is silent; undrain shows the restored state',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, passive: 'a', outcome: S502, times: 5 },
      { at: 2, drain: 'a', draining: true },
      { at: 30_001, tick: true },
      { at: 30_002, drain: 'a', draining: false },
    ],
    transitions: ['a:unknown->ejected', 'a:ejected->draining', 'a:draining->unknown'],
    final: { a: { state: 'unknown', available: true } },
  },
  {
    name: 'added draining: shown draining, not available, no transition',
    cfg: PASSIVE_ONLY,
    steps: [{ at: 0, add: 'a', draining: true }],
    transitions: [],
    final: { a: { state: 'draining', available: false, reason: 'draining (registry)' } },
    availability: ['a=draining'],
  },
  {
    name: 'registry and admin drains are independent: each holds the backend, the reason names both, no transition until the last lets go',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true },
      { at: 2, drain: 'a', draining: true, source: 'admin' },
      { at: 3, drain: 'a', draining: true, source: 'registry' },
      { at: 4, drain: 'a', draining: false, source: 'registry' },
      { at: 5, drain: 'a', draining: false, source: 'registry' },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->draining'],
    final: { a: { state: 'draining', available: false, reason: 'drained through the admin API' } },
    availability: ['a=pending', 'a=available', 'a=draining'],
  },
  {
    name: 'both drains held: the reason names both; an admin undrain leaves the registry drain in force',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a', draining: true },
      { at: 1, active: 'a', ok: true },
      { at: 2, drain: 'a', draining: true, source: 'admin' },
    ],
    transitions: [],
    final: { a: { state: 'draining', available: false, reason: 'draining (registry); drained through the admin API' } },
  },
  {
    name: '... then the admin undrain: still draining (registry); the registry undrain restores health',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a', draining: true },
      { at: 1, active: 'a', ok: true },
      { at: 2, drain: 'a', draining: true, source: 'admin' },
      { at: 3, drain: 'a', draining: false, source: 'admin' },
      { at: 4, drain: 'a', draining: false, source: 'admin' },
    ],
    transitions: [],
    final: { a: { state: 'draining', available: false, reason: 'draining (registry)' } },
    availability: ['a=draining'],
  },
  {
    name: 'undrain of the last drain restores the underlying verdict, with the source in the reason',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a', draining: true },
      { at: 1, active: 'a', ok: true },
      { at: 2, drain: 'a', draining: true, source: 'admin' },
      { at: 3, drain: 'a', draining: false, source: 'registry' },
      { at: 4, drain: 'a', draining: false, source: 'admin' },
    ],
    transitions: ['a:draining->healthy'],
    final: { a: { state: 'healthy', available: true, reason: 'undrained through the admin API' } },
    availability: ['a=draining', 'a=available'],
  },
  {
    name: 'a drained backend still waiting for its first check goes back to pending when undrained',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a', draining: true },
      { at: 1, drain: 'a', draining: false, source: 'registry' },
    ],
    transitions: ['a:draining->unknown'],
    final: { a: { state: 'unknown', available: false, reason: 'undrained (registry)' } },
    availability: ['a=draining', 'a=pending'],
  },
  {
    name: 'reconfigure: rise/fall changes keep the records and apply from the next result',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, reconfigure: { active: { ...ACTIVE, rise: 5, fall: 1, interval: 100 }, passive: PASSIVE } },
      { at: 3, active: 'a', ok: false, detail: 'status 503' },
    ],
    transitions: ['a:unknown->healthy', 'a:healthy->unhealthy'],
    final: { a: { state: 'unhealthy', available: false, reason: '1 failed check: status 503' } },
  },
  {
    name: 'reconfigure: turning active checks off moves unhealthy to unknown and available; healthy stays',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 0, add: 'c' },
      { at: 1, active: 'a', ok: false, times: 3 },
      { at: 1, active: 'b', ok: true, times: 2 },
      { at: 2, reconfigure: PASSIVE_ONLY },
    ],
    transitions: ['a:unknown->unhealthy', 'b:unknown->healthy', 'a:unhealthy->unknown'],
    final: {
      a: { state: 'unknown', available: true, reason: 'active checks disabled' },
      b: { state: 'healthy', available: true },
      c: { state: 'unknown', available: true },
    },
    availability: ['a=pending', 'b=pending', 'c=pending', 'a=failed', 'b=available', 'a=available', 'c=available'],
  },
  {
    name: 'reconfigure: turning active checks on keeps serving backends available until their first check',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, reconfigure: WITH_ACTIVE },
    ],
    transitions: [],
    final: { a: { state: 'unknown', available: true }, b: { state: 'unknown', available: true } },
    availability: ['a=available', 'b=available'],
  },
  {
    name: 'reconfigure: ... and that first check is their verdict (a fail: unhealthy, a pass: healthy); a newcomer is pending',
    cfg: PASSIVE_ONLY,
    steps: [
      { at: 0, add: 'a' },
      { at: 0, add: 'b' },
      { at: 1, reconfigure: WITH_ACTIVE },
      { at: 2, active: 'a', ok: false },
      { at: 3, active: 'b', ok: true },
      { at: 4, add: 'c' },
    ],
    transitions: ['a:unknown->unhealthy', 'b:unknown->healthy'],
    final: {
      a: { state: 'unhealthy', available: false, reason: 'first check failed: status 500' },
      b: { state: 'healthy', available: true },
      c: { state: 'unknown', available: false },
    },
    availability: ['a=available', 'b=available', 'a=failed', 'c=pending'],
  },
  {
    name: 'remove forgets the record; re-adding starts afresh',
    cfg: WITH_ACTIVE,
    steps: [
      { at: 0, add: 'a' },
      { at: 1, active: 'a', ok: true, times: 2 },
      { at: 2, remove: 'a' },
      { at: 3, active: 'a', ok: true, times: 2 },
      { at: 4, add: 'a' },
    ],
    transitions: ['a:unknown->healthy'],
    final: { a: { state: 'unknown', available: false } },
    availability: ['a=pending', 'a=available', 'a=pending'],
  },
];

describe('ServiceHealth state machine', () => {
  it.each(cases)('$name', (c) => {
    const { transitions, availability, sh } = run(c);
    expect(transitions.map((t) => `${t.id}:${t.from}->${t.to}`)).toEqual(c.transitions);
    for (const t of transitions) expect(t.from).not.toBe(t.to);
    if (c.availability !== undefined) expect(availability).toEqual(c.availability);
    for (const [id, want] of Object.entries(c.final)) {
      const snap = sh.snapshot(id);
      expect(snap, id).toBeDefined();
      expect(snap?.state, id).toBe(want.state);
      expect(sh.isAvailable(id), id).toBe(want.available);
      expect(snap?.available, id).toBe(want.available);
      if (typeof want.reason === 'string') expect(snap?.reason, id).toBe(want.reason);
      else if (want.reason !== undefined) expect(snap?.reason, id).toMatch(want.reason);
    }
  });

  it('transitions carry service, reason, timestamp and availability; since follows the last change', () => {
    const sh = new ServiceHealth('api', WITH_ACTIVE);
    sh.add('a', 100);
    expect(sh.snapshot('a')?.since).toBe(100);
    const [t] = sh.activeResult('a', true, 'status 204', 300);
    expect(t).toEqual({ service: 'api', id: 'a', from: 'unknown', to: 'healthy', reason: 'first check passed', at: 300, available: true });
    expect(sh.snapshot('a')).toMatchObject({ state: 'healthy', since: 300, availability: 'available', drainedBy: [], lastCheck: { ok: true, detail: 'status 204', at: 300 } });
    sh.activeResult('a', true, 'status 200', 400);
    expect(sh.snapshot('a')?.since).toBe(300);
  });

  it('unknown ids are harmless', () => {
    const sh = new ServiceHealth('api', WITH_ACTIVE);
    expect(sh.activeResult('x', true, 'status 200', 1)).toEqual([]);
    expect(sh.passiveResult('x', S502, 1)).toEqual([]);
    expect(sh.setDraining('x', 'admin', true, 1)).toEqual([]);
    expect(sh.availability('x')).toBeUndefined();
    expect(sh.isAvailable('x')).toBe(false);
    expect(sh.snapshot('x')).toBeUndefined();
    sh.remove('x');
  });
});

describe('ejection length', () => {
  it.each([
    { base: 30_000, n: 1, want: 30_000 },
    { base: 30_000, n: 2, want: 60_000 },
    { base: 30_000, n: 3, want: 120_000 },
    { base: 30_000, n: 4, want: 240_000 },
    { base: 30_000, n: 5, want: 300_000 },
    { base: 30_000, n: 50, want: 300_000 },
    { base: 1000, n: 4, want: 8000 },
    { base: 1000, n: 5, want: 10_000 },
    { base: 1000, n: 9, want: 10_000 },
    { base: 600_000, n: 3, want: 600_000 },
  ])('base $base, ejection #$n -> $want ms', ({ base, n, want }) => {
    expect(ejectionDuration(base, n)).toBe(want);
  });

  function ejectAt(sh: ServiceHealth, now: number): number | undefined {
    for (let i = 0; i < 5; i++) sh.passiveResult('a', S502, now);
    const until = sh.snapshot('a')?.ejectedUntil;
    return until === undefined ? undefined : until - now;
  }

  it('repeated ejections grow 30s -> 60s -> 120s', () => {
    const sh = new ServiceHealth('web', PASSIVE_ONLY);
    sh.add('a', 0);
    sh.add('b', 0);
    let now = 0;
    const lengths: (number | undefined)[] = [];
    for (let k = 0; k < 3; k++) {
      const len = ejectAt(sh, now);
      lengths.push(len);
      const reason = sh.snapshot('a')?.reason;
      expect(reason).toBe(`ejected: 5 consecutive 502 (for ${formatDuration(len ?? 0)})`);
      now += len ?? 0;
      expect(sh.tick(now).map((t) => t.to)).toEqual(['unknown']);
    }
    expect(lengths).toEqual([30_000, 60_000, 120_000]);
    expect(sh.snapshot('a')?.ejections).toBe(3);
  });

  it('the ejection count decays by one per base period spent back in service', () => {
    const sh = new ServiceHealth('web', PASSIVE_ONLY);
    sh.add('a', 0);
    sh.add('b', 0);
    expect(ejectAt(sh, 0)).toBe(30_000);
    sh.tick(30_000);
    expect(ejectAt(sh, 30_000)).toBe(60_000);
    sh.tick(90_000);
    // 30s back in service forgives one level: the next ejection is #2 again, not #3.
    expect(ejectAt(sh, 120_000)).toBe(60_000);
    sh.tick(180_000);
    // a long quiet stretch forgives everything
    expect(ejectAt(sh, 180_000 + 10 * 30_000)).toBe(30_000);
  });
});

describe('helpers', () => {
  it.each([
    { o: OK, failed: false },
    { o: S404, failed: false },
    { o: { kind: 'status', status: 200 } as PassiveOutcome, failed: false },
    { o: { kind: 'status', status: 499 } as PassiveOutcome, failed: false },
    { o: { kind: 'status', status: 500 } as PassiveOutcome, failed: true },
    { o: S502, failed: true },
    { o: CONNECT, failed: true },
    { o: { kind: 'reset' } as PassiveOutcome, failed: true },
    { o: { kind: 'timeout' } as PassiveOutcome, failed: true },
  ])('isPassiveFailure($o) = $failed', ({ o, failed }) => {
    expect(isPassiveFailure(o)).toBe(failed);
  });
});

describe('invariants under random inputs (fast-check)', () => {
  const ids = ['a', 'b', 'c', 'd', 'e'];
  const arbOutcome = fc.constantFrom<PassiveOutcome>(OK, S404, S502, CONNECT, { kind: 'reset' }, { kind: 'timeout' });
  const arbInput = fc.oneof(
    fc.record({ t: fc.constant('add' as const), id: fc.constantFrom(...ids), draining: fc.boolean() }),
    fc.record({ t: fc.constant('remove' as const), id: fc.constantFrom(...ids) }),
    fc.record({ t: fc.constant('active' as const), id: fc.constantFrom(...ids), ok: fc.boolean() }),
    fc.record({ t: fc.constant('passive' as const), id: fc.constantFrom(...ids), outcome: arbOutcome }),
    fc.record({ t: fc.constant('drain' as const), id: fc.constantFrom(...ids), draining: fc.boolean(), source: fc.constantFrom<DrainSource>('registry', 'admin') }),
    fc.record({ t: fc.constant('tick' as const) }),
    fc.record({ t: fc.constant('reconfigure' as const), active: fc.boolean(), pct: fc.integer({ min: 0, max: 100 }) }),
  );

  it('no self-transitions, availability notifications alternate, ejections respect the percentage', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ dt: fc.integer({ min: 0, max: 20_000 }), input: arbInput }), { maxLength: 200 }), (steps) => {
        let pct = 50;
        const lastAvail = new Map<string, Availability>();
        const state = new Map<string, HealthState>();
        const sh = new ServiceHealth('web', { active: ACTIVE, passive: { ...PASSIVE, consecutiveFailures: 2, ejection: 5000 } }, {
          onTransition: (t) => {
            expect(t.from).not.toBe(t.to);
            expect(state.get(t.id)).toBe(t.from);
            state.set(t.id, t.to);
          },
          setAvailable: (_s, id, a) => {
            expect(lastAvail.get(id)).not.toBe(a);
            lastAvail.set(id, a);
          },
        });
        let now = 0;
        for (const { dt, input } of steps) {
          now += dt;
          switch (input.t) {
            case 'add':
              if (!sh.has(input.id)) {
                lastAvail.delete(input.id);
                state.set(input.id, input.draining ? 'draining' : 'unknown');
              }
              sh.add(input.id, now, { draining: input.draining });
              break;
            case 'remove':
              sh.remove(input.id);
              lastAvail.delete(input.id);
              state.delete(input.id);
              break;
            case 'active':
              sh.activeResult(input.id, input.ok, 'x', now);
              break;
            case 'passive':
              sh.passiveResult(input.id, input.outcome, now);
              break;
            case 'drain':
              sh.setDraining(input.id, input.source, input.draining, now);
              break;
            case 'tick':
              sh.tick(now);
              break;
            case 'reconfigure': {
              const before = pct;
              pct = input.pct;
              sh.reconfigure(
                { active: input.active ? ACTIVE : undefined, passive: { ...PASSIVE, consecutiveFailures: 2, ejection: 5000, maxEjectedPercent: pct } },
                now,
              );
              // a lowered percentage never ejects more, but does not cut short running ejections
              pct = Math.max(before, pct);
              break;
            }
          }
          let ejected = 0;
          for (const id of sh.ids()) {
            const snap = sh.snapshot(id);
            if (snap === undefined) throw new Error('missing');
            if (snap.ejectedUntil !== undefined) ejected += 1;
            expect(snap.state).toBe(state.get(id));
            expect(snap.availability).toBe(lastAvail.get(id));
            expect(snap.available).toBe(snap.availability === 'available');
            // the shown state and what the data path is told never disagree
            if (snap.state === 'draining') expect(snap.availability).toBe('draining');
            if (snap.state === 'ejected' || snap.state === 'unhealthy') expect(snap.availability).toBe('failed');
            if (snap.state === 'healthy') expect(snap.availability).toBe('available');
            if (snap.availability === 'pending') expect(snap.state).toBe('unknown');
            expect(snap.drainedBy.length > 0).toBe(snap.state === 'draining');
          }
          if (ejected > 0) expect(ejected * 100).toBeLessThanOrEqual(pct * sh.size);
        }
      }),
      { seed: 42, numRuns: 300 },
    );
  });
});

describe('HealthStore', () => {
  it('keeps records across reconfigure and hands out the same ServiceHealth', () => {
    const store = new HealthStore({ autoExpire: false, clock: () => 10 });
    const sh = store.service('web', WITH_ACTIVE);
    sh.add('a', 0);
    sh.add('b', 0);
    expect(store.awaitingFirstCheck()).toBe(2);
    sh.activeResult('a', true, 'status 200', 1);
    sh.activeResult('a', true, 'status 200', 2);
    expect(store.awaitingFirstCheck()).toBe(1);
    sh.activeResult('b', false, 'timeout after 1000ms', 3);
    expect(store.awaitingFirstCheck()).toBe(0);
    const again = store.service('web', { active: { ...ACTIVE, interval: 500 }, passive: PASSIVE });
    expect(again).toBe(sh);
    expect(again.config.active?.interval).toBe(500);
    expect(store.snapshot('web', 'a')).toMatchObject({ state: 'healthy', reason: 'first check passed', since: 1 });
    expect(store.snapshot('web', 'zz')).toBeUndefined();
    expect(store.snapshot('nope', 'a')).toBeUndefined();
    expect(store.names()).toEqual(['web']);
    store.delete('web');
    expect(store.get('web')).toBeUndefined();
  });

  it('forwards availability and transitions to its listeners and ticks every service', () => {
    const avail: string[] = [];
    const trans: string[] = [];
    const store = new HealthStore({
      autoExpire: false,
      availability: { setAvailable: (s, id, a) => avail.push(`${s}/${id}=${a}`) },
      transitions: { onTransition: (t) => trans.push(`${t.service}/${t.id}:${t.to}`) },
    });
    const web = store.service('web', PASSIVE_ONLY);
    const api = store.service('api', { passive: { ...PASSIVE, maxEjectedPercent: 100, ejection: 1000 } });
    web.add('a', 0);
    web.add('b', 0);
    api.add('x', 0);
    for (let i = 0; i < 5; i++) api.passiveResult('x', S502, 0);
    for (let i = 0; i < 5; i++) web.passiveResult('a', S502, 0);
    expect(store.tick(999)).toEqual([]);
    expect(store.tick(30_000).map((t) => `${t.service}/${t.id}:${t.to}`)).toEqual(['web/a:unknown', 'api/x:unknown']);
    expect(avail).toEqual(['web/a=available', 'web/b=available', 'api/x=available', 'api/x=failed', 'web/a=failed', 'web/a=available', 'api/x=available']);
    expect(trans).toEqual(['api/x:ejected', 'web/a:ejected', 'web/a:unknown', 'api/x:unknown']);
  });

  it('ends ejections on its own timer when autoExpire is on', async () => {
    const trans: HealthTransition[] = [];
    const store = new HealthStore({ transitions: { onTransition: (t) => trans.push(t) } });
    const sh = store.service('web', { passive: { consecutiveFailures: 2, ejection: 40, maxEjectedPercent: 100 } });
    sh.add('a', Date.now());
    sh.passiveResult('a', CONNECT, Date.now());
    sh.passiveResult('a', CONNECT, Date.now());
    expect(sh.snapshot('a')?.state).toBe('ejected');
    await waitFor(() => sh.snapshot('a')?.state !== 'ejected', { what: 'the ejection to end', timeoutMs: 5000, everyMs: 10 });
    expect(sh.snapshot('a')?.state).toBe('unknown');
    expect(trans.map((t) => t.to)).toEqual(['ejected', 'unknown']);
    store.close();
  });

  it('an ejection started under a drain still ends on the timer (and frees its max_ejected_percent slot)', async () => {
    const store = new HealthStore();
    const sh = store.service('web', { passive: { consecutiveFailures: 1, ejection: 40, maxEjectedPercent: 50 } });
    sh.add('a', Date.now());
    sh.add('b', Date.now());
    sh.setDraining('a', 'admin', true, Date.now());
    expect(sh.passiveResult('a', CONNECT, Date.now())).toEqual([]);
    expect(sh.snapshot('a')?.ejectedUntil).toBeDefined();
    await waitFor(() => sh.snapshot('a')?.ejectedUntil === undefined, { what: 'the ejection to end', timeoutMs: 5000, everyMs: 10 });
    expect(sh.snapshot('a')?.ejectedUntil).toBeUndefined();
    expect(sh.passiveResult('b', CONNECT, Date.now()).map((t) => t.to)).toEqual(['ejected']);
    store.close();
  });

  it('a throwing listener inside the expiry timer goes to onError, not to the process', async () => {
    const errors: unknown[] = [];
    const store = new HealthStore({
      transitions: {
        onTransition: (t) => {
          if (t.to === 'unknown') throw new Error('listener broke');
        },
      },
      onError: (e) => errors.push(e),
    });
    const sh = store.service('web', { passive: { consecutiveFailures: 1, ejection: 20, maxEjectedPercent: 100 } });
    sh.add('a', Date.now());
    sh.passiveResult('a', CONNECT, Date.now());
    await waitFor(() => errors.length > 0, { what: 'the listener error', timeoutMs: 5000, everyMs: 10 });
    expect(errors).toHaveLength(1);
    expect(sh.snapshot('a')?.state).toBe('unknown');
    store.close();
  });
});
