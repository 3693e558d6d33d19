/**
 * Network faults through a TCP proxy on 127.0.0.1 (test/support/tcp-proxy.ts): a broker that accepts
 * and never answers, a blackholed link, a slow link. After each, every input is answered and the
 * consumer takes new work; during it, /readyz says what is true.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AMQP_URL } from '../support/broker.js';
import { WatchedRun, numbered, idsOf, publishStream, report, rssMiB } from '../support/faults.js';
import { freePort, get, scrapeUntil } from '../support/http.js';
import { proxyFor, type TcpProxy } from '../support/tcp-proxy.js';

let proxy: TcpProxy;
let run: WatchedRun;

before(async () => {
  proxy = await proxyFor(AMQP_URL, 'forward');
});

after(async () => {
  await run?.close();
  await proxy?.close();
});

async function readyz(port: number): Promise<number> {
  return (await get(port, '/readyz').catch(() => ({ status: 0 }))).status;
}

/** Polls /readyz every 100 ms until stop(); how many of the answers were 503. */
function watchReady(port: number): { stop(): Promise<{ polls: number; notReady: number }> } {
  let polls = 0;
  let notReady = 0;
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      const s = await readyz(port);
      polls++;
      if (s !== 200) notReady++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    async stop() {
      stopping = true;
      await loop;
      return { polls, notReady };
    },
  };
}

test('a broker that accepts and never answers the handshake: the attempt is abandoned at CONNECT_TIMEOUT_MS and the next one connects', {
  timeout: 90_000,
}, async (t) => {
  run = await WatchedRun.open('hang-connect', {
    env: {
      AMQP_URL: proxy.url,
      CONNECT_TIMEOUT_MS: '1000',
      CONNECT_RETRIES_AT_BOOT: '50',
      RECONNECT_INITIAL_DELAY_MS: '100',
      RECONNECT_MAX_DELAY_MS: '500',
    },
  });
  proxy.mode = 'hang';
  const consumer = run.start();
  await consumer.waitFor('"msg":"entry script ready"');
  while (proxy.accepted === 0) await new Promise((r) => setTimeout(r, 20));
  const started = Date.now();
  await new Promise((r) => setTimeout(r, 3000));
  assert.ok(
    proxy.accepted >= 2,
    `attempts abandoned and tried again while the broker hung (${proxy.accepted} accepted)`,
  );
  proxy.mode = 'forward';
  await consumer.waitFor('"msg":"consuming"', 30_000);
  const recoveredMs = Date.now() - started - 3000;
  const items = numbered('hang-connect', 200);
  await run.client.publishMany(run.input, items);
  assert.ok(await run.watcher.waitAll(idsOf(items), 30_000), 'every input answered');
  const { missing, duplicated } = run.watcher.tally(idsOf(items));
  report(
    t,
    `hang at connect: N=200 lost=${missing.length} duplicated=${duplicated} recovered=${recoveredMs} ms RSS=${Math.round(rssMiB(consumer.child.pid!) ?? 0)} MiB`,
  );
  assert.equal(missing.length, 0);
  await run.close();
  run = undefined as unknown as WatchedRun;
});

test('a connection cut, then reconnects into a broker that hangs: each attempt is abandoned, and the consumer comes back when the broker answers', {
  timeout: 120_000,
}, async (t) => {
  const httpPort = await freePort();
  run = await WatchedRun.open('hang-reconnect', {
    env: {
      AMQP_URL: proxy.url,
      HTTP_PORT: String(httpPort),
      CONNECT_TIMEOUT_MS: '1000',
      RECONNECT_INITIAL_DELAY_MS: '100',
      RECONNECT_MAX_DELAY_MS: '500',
    },
  });
  const consumer = run.start();
  await consumer.waitFor('"msg":"consuming"');
  const stream = publishStream(run.client, run.input, 'hang-reconnect', 200);
  await new Promise((r) => setTimeout(r, 1000));
  const ready = watchReady(httpPort);
  const before = proxy.accepted;
  proxy.mode = 'hang';
  proxy.cut();
  const cutAt = Date.now();
  await new Promise((r) => setTimeout(r, 4000));
  assert.ok(proxy.accepted - before >= 3, `reconnect attempts abandoned and tried again (${proxy.accepted - before})`);
  proxy.mode = 'forward';
  await stream.stop();
  assert.ok(
    await run.watcher.waitAll(stream.ids, 60_000),
    `every input answered (${run.watcher.answered(stream.ids)} of ${stream.ids.length})`,
  );
  const recoveredMs = Date.now() - cutAt - 4000;
  const { notReady, polls } = await ready.stop();
  assert.ok(notReady > 0, `/readyz said 503 while the broker hung (${notReady} of ${polls} polls)`);
  assert.equal(await readyz(httpPort), 200, 'ready again');
  const { missing, duplicated } = run.watcher.tally(stream.ids);
  report(
    t,
    `hang at reconnect: N=${stream.ids.length} lost=${missing.length} duplicated=${duplicated} recovered≤${recoveredMs} ms RSS=${Math.round(rssMiB(consumer.child.pid!) ?? 0)} MiB`,
  );
  await run.close();
  run = undefined as unknown as WatchedRun;
});

