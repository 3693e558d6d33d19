/** The consumer's HTTP side against a running consumer: health, readiness, and Prometheus metrics. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers, type ConsumerProcess } from '../support/consumer-process.js';
import { freePort, get, scrape, scrapeUntil } from '../support/http.js';

const consumers = new TestConsumers();
const { input, replies } = consumers.queuesFor('http');
let client: TestClient;
let port: number;
let withHttp: ConsumerProcess;

before(async () => {
  client = await TestClient.connect();
  port = await freePort();
  withHttp = consumers.startOn({ input, replies }, { HTTP_PORT: String(port) });
  await consumers.allConsuming();
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
});

const count = (m: Map<string, number>, sample: string) => m.get(sample) ?? 0;

/** The TCP ports process `pid` listens on: its socket inodes, looked up in /proc/net/tcp{,6} in state LISTEN (0A). */
function listeningPorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let link = '';
    try {
      link = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode) inodes.add(inode);
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[3] === '0A' && inodes.has(cols[9])) ports.push(Number.parseInt(cols[1].split(':')[1], 16));
    }
  }
  return ports;
}

test('HTTP_PORT=0 turns HTTP off: the consumer consumes and answers, and listens on no port', {
  timeout: 60_000,
}, async () => {
  // The consumer of this file, on its HTTP_PORT: the check sees a listener when there is one.
  assert.deepEqual(listeningPorts(withHttp.child.pid!), [port]);

  const q = consumers.queuesFor('http.off');
  const c = consumers.startOn(q, { HTTP_PORT: '0' });
  await c.waitFor('"msg":"consuming"');
  const got = await client.ask(q.input, q.replies, [{ id: 'http-off', body: { data: [[5.1, 3.5, 1.4, 0.2]] } }]);
  assert.equal(got.get('http-off')?.status, 'ok');
  assert.deepEqual(listeningPorts(c.child.pid!), [], 'no listening socket');
  assert.ok(!c.output().includes('http listening'), 'and no "http listening" line');
});

test('/healthz answers 200 while the consumer is connected and making progress', async () => {
  const res = await get(port, '/healthz');
  assert.equal(res.status, 200);
  const body = JSON.parse(res.text) as Record<string, unknown>;
  assert.equal(body.status, 'alive');
  assert.equal(body.unwellForMs, 0);
});

test('/readyz answers 200 once the model is loaded, both connections are up and the consumer is subscribed', async () => {
  const res = await get(port, '/readyz');
  assert.equal(res.status, 200);
  const body = JSON.parse(res.text) as Record<string, unknown>;
  assert.equal(body.ready, true);
  assert.equal(body.consumeConnected, true);
  assert.equal(body.publishConnected, true);
  assert.equal(body.consuming, true);
});

test('an unknown path answers 404', async () => {
  assert.equal((await get(port, '/nope')).status, 404);
  assert.equal((await get(port, '/')).status, 404);
});

test('/metrics counts ok and error replies by status, and fills the latency and batch-size histograms', async () => {
  const before = await scrape(port);
  const ok = `scorer_messages_total{status="ok"}`;
  const error = `scorer_messages_total{status="error"}`;
  const good = Array.from({ length: 5 }, (_, i) => ({
    body: { data: [[5.1, 3.5, 1.4, 0.2]] },
    options: { correlationId: `good-${i}` },
  }));
  const bad = Array.from({ length: 3 }, (_, i) => ({
    body: { data: [[1, 2, 3]] },
    options: { correlationId: `bad-${i}` },
  }));
  await client.publishMany(input, [...good, ...bad]);
  const got = await client.collect(replies, (rs) => rs.length === 8);
  assert.equal(got.length, 8);

  // The counters move once each reply is confirmed, a moment after the reply itself can be read.
  const after = await scrapeUntil(
    port,
    (m) =>
      count(m, ok) - count(before, ok) >= 5 &&
      count(m, error) - count(before, error) >= 3 &&
      m.get('scorer_in_flight') === 0,
  );
  assert.equal(count(after, ok) - count(before, ok), 5);
  assert.equal(count(after, error) - count(before, error), 3);
  assert.equal(count(after, 'scorer_end_to_end_seconds_count') - count(before, 'scorer_end_to_end_seconds_count'), 8);
  assert.ok(count(after, 'scorer_end_to_end_seconds_bucket{le="+Inf"}') >= 8);
  assert.ok(count(after, 'scorer_scoring_seconds_count') > count(before, 'scorer_scoring_seconds_count'));
  assert.ok(count(after, 'scorer_scoring_seconds_sum') > 0);
  const batched = count(after, 'scorer_batch_size_sum') - count(before, 'scorer_batch_size_sum');
  assert.equal(batched, 8, 'every input was in exactly one scored batch');
  assert.equal(after.get('scorer_in_flight'), 0);
});

test('a reply the broker returns (its replyTo queue is gone) counts in scorer_returned_replies_total', async () => {
  const before = await scrape(port);
  const gone = uniqueName('http.gone');
  await client.publishMany(
    input,
    Array.from({ length: 3 }, (_, i) => ({
      body: { data: [[5.1, 3.5, 1.4, 0.2]] },
      options: { correlationId: `gone-${i}`, replyTo: gone },
    })),
  );
  const name = 'scorer_returned_replies_total';
  const after = await scrapeUntil(
    port,
    (m) => count(m, name) - count(before, name) >= 3 && m.get('scorer_in_flight') === 0,
  );
  assert.equal(count(after, name) - count(before, name), 3);
});

test('/metrics carries the reconnect, dead-letter and returned-reply counters, and the process metrics', async () => {
  const res = await get(port, '/metrics');
  assert.equal(res.status, 200);
  assert.match(res.contentType, /^text\/plain/);
  for (const name of [
    'scorer_reconnects_total',
    'scorer_dead_lettered_total',
    'scorer_returned_replies_total',
    'scorer_in_flight',
  ]) {
    assert.match(res.text, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), name);
  }
  for (const name of ['scorer_scoring_seconds', 'scorer_end_to_end_seconds', 'scorer_batch_size']) {
    assert.match(res.text, new RegExp(`^# TYPE ${name} histogram$`, 'm'), name);
  }
  const m = await scrape(port);
  assert.equal(m.get('scorer_dead_lettered_total'), 0);
  assert.ok((m.get('process_resident_memory_bytes') ?? 0) > 0, 'process_resident_memory_bytes');
  assert.ok(m.has('process_cpu_user_seconds_total'), 'process_cpu_user_seconds_total');
  assert.ok(m.has('nodejs_eventloop_lag_seconds'), 'nodejs_eventloop_lag_seconds');
  assert.ok(
    [...m.keys()].some((k) => k.startsWith('nodejs_heap_size_used_bytes')),
    'nodejs_heap_size_used_bytes',
  );
});
