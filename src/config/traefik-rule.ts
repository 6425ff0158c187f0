/**
 * Traefik router rules, the subset drover's routes can express: `Host`, `HostRegexp` (simple:
 * one label wildcard in front of a fixed domain), `PathPrefix`, `Path`, `Method`, `Headers` /
 * `Header`, joined with `&&`, `||` and parentheses. A rule becomes one route per alternative
 * (its disjunctive normal form), in the order written. Anything else (`!`, `PathRegexp`,
 * `Query`, `ClientIP`, two different hosts in one alternative, ...) is refused with a message
 * naming what is not supported; the caller names the router.
 */

/** One alternative of a rule: every condition must hold (drover's route `match`, snake_case as in YAML). */
export interface RuleMatch {
  host?: string;
  path_prefix?: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
}

/** Most routes one rule may expand to (`(A || B) && (C || D)` multiplies). */
export const MAX_ALTERNATIVES = 64;

type Token = { kind: 'name'; text: string } | { kind: 'string'; text: string } | { kind: '(' | ')' | ',' | '&&' | '||' | '!' };

function tokenize(rule: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < rule.length) {
    const c = rule[i] as string;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '(' || c === ')' || c === ',' || c === '!') {
      out.push({ kind: c });
      i++;
    } else if (rule.startsWith('&&', i) || rule.startsWith('||', i)) {
      out.push({ kind: rule.slice(i, i + 2) as '&&' | '||' });
      i += 2;
    } else if (c === '`' || c === '"') {
      const end = rule.indexOf(c, i + 1);
      if (end === -1) throw new Error(`unterminated string starting at column ${i + 1}`);
      out.push({ kind: 'string', text: rule.slice(i + 1, end) });
      i = end + 1;
    } else if (/[A-Za-z]/.test(c)) {
      const m = /^[A-Za-z][A-Za-z0-9]*/.exec(rule.slice(i)) as RegExpExecArray;
      out.push({ kind: 'name', text: m[0] });
      i += m[0].length;
    } else {
      throw new Error(`unexpected "${c}" at column ${i + 1}`);
    }
  }
  return out;
}

/** A rule in disjunctive normal form: alternatives, each a list of single conditions. */
type Dnf = RuleMatch[][];

class Parser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  parse(): Dnf {
    if (this.tokens.length === 0) throw new Error('empty rule');
    const d = this.or();
    const t = this.tokens[this.pos];
    if (t !== undefined) throw new Error(`unexpected ${describe(t)} after a complete expression`);
    return d;
  }

  private or(): Dnf {
    let d = this.and();
    while (this.peek('||')) {
      this.pos++;
      d = [...d, ...this.and()];
      if (d.length > MAX_ALTERNATIVES) throw new Error(`expands to more than ${MAX_ALTERNATIVES} alternatives`);
    }
    return d;
  }

  private and(): Dnf {
    let d = this.unary();
    while (this.peek('&&')) {
      this.pos++;
      const right = this.unary();
      const product: Dnf = [];
      for (const a of d) for (const b of right) product.push([...a, ...b]);
      if (product.length > MAX_ALTERNATIVES) throw new Error(`expands to more than ${MAX_ALTERNATIVES} alternatives`);
      d = product;
    }
    return d;
  }

  private unary(): Dnf {
    const t = this.tokens[this.pos];
    if (t === undefined) throw new Error('rule ends where a matcher was expected');
    if (t.kind === '!') throw new Error('negation (!) is not supported');
    if (t.kind === '(') {
      this.pos++;
      const d = this.or();
      this.expect(')');
      return d;
    }
    if (t.kind !== 'name') throw new Error(`expected a matcher, got ${describe(t)}`);
    this.pos++;
    this.expect('(');
    const args: string[] = [];
    if (!this.peek(')')) {
      for (;;) {
        const a = this.tokens[this.pos];
        if (a?.kind !== 'string') throw new Error(`${t.text}: arguments must be quoted with \` or "`);
        args.push(a.text);
        this.pos++;
        if (!this.peek(',')) break;
        this.pos++;
      }
    }
    this.expect(')');
    return matcher(t.text, args);
  }

  private peek(kind: Token['kind']): boolean {
    return this.tokens[this.pos]?.kind === kind;
  }

  private expect(kind: Token['kind']): void {
    const t = this.tokens[this.pos];
    if (t?.kind !== kind) throw new Error(`expected "${kind}", got ${t === undefined ? 'the end of the rule' : describe(t)}`);
    this.pos++;
  }
}

