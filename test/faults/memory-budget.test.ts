/**
 * A backlog of large messages with MAX_IN_FLIGHT_BYTES: past the budget no new deliveries are taken
 * (the consumer is cancelled, nothing dropped or requeued) until bodies are settled, so what is held
 * stays near the budget whatever PREFETCH says, and memory comes back after the drain.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { WatchedRun, idsOf, numbered, report, sampleRss } from '../support/faults.js';
import { freePort, scrape } from '../support/http.js';

const MiB = 1024 * 1024;
let run: WatchedRun | undefined;
after(() => run?.close());

test('a backlog of 2 MiB messages is drained holding no more than the byte budget (plus what was already on its way), every input answered once', {
  timeout: 180_000,
}, async (t) => {
  const BUDGET = 32 * MiB;
  const N = Number(process.env.BUDGET_N ?? 150);
  const httpPort = await freePort();
  run = await WatchedRun.open('budget', {
    env: {
      HTTP_PORT: String(httpPort),
      MAX_IN_FLIGHT_BYTES: String(BUDGET),
      MAX_MESSAGE_BYTES: String(8 * MiB),
      PREFETCH: '1024',
    },
  });
  const pad = 'x'.repeat(2 * MiB);
  const items = numbered('budget', N, () => ({ data: [[5.1, 3.5, 1.4, 0.2]], pad }));
  // The backlog first, then the consumer: PREFETCH alone would take all of it at once. A first consumer declares the queues.
  const declarer = run.start();
  await declarer.waitFor('"msg":"consuming"');
  assert.equal(await declarer.stop('SIGTERM'), 0);
  await run.client.publishMany(run.input, items);
  const consumer = run.start();
  await consumer.waitFor('"msg":"http listening"');
  const rss = sampleRss(consumer.child.pid!);
  let peakHeld = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const m = await scrape(httpPort).catch(() => undefined);
      peakHeld = Math.max(peakHeld, m?.get('scorer_in_flight_bytes') ?? 0);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const all = await run.watcher.waitAll(idsOf(items), 150_000);
  assert.ok(
    all,
    `every input answered (${run.watcher.answered(idsOf(items))} of ${N}); consumer said:\n${consumer.output().slice(-3000)}`,
  );
  await run.watcher.quiet(500);
  sampling = false;
  await sampler;
  // A few seconds idle for the heap to shrink.
  await new Promise((r) => setTimeout(r, 3000));
  const { startMiB, peakMiB, endMiB } = await rss.stop();
  const { missing, duplicated } = run.watcher.tally(idsOf(items));
  report(
    t,
    `large backlog: N=${N} x 2 MiB, budget ${BUDGET / MiB} MiB: lost=${missing.length} duplicated=${duplicated} peak held ${(peakHeld / MiB).toFixed(1)} MiB, RSS start ${Math.round(startMiB)} peak ${Math.round(peakMiB)} end ${Math.round(endMiB)} MiB`,
  );
  assert.deepEqual(missing, []);
  assert.equal(duplicated, 0);
  // Deliveries already sent when the cancel reached the broker still arrive: allow the budget again for them, far below the 300 MiB backlog.
  assert.ok(peakHeld <= 2 * BUDGET + 2 * MiB, `held at most ${(peakHeld / MiB).toFixed(1)} MiB`);
  assert.ok(peakHeld > 0, 'the gauge was read while draining');
  const prefetches = consumer
    .output()
    .split('\n')
    .filter((l) => l.includes('"msg":"consuming"') || l.includes('"msg":"prefetch changed"'))
    .map((l) => (JSON.parse(l) as { prefetch: number }).prefetch);
  if (process.env.BUDGET_DEBUG)
    console.log(
      prefetches,
      consumer
        .output()
        .split('\n')
        .filter((l) => /budget|consum/.test(l))
        .slice(0, 20)
        .join('\n'),
    );
  assert.ok(prefetches[0] < 1024, `the first consumer took only what fits the budget (prefetch ${prefetches[0]})`);
});