test('a blackholed link longer than CONFIRM_TIMEOUT_MS: every reply still settled, every input answered after, and new work taken', {
  timeout: 120_000,
}, async (t) => {
  const httpPort = await freePort();
  run = await WatchedRun.open('blackhole', {
    env: {
      AMQP_URL: proxy.url,
      HTTP_PORT: String(httpPort),
      CONFIRM_TIMEOUT_MS: '1000',
      AMQP_HEARTBEAT_S: '3',
      READY_STALL_MS: '2000',
      CONNECT_TIMEOUT_MS: '2000',
      RECONNECT_INITIAL_DELAY_MS: '100',
      RECONNECT_MAX_DELAY_MS: '1000',
    },
  });
  const consumer = run.start();
  await consumer.waitFor('"msg":"consuming"');
  const stream = publishStream(run.client, run.input, 'blackhole', 200);
  await new Promise((r) => setTimeout(r, 1000));
  const ready = watchReady(httpPort);
  proxy.mode = 'blackhole';
  const holeAt = Date.now();
  await new Promise((r) => setTimeout(r, 10_000));
  proxy.mode = 'forward';
  // The blackholed sockets are dead to both ends now: the heartbeats have closed them, or will.
  proxy.cut();
  await new Promise((r) => setTimeout(r, 1000));
  await stream.stop();
  assert.ok(
    await run.watcher.waitAll(stream.ids, 60_000),
    `every input answered (${run.watcher.answered(stream.ids)} of ${stream.ids.length})`,
  );
  const recoveredMs = Date.now() - holeAt - 10_000;
  const { notReady, polls } = await ready.stop();
  assert.ok(notReady > 0, `/readyz said 503 during the blackhole (${notReady} of ${polls} polls)`);
  // New work after the fault: taken and answered, nothing left in flight.
  const more = numbered('blackhole-after', 100);
  await run.client.publishMany(run.input, more);
  assert.ok(await run.watcher.waitAll(idsOf(more), 30_000), 'new work answered after the fault');
  assert.equal(await readyz(httpPort), 200, 'ready again');
  const { missing, duplicated } = run.watcher.tally(stream.ids);
  report(
    t,
    `blackhole 10 s: N=${stream.ids.length} lost=${missing.length} duplicated=${duplicated} recovered≤${recoveredMs} ms RSS=${Math.round(rssMiB(consumer.child.pid!) ?? 0)} MiB`,
  );
  await run.close();
  run = undefined as unknown as WatchedRun;
});

test('a slow link (10 KB/s) with CONFIRM_TIMEOUT_MS 1000: late confirms are waited for, never leaked nor published twice, and every input answered', {
  timeout: 240_000,
}, async (t) => {
  const httpPort = await freePort();
  run = await WatchedRun.open('slow', {
    env: {
      AMQP_URL: proxy.url,
      HTTP_PORT: String(httpPort),
      CONFIRM_TIMEOUT_MS: '1000',
      RECONNECT_INITIAL_DELAY_MS: '200',
      RECONNECT_MAX_DELAY_MS: '2000',
    },
  });
  const consumer = run.start();
  await consumer.waitFor('"msg":"consuming"');
  proxy.bytesPerSecond = 10 * 1024;
  proxy.mode = 'slow';
  // A few hundred replies of ~300 bytes take longer than the confirm deadline to cross the link.
  const items = numbered('slow', 300);
  await run.client.publishMany(run.input, items);
  const started = Date.now();
  const answered = await run.watcher.waitAll(idsOf(items), 180_000);
  proxy.mode = 'forward';
  assert.ok(
    answered,
    `every input answered over the slow link (${run.watcher.answered(idsOf(items))} of ${items.length})`,
  );
  const m = await scrapeUntil(httpPort, (s) => s.get('scorer_in_flight') === 0, 60_000);
  assert.equal(m.get('scorer_in_flight'), 0, 'every input settled: none leaked in flight');
  assert.ok((m.get('scorer_reply_retries_total{reason="late"}') ?? 0) > 0, 'some confirms were late, and waited for');
  const { missing, duplicated } = run.watcher.tally(idsOf(items));
  report(
    t,
    `slow link 10 KB/s: N=${items.length} lost=${missing.length} duplicated=${duplicated} drained in ${Date.now() - started} ms RSS=${Math.round(rssMiB(consumer.child.pid!) ?? 0)} MiB`,
  );
});
