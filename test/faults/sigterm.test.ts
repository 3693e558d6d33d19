import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WatchedRun, idsOf, numbered, report, restartUntilAnswered, stopMidStream } from '../support/faults.js';

let run: WatchedRun;

before(async () => {
  run = await WatchedRun.open('sigterm');
});

after(() => run.close());

test('SIGTERM mid-stream finishes what is in flight and exits 0; a restart answers the rest: nothing lost, nothing answered twice', {
  timeout: 60_000,
}, async (t) => {
  const N = 4000;
  const items = numbered('term', N);
  const ids = idsOf(items);

  const stopped = await stopMidStream(run, items, 0.25, 'SIGTERM');
  assert.equal(stopped.exit, 0, 'a graceful stop exits 0');
  assert.match(stopped.consumer.output(), /"msg":"stopped"/);
  await restartUntilAnswered(run, ids, 30_000);

  const { missing, duplicated, duplicatedIds } = run.watcher.tally(ids);
  report(
    t,
    `sigterm: N=${N}, answered before the stop=${stopped.answered}, lost=${missing.length}, duplicated=${duplicated}`,
  );
  assert.deepEqual(missing, [], 'no input without a reply');
  assert.equal(duplicated, 0, `no input answered twice (e.g. ${duplicatedIds.slice(0, 5).join(', ')})`);
});
