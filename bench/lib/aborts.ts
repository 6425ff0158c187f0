/**
 * Clients that leave mid-request, as a mass of impatient users does: each connects to `port`,
 * sends one GET and destroys its socket as soon as the backend has the request (the backend
 * tells by calling `arrived` with the request's path). Shared by `bench/memory.ts` (drover's RSS
 * over 10 000 of them) and the robustness test that checks nothing leaks (descriptors, in-flight
 * slots).
 */
import net from 'node:net';

/** A source of aborting clients through one proxy port. */
export interface AbortingClients {
  /** The backend's hook: the request for `path` has arrived (its client leaves now). */
  arrived(path: string | undefined): void;
  /** Runs `count` aborting clients, `concurrency` at a time; resolves when every socket closed. */
  run(count: number, concurrency?: number): Promise<void>;
}

export function abortingClients(port: number): AbortingClients {
  const waiting = new Map<string, () => void>();
  let n = 0;
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const path = `/r${n++}`;
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('close', () => resolve());
      waiting.set(path, () => {
        waiting.delete(path);
        s.destroy(); // the backend has the request: the client leaves mid-request
      });
      s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
    });
  return {
    arrived: (path) => waiting.get(path ?? '')?.(),
    run: async (count, concurrency = 100) => {
      let left = count;
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (left > 0) {
            left--;
            await one();
          }
        }),
      );
    },
  };
}
