/**
 * A TCP proxy on 127.0.0.1 between a consumer and a broker, for network faults the broker cannot make:
 * 'forward' (a plain link), 'blackhole' (bytes in either direction are swallowed, sockets stay open, as
 * a dead route looks), 'hang' (new connections are accepted and never answered: the handshake never
 * comes; existing ones go on), 'slow' (each direction limited to `bytesPerSecond`), and cut() (every
 * open connection reset now).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

export type ProxyMode = 'forward' | 'blackhole' | 'hang' | 'slow';

export interface TcpProxy {
  /** amqp://guest:guest@127.0.0.1:<port> when made from a broker URL. */
  url: string;
  port: number;
  mode: ProxyMode;
  /** For 'slow'. */
  bytesPerSecond: number;
  /** Connections accepted so far. */
  accepted: number;
  cut(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(
  target: { host: string; port: number },
  urlOf: (port: number) => string,
  mode: ProxyMode = 'forward',
): Promise<TcpProxy> {
  const open = new Set<Socket>();
  const proxy: TcpProxy = {
    url: '',
    port: 0,
    mode,
    bytesPerSecond: 100 * 1024,
    accepted: 0,
    cut() {
      for (const s of open) s.resetAndDestroy();
      open.clear();
    },
    async close() {
      proxy.cut();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const track = (s: Socket) => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => {});
  };
  /** Forwards from `from` to `to` under the proxy's mode at each chunk. */
  const pipe = (from: Socket, to: Socket) => {
    let chain = Promise.resolve();
    from.on('data', (chunk: Buffer) => {
      if (proxy.mode === 'blackhole') return;
      if (proxy.mode !== 'slow') {
        chain = chain.then(() => void to.write(chunk));
        return;
      }
      from.pause();
      chain = chain.then(async () => {
        // Slices of 1/20 s worth, each after its share of time.
        const slice = Math.max(1, Math.floor(proxy.bytesPerSecond / 20));
        for (let at = 0; at < chunk.length; at += slice) {
          if (to.destroyed) return;
          to.write(chunk.subarray(at, at + slice));
          await new Promise((r) => setTimeout(r, 50));
        }
        from.resume();
      });
    });
    from.on('close', () => to.destroy());
  };
  const server: Server = createServer((client) => {
    proxy.accepted++;
    track(client);
    if (proxy.mode === 'hang') return; // accepted, and never a byte back
    const upstream = connect(target.port, target.host);
    track(upstream);
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as { port: number }).port;
  proxy.url = urlOf(proxy.port);
  return proxy;
}

/** A proxy in front of the broker at `amqpUrl`; its url is the same URL with the proxy's port. */
export function proxyFor(amqpUrl: string, mode: ProxyMode = 'forward'): Promise<TcpProxy> {
  const u = new URL(amqpUrl);
  const target = { host: u.hostname === 'localhost' ? '127.0.0.1' : u.hostname, port: Number(u.port || 5672) };
  return startTcpProxy(
    target,
    (port) => {
      const v = new URL(amqpUrl);
      v.hostname = '127.0.0.1';
      v.port = String(port);
      return v.toString();
    },
    mode,
  );
}
