/**
 * The wait queue of one service (`max_conns` + `queue: {size, timeout}`, HAProxy's maxconn and
 * maxqueue): requests that found every candidate at its limit wait here, in arrival order, and
 * are dispatched the moment a slot frees. Each waiter leaves exactly once, by one of: a slot
 * (`admitted`), its timeout (`timedOut`), or `remove` (the client went away). So no request is
 * lost or dispatched twice.
 *
 * A doubly linked list: O(1) to add at the tail and to remove from anywhere (an abort or a
 * timeout leaves from the middle).
 */
import type { Backend } from '../../routing/backend.js';
import type { PickContext } from '../../routing/types.js';
import type { QueueMetrics } from '../observability/metrics.js';

/** A request waiting for a backend. */
export interface Waiter {
  readonly ctx: PickContext;
  /** backends this request already tried (a retry waits too): never offered again */
  readonly tried: ReadonlySet<Backend> | undefined;
  /** A slot is free on `backend`: start the attempt now, synchronously (it takes the slot). */
  admitted(backend: Backend): void;
  /** Waited the queue timeout: answer 503 queue_timeout. */
  timedOut(): void;
}

interface Node {
  readonly waiter: Waiter;
  /** performance.now() at enqueue */
  readonly since: number;
  prev: Node | undefined;
  next: Node | undefined;
  timer: NodeJS.Timeout | undefined;
}

/** How the queue finds a free backend: the service's pool, respecting `max_conns`. */
export type SlotFinder = (ctx: PickContext, tried: ReadonlySet<Backend> | undefined) => Backend | undefined;

export class WaitQueue {
  private head: Node | undefined;
  private tail: Node | undefined;
  private readonly nodes = new Map<Waiter, Node>();
  private draining = false;
  private again = false;

  constructor(
    private readonly find: SlotFinder,
    private readonly metrics: QueueMetrics | undefined,
  ) {}

  /** Requests waiting now. */
  get length(): number {
    return this.nodes.size;
  }

  /**
   * Adds `w` at the tail, to time out after `timeoutMs`; false (not added) when `size` are
   * already waiting. Then offers free slots in order, so `w` may be admitted before this returns.
   */
  enqueue(w: Waiter, size: number, timeoutMs: number): boolean {
    if (this.nodes.size >= size || this.nodes.has(w)) return false;
    const node: Node = { waiter: w, since: performance.now(), prev: this.tail, next: undefined, timer: undefined };
    if (this.tail === undefined) this.head = node;
    else this.tail.next = node;
    this.tail = node;
    this.nodes.set(w, node);
    node.timer = setTimeout(() => this.expire(node), timeoutMs);
    this.metrics?.depth(this.nodes.size);
    this.drain();
    return true;
  }

  /** Takes `w` out (its client went away); false when it was not waiting. */
  remove(w: Waiter): boolean {
    const node = this.nodes.get(w);
    if (node === undefined) return false;
    this.unlink(node);
    return true;
  }

  /**
   * Offers free slots to the waiters, oldest first. A waiter that gets none because every
   * backend is full stops the scan (no one behind it can do better); one that gets none only
   * because its free backends are ones it already tried (a retry) is skipped, so it cannot block
   * the line. Re-entrant calls (an admitted attempt that fails at once and frees its slot) are
   * folded into the running scan.
   */
  drain(): void {
    if (this.draining) {
      this.again = true;
      return;
    }
    this.draining = true;
    try {
      do {
        this.again = false;
        let node = this.head;
        while (node !== undefined) {
          const next = node.next;
          const w = node.waiter;
          const backend = this.find(w.ctx, w.tried);
          if (backend !== undefined) {
            this.unlink(node);
            w.admitted(backend);
          } else if (w.tried === undefined || w.tried.size === 0) {
            break;
          }
          node = next;
        }
      } while (this.again);
    } finally {
      this.draining = false;
    }
  }

  private expire(node: Node): void {
    if (!this.nodes.has(node.waiter)) return;
    this.unlink(node);
    node.waiter.timedOut();
  }

  private unlink(node: Node): void {
    if (node.timer !== undefined) clearTimeout(node.timer);
    node.timer = undefined;
    if (node.prev === undefined) this.head = node.next;
    else node.prev.next = node.next;
    if (node.next === undefined) this.tail = node.prev;
    else node.next.prev = node.prev;
    node.prev = undefined;
    node.next = undefined;
    this.nodes.delete(node.waiter);
    this.metrics?.depth(this.nodes.size);
    this.metrics?.observeWait((performance.now() - node.since) / 1000);
  }
}
