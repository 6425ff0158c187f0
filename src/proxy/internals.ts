/**
 * Node internals, in one guarded room. The fast path (bare TCP handles for client connections,
 * Node's own llhttp binding, and the plain-HTTP upstream connections on bare handles) leans on
 * parts of Node that are not public API: the `stream_wrap`, `tcp_wrap` and `uv` bindings,
 * `_http_common`'s HTTPParser, net.Server's accept hook (`_handle.onconnection`) and its
 * connection count (`_connections`). Every use of them is here and nowhere else in `src/`.
 *
 * They are loaded once, checked for the expected shapes, and then proven by `probeFastPath()`:
 * a loopback self-test at start that accepts a connection through the hook, connects a bare
 * handle to it, sends a request both ways through the parsers and the write paths, and hands
 * the connection over to a net.Socket. Only when every step behaves is the fast path on, so the
 * `ready` log line's `fastPath: on` means verified; otherwise it says `off:` and why, and every
 * connection goes to node:http and every request to undici, as on a Node without these internals.
 */
import { createRequire } from 'node:module';
import { Server as HttpServer } from 'node:http';
import { Server, Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** Where a bare handle keeps the object driving it (see raw-stream.ts). */
export const HANDLE_OWNER: unique symbol = Symbol('drover.handleOwner');

/** The slice of a libuv TCP handle (Node's TCPWrap) used by the fast path. */
export interface TcpHandle {
  onread: (this: TcpHandle, buffer: ArrayBuffer | undefined) => void;
  readStart(): number;
  readStop(): number;
  writeLatin1String(req: WriteReq, data: string): number;
  writeBuffer(req: WriteReq, data: Buffer): number;
  writev(req: WriteReq, chunks: (string | Buffer)[], allBuffers: boolean): number;
  shutdown(req: WriteReq): number;
  close(callback?: (this: TcpHandle) => void): void;
  getpeername(out: { address?: string; port?: number }): number;
  setNoDelay(on: boolean): number;
  /** reads go into `buffer` from now on (`onread` then gets no ArrayBuffer) */
  useUserBuffer(buffer: Buffer): void;
  connect(req: ConnectReq, address: string, port: number): number;
  connect6(req: ConnectReq, address: string, port: number): number;
  readonly writeQueueSize: number;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  /** the stream object driving this handle (see raw-stream.ts) */
  [HANDLE_OWNER]?: unknown;
}

/** A write or shutdown request (WriteWrap / ShutdownWrap), completed through `oncomplete`. */
export interface WriteReq {
  handle: TcpHandle;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  owner?: unknown;
  /** what an asynchronous write still needs alive */
  chunks?: (string | Buffer)[] | undefined;
}

/** A connect request (TCPConnectWrap), completed through `oncomplete(status, handle, req)`. */
export interface ConnectReq {
  oncomplete: (this: ConnectReq, status: number, handle: TcpHandle, req: ConnectReq, readable: boolean, writable: boolean) => void;
  address: string;
  port: number;
  owner?: unknown;
}

/** Node's llhttp parser binding (`_http_common`'s HTTPParser), the slice the fast path uses. */
export interface HttpParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  execute(data: Buffer): number | Error;
  finish(): number | Error | undefined;
  close(): void;
  /** the object the callbacks (called with the parser as `this`) report to */
  owner: unknown;
  [callback: number]: unknown;
}

/**
 * llhttp's callbacks, called during `execute` with the parser as `this`; an absent one is not
 * set. `headersComplete` may return 1 to skip the body (a response to HEAD).
 */
export interface ParserCallbacks<P extends HttpParser> {
  messageBegin?(this: P): void;
  /** fields flushed before the head ended (a long head, or trailers) */
  headers?(this: P, fields: string[], url: string): void;
  headersComplete?(this: P, major: number, minor: number, raw: string[] | undefined, method: number, url: string | undefined, status: number, message: string, upgrade: boolean, keepAlive: boolean): number | void;
  body?(this: P, chunk: Buffer): void;
  messageComplete?(this: P): void;
}

/**
 * A parser from Node's binding reporting to `owner` through `callbacks`. It still needs
 * `initialize` (for requests or responses, with the head limit) before its first `execute`.
 */
