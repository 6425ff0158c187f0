/**
 * Builds the registries a config asks for. Kept apart from the runtime so that adding a
 * registry kind touches one file.
 */
import type { DroverConfig, ServiceDnsConfig } from '../config/types.js';
import type { Logger } from '../observability/log.js';
import { FileRegistry } from './file.js';
import type { Registry } from './types.js';

/**
 * The registries `config.registry` describes (file, etcd, zookeeper, then dns: the DNS registry
 * exists when `registry.dns` is set or any service names `dns:`, with default settings then). The etcd client (gRPC and
 * protobufs) is loaded only when a config names etcd: it is most of drover's start-up time.
 */
export async function createRegistries(config: DroverConfig, logger: Logger): Promise<Registry[]> {
  const out: Registry[] = [];
  if (config.registry.file !== undefined) out.push(new FileRegistry(config.registry.file, logger));
  if (config.registry.etcd !== undefined) {
    const { EtcdRegistry } = await import('./etcd.js');
    // EtcdRegistry tags its lines (component, source) itself
    out.push(new EtcdRegistry(config.registry.etcd, logger));
  }
  if (config.registry.zookeeper !== undefined) {
    const { ZooKeeperRegistry } = await import('./zookeeper.js');
    out.push(new ZooKeeperRegistry(config.registry.zookeeper, logger));
  }
  const dnsServices = dnsTargets(config);
  if (config.registry.dns !== undefined || dnsServices.length > 0) {
    const { DnsRegistry, DEFAULT_DNS_REGISTRY } = await import('./dns.js');
    out.push(new DnsRegistry(config.registry.dns ?? DEFAULT_DNS_REGISTRY, dnsServices, logger));
  }
  return out;
}

/** The services that name DNS records (`services.<name>.dns`), in config order. */
export function dnsTargets(config: DroverConfig): { readonly service: string; readonly dns: ServiceDnsConfig }[] {
  return config.services.flatMap((s) => (s.dns === undefined ? [] : [{ service: s.name, dns: s.dns }]));
}

/** A key that changes exactly when the registries must be rebuilt on reload. */
export function registriesKey(config: DroverConfig): string {
  return JSON.stringify([config.registry, dnsTargets(config)]);
}
