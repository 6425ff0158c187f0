/**
 * The one catalogue of drover's errors. Every error a user or operator can see carries a stable
 * `code` from here, so logs, metrics and tests can match on it without parsing messages.
 */
export const ErrorCodes = {
  /** the config file could not be read */
  CONFIG_READ: 'E_CONFIG_READ',
  /** YAML syntax error */
  CONFIG_SYNTAX: 'E_CONFIG_SYNTAX',
  /** the config does not match the schema (unknown key, wrong type, bad value) */
  CONFIG_INVALID: 'E_CONFIG_INVALID',
  /** a route names a service that is neither defined nor discoverable */
  CONFIG_UNKNOWN_SERVICE: 'E_CONFIG_UNKNOWN_SERVICE',
  /** a file the config names does not exist */
  CONFIG_MISSING_FILE: 'E_CONFIG_MISSING_FILE',
  /** a registry value that does not parse; the entry is skipped */
  REGISTRY_INVALID_ENTRY: 'E_REGISTRY_INVALID_ENTRY',
  /** the registry could not be reached */
  REGISTRY_UNREACHABLE: 'E_REGISTRY_UNREACHABLE',
  /** a registry change held back: it would leave fewer than `min_members_ratio` of the members */
  REGISTRY_GUARDED: 'E_REGISTRY_GUARDED',
  /** a listener could not bind */
  LISTEN_FAILED: 'E_LISTEN_FAILED',
  /** a certificate or private key that cannot be served (unparsable, mismatched, expired) */
  TLS_CERTIFICATE: 'E_TLS_CERTIFICATE',
  /** bad command-line usage */
  CLI_USAGE: 'E_CLI_USAGE',
  /** admin API request could not be served */
  ADMIN: 'E_ADMIN',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** One located problem in a config file; printed as `FILE:LINE:COL: path: message`. */
export interface ConfigIssue {
  readonly file: string;
  /** 1-based; 0 when unknown */
  readonly line: number;
  /** 1-based; 0 when unknown */
  readonly col: number;
  /** dotted path such as `services.web.health.active.interval`, or `` for the document */
  readonly path: string;
  readonly message: string;
  readonly code: ErrorCode;
  /**
   * Set for shared config read from etcd: the key whose value is at fault. `file` is then that
   * key too and `line`/`col` are positions inside the value.
   */
  readonly key?: string | undefined;
  /** `warning`: printed by `drover check` but does not make the config invalid (e.g. a certificate about to expire) */
  readonly severity?: 'warning' | undefined;
}

/**
 * Formats an issue the way `drover check` and `drover start` print it: `FILE:LINE:COL: path:
 * message`, or `KEY: path: message` for a value read from etcd.
 */
export function formatIssue(issue: ConfigIssue): string {
  const what = `${issue.path === '' ? '(root)' : issue.path}: ${issue.severity === 'warning' ? 'warning: ' : ''}${issue.message}`;
  if (issue.key !== undefined) return `${issue.key}: ${what}`;
  return `${issue.file}:${issue.line}:${issue.col}: ${what}`;
}

/** The message of anything thrown: an Error's message, or the value as text. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Base class: an error with a stable code. */
export class DroverError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'DroverError';
  }
}

/** A config that failed to load; carries every issue found, not just the first. */
export class ConfigError extends DroverError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[]) {
    super(issues[0]?.code ?? ErrorCodes.CONFIG_INVALID, issues.map(formatIssue).join('\n'));
    this.issues = issues;
    this.name = 'ConfigError';
  }
}