export function newParser<P extends HttpParser>(k: Internals, owner: P['owner'], callbacks: ParserCallbacks<P>): P {
  const C = k.HTTPParser;
  const parser = new C() as P;
  parser.owner = owner;
  if (callbacks.messageBegin !== undefined) parser[C.kOnMessageBegin] = callbacks.messageBegin;
  if (callbacks.headers !== undefined) parser[C.kOnHeaders] = callbacks.headers;
  if (callbacks.headersComplete !== undefined) parser[C.kOnHeadersComplete] = callbacks.headersComplete;
  if (callbacks.body !== undefined) parser[C.kOnBody] = callbacks.body;
  if (callbacks.messageComplete !== undefined) parser[C.kOnMessageComplete] = callbacks.messageComplete;
  return parser;
}

/** The parser binding's constructor and constants. */
export interface HttpParserClass {
  new (): HttpParser;
  readonly REQUEST: number;
  readonly RESPONSE: number;
  readonly kOnMessageBegin: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kLenientNone: number;
}

/** The internals, loaded and shape-checked. */
export interface Internals {
  readonly WriteWrap: new () => WriteReq;
  readonly ShutdownWrap: new () => WriteReq;
  readonly TCPConnectWrap: new () => ConnectReq;
  /** a new, unconnected TCP handle */
  newTcpHandle(): TcpHandle;
  /** the shared state a read callback finds its byte count and offset in */
  readonly streamState: Int32Array;
  readonly kReadBytesOrError: number;
  readonly kArrayBufferOffset: number;
  readonly kLastWriteWasAsync: number;
  /** libuv's end-of-stream code (negative) */
  readonly uvEof: number;
  readonly HTTPParser: HttpParserClass;
  /** method names by llhttp's method number */
  readonly methods: readonly string[];
}

/** Loads the internals, or says what is missing. */
function load(): Internals | string {
  try {
    const binding = (process as unknown as { binding(name: string): Record<string, unknown> }).binding;
    const wrap = binding('stream_wrap');
    const tcp = binding('tcp_wrap');
    const uv = binding('uv');
    if (typeof wrap['WriteWrap'] !== 'function' || typeof wrap['ShutdownWrap'] !== 'function' || !(wrap['streamBaseState'] instanceof Int32Array)) return 'stream_wrap binding not in the expected shape';
    for (const k of ['kReadBytesOrError', 'kArrayBufferOffset', 'kLastWriteWasAsync']) if (typeof wrap[k] !== 'number') return `stream_wrap lacks ${k}`;
    if (typeof uv['UV_EOF'] !== 'number') return 'uv binding lacks UV_EOF';
    const TCP = tcp['TCP'] as (new (type: number) => TcpHandle) | undefined;
    const socketType = (tcp['constants'] as { SOCKET?: unknown } | undefined)?.SOCKET;
    if (typeof TCP !== 'function' || typeof tcp['TCPConnectWrap'] !== 'function' || typeof socketType !== 'number') return 'tcp_wrap binding not in the expected shape';
    const common = createRequire(import.meta.url)('_http_common') as { HTTPParser?: unknown; methods?: unknown };
    const P = common.HTTPParser as Partial<Record<string, unknown>> | undefined;
    if (typeof P !== 'function' || !Array.isArray(common.methods)) return '_http_common lacks HTTPParser';
    for (const k of ['REQUEST', 'RESPONSE', 'kOnMessageBegin', 'kOnHeaders', 'kOnHeadersComplete', 'kOnBody', 'kOnMessageComplete', 'kLenientNone']) {
      if (typeof P[k] !== 'number') return `HTTPParser lacks ${k}`;
    }
    for (const m of ['initialize', 'execute', 'finish', 'close']) {
      if (typeof (P as unknown as { prototype: Record<string, unknown> }).prototype[m] !== 'function') return `HTTPParser lacks ${m}()`;
    }
    return {
      WriteWrap: wrap['WriteWrap'] as new () => WriteReq,
      ShutdownWrap: wrap['ShutdownWrap'] as new () => WriteReq,
      TCPConnectWrap: tcp['TCPConnectWrap'] as new () => ConnectReq,
      newTcpHandle: () => new TCP(socketType),
      streamState: wrap['streamBaseState'] as Int32Array,
      kReadBytesOrError: wrap['kReadBytesOrError'] as number,
      kArrayBufferOffset: wrap['kArrayBufferOffset'] as number,
      kLastWriteWasAsync: wrap['kLastWriteWasAsync'] as number,
      uvEof: uv['UV_EOF'] as number,
      HTTPParser: P as unknown as HttpParserClass,
      methods: common.methods as string[],
    };
  } catch (err) {
    return `Node internals unavailable (${(err as Error).message})`;
  }
}

