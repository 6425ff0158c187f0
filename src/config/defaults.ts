/**
 * Settings of a service that exists only in a registry (no `services.<name>` entry): every
 * default of the schema (round_robin, passive checks on, no active checks). Derived from the
 * schema itself, so the two can never disagree.
 */
import { parseConfig } from './load.js';
import type { ServiceConfig } from './types.js';

let template: ServiceConfig | undefined;

/** The defaults for a registry-only service named `name` (frozen; no static backends). */
export function defaultServiceConfig(name: string): ServiceConfig {
  if (template === undefined) {
    const parsed = parseConfig('services:\n  defaults: {}\n', '<defaults>').services[0];
    if (parsed === undefined) throw new Error('the schema yields no default service');
    template = parsed;
  }
  return Object.freeze({ ...template, name, backends: [] });
}