function describe(t: Token): string {
  return t.kind === 'name' || t.kind === 'string' ? `"${t.text}"` : `"${t.kind}"`;
}

/** One matcher call -> its alternatives (v2's `Host(a, b)` means a or b). */
function matcher(name: string, args: readonly string[]): Dnf {
  const need = (n: number): void => {
    if (args.length !== n) throw new Error(`${name} takes ${n} argument${n === 1 ? '' : 's'}, got ${args.length}`);
  };
  const atLeastOne = (): void => {
    if (args.length === 0) throw new Error(`${name} needs an argument`);
  };
  switch (name) {
    case 'Host':
      atLeastOne();
      return args.map((h) => [{ host: h.toLowerCase() }]);
    case 'HostRegexp':
      atLeastOne();
      return args.map((re) => [{ host: simpleHostRegexp(re) }]);
    case 'PathPrefix':
      atLeastOne();
      return args.map((p) => [{ path_prefix: p }]);
    case 'Path':
      atLeastOne();
      return args.map((p) => [{ path: p }]);
    case 'Method':
      atLeastOne();
      return args.map((m) => [{ method: m.toUpperCase() }]);
    case 'Headers':
    case 'Header':
      need(2);
      return [[{ headers: { [args[0] as string]: args[1] as string } }]];
    default:
      throw new Error(`matcher ${name} is not supported (supported: Host, HostRegexp, PathPrefix, Path, Method, Headers)`);
  }
}

/**
 * A HostRegexp drover can express: one leading label of anything, then a fixed domain, i.e.
 * `*.example.com`. Accepts Traefik v2's `{name:[a-z0-9-]+}.example.com` / `{name}.example.com`
 * and v3's `^[^.]+\.example\.com$` (also `.+`, `[a-z0-9-]+`).
 */
function simpleHostRegexp(re: string): string {
  const v2 = /^\{[A-Za-z_][A-Za-z0-9_]*(?::(?:\[[^\]]+\][+*]|\.\+|\.\*|\[\^\.\]\+))?\}((?:\.[A-Za-z0-9-]+)+)$/.exec(re);
  if (v2 !== null) return `*${(v2[1] as string).toLowerCase()}`;
  const v3 = /^\^?(?:\[\^\.\]\+|\.\+|\[[a-zA-Z0-9\-]+\]\+)((?:\\\.[A-Za-z0-9-]+)+)\$?$/.exec(re);
  if (v3 !== null) return `*${(v3[1] as string).replaceAll('\\.', '.').toLowerCase()}`;
  throw new Error(`HostRegexp(\`${re}\`) is not simple: only one wildcard label before a fixed domain (e.g. ^[^.]+\\.example\\.com$) can become a route`);
}

/** Folds one alternative's conditions into one match; two different values for one field is an error. */
function fold(conditions: readonly RuleMatch[]): RuleMatch {
  const m: RuleMatch = {};
  for (const c of conditions) {
    for (const key of ['host', 'path_prefix', 'path', 'method'] as const) {
      const v = c[key];
      if (v === undefined) continue;
      if (m[key] !== undefined && m[key] !== v) throw new Error(`one alternative needs two different ${key} values ("${m[key]}" and "${v}"): no request matches both`);
      m[key] = v;
    }
    if (c.headers !== undefined) {
      for (const [k, v] of Object.entries(c.headers)) {
        const have = m.headers?.[k];
        if (have !== undefined && have !== v) throw new Error(`one alternative needs header ${k} to be both "${have}" and "${v}"`);
        m.headers = { ...m.headers, [k]: v };
      }
    }
  }
  if (m.path !== undefined && m.path_prefix !== undefined) throw new Error('Path and PathPrefix in one alternative are not supported');
  return m;
}

/** Parses a rule into route matches, one per alternative, in order; throws with the reason it is refused. */
export function parseTraefikRule(rule: string): RuleMatch[] {
  return new Parser(tokenize(rule)).parse().map(fold);
}
