/**
 * Where a TLS target's CPU goes per new connection, from a `perf record -g` of the process
 * (node run with `--perf-basic-prof` so JIT frames are named): shares by shared object, by
 * symbol (self time), and by phase of a connection's life, found from each sample's stack:
 * accepting it (Node builds its net.Socket and TLSSocket), OpenSSL's handshake and record work,
 * the JavaScript OpenSSL calls back into (SNI, handshake events), the HTTP request and its
 * proxying, writes, closing, V8's garbage collector. Linux only; undefined when perf is missing
 * or refuses.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { attach, parsePerfReport, type ProfileShare } from './perf-trace.js';

/** A profile of one run. */
export interface TlsProfile {
  readonly samples: number;
  readonly byObject: readonly ProfileShare[];
  readonly bySymbol: readonly ProfileShare[];
  readonly byPhase: readonly ProfileShare[];
  /** self time grouped by the source of the innermost JavaScript frame (node:net, undici, drover's dist/...) */
  readonly byScript: readonly ProfileShare[];
}

interface Frame {
  readonly sym: string;
  readonly dso: string;
}

/** Splits `perf script -F tid,ip,sym,dso` output into stacks, leaf first. */
export function parseStacks(text: string): Frame[][] {
  const out: Frame[][] = [];
  for (const block of text.split('\n\n')) {
    const frames: Frame[] = [];
    for (const line of block.split('\n')) {
      if (!line.startsWith('\t')) continue;
      const m = /^\s*[0-9a-f]+\s+(.*) \((.*)\)$/.exec(line);
      frames.push(m === null ? { sym: line.trim(), dso: '' } : { sym: m[1] as string, dso: m[2] as string });
    }
    if (frames.length > 0) out.push(frames);
  }
  return out;
}

const CRYPTO_LEAF = /x25519|^fe_|^ge_|sha\d+_block|ecp_nistz|gcm|aes|^bn_|mul_mont|sqr_mont/i;
const GC = /PlatformWorkerThread|DefaultJobWorker|ConcurrentMarking|Scavenger|MarkCompact|Sweeper|Heap::CollectGarbage|Heap::Scavenge/;
/** Outermost-first roots of a connection's phases; the first that a stack contains names it. */
const ROOTS: readonly (readonly [string, RegExp])[] = [
  ['accept (net.Socket + TLSSocket built)', /ConnectionWrap<node::TCPWrap.*OnConnection/],
  ['close (handles freed)', /HandleWrap::OnClose/],
  ['TLS read', /TLSWrap::OnStreamRead/],
  ['TLS write done', /TLSWrap::OnStreamAfterWrite/],
  ['plain socket read (the upstream side)', /LibuvStreamWrap::OnUvRead/],
  ['setImmediate callbacks', /CheckImmediate/],
  ['timers', /RunTimers|processTimers/],
  ['other write/shutdown completions', /ReqWrap|AfterWrite|OnStreamAfterReqFinished|WriteWrap::OnDone|ShutdownWrap|AfterShutdown/],
  ['event loop, other', /uv_run/],
];

/** The phase of one sample. */
export function phaseOf(frames: readonly Frame[]): string {
  const leaf = frames[0] as Frame;
  const has = (re: RegExp): boolean => frames.some((f) => re.test(f.sym));
  if (leaf.dso.includes('kernel') && frames.length <= 2) return 'kernel, no user stack';
  // hand-written assembly keeps no frame pointer: perf sees the leaf only
  if (frames.length <= 2 && !has(/uv_run/)) return CRYPTO_LEAF.test(leaf.sym) ? 'OpenSSL: crypto assembly (no stack)' : `no stack: ${path.basename(leaf.dso)}`;
  if (has(GC)) return 'V8 garbage collection';
  const root = ROOTS.find(([, re]) => has(re));
  if (root === undefined) return 'other';
  if (root[0] !== 'TLS read') return root[0];
  const ssl = frames.findIndex((f) => /^(SSL_read|SSL_do_handshake)$/.test(f.sym));
  const js = frames.findIndex((f) => f.sym.startsWith('JS:') || f.sym.startsWith('Builtins_JSEntry'));
  if (ssl !== -1 && (js === -1 || js > ssl)) return 'TLS read: OpenSSL (handshake, records)';
  if (ssl !== -1) return 'TLS read: JavaScript called from OpenSSL (SNI, handshake events)';
  if (has(/EncOut|DoTryWrite/)) return 'TLS read: encrypting and writing';
  if (js !== -1) return 'TLS read: JavaScript (HTTP parser, request, proxying)';
  return 'TLS read: other native';
}

/** The source a JavaScript frame comes from: `node:net`, `undici/lib/...`, `dist/src/...`. */
function scriptOf(frames: readonly Frame[]): string {
  const js = frames.find((f) => f.sym.startsWith('JS:'));
  if (js === undefined) return 'no JavaScript on the stack';
  return /(node:[\w/_]+|undici\/lib\/[\w/-]+|prom-client\/lib\/[\w/-]+|dist\/[\w/-]+)/.exec(js.sym)?.[1] ?? 'other JavaScript';
}

function shares(keys: readonly string[], limit: number): ProfileShare[] {
  const counts = new Map<string, number>();
  for (const k of keys) counts.set(k, (counts.get(k) ?? 0) + 1);
  return [...counts]
    .sort((a, b) => b[1] - a[1])
    .slice(0, limit)
    .map(([name, n]) => ({ name, percent: Math.round((1000 * n) / keys.length) / 10 }));
}

/** Summarises `perf script` text by phase and by script. */
export function summariseStacks(text: string, limit = 30): { samples: number; byPhase: ProfileShare[]; byScript: ProfileShare[] } {
  const stacks = parseStacks(text);
  return { samples: stacks.length, byPhase: shares(stacks.map(phaseOf), limit), byScript: shares(stacks.map(scriptOf), limit) };
}

/** Starts `perf record -g` on `pid`; `stop()` ends it and summarises. */
export function recordProfile(pid: number, dir: string): { stop(): Promise<TlsProfile | undefined> } | undefined {
  if (spawnSync('perf', ['--version'], { stdio: 'ignore' }).status !== 0) return undefined;
  const data = path.join(dir, `perf-${pid}.data`);
  const recorder = attach('perf', ['record', '-g', '-F', '999', '-o', data, '-p', String(pid)]);
  return {
    stop: async () => {
      await recorder.stop();
      if (!fs.existsSync(data)) return undefined;
      const run = (args: readonly string[]): string => spawnSync('perf', args, { encoding: 'utf8', maxBuffer: 1 << 30 }).stdout ?? '';
      const report = (sort: string): string => run(['report', '-i', data, '--stdio', '--no-children', '-g', 'none', '--sort', sort, '--percent-limit', '0.3']);
      const script = run(['script', '-i', data, '-F', 'tid,ip,sym,dso']);
      const { samples, byPhase, byScript } = summariseStacks(script);
      return { samples, byObject: parsePerfReport(report('dso'), 12), bySymbol: parsePerfReport(report('dso,sym'), 40), byPhase, byScript };
    },
  };
}
