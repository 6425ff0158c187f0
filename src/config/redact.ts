/**
 * The effective config as `GET /api/config` shows it. drover.yaml holds no secrets itself (only
 * the names of variables that do), but anything that looks like one is masked anyway, so a
 * future key cannot leak by accident.
 */
const SECRET = /(password|secret|token(?!_env)|key$|^key|credential|auth)/i;

/** A deep copy of `value` with secret-looking string values replaced by `"[redacted]"`. */
export function redactConfig(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(redactConfig);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    // `{name, value}` pairs (route header edits): the secret is named by `name`, e.g. an
    // Authorization header set on the way to the backend.
    const pair = value as { name?: unknown; value?: unknown };
    const secretPair = typeof pair.name === 'string' && typeof pair.value === 'string' && SECRET.test(pair.name);
    for (const [k, v] of Object.entries(value)) {
      if (secretPair && k === 'value') {
        out[k] = '[redacted]';
        continue;
      }
      out[k] = typeof v === 'string' && SECRET.test(k) && !k.endsWith('Env') ? '[redacted]' : redactConfig(v);
    }
    return out;
  }
  return value;
}
