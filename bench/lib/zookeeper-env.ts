/**
 * A ZooKeeper server for benchmarks (Debian's `zookeeper`: java + /usr/share/java/zookeeper.jar)
 * on a free loopback port, data in a temp dir, killed with the benchmark's other children.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { createClient, type Client } from 'node-zookeeper-client';
import { freePort, tempDir, track, waitFor } from './etcd-env.js';

const JAR = '/usr/share/java/zookeeper.jar';

export function zookeeperAvailable(): boolean {
  try {
    accessSync(JAR, constants.R_OK);
    return true;
  } catch {
    return false;
  }
}

export interface BenchZooKeeper {
  /** `127.0.0.1:PORT` */
  readonly servers: string;
  readonly client: Client;
}

function srvr(port: number): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    const s = net.connect({ host: '127.0.0.1', port }, () => s.end('srvr'));
    s.setTimeout(1000, () => s.destroy());
    s.on('data', (d: Buffer) => (out += d.toString()));
    s.on('error', () => undefined);
    s.on('close', () => resolve(out));
  });
}

export async function startZooKeeper(): Promise<BenchZooKeeper> {
  const dir = tempDir('drover-bench-zk-');
  const port = await freePort();
  const cfg = path.join(dir, 'zoo.cfg');
  writeFileSync(cfg, `tickTime=500\ndataDir=${path.join(dir, 'data')}\nclientPort=${port}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n4lw.commands.whitelist=*\n`);
  track(spawn('java', ['-Xmx256m', '-cp', `${dir}:${JAR}:/usr/share/java/slf4j-nop.jar`, 'org.apache.zookeeper.server.ZooKeeperServerMain', cfg], { cwd: dir, stdio: 'ignore' }));
  await waitFor(async () => (await srvr(port)).includes('Mode:'), 'zookeeper serving', 30_000, 100);
  const servers = `127.0.0.1:${port}`;
  const client = createClient(servers, { sessionTimeout: 10_000 });
  await new Promise<void>((resolve) => {
    client.once('connected', () => resolve());
    client.connect();
  });
  return { servers, client };
}

/** Promise form of a node-zookeeper-client call. */
export function zkCall<T>(fn: (cb: (err: unknown, value: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err !== null && err !== undefined ? reject(err) : resolve(value))));
}
