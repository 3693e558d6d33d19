/**
 * Issue 17 through the real broker and a real consumer process: deadlines (EXPIRED, not scored, its
 * neighbours scored; DEADLINE_MS for inputs that carry none), x-queue-wait-ms from the timestamp, and
 * the consumer's own ordering by AMQP priority while its isolate is busy.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { consumersOfFile } from '../support/consumer-process.js';
import { freePort, scrape, scrapeUntil } from '../support/http.js';

const IRIS = { data: [[5.1, 3.5, 1.4, 0.2]] };
const nowS = () => Math.floor(Date.now() / 1000);

const file = consumersOfFile();
const { consumers } = file;
const dir = mkdtempSync(join(tmpdir(), 'scorer-pipeline-'));

after(async () => {
  rmSync(dir, { recursive: true, force: true });
});

test('an input past its deadline is answered EXPIRED without being scored; its neighbours and one within its deadline are scored', async () => {
  const q = consumers.queuesFor('pipeline.deadline');
  const port = await freePort();
  const c = consumers.startOn(q, { HTTP_PORT: String(port), MAX_BATCH_DELAY_MS: '200', BATCH_DELAY_MIN_LOAD: '0' });
  await c.waitFor('"msg":"consuming"');
  const past = new Date(Date.now() - 60_000).toISOString();
  const future = new Date(Date.now() + 3_600_000).toISOString();
  const items = [
    { id: 'before', body: IRIS },
    {
      id: 'x-deadline past',
      body: IRIS,
      options: { correlationId: 'x-deadline past', headers: { 'x-deadline': past } },
    },
    {
      id: 'x-deadline future',
      body: IRIS,
      options: { correlationId: 'x-deadline future', headers: { 'x-deadline': future } },
    },
    {
      id: 'x-deadline-ms past',
      body: IRIS,
      options: { correlationId: 'x-deadline-ms past', timestamp: nowS() - 120, headers: { 'x-deadline-ms': 60_000 } },
    },
    {
      id: 'x-deadline-ms within',
      body: IRIS,
      options: { correlationId: 'x-deadline-ms within', timestamp: nowS(), headers: { 'x-deadline-ms': 3_600_000 } },
    },
    {
      id: 'expiration within',
      body: IRIS,
      options: { correlationId: 'expiration within', timestamp: nowS(), expiration: '3600000' },
    },
    { id: 'bad', body: IRIS, options: { correlationId: 'bad', headers: { 'x-deadline': 'tomorrow' } } },
    { id: 'after', body: IRIS },
  ];
  const got = await file.client.ask(q.input, q.replies, items);
  const expired = ['x-deadline past', 'x-deadline-ms past'];
  for (const id of expired) {
    const r = got.get(id)!;
    assert.equal(r.status, 'error', id);
    assert.equal(r.headers['x-error-code'], 'EXPIRED', id);
    assert.match(r.json() as string, /expired at .* not scored/, id);
  }
  assert.equal(got.get('bad')!.headers['x-error-code'], 'BAD_DEADLINE');
  assert.match(got.get('bad')!.json() as string, /x-deadline "tomorrow" is not a time/);
  const scored = ['before', 'x-deadline future', 'x-deadline-ms within', 'expiration within', 'after'];
  for (const id of scored) {
    assert.equal(got.get(id)!.status, 'ok', `${id} scored: ${got.get(id)!.body}`);
    assert.deepEqual((got.get(id)!.json() as { label: number[] }).label, [0]);
  }
  const m = await scrapeUntil(port, (x) => (x.get('scorer_expired_total') ?? 0) >= 2);
  assert.equal(m.get('scorer_expired_total'), 2, 'counted');
  assert.equal(
    m.get('scorer_batch_size_sum'),
    scored.length,
    'only the inputs within their deadline reached the model',
  );
  assert.equal(
    (got.get('x-deadline-ms past')!.headers['x-queue-wait-ms'] as number) >= 119_000,
    true,
    'x-queue-wait-ms counts from the timestamp',
  );
  assert.equal(got.get('before')!.headers['x-queue-wait-ms'], undefined, 'no timestamp, no x-queue-wait-ms');
  assert.equal(typeof got.get('x-deadline-ms within')!.headers['x-queue-wait-ms'], 'number');
  assert.equal(typeof got.get('x-deadline-ms within')!.headers['x-scoring-ms'], 'number');
});

test('DEADLINE_MS applies to inputs without a deadline of their own, counted from their timestamp', async () => {
  const q = consumers.queuesFor('pipeline.default-deadline');
  const port = await freePort();
  const c = consumers.startOn(q, { HTTP_PORT: String(port), DEADLINE_MS: '60000' });
  await c.waitFor('"msg":"consuming"');
  const got = await file.client.ask(q.input, q.replies, [
    { id: 'old', body: IRIS, options: { correlationId: 'old', timestamp: nowS() - 120 } },
    { id: 'fresh', body: IRIS, options: { correlationId: 'fresh', timestamp: nowS() } },
    {
      id: 'old with its own',
      body: IRIS,
      options: { correlationId: 'old with its own', timestamp: nowS() - 120, headers: { 'x-deadline-ms': 3_600_000 } },
    },
  ]);
  assert.equal(got.get('old')!.headers['x-error-code'], 'EXPIRED');
  assert.match(got.get('old')!.json() as string, /\(DEADLINE_MS\)/);
  assert.equal(got.get('fresh')!.status, 'ok');
  assert.equal(
    got.get('old with its own')!.status,
    'ok',
    'an input with a deadline of its own is not given DEADLINE_MS',
  );
  assert.equal((await scrape(port)).get('scorer_expired_total'), 1);
});

test("with the consumer's isolate busy, a high-priority input published after low ones is scored before them", async () => {
  const release = join(dir, 'release');
  const script = join(dir, 'slow.ts');
  // The first input holds the only isolate until the test says so; each run notes its place in the order.
  writeFileSync(
    script,
    `
import { existsSync } from 'node:fs';
let order = 0;
export function init(): void {}
export function run(data: string) {
  const { id } = JSON.parse(data) as { id: string };
  if (id === 'blocker') {
    const until = Date.now() + 60_000;
    while (!existsSync(${JSON.stringify(release)}) && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
  return { id, order: order++ };
}
`,
  );
  const q = consumers.queuesFor('pipeline.priority');
  const port = await freePort();
  // A quorum input queue (3.10.8 orders none by priority): whatever order is seen is the consumer's.
  const c = consumers.startOn(q, {
    HTTP_PORT: String(port),
    ENTRY_SCRIPT: script,
    CONCURRENCY: '1',
    MAX_PRIORITY: '9',
    QUEUE_TYPE: 'quorum',
  });
  await c.waitFor('"msg":"consuming"');
  await file.client.publish(q.input, { data: { id: 'blocker' } }, { correlationId: 'blocker' });
  const lows = ['low-1', 'low-2', 'low-3', 'low-4'];
  await file.client.publishMany(q.input, [
    ...lows.map((id) => ({ body: { data: { id } }, options: { correlationId: id, priority: 1 } })),
    { body: { data: { id: 'none' } }, options: { correlationId: 'none' } },
    { body: { data: { id: 'high' } }, options: { correlationId: 'high', priority: 9 } },
  ]);
  // Every input held by the consumer (one in the isolate, six waiting) before the isolate is freed.
  await scrapeUntil(port, (m) => m.get('scorer_in_flight') === 7, 20_000);
  assert.equal(existsSync(release), false);
  writeFileSync(release, '');
  const got = await file.client.collect(q.replies, (rs) => rs.length === 7, 60_000);
  for (const r of got) assert.equal(r.status, 'ok', r.body);
  const order = new Map(got.map((r) => [r.correlationId!, (r.json() as { order: number }).order]));
  assert.equal(order.get('blocker'), 0);
  assert.equal(order.get('high'), 1, `high scored first after the blocker: ${JSON.stringify([...order])}`);
  for (const id of lows)
    assert.ok(order.get(id)! < order.get('none')!, `${id} (priority 1) before the one without a priority`);
  assert.deepEqual(
    lows.map((id) => order.get(id)),
    [2, 3, 4, 5],
    'first come, first served within a level',
  );
});
