/**
 * `services.<name>.tls` -> Node TLS client options for `https://` backends. The CA was read
 * when the config was loaded (`UpstreamTlsConfig.caPem`), so a reload picks up a changed CA for
 * new connections; active health checks get the same settings through the health config.
 */
import type { ConnectionOptions } from 'node:tls';
import type { UpstreamTlsConfig } from '../config/types.js';

/** The subset of TLS client options drover sets towards backends. */
export type UpstreamTlsOptions = Pick<ConnectionOptions, 'ca' | 'servername' | 'rejectUnauthorized'>;

/** Node's defaults: verify against the bundled CAs, SNI from the URL host. */
const DEFAULTS: UpstreamTlsOptions = Object.freeze({ rejectUnauthorized: true });

/**
 * TLS options for a service's `https://` backends. A CA that could not be read is an empty
 * list, which trusts nothing: requests fail (502) rather than silently trusting the system CAs
 * instead of the one configured.
 */
export function upstreamTlsOptions(tls: UpstreamTlsConfig | undefined): UpstreamTlsOptions {
  if (tls === undefined) return DEFAULTS;
  return {
    rejectUnauthorized: tls.verify,
    ...(tls.caPem === undefined ? {} : { ca: [...tls.caPem] }),
    ...(tls.serverName === undefined ? {} : { servername: tls.serverName }),
  };
}
