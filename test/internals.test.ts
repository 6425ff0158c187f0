/**
 * The one room for Node internals (src/proxy/internals.ts): its loopback self-test says `on` on
 * this Node, and `off:` with the step that failed when a part is missing or misbehaves, so the
 * `ready` line's `fastPath: on` means verified. Each broken kit below is the real one with one
 * part replaced.
 */
import { describe, expect, it } from 'vitest';
import { REAL_KIT, runProbe, type HttpParserClass, type Internals, type ProbeKit, type TcpHandle } from '../src/proxy/internals.js';

const real = REAL_KIT.internals as Internals;

/** The real internals with `patch` laid over them. */
function withInternals(patch: Partial<Internals>): ProbeKit {
  return { ...REAL_KIT, timeoutMs: 1_500, internals: { ...real, ...patch } };
}

/** A parser class whose `execute` refuses everything. */
function refusingParser(): HttpParserClass {
  const P = real.HTTPParser;
  class Refusing extends P {
    override execute(): Error {
      return new Error('refused');
    }
  }
  return Refusing as unknown as HttpParserClass;
}

describe.runIf(REAL_KIT.internals !== undefined)('probeFastPath self-test', () => {
  it('passes on this Node', async () => {
    expect(await runProbe(REAL_KIT)).toBe('on');
  });

  it.each<[string, () => ProbeKit, RegExp]>([
    ['the bindings are missing', () => ({ ...REAL_KIT, internals: undefined, problem: 'tcp_wrap binding not in the expected shape' }), /^off: tcp_wrap binding not in the expected shape$/],
    ['net.Server offers no accept hook', () => ({ ...REAL_KIT, interceptAccept: () => false }), /^off: self-test failed: accept hook: net.Server has no onconnection hook$/],
    ['the accept hook is set but never called', () => ({ ...REAL_KIT, timeoutMs: 1_000, interceptAccept: () => true }), /^off: self-test failed: no answer within 1000 ms/],
    ['the parser refuses a valid request', () => withInternals({ HTTPParser: refusingParser() }), /^off: self-test failed: .*(did not parse)/],
    [
      'writes on a bare handle fail',
      () =>
        withInternals({
          newTcpHandle: () => {
            const h = real.newTcpHandle();
            h.writeLatin1String = () => -32;
            return h;
          },
        }),
      /^off: self-test failed: write: write failed: EPIPE$/,
    ],
    [
      'connects fail',
      () =>
        withInternals({
          newTcpHandle: () => {
            const h = real.newTcpHandle();
            h.connect = () => -111;
            return h;
          },
        }),
      /^off: self-test failed: connect: ECONNREFUSED$/,
    ],
    [
      'the handover to a net.Socket loses the connection',
      () => ({ ...REAL_KIT, timeoutMs: 1_000, adoptHandle: (server, handle: TcpHandle, bytes, shared) => {
        const s = REAL_KIT.adoptHandle(server, handle, bytes, shared);
        s.pause = () => s;
        s.resume = () => s;
        return s;
      } }),
      /^off: self-test failed: no answer within 1000 ms \(at: (handover|write after handover|end after handover)/,
    ],
    [
      'a handed-over connection that reads into a shared buffer but is given to net.Socket as if it did not',
      () => ({ ...REAL_KIT, timeoutMs: 1_000, adoptHandle: (server, handle: TcpHandle, bytes) => REAL_KIT.adoptHandle(server, handle, bytes) }),
      /^off: self-test failed: /,
    ],
  ])('off when %s', async (_name, kit, want) => {
    expect(await runProbe(kit())).toMatch(want);
  });
});