const loaded = load();

/**
 * The internals when this Node offers them in the expected shape, else undefined. Shapes only:
 * whether they behave is what `probeFastPath` finds out; nothing may use them before it said on.
 */
export const internals: Internals | undefined = typeof loaded === 'string' ? undefined : loaded;

/** The error name of a libuv status (`-111` -> `ECONNREFUSED`). */
export function uvErrorName(status: number): string {
  try {
    return getSystemErrorName(status);
  } catch {
    return `E${-status}`;
  }
}

/** net.Server's own bookkeeping: its listening handle and the count closing waits for. */
type NetServerInternals = Server & { _handle?: { onconnection?: unknown } | null; _connections: number };

/**
 * Puts `take` between `server`'s listening handle and net.Server: each accepted connection
 * arrives as a bare handle (net's own accept callback stays in charge of errors). The server
 * must be listening.
 * @returns false when the server has no accept hook in the expected shape (nothing changed)
 */
export function interceptAccept(server: Server, take: (client: TcpHandle) => void): boolean {
  const handle = (server as NetServerInternals)._handle;
  const original = handle?.onconnection;
  if (handle === undefined || handle === null || typeof original !== 'function') return false;
  handle.onconnection = (err: number, client: TcpHandle | undefined): void => {
    if (err !== 0 || client === undefined) {
      (original as (e: number, c: unknown) => void).call(handle, err, client);
      return;
    }
    take(client);
  };
  return true;
}

type ServedSocket = Socket & { server?: Server; _server?: Server };

/** A handle as net.Socket and node:http see it: `_consumed` stops node:http's parser taking the reads over. */
type AdoptedHandle = TcpHandle & { _consumed?: boolean };

/**
 * A net.Socket on an open client handle, as net.Server's accept would make it, counted as one
 * of `server`'s connections (server.close() waits for it) and created paused, `bytes` (already
 * read off the handle, and copied) first. The handle's reads must be stopped.
 * @param sharedReads the buffer the handle reads into (`useUserBuffer`), if it does: net.Socket
 *   expects a fresh ArrayBuffer with every read, so each read is copied out of it for net; and
 *   node:http must not put its parser on the handle (`parser.consume`), since a read error or
 *   the end of the stream would then stop at the user-buffer listener below it and never reach
 *   net.Socket (Node's CustomBufferJSListener drops an error that comes without a buffer)
 */
export function adoptHandle(server: Server, handle: TcpHandle, bytes: Buffer, sharedReads?: Buffer): Socket {
  const socket = new Socket({ handle, allowHalfOpen: true, readable: true, writable: true, pauseOnCreate: true } as ConstructorParameters<typeof Socket>[0]) as ServedSocket;
  if (sharedReads !== undefined && internals !== undefined) {
    const k = internals;
    const netRead = handle.onread;
    (handle as AdoptedHandle)._consumed = true;
    handle.onread = function (this: TcpHandle, buffer: ArrayBuffer | undefined): void {
      const n = k.streamState[k.kReadBytesOrError] as number;
      if (buffer === undefined && n > 0) {
        const copy = new ArrayBuffer(n);
        new Uint8Array(copy).set(sharedReads.subarray(0, n));
        k.streamState[k.kArrayBufferOffset] = 0;
        netRead.call(this, copy);
        return;
      }
      netRead.call(this, buffer);
    };
  }
  if (bytes.length > 0) socket.unshift(bytes);
  socket.server = server;
  socket._server = server;
  // net.Socket counts itself off when it closes
  (server as NetServerInternals)._connections++;
  return socket;
}

// ---- the self-test ----

/** What the self-test uses: the internals and the two hooks into net.Server. */
export interface ProbeKit {
  readonly internals: Internals | undefined;
  /** why `internals` is undefined */
  readonly problem?: string | undefined;
  readonly interceptAccept: typeof interceptAccept;
  readonly adoptHandle: typeof adoptHandle;
  /** ms the whole self-test may take before it counts as failed; default 5 000 */
  readonly timeoutMs?: number;
}

/** The real internals and hooks, as the listeners use them. */
export const REAL_KIT: ProbeKit = { internals, problem: typeof loaded === 'string' ? loaded : undefined, interceptAccept, adoptHandle };

let probed: Promise<string> | undefined;

