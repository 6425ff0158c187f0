/**
 * gRPC end to end through the edge: a real @grpc/grpc-js client over TLS + HTTP/2 (ALPN h2) to
 * drover's TLS listener, drover to an h2c gRPC backend. All four call kinds, metadata, and a
 * trailers-only UNAVAILABLE (grpc-status 14) answer.
 */
import * as grpc from '@grpc/grpc-js';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeWith, testCa } from './helpers/certs.js';
import { startDrover, tempDir, type DroverProcess } from './helpers/drover.js';
import { startGrpcServer, TEST_SERVICE, type TestGrpcServer } from './helpers/grpc.js';
import { waitFor } from './helpers/wait.js';

type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

describeWith(['openssl'], 'gRPC through a TLS listener', () => {
  let dir: string;
  let backend: TestGrpcServer;
  let drover: DroverProcess;
  let client: Client;

  beforeAll(async () => {
    dir = tempDir('drover-grpc-tls-');
    const ca = testCa(dir);
    const site = ca.leaf('site', ['grpc.test']);
    backend = await startGrpcServer('g1');
    drover = await startDrover(`
listen:
  - address: 127.0.0.1:0
    tls: {cert: ${site.cert}, key: ${site.key}}
admin: {address: 127.0.0.1:0}
access_log: stdout
services:
  grpc:
    backends: [{url: h2c://127.0.0.1:${backend.port}, id: g1}]
routes:
  - match: {path_prefix: /t.T/}
    service: grpc
`);
    const Ctor = grpc.makeGenericClientConstructor(TEST_SERVICE, 'T');
    client = new Ctor(`127.0.0.1:${drover.port}`, grpc.credentials.createSsl(Buffer.from(ca.caPem)), {
      'grpc.ssl_target_name_override': 'grpc.test',
      'grpc.default_authority': 'grpc.test',
    }) as unknown as Client;
  });

  afterAll(async () => {
    client?.close();
    await drover?.stop();
    await backend?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const unary = (name: string, msg: string, md = new grpc.Metadata()): Promise<{ value?: string; err?: grpc.ServiceError }> =>
    new Promise((resolve) => {
      (client[name] as (m: Buffer, md: grpc.Metadata, cb: (e: grpc.ServiceError | null, v?: Buffer) => void) => void)(Buffer.from(msg), md, (err, v) =>
        resolve(err === null ? { value: v?.toString() } : { err }),
      );
    });

  it('unary, with metadata reaching the backend', async () => {
    const md = new grpc.Metadata();
    md.set('x-tenant', 'blue');
    expect(await unary('Unary', 'hi', md)).toEqual({ value: 'g1:hi' });
    expect(backend.calls.at(-1)?.metadata['x-tenant']).toEqual(['blue']);
    await waitFor(() => drover.logs.some((l) => l['path'] === '/t.T/Unary'));
    expect(drover.logs.find((l) => l['path'] === '/t.T/Unary')?.['protocol']).toBe('HTTP/2.0');
  });

  it('a trailers-only UNAVAILABLE answer arrives as status 14 with its details', async () => {
    const r = await unary('Fail', 'x');
    expect([r.err?.code, r.err?.details]).toEqual([grpc.status.UNAVAILABLE, 'down']);
  });

  it('server-streaming', async () => {
    const call = (client['ServerStream'] as (m: Buffer) => grpc.ClientReadableStream<Buffer>)(Buffer.from('4'));
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on('data', (m: Buffer) => got.push(m.toString()));
      call.on('status', (s: grpc.StatusObject) => (s.code === grpc.status.OK ? resolve() : reject(new Error(s.details))));
      call.on('error', reject);
    });
    expect(got).toEqual(['g1:0', 'g1:1', 'g1:2', 'g1:3']);
  });

  it('client-streaming', async () => {
    const value = await new Promise<string>((resolve, reject) => {
      const call = (client['ClientStream'] as (cb: (e: grpc.ServiceError | null, v?: Buffer) => void) => grpc.ClientWritableStream<Buffer>)((err, v) =>
        err === null ? resolve(v?.toString() ?? '') : reject(err),
      );
      for (const m of ['a', 'b', 'c']) call.write(Buffer.from(m));
      call.end();
    });
    expect(value).toBe('g1:a+b+c');
  });

  it('bidi: each answer arrives before the next message is sent', async () => {
    const call = (client['Bidi'] as () => grpc.ClientDuplexStream<Buffer, Buffer>)();
    const got: string[] = [];
    const next = (): Promise<string> => new Promise((resolve) => call.once('data', (m: Buffer) => resolve(m.toString())));
    for (const m of ['one', 'two', 'three']) {
      const answer = next();
      call.write(Buffer.from(m));
      got.push(await answer);
    }
    const done = new Promise<number>((resolve) => call.on('status', (s: grpc.StatusObject) => resolve(s.code)));
    call.end();
    expect(got).toEqual(['g1:one', 'g1:two', 'g1:three']);
    expect(await done).toBe(grpc.status.OK);
  });
});
