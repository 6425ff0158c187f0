/**
 * What one `drover register` instance announces: the resolved settings the command builds
 * (src/commands/register.ts) and the registrar acts on (src/registry/registrar/etcd.ts), and the member value
 * it writes. Its own module so that neither of those two imports the other.
 */

/** Resolved `drover register` settings. */
export interface RegisterOptions {
  /** etcd endpoints; empty with `zookeeper` */
  readonly endpoints: readonly string[];
  /** ZooKeeper servers `host:port,...`: an ephemeral znode instead of an etcd lease */
  readonly zookeeper?: string | undefined;
  readonly service: string;
  /** normalised origin `http://host:port` */
  readonly url: string;
  readonly id: string;
  /** seconds, lease TTL; default 10 */
  readonly ttlSeconds: number;
  /** > 0, default 1 */
  readonly weight: number;
  readonly zone?: string | undefined;
  /** full URL probed with GET; absent = no health check (always registered) */
  readonly healthUrl?: string | undefined;
  /** ends with `/`; default `/drover/services/` (the same path for ZooKeeper) */
  readonly prefix: string;
  /** ms between health probes; default 1000 */
  readonly healthIntervalMs: number;
  /** consecutive results that flip the health state; default 2 */
  readonly healthThreshold: number;
}

/** The value written for this instance (README "Registry keys", JSON form). */
export function memberValue(o: RegisterOptions): string {
  return JSON.stringify({ url: o.url, weight: o.weight, ...(o.zone !== undefined ? { zone: o.zone } : {}), draining: false, meta: {} });
}
