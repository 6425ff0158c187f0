/**
 * The health gate of `drover register` (both the etcd and the ZooKeeper registrar): probes the
 * instance's health URL every interval and flips after `threshold` consecutive results the other
 * way; the registrar keeps the instance registered only while it is healthy.
 */
import type { Logger } from '../../observability/log.js';
import { sleep } from '../backoff.js';

export class HealthGate {
  /** true while registered traffic is wanted (always true without a health URL) */
  healthy: boolean;
  private passes = 0;
  private failures = 0;
  private readonly abort = new AbortController();

  /**
   * @param url full URL probed with GET (2xx/3xx pass); undefined: no check, always healthy
   * @param intervalMs ms between probes (also each probe's timeout, at least 200 ms)
   * @param threshold consecutive results that flip the state
   * @param onChange called after every flip
   */
  constructor(
    private readonly url: string | undefined,
    private readonly intervalMs: number,
    private readonly threshold: number,
    private readonly log: Logger,
    private readonly onChange: () => void,
  ) {
    this.healthy = url === undefined;
  }

  /** Starts probing (nothing without a URL); returns at once. */
  start(): void {
    if (this.url !== undefined) void this.loop(this.url);
  }

  stop(): void {
    this.abort.abort();
  }

  private async loop(url: string): Promise<void> {
    while (!this.abort.signal.aborted) {
      const ok = await this.probe(url);
      if (this.abort.signal.aborted) break;
      if (ok) {
        this.passes++;
        this.failures = 0;
      } else {
        this.failures++;
        this.passes = 0;
      }
      if (!this.healthy && this.passes >= this.threshold) {
        this.healthy = true;
        this.log.info({ url }, 'health check passing');
        this.onChange();
      } else if (this.healthy && this.failures >= this.threshold) {
        this.healthy = false;
        this.log.warn({ url }, 'health check failing');
        this.onChange();
      }
      await sleep(this.intervalMs, this.abort.signal);
    }
  }

  private async probe(url: string): Promise<boolean> {
    try {
      const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(Math.max(200, this.intervalMs)) });
      await res.body?.cancel();
      return res.status >= 200 && res.status < 400;
    } catch {
      return false;
    }
  }
}
