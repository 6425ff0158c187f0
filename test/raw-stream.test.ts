/**
 * The bare-handle connection layer under the fast path (src/proxy/raw-stream.ts), on real
 * loopback sockets: reads, writes of one tick in order, backpressure and drain, a graceful end
 * after everything queued, destroy, a client's half-close, and the handover to a net.Socket with
 * the bytes already read. It leans on Node internals, so these tests say first when a Node
 * version changes them.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { adoptHandle, interceptAccept, internals } from '../src/proxy/internals.js';
import { RawStream } from '../src/proxy/raw-stream.js';
import { waitFor } from './helpers/wait.js';

/** A RawStream that records what happens to it. */
class Recorder extends RawStream {
  /** Reads into the buffer shared by such streams from now on (chunks are copied here). */
  shareReads(): void {
    this.readIntoShared();
  }

  readonly events: string[] = [];
  readonly chunks: Buffer[] = [];
  drains = 0;

  protected onData(chunk: Buffer): void {
    this.chunks.push(Buffer.from(chunk));
    this.events.push('data');
  }
  protected onEnd(): void {
    this.events.push('end');
  }
  protected onClose(): void {
    this.events.push('close');
  }
  protected onDrain(): void {
    this.drains++;
    this.events.push('drain');
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('latin1');
  }
}

interface Pair {
  server: net.Server;
  client: net.Socket;
  stream: Recorder;
}

const open: Pair[] = [];

afterEach(async () => {
  for (const p of open.splice(0)) {
    p.client.destroy();
    if (!p.stream.destroyed) p.stream.destroy();
    await new Promise((r) => p.server.close(r));
  }
});

/** A listening server whose accepted handles become Recorders (as the fast path takes them). */
async function connect(): Promise<Pair> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Recorder>((resolve) => {
    expect(interceptAccept(server, (client) => resolve(new Recorder(client)))).toBe(true);
  });
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  client.on('error', () => undefined);
  const stream = await accepted;
  const pair = { server, client, stream };
  open.push(pair);
  return pair;
}


function collect(s: net.Socket): { text: () => string; ended: () => boolean; closed: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  let closed = false;
  s.on('data', (d: Buffer) => chunks.push(d));
  s.on('end', () => (ended = true));
  s.on('close', () => (closed = true));
  return { text: () => Buffer.concat(chunks).toString('latin1'), ended: () => ended, closed: () => closed };
}

