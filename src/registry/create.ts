/**
 * Builds the registries a config asks for. Kept apart from the runtime so that adding a
 * registry kind touches one file.
 */
import type { DroverConfig } from '../config/types.js';
import type { Logger } from '../log.js';
import { EtcdRegistry } from './etcd.js';
import { FileRegistry } from './file.js';
import type { Registry } from './types.js';

/** The registries `config.registry` describes (file first, then etcd). */
export function createRegistries(config: DroverConfig, logger: Logger): Registry[] {
  const out: Registry[] = [];
  if (config.registry.file !== undefined) out.push(new FileRegistry(config.registry.file, logger));
  if (config.registry.etcd !== undefined) out.push(new EtcdRegistry(config.registry.etcd, logger.child({ component: 'etcd' })));
  return out;
}

/** A key that changes exactly when the registries must be rebuilt on reload. */
export function registriesKey(config: DroverConfig): string {
  return JSON.stringify(config.registry);
}
