/**
 * A small in-process authoritative DNS server on dns-packet + dgram, for tests and benchmarks of
 * the DNS registry: records change at will (dnsmasq does not reload SRV records on SIGHUP), a
 * name absent from `zones` is NXDOMAIN, and `silent` drops every query (an unreachable server).
 */
import dgram from 'node:dgram';
import * as packet from 'dns-packet';

/** Records of one name in the in-process server. */
export interface Zone {
  srv?: { target: string; port: number; priority?: number; weight?: number; ttl?: number }[];
  a?: { address: string; ttl?: number }[];
  aaaa?: { address: string; ttl?: number }[];
}

/** A small in-process DNS server the test controls. */
export interface TestDnsServer {
  readonly server: string;
  readonly port: number;
  /** name (no trailing dot) -> records; a name absent from the map is NXDOMAIN */
  readonly zones: Map<string, Zone>;
  /** true: drop every query (the server looks unreachable) */
  silent: boolean;
  /** queries received, `name TYPE` */
  readonly queries: string[];
  close(): Promise<void>;
}

export async function startDnsServer(): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4');
  const zones = new Map<string, Zone>();
  const state: TestDnsServer = {
    server: '',
    port: 0,
    zones,
    silent: false,
    queries: [],
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
  socket.on('message', (msg, rinfo) => {
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (question === undefined) return;
    state.queries.push(`${question.name} ${question.type}`);
    if (state.silent) return;
    const zone = zones.get(question.name.toLowerCase());
    const answers: packet.Answer[] = [];
    if (zone !== undefined && question.type === 'SRV') {
      for (const r of zone.srv ?? []) answers.push({ type: 'SRV', name: question.name, ttl: r.ttl ?? 1, data: { target: r.target, port: r.port, priority: r.priority ?? 0, weight: r.weight ?? 0 } });
    }
    if (zone !== undefined && question.type === 'A') for (const r of zone.a ?? []) answers.push({ type: 'A', name: question.name, ttl: r.ttl ?? 1, data: r.address });
    if (zone !== undefined && question.type === 'AAAA') for (const r of zone.aaaa ?? []) answers.push({ type: 'AAAA', name: question.name, ttl: r.ttl ?? 1, data: r.address });
    const res = packet.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: packet.AUTHORITATIVE_ANSWER | (zone === undefined ? 3 : 0),
      questions: [question],
      answers,
    });
    socket.send(res, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  const port = socket.address().port;
  return Object.assign(state, { server: `127.0.0.1:${port}`, port });
}
