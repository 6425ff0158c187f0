/**
 * Builds the registries a config asks for. Kept apart from the runtime so that adding a
 * registry kind touches one file.
 */
import type { DroverConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { FileRegistry } from './file.js';
import type { Registry } from './types.js';

/**
 * The registries `config.registry` describes (file first, then etcd). The etcd client (gRPC and
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
  return out;
}

/** A key that changes exactly when the registries must be rebuilt on reload. */
export function registriesKey(config: DroverConfig): string {
  return JSON.stringify(config.registry);
}