/**
 * Whether the fast path is on (`on`) or why not (`off: ...`), proven once per process by a
 * loopback self-test (`runProbe`). `DROVER_FAST_PATH=off` turns it off without a test.
 */
export function probeFastPath(): Promise<string> {
  if (process.env['DROVER_FAST_PATH'] === 'off') return Promise.resolve('off: DROVER_FAST_PATH=off');
  probed ??= runProbe(REAL_KIT);
  return probed;
}

let verified = false;

/**
 * True once this process's self-test passed (`probeFastPath` said on): what may use the
 * internals synchronously (the plain-HTTP upstream connections) asks here.
 */
export function fastPathVerified(): boolean {
  return verified;
}

/**
 * The loopback self-test, on `kit`: `on`, or `off: <the step that failed>`. Exported for the
 * tests, which run it on kits with a part broken.
 */
export async function runProbe(kit: ProbeKit): Promise<string> {
  const k = kit.internals;
  if (k === undefined) return `off: ${kit.problem ?? 'this Node lacks the parser or handle bindings'}`;
  // an http.Server, as the listeners are: the accept hook is proven on the class they use
  const server = new HttpServer();
  const handles: TcpHandle[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // exclusive: in a cluster worker a shared listen(0) on 127.0.0.1 would join the round
      // robin of a drover listener bound the same way (and its connections would go astray)
      server.listen({ port: 0, host: '127.0.0.1', exclusive: true }, () => resolve());
    });
    const port = (server.address() as { port: number }).port;
    const steps = selfTest(kit, k, server, port, handles);
    const ms = kit.timeoutMs ?? 5_000;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`no answer within ${ms} ms (at: ${steps.at()})`), ms);
    });
    const problem = await Promise.race([steps.done, timeout]);
    if (problem !== undefined) return `off: self-test failed: ${problem}`;
    if (kit === REAL_KIT) verified = true;
    return 'on';
  } catch (err) {
    return `off: self-test failed: ${(err as Error).message}`;
  } finally {
    clearTimeout(timer);
    for (const h of handles) {
      try {
        h.close();
      } catch {
        // already closed
      }
    }
    server.close();
  }
}

const PROBE_REQUEST = 'GET /probe?x=1 HTTP/1.1\r\nHost: probe.test\r\nX-Probe: 1\r\n\r\n';
const PROBE_RESPONSE_HEAD = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n';
const PROBE_AFTER = 'after handover';

/** Reads bytes off a bare handle into `sink` (null at the end); into `user` when given. */
function readInto(k: Internals, h: TcpHandle, sink: (chunk: Buffer | null) => void, user?: Buffer): void {
  if (user !== undefined) h.useUserBuffer(user);
  h.onread = function (buffer): void {
    const n = k.streamState[k.kReadBytesOrError] as number;
    if (n > 0 && buffer !== undefined) sink(Buffer.from(buffer, k.streamState[k.kArrayBufferOffset] as number, n));
    else if (n > 0 && user !== undefined) sink(Buffer.from(user.subarray(0, n)));
    else if (n < 0) sink(null);
  };
  if (h.readStart() !== 0) throw new Error('readStart failed');
}

/** Writes `chunks` on a bare handle; throws when the write is refused. */
function write(k: Internals, h: TcpHandle, chunks: (string | Buffer)[]): void {
  const req = new k.WriteWrap();
  req.handle = h;
  req.oncomplete = () => undefined;
  req.async = false;
  req.chunks = chunks;
  const parts: (string | Buffer)[] = [];
  for (const c of chunks) parts.push(c, typeof c === 'string' ? 'latin1' : 'buffer');
  const err = chunks.length === 1 && typeof chunks[0] === 'string' ? h.writeLatin1String(req, chunks[0]) : h.writev(req, parts, false);
  if (err !== 0) throw new Error(`write failed: ${uvErrorName(err)}`);
}

/**
 * One request through every internal the fast path uses: accepted by the hook, parsed as a
 * request, answered by a writev, read on a connected bare handle (into a buffer of its own) and
 * parsed as a response, then the accepted connection handed to a net.Socket that reads what
 * comes next.
 */
