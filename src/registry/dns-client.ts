/**
 * A small DNS query client on dns-packet over UDP (dgram), with a per-try timeout, retries
 * across the configured servers, and TCP when an answer comes back truncated.
 *
 * Why not Node's `dns.Resolver`: `resolveSrv` returns no TTL, and re-resolving on the records'
 * TTLs is the point of the DNS registry. A query is one datagram to one server from a fresh
 * socket (random source port) with a random id; only an answer with that id and question is
 * accepted, so a late answer to an earlier try cannot be taken for this one.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import * as packet from 'dns-packet';
import { hostPortText } from '../config/values.js';

/** A DNS server: an IP address and a port. */
export interface DnsServer {
  readonly host: string;
  /** default 53 */
  readonly port: number;
}

/** Record types this client asks for. */
export type QueryType = 'SRV' | 'A' | 'AAAA';

/** One answer record, as decoded. */
export interface DnsRecord {
  readonly name: string;
  readonly type: string;
  /** seconds */
  readonly ttl: number;
  readonly data: unknown;
}

/** What a server said. `rcode` 0 NOERROR, 3 NXDOMAIN, others are failures of the server. */
export interface DnsAnswer {
  readonly rcode: number;
  readonly answers: readonly DnsRecord[];
  readonly additionals: readonly DnsRecord[];
  /** the server that answered, `host:port` */
  readonly server: string;
}

/** Query settings. */
export interface QueryOptions {
  /** ms per try; default 1000 */
  readonly timeoutMs?: number;
  /** rounds over the server list; default 2 */
  readonly attempts?: number;
}

export const RCODE_NOERROR = 0;
export const RCODE_NXDOMAIN = 3;

/** Parses `IP`, `IP:port`, `[v6]` or `[v6]:port` (as `registry.dns.servers` holds them). */
export function parseDnsServer(text: string): DnsServer {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6 !== null) return { host: v6[1] ?? '', port: v6[2] !== undefined ? Number(v6[2]) : 53 };
  if (net.isIPv6(text)) return { host: text, port: 53 };
  const i = text.lastIndexOf(':');
  return i === -1 ? { host: text, port: 53 } : { host: text.slice(0, i), port: Number(text.slice(i + 1)) };
}

/** `host:port` for logs (`[v6]:port`). */
export function formatDnsServer(s: DnsServer): string {
  return hostPortText(s.host, s.port);
}

function toRecords(list: readonly packet.Answer[] | undefined): DnsRecord[] {
  return (list ?? []).map((a) => ({ name: a.name, type: a.type, ttl: 'ttl' in a && typeof a.ttl === 'number' ? a.ttl : 0, data: 'data' in a ? a.data : undefined }));
}

function matches(res: packet.DecodedPacket, id: number, name: string, type: QueryType): boolean {
  const q = res.questions?.[0];
  return res.id === id && res.type === 'response' && q !== undefined && q.type === type && q.name.toLowerCase() === name.toLowerCase();
}

function answerOf(res: packet.DecodedPacket, server: DnsServer): DnsAnswer {
  return { rcode: (res.flags ?? 0) & 0xf, answers: toRecords(res.answers), additionals: toRecords(res.additionals), server: formatDnsServer(server) };
}

/** One UDP try; resolves undefined on timeout. */
function udpTry(server: DnsServer, name: string, type: QueryType, timeoutMs: number): Promise<packet.DecodedPacket | undefined> {
  return new Promise((resolve) => {
    const id = randomInt(0, 65536);
    const socket = dgram.createSocket(net.isIPv6(server.host) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (v: packet.DecodedPacket | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve(v);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on('error', () => finish(undefined));
    socket.on('message', (msg) => {
      let res: packet.DecodedPacket;
      try {
        res = packet.decode(msg);
      } catch {
        return; // garbage: keep waiting for the real answer
      }
      if (matches(res, id, name, type)) finish(res);
    });
    const query = packet.encode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name }] });
    socket.send(query, server.port, server.host, (err) => {
      if (err) finish(undefined);
    });
  });
}

/** One TCP try (after a truncated UDP answer); resolves undefined on failure or timeout. */
function tcpTry(server: DnsServer, name: string, type: QueryType, timeoutMs: number): Promise<packet.DecodedPacket | undefined> {
  return new Promise((resolve) => {
    const id = randomInt(0, 65536);
    const socket = net.connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (v: packet.DecodedPacket | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on('error', () => finish(undefined));
    socket.on('close', () => finish(undefined));
    socket.on('connect', () => socket.write(packet.streamEncode({ type: 'query', id, flags: packet.RECURSION_DESIRED, questions: [{ type, name }] })));
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) return;
      try {
        const res = packet.decode(buf.subarray(2, 2 + len));
        finish(matches(res, id, name, type) ? res : undefined);
      } catch {
        finish(undefined);
      }
    });
  });
}

/**
 * Asks `servers` in order for `name`/`type`, `attempts` rounds, until one answers NOERROR or
 * NXDOMAIN. Resolves with that answer; resolves with the last failure code (SERVFAIL, REFUSED...)
 * as an answer when servers answered but none usefully; rejects only when no server answered.
 */
export async function queryDns(servers: readonly DnsServer[], name: string, type: QueryType, options: QueryOptions = {}): Promise<DnsAnswer> {
  const timeoutMs = options.timeoutMs ?? 1000;
  const attempts = options.attempts ?? 2;
  let lastFailure: DnsAnswer | undefined;
  for (let round = 0; round < attempts; round++) {
    for (const server of servers) {
      let res = await udpTry(server, name, type, timeoutMs);
      if (res?.flag_tc === true) res = (await tcpTry(server, name, type, timeoutMs)) ?? res;
      if (res === undefined) continue;
      const answer = answerOf(res, server);
      if (answer.rcode === RCODE_NOERROR || answer.rcode === RCODE_NXDOMAIN) return answer;
      lastFailure = answer;
    }
  }
  if (lastFailure !== undefined) return lastFailure;
  throw new Error(`no answer for ${name} ${type} from ${servers.map(formatDnsServer).join(', ')} (${attempts} tries each, ${timeoutMs} ms per try)`);
}
