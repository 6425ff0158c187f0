/**
 * A real gRPC server (@grpc/grpc-js, h2c on 127.0.0.1:0) with one method of each kind, on raw
 * byte messages (no protobuf: the tests are about transport). Every answer names the server, so
 * tests see who answered. Also the gRPC wire framing for clients that speak it by hand (an
 * HTTP/1.1 client through drover, Node's http2 client).
 *
 * Methods of service `t.T`:
 * - `Unary`: answers `<name>:<request>`.
 * - `Fail`: fails with UNAVAILABLE (14), `details: down`: grpc-js sends it trailers-only.
 * - `ServerStream`: request `N` -> `N` answers `<name>:0` .. `<name>:N-1`.
 * - `ClientStream`: answers `<name>:<requests joined by +>` after the client ends.
 * - `Bidi`: echoes each message as `<name>:<message>` as it arrives.
 */
import * as grpc from '@grpc/grpc-js';

const bytes = (b: Buffer): Buffer => b;

function method(path: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return { path, requestStream, responseStream, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes };
}

/** The test service's definition (usable by grpc-js clients too: `grpc.makeGenericClientConstructor(TEST_SERVICE, 'T')`). */
export const TEST_SERVICE = {
  Unary: method('/t.T/Unary', false, false),
  Fail: method('/t.T/Fail', false, false),
  ServerStream: method('/t.T/ServerStream', false, true),
  ClientStream: method('/t.T/ClientStream', true, false),
  Bidi: method('/t.T/Bidi', true, true),
} satisfies grpc.ServiceDefinition;

export interface TestGrpcServer {
  readonly name: string;
  readonly port: number;
  /** metadata (headers) of every call, in arrival order */
  readonly calls: { path: string; metadata: Record<string, unknown> }[];
  close(): Promise<void>;
}

/** Starts the test gRPC server over h2c. */
export async function startGrpcServer(name: string): Promise<TestGrpcServer> {
  const server = new grpc.Server();
  const calls: { path: string; metadata: Record<string, unknown> }[] = [];
  const seen = (path: string, md: grpc.Metadata): void => {
    calls.push({ path, metadata: md.toJSON() });
  };
  const answer = (s: string): Buffer => Buffer.from(`${name}:${s}`);
  server.addService(TEST_SERVICE, {
    Unary: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen('/t.T/Unary', call.metadata);
      cb(null, answer(call.request.toString()));
    },
    Fail: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen('/t.T/Fail', call.metadata);
      cb({ code: grpc.status.UNAVAILABLE, details: 'down' });
    },
    ServerStream: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      seen('/t.T/ServerStream', call.metadata);
      const n = Number(call.request.toString());
      for (let i = 0; i < n; i++) call.write(answer(String(i)));
      call.end();
    },
    ClientStream: (call: grpc.ServerReadableStream<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
      seen('/t.T/ClientStream', call.metadata);
      const got: string[] = [];
      call.on('data', (m: Buffer) => got.push(m.toString()));
      call.on('end', () => cb(null, answer(got.join('+'))));
    },
    Bidi: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      seen('/t.T/Bidi', call.metadata);
      call.on('data', (m: Buffer) => call.write(answer(m.toString())));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err === null ? resolve(p) : reject(err)));
  });
  return {
    name,
    port,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        // calls still open (a test that failed midway) must not hold the shutdown
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 1_000).unref();
      }),
  };
}

/** One message in gRPC's length-prefixed framing (uncompressed). */
export function grpcFrame(message: string | Buffer): Buffer {
  const body = typeof message === 'string' ? Buffer.from(message) : message;
  const head = Buffer.alloc(5);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** Reassembles gRPC messages from body chunks as they arrive. */
export class GrpcFrames {
  private pending = Buffer.alloc(0);
  readonly messages: string[] = [];

  /** Adds a chunk; returns the messages it completed. */
  push(chunk: Buffer): string[] {
    this.pending = Buffer.concat([this.pending, chunk]);
    const done: string[] = [];
    while (this.pending.length >= 5) {
      const len = this.pending.readUInt32BE(1);
      if (this.pending.length < 5 + len) break;
      done.push(this.pending.subarray(5, 5 + len).toString());
      this.pending = this.pending.subarray(5 + len);
    }
    this.messages.push(...done);
    return done;
  }

  /** Bytes of an incomplete message left over. */
  get leftover(): number {
    return this.pending.length;
  }
}