function selfTest(kit: ProbeKit, k: Internals, server: Server, port: number, handles: TcpHandle[]): { done: Promise<string | undefined>; at: () => string } {
  let step = 'accept hook';
  const done = new Promise<string | undefined>((resolve) => {
    const fail = (why: string): void => resolve(`${step}: ${why}`);
    const guard = (fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        fail((err as Error).message);
      }
    };
    if (!kit.interceptAccept(server, (accepted) => guard(() => serve(accepted)))) {
      resolve('accept hook: net.Server has no onconnection hook');
      return;
    }
    // the server side: parse the request, answer it, then hand the connection over
    const serve = (accepted: TcpHandle): void => {
      handles.push(accepted);
      step = 'request parser';
      let request: { method: string; url: string; fields: number } | undefined;
      let complete = false;
      const parser = newParser(k, undefined, {
        headersComplete: (_ma, _mi, raw, method, url): void => {
          request = { method: k.methods[method] ?? '?', url: url ?? '', fields: (raw?.length ?? 0) / 2 };
        },
        messageComplete: (): void => {
          complete = true;
        },
      });
      parser.initialize(k.HTTPParser.REQUEST, {}, 16 * 1024, k.HTTPParser.kLenientNone);
      let got = Buffer.alloc(0);
      // client connections read into a buffer of their own too (see raw-stream.ts)
      const shared = Buffer.alloc(1024);
      readInto(
        k,
        accepted,
        (chunk) =>
        guard(() => {
          if (chunk === null) return fail('connection ended early');
          got = Buffer.concat([got, chunk]);
          if (got.length < PROBE_REQUEST.length) return;
          accepted.readStop();
          const n = parser.execute(got);
          parser.close();
          if (typeof n !== 'number' || !complete) return fail('the request did not parse');
          if (request?.method !== 'GET' || request.url !== '/probe?x=1' || request.fields !== 2) return fail(`parsed ${JSON.stringify(request)}`);
          step = 'writev';
          write(k, accepted, [PROBE_RESPONSE_HEAD, '\r\n', Buffer.from('hello')]);
          step = 'handover to net.Socket';
          const socket = kit.adoptHandle(server, accepted, Buffer.alloc(0), shared);
          handles.splice(handles.indexOf(accepted), 1);
          let after = '';
          socket.on('error', (err) => fail(err.message));
          socket.on('data', (d: Buffer) => {
            after += d.toString('latin1');
          });
          // the client's end must reach net.Socket too (node:http learns of closes that way)
          socket.on('end', () => {
            socket.destroy();
            if (after === PROBE_AFTER) resolve(undefined);
            else fail(`read ${JSON.stringify(after)} after the handover`);
          });
          socket.resume();
        }),
        shared,
      );
    };
    // the client side: a bare handle connected by tcp_wrap, the answer parsed as a response
    step = 'connect';
    const client = k.newTcpHandle();
    handles.push(client);
    const req = new k.TCPConnectWrap();
    req.oncomplete = (status) =>
      guard(() => {
        if (status !== 0) return fail(uvErrorName(status));
        step = 'write';
        write(k, client, [PROBE_REQUEST]);
        let status200 = false;
        let body = '';
        const parser = newParser(k, undefined, {
          headersComplete: (_ma, _mi, _raw, _m, _u, code): number => {
            status200 = code === 200;
            return 0;
          },
          body: (chunk): void => {
            body += chunk.toString('latin1');
          },
          messageComplete: (): void =>
            guard(() => {
              if (!status200 || body !== 'hello') return fail(`response parsed as ${status200 ? 200 : 'not 200'} ${JSON.stringify(body)}`);
              step = 'write after handover';
              write(k, client, [PROBE_AFTER]);
              step = 'end after handover';
              const end = new k.ShutdownWrap();
              end.handle = client;
              end.oncomplete = () => undefined;
              if (client.shutdown(end) !== 0) fail('shutdown failed');
            }),
        });
        parser.initialize(k.HTTPParser.RESPONSE, {}, 16 * 1024, k.HTTPParser.kLenientNone);
        step = 'response parser';
        // the upstream connections read into a buffer of their own (see raw-stream.ts)
        readInto(
          k,
          client,
          (chunk) =>
            guard(() => {
              if (chunk === null) return fail('connection ended early');
              const n = parser.execute(chunk);
              if (typeof n !== 'number') fail(`the response did not parse (${n.message})`);
            }),
          Buffer.alloc(1024),
        );
      });
    req.address = '127.0.0.1';
    req.port = port;
    const err = client.connect(req, '127.0.0.1', port);
    if (err !== 0) fail(uvErrorName(err));
  });
  return { done, at: () => step };
}
