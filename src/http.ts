/**
 * /healthz (alive: it has not been unable to connect or progress for longer than
 * LIVENESS_TIMEOUT_MS), /readyz (model loaded, connected, consuming, not stalled), /metrics (Prometheus).
 */
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.js';
import type { ReloadResult } from './model-switch.js';

export interface Probes {
  ready(): boolean;
  /** Connected and making progress right now: what liveness watches over time. */
  well(): boolean;
  state(): object;
}

/**
 * Samples `well()` once a second and says how long it has been false. A probe read alone would only
 * see the moments it is asked.
 */
export class LivenessWatch {
  private unwellSince: number | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly well: () => boolean,
    private readonly timeoutMs: number,
    everyMs = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.timer = setInterval(() => this.sample(), everyMs).unref();
    this.sample();
  }

  sample(): void {
    if (this.well()) this.unwellSince = undefined;
    else this.unwellSince ??= this.now();
  }

  get unwellForMs(): number {
    return this.unwellSince === undefined ? 0 : this.now() - this.unwellSince;
  }

  get alive(): boolean {
    return this.unwellForMs <= this.timeoutMs;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * `reload`: POST /reload loads the model again (src/model-switch.ts). Nothing authenticates it but
 * who can reach the port: keep HTTP_PORT inside the pod's network (README, "Changing the model").
 */
export async function startHttp(
  port: number,
  probes: Probes,
  metrics: Metrics,
  livenessTimeoutMs: number,
  reload?: (trigger: string) => Promise<ReloadResult>,
): Promise<Server> {
  const liveness = new LivenessWatch(probes.well, livenessTimeoutMs);
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/healthz') {
      liveness.sample();
      const alive = liveness.alive;
      return send(
        res,
        alive ? 200 : 503,
        'application/json',
        JSON.stringify({ status: alive ? 'alive' : 'stuck', unwellForMs: liveness.unwellForMs, livenessTimeoutMs }),
      );
    }
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
    if (path === '/reload' && reload) {
      if (req.method !== 'POST')
        return void res.writeHead(405, { allow: 'POST', 'content-type': 'text/plain' }).end('POST only\n');
      // 200: the new model serves; 422: it could not, the old one serves on, and `reason` says why.
      void reload('POST /reload').then((r) => send(res, r.ok ? 200 : 422, 'application/json', JSON.stringify(r)));
      return;
    }
    send(res, 404, 'text/plain', 'not found\n');
  });
  server.on('close', () => liveness.stop());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
  return server;
}

function send(res: import('node:http').ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type }).end(body);
}
