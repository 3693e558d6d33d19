/**
 * Probes that tell the truth: /readyz is 503 while inputs are held and none has been settled for
 * READY_STALL_MS, and /healthz fails once that has lasted LIVENESS_TIMEOUT_MS; both recover when
 * inputs are settled again. Also: a run-only script gets one message per call, on every isolate.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TestClient, queuesOf, uniqueName } from '../support/broker.js';
import { startConsumer } from '../support/consumer-process.js';
import { freePort, get, scrape } from '../support/http.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-progress-'));
const SCRIPT = join(dir, 'sleepy.ts');
writeFileSync(
  SCRIPT,
  `
export function init(): void {}
export async function run(data: string) {
  const { sleepMs } = JSON.parse(data) as { sleepMs?: number };
  if (sleepMs) await new Promise((r) => setTimeout(r, sleepMs));
  return { pid: process.pid };
}
`,
);
after(() => rmSync(dir, { recursive: true, force: true }));

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not seen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('/readyz turns 503 while scoring makes no progress past READY_STALL_MS, /healthz after LIVENESS_TIMEOUT_MS; both come back once inputs are settled', {
  timeout: 90_000,
}, async () => {
  const client = await TestClient.connect();
  const input = uniqueName('stall');
  const replies = uniqueName('stall.replies');
  const port = await freePort();
  const consumer = startConsumer({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    ENTRY_SCRIPT: SCRIPT,
    CONCURRENCY: '1',
    HTTP_PORT: String(port),
    READY_STALL_MS: '1000',
    LIVENESS_TIMEOUT_MS: '2000',
    RUN_TIMEOUT_MS: '60000',
  });
  try {
    await consumer.waitFor('"msg":"consuming"');
    assert.equal((await get(port, '/readyz')).status, 200);
    await client.publish(input, { data: { sleepMs: 8000 } }, { correlationId: 'stuck' });
    await until('/readyz 503', async () => (await get(port, '/readyz')).status === 503, 10_000);
    const body = JSON.parse((await get(port, '/readyz')).text) as { held: number; stalled: boolean };
    assert.equal(body.held, 1);
    assert.equal(body.stalled, true);
    await until('/healthz 503', async () => (await get(port, '/healthz')).status === 503, 10_000);
    // The run returns, its input is settled: both probes say so.
    await client.collect(replies, (rs) => rs.length === 1, 20_000);
    await until('/readyz 200 again', async () => (await get(port, '/readyz')).status === 200, 10_000);
    assert.equal((await get(port, '/healthz')).status, 200);
  } finally {
    await consumer.stop('SIGKILL');
    await client.deleteQueues(...queuesOf(input, replies));
    await client.close();
  }
});

test('a script with run only gets one message per call, spread over every isolate', { timeout: 60_000 }, async () => {
  const client = await TestClient.connect();
  const input = uniqueName('run-only');
  const replies = uniqueName('run-only.replies');
  const port = await freePort();
  const consumer = startConsumer({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    ENTRY_SCRIPT: SCRIPT,
    CONCURRENCY: '2',
    MAX_BATCH_SIZE: '32',
    HTTP_PORT: String(port),
  });
  try {
    await consumer.waitFor('"msg":"consuming"');
    const got = await client.ask(
      input,
      replies,
      Array.from({ length: 40 }, (_, i) => ({ id: `r-${i}`, body: { data: { sleepMs: 50 } } })),
    );
    const pids = new Set([...got.values()].map((r) => (r.json() as { pid: number }).pid));
    assert.equal(pids.size, 2, 'both isolates scored');
    const m = await scrape(port);
    assert.equal(m.get('scorer_batch_size_count'), 40, 'forty calls');
    assert.equal(m.get('scorer_batch_size_bucket{le="1"}'), 40, 'of one message each');
  } finally {
    await consumer.stop('SIGKILL');
    await client.deleteQueues(...queuesOf(input, replies));
    await client.close();
  }
});
