/** /healthz (the process answers), /readyz (model loaded, connected, consuming), /metrics (Prometheus). */
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.js';

export async function startHttp(port: number, probes: { ready: () => boolean; state: () => object }, metrics: Metrics): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') return send(res, 200, 'application/json', '{"status":"alive"}');
    if (path === '/readyz') {
      const ready = probes.ready();
      return send(res, ready ? 200 : 503, 'application/json', JSON.stringify({ ready, ...probes.state() }));
    }
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => send(res, 200, metrics.registry.contentType, text),
        (err: Error) => send(res, 500, 'text/plain', err.message),
      );
      return;
    }
    send(res, 404, 'text/plain', 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
  return server;
}

function send(res: import('node:http').ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type }).end(body);
}
