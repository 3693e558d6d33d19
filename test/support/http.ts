/** A consumer's HTTP side, for tests: a free port to give it, and its /metrics read as numbers. */
import { createServer } from 'node:net';

/** A port nothing listens on right now (the OS picks it; the consumer binds it a moment later). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function get(port: number, path: string): Promise<{ status: number; contentType: string; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
}

/** Prometheus text → sample name with labels (as printed, e.g. `scorer_messages_total{status="ok"}`) → value. */
export function parseMetrics(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

export async function scrape(port: number): Promise<Map<string, number>> {
  return parseMetrics((await get(port, '/metrics')).text);
}

/** Scrapes until `done(samples)` holds; the last scrape either way. */
export async function scrapeUntil(
  port: number,
  done: (m: Map<string, number>) => boolean,
  timeoutMs = 10_000,
): Promise<Map<string, number>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = await scrape(port);
    if (done(m) || Date.now() > deadline) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
}