describe.runIf(internals !== undefined)('RawStream on a bare TCP handle', () => {
  it('reads what the client sends and knows its address', async () => {
    const { client, stream } = await connect();
    client.write('abc');
    await waitFor(() => stream.text() === 'abc', 3_000);
    client.write('def');
    await waitFor(() => stream.text() === 'abcdef', 3_000);
    expect(stream.remoteAddress).toBe('127.0.0.1');
    expect(stream.bytesMoved).toBe(6);
  });

  it('sends the strings and buffers of one tick in order, as latin1', async () => {
    const { client, stream } = await connect();
    const got = collect(client);
    expect([stream.send('HTTP '), stream.send(Buffer.from([0xe9, 0x41])), stream.send('\xff end')]).toEqual([true, true, true]);
    await waitFor(() => got.text().length === 12, 3_000);
    expect(got.text()).toBe('HTTP \xe9A\xff end');
  });

  it('backpressure: send returns false past 16 KiB not taken; while the client reads nothing no drain comes, then exactly one', async () => {
    const { client, stream } = await connect();
    client.pause();
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    // 64 KiB queued in one tick is past the mark already
    expect(stream.send(chunk)).toBe(false);
    let sent = chunk.length;
    // fill the kernel's buffers (they grow as they fill) until the handle itself holds 2 MiB back
    for (let i = 0; i < 1_000 && stream.pendingBytes < 2 * 1024 * 1024; i++) {
      stream.send(chunk);
      sent += chunk.length;
      await new Promise((r) => setImmediate(r));
    }
    expect(stream.pendingBytes).toBeGreaterThanOrEqual(2 * 1024 * 1024);
    const before = stream.drains;
    await new Promise((r) => setTimeout(r, 100));
    expect(stream.drains).toBe(before);
    let read = 0;
    client.on('data', (d: Buffer) => (read += d.length));
    client.resume();
    await waitFor(() => read === sent && stream.drains > before, 3_000);
    expect(stream.pendingBytes).toBe(0);
    expect(stream.drains).toBe(before + 1);
  });

  it('endConnection: everything queued arrives, then the end; the handle closes', async () => {
    const { client, stream } = await connect();
    const got = collect(client);
    const body = 'x'.repeat(300_000);
    stream.send(body);
    stream.endConnection();
    await waitFor(() => got.ended() && stream.events.includes('close'), 3_000);
    expect(got.text().length).toBe(body.length);
    expect(stream.send('late')).toBe(false);
  });

  it('destroy: the client sees the connection close, onClose fires once', async () => {
    const { client, stream } = await connect();
    const got = collect(client);
    stream.destroy();
    stream.destroy();
    await waitFor(() => got.closed() && stream.events.includes('close'), 3_000);
    await new Promise((r) => setTimeout(r, 20));
    expect(stream.events.filter((e) => e === 'close')).toEqual(['close']);
    expect(stream.send('x')).toBe(false);
  });

  it("a client's half-close is reported as onEnd; the stream can still answer before it ends", async () => {
    const { client, stream } = await connect();
    const got = collect(client);
    client.end('bye');
    await waitFor(() => stream.events.includes('end'), 3_000);
    expect(stream.events).toEqual(['data', 'end']);
    expect(stream.text()).toBe('bye');
    stream.send('ok');
    stream.endConnection();
    await waitFor(() => got.ended(), 3_000);
    expect(got.text()).toBe('ok');
  });

  it('pauseReading / resumeReading: nothing is read while paused, then it all arrives; a second resume is harmless', async () => {
    const { client, stream } = await connect();
    stream.pauseReading();
    client.write('early');
    await new Promise((r) => setTimeout(r, 50));
    expect(stream.chunks).toEqual([]);
    stream.resumeReading();
    stream.resumeReading();
    await waitFor(() => stream.text() === 'early', 3_000);
    client.write('!');
    await waitFor(() => stream.text() === 'early!', 3_000);
    expect(stream.destroyed).toBe(false);
  });

  it('release + adoptHandle: a net.Socket on the same connection, the bytes already read first', async () => {
    const { server, client, stream } = await connect();
    client.write('hello ');
    await waitFor(() => stream.text() === 'hello ', 3_000);
    const socket = adoptHandle(server, stream.release().handle, Buffer.from('hello '));
    const got = collect(socket);
    socket.resume();
    client.write('world');
    await waitFor(() => got.text() === 'hello world', 3_000);
    socket.write('pong');
    const back = collect(client);
    await waitFor(() => back.text() === 'pong', 3_000);
    // the stream let go: its events stop, the socket owns the connection
    expect(stream.events).toEqual(['data']);
    socket.destroy();
  });

  it('a stream reading into the shared buffer: reads arrive; after the handover net.Socket gets each read (copied) and the end', async () => {
    const { server, client, stream } = await connect();
    stream.shareReads();
    client.write('one ');
    await waitFor(() => stream.text() === 'one ', 3_000);
    client.write('two ');
    await waitFor(() => stream.text() === 'one two ', 3_000);
    const { handle, sharedReads } = stream.release();
    expect(sharedReads).toBeInstanceOf(Buffer);
    const socket = adoptHandle(server, handle, Buffer.from('early '), sharedReads);
    const got = collect(socket);
    socket.resume();
    client.write('three');
    await waitFor(() => got.text() === 'early three', 3_000);
    client.end();
    await waitFor(() => got.ended(), 3_000);
    socket.destroy();
  });
});
