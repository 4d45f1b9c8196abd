import { createServer, Socket } from 'node:net';

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ''}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * A socket for node-pg's `stream` option that connects from a chosen loopback source address
 * (127.0.0.2, ...), so that HBA rules can be tested on one machine; libpq has no such option.
 */
export function boundSocket(localAddress: string): () => Socket {
  return () => {
    const s = new Socket();
    const connect = s.connect.bind(s) as (o: { port: number; host: string; localAddress: string }) => Socket;
    (s as unknown as { connect: (port: number, host: string) => Socket }).connect = (port, host) => connect({ port, host, localAddress });
    return s;
  };
}
