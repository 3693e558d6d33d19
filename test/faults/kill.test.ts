import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { queuesOf, uniqueName } from '../support/broker.js';
import { WatchedRun, idsOf, numbered, report, restartUntilAnswered, stopMidStream } from '../support/faults.js';

const PREFETCH = 512;
let run: WatchedRun;
const orphans: number[] = [];

before(async () => {
  run = await WatchedRun.open('kill', { env: { PREFETCH: String(PREFETCH) } });
});

after(async () => {
  await run.close();
  for (const pid of orphans) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

test('a consumer killed with SIGKILL mid-stream loses nothing: after a restart every input is answered, and only inputs redelivered by the kill are answered twice', {
  timeout: 90_000,
}, async (t) => {
  const N = 5000;
  const items = numbered('kill', N);
  const ids = idsOf(items);
  const { watcher } = run;

  // Mid-stream: a good share answered, most still to do.
  const killed = await stopMidStream(run, items, 0.3, 'SIGKILL');
  assert.equal(killed.exit, 'SIGKILL');
  const restartedAt = await restartUntilAnswered(run, ids, 60_000);

  const { missing, duplicated, duplicatedIds } = watcher.tally(ids);
  report(
    t,
    `kill: N=${N}, answered before the kill=${killed.answered}, lost=${missing.length}, duplicated=${duplicated} (prefetch ${PREFETCH})`,
  );
  assert.deepEqual(missing, [], 'no input without a reply');
  // A duplicate is an input answered before the kill whose ack died with the process: at most the unacked window.
  assert.ok(duplicated <= PREFETCH, `duplicates (${duplicated}) bounded by the prefetch window (${PREFETCH})`);
  for (const id of duplicatedIds) {
    const [a, b, ...more] = watcher.of(id);
    assert.equal(more.length, 0, `${id} answered at most twice`);
    assert.ok(b.at >= killed.signalledAt, `${id}: answered again only after the kill`);
    assert.ok(a.at < restartedAt, `${id}: its first answer came from the killed consumer`);
  }
});

test('a consumer killed with SIGKILL while a user script hangs in a synchronous loop leaves no script process behind', {
  timeout: 60_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'scorer-kill-'));
  const hangInput = uniqueName('kill.hang');
  const hangReplies = uniqueName('kill.hang.replies');
  try {
    writeFileSync(
      join(dir, 'score.ts'),
      `export function init() {}\nexport function run(data: string) {\n  while (true) {}\n}\n`,
    );
    const consumer = run.consumers.start({
      INPUT_QUEUE: hangInput,
      REPLY_QUEUE: hangReplies,
      ENTRY_SCRIPT: join(dir, 'score.ts'),
      RUN_TIMEOUT_MS: '60000',
    });
    await consumer.waitFor('"msg":"consuming"');
    const scripts = childrenOf(consumer.child.pid!);
    orphans.push(...scripts);
    assert.ok(scripts.length > 0, 'the user script runs in child processes');
    await run.client.publish(hangInput, { data: 1 }, { correlationId: 'spin' });
    await new Promise((r) => setTimeout(r, 500));

    consumer.child.kill('SIGKILL');
    await consumer.exited;
    const deadline = Date.now() + 5000;
    while (scripts.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(scripts.filter(alive), [], 'every script process ended with the consumer');
  } finally {
    await run.client.deleteQueues(...queuesOf(hangInput, hangReplies));
    rmSync(dir, { recursive: true, force: true });
  }
});

function childrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-P', String(pid)])
      .toString()
      .trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Running, not a zombie waiting for a parent that does not reap. */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
