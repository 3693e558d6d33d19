/**
 * The broker application restarted under a running consumer, on a RabbitMQ node of this test's own
 * (the shared broker others test against stays untouched).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient, uniqueName } from '../support/broker.js';
import { startConsumer, type ConsumerProcess } from '../support/consumer-process.js';
import { idsOf, logLines, numbered, report } from '../support/faults.js';
import { freeTcpPort, startPrivateBroker, type PrivateBroker } from '../support/private-broker.js';
import { RestartProofWatcher } from '../support/restart-proof-watcher.js';

const input = uniqueName('restart');
const replies = uniqueName('restart.replies');
let broker: PrivateBroker;
let consumer: ConsumerProcess | undefined;
let watcher: RestartProofWatcher | undefined;

before(async () => {
  broker = await startPrivateBroker();
});

after(async () => {
  await consumer?.stop('SIGKILL');
  await watcher?.stop();
  // The node and its queues go with it.
  await broker.stop();
});

/** /readyz every 50 ms: the status codes in order, each with when it was first seen (0: no answer, with why). */
function pollReadyz(port: number): { stop(): Array<{ status: number; at: number; error?: string }> } {
  const seen: Array<{ status: number; at: number; error?: string }> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      let error: string | undefined;
      const status = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.status,
        (err: Error) => {
          error = `${err.message}${err.cause ? ` (${String((err.cause as Error).message ?? err.cause)})` : ''}`;
          return 0;
        },
      );
      if (seen.at(-1)?.status !== status) seen.push({ status, at: Date.now(), error });
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    stop() {
      running = false;
      void loop;
      return seen;
    },
  };
}

test('a broker restart (stop_app, start_app) mid-run loses nothing: the consumer reconnects, declares its queues again and answers every input; /readyz is 503 while it is down', {
  timeout: 180_000,
}, async (t) => {
  const N = 20_000;
  const items = numbered('restart', N);
  const ids = idsOf(items);
  const httpPort = await freeTcpPort();

  const client = await TestClient.connect(broker.url);
  // Classic, as the consumer declares REPLY_QUEUE: it confirms a persistent reply once on disk, so a stop finds tens of
  // confirms owed, replies in doubt whose input comes back (a quorum reply queue owes fewer, often none).
  watcher = await RestartProofWatcher.start(broker.url, replies, 'classic');
  consumer = startConsumer({
    AMQP_URL: broker.url,
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    HTTP_PORT: String(httpPort),
    CONNECTION_NAME: uniqueName('restart.conn'),
    // One input at a time, each scored on its own: a run of 10 s or more however idle
    // the machine, so the restart (a rabbitmqctl call of one or two seconds) lands mid-run. With the default
    // batching an idle machine answers 20k inputs before stop_app has taken effect.
    MAX_BATCH_SIZE: '1',
    CONCURRENCY: '1',
  });
  await consumer.waitFor('"msg":"consuming"');
  const readyz = pollReadyz(httpPort);
  // The whole run waits in the queue before the restart: publishing is not what is being tested.
  await client.publishMany(input, items);
  // The dead-letter queue is one the consumer declares and this run never uses: gone before the restart, it
  // exists afterwards only if the consumer declared its queues again when it reconnected.
  await client.deleteQueues(`${input}.dead`);
  await client.close();

  // Restart while the consumer is busy: after the first replies, well before the last.
  assert.ok(await watcher.waitUntil(() => watcher!.arrivals.length >= 100, 30_000), 'the run is under way');
  const stopAt = Date.now();
  const answeredAtStopApp = watcher.answered(ids);
  await broker.stopApp();
  const stoppedAt = Date.now();
  const answeredWhenStopped = watcher.answered(ids);
  // Down long enough for the consumer's reconnect attempts to fail a few times.
  await new Promise((r) => setTimeout(r, 1500));
  const startAppAt = Date.now();
  await broker.startApp();
  const startedAt = Date.now();

  const all = await watcher.waitAll(ids, 60_000);
  await watcher.quiet(1000);
  // A last look at /readyz once the consumer has caught up.
  await new Promise((r) => setTimeout(r, 200));
  const statuses = readyz.stop();

  const { missing, duplicated, duplicatedIds } = watcher.tally(ids);
  const out = consumer.output();
  // A copy is the same reply again (one messageId for all of an input's replies: the consumer sent again a
  // reply in doubt, or a receiver that dedups by messageId keeps one); a second reply has a messageId of its own.
  const secondReplies = duplicatedIds.filter((id) => new Set(watcher!.of(id).map((a) => a.messageId)).size > 1);
  const copies = duplicatedIds.length - secondReplies.length;
  const sentAgain = logLines(out, 'redelivered input in doubt: its reply sent again, same messageId').reduce(
    (n, l) => n + (l.correlationIds as string[]).length,
    0,
  );
  const metrics = await fetch(`http://127.0.0.1:${httpPort}/metrics`).then((r) => r.text());
  const resentMetric = Number(/^scorer_resent_in_doubt_total (\d+)$/m.exec(metrics)?.[1]);
  const consuming = logLines(out, 'consuming');
  // Replies read after start_app may have been published before the stop (the watcher reconnects too):
  // a new one is one that arrived after the consumer subscribed again.
  const subscribedAgainAt = consuming.find((l) => l.time > startAppAt)?.time;
  const firstNewReply =
    subscribedAgainAt === undefined ? undefined : watcher.arrivals.find((a) => a.at >= subscribedAgainAt)?.at;
  const disconnects = logLines(out, 'broker disconnected');
  const notReady = statuses.find((s) => s.status === 503 && s.at >= stopAt);
  const readyAgain = statuses.find((s) => s.status === 200 && notReady && s.at > notReady.at);

  report(
    t,
    `broker restart: N=${N}, answered when stop_app was called ${answeredAtStopApp} and when it returned ${answeredWhenStopped}, lost=${missing.length}, duplicated=${duplicated} ` +
      `(inputs with the same reply twice, one messageId: ${copies}; with a second, different reply: ${secondReplies.length}), ` +
      `replies in doubt sent again=${sentAgain} (scorer_resent_in_doubt_total ${resentMetric}), ` +
      `stop_app took ${stoppedAt - stopAt} ms, start_app (+await_startup) took ${startedAt - startAppAt} ms, ` +
      `consuming again ${subscribedAgainAt === undefined ? 'never' : `${subscribedAgainAt - startAppAt} ms after start_app was called (${subscribedAgainAt - startedAt} ms after it returned)`}, ` +
      `first new reply ${firstNewReply === undefined ? 'never' : `${firstNewReply - startAppAt} ms after start_app was called`}, ` +
      `consumer log: ${[
        ...logLines(out, 'broker disconnected'),
        ...logLines(out, 'broker connect failed'),
        ...logLines(out, 'broker connected'),
        ...consuming,
      ]
        .filter((l) => l.time >= stopAt)
        .sort((a, b) => a.time - b.time)
        .map(
          (l) =>
            `${String(l.msg)}${l.role ? `(${String(l.role)}${l.msg === 'broker connect failed' ? `: ${String(l.err).slice(0, 80)}` : ''})` : ''}@${l.time - stopAt}ms`,
        )
        .join(', ')}, ` +
      `/readyz: ${statuses.map((s) => `${s.status}${s.error ? `[${s.error}]` : ''}@${s.at - stopAt}ms`).join(' → ')} (times from stop_app)`,
  );

  assert.ok(answeredWhenStopped < N, 'the restart came before the run was over');
  assert.ok(all, `every input answered (${watcher.answered(ids)} of ${N})`);
  assert.deepEqual(missing, [], 'no input without a reply');
  for (const id of duplicatedIds.filter((id) => !secondReplies.includes(id)))
    assert.equal(new Set(watcher.of(id).map((a) => a.body)).size, 1, `${id}: its copies carry one body`);
  // Before inputs in doubt were answered with their first reply again, each of these was scored and answered anew: 1–68 a run.
  assert.deepEqual(
    secondReplies,
    [],
    'no input answered twice with two different replies: a receiver deduping by messageId sees one',
  );
  assert.equal(resentMetric, sentAgain, 'scorer_resent_in_doubt_total counts each reply sent again');
  assert.ok(
    watcher.arrivals.every((a) => a.status === 'ok'),
    'every reply is a normal one',
  );
  assert.ok(
    disconnects.some((d) => d.role === 'consume') && disconnects.some((d) => d.role === 'publish'),
    'both connections saw the broker go',
  );
  assert.ok(subscribedAgainAt !== undefined, 'it subscribed again after the restart');
  const checker = await TestClient.connect(broker.url);
  const deadQueue = await checker.messageCount(`${input}.dead`).then(
    () => 'declared',
    (err: Error) => err.message,
  );
  await checker.close();
  assert.equal(
    deadQueue,
    'declared',
    `it declared its queues again: ${input}.dead, deleted before the restart, exists`,
  );
  assert.ok(firstNewReply !== undefined, 'and answered again');
  // A poll can go unanswered (0) on a loaded machine: what counts is what /readyz said when it answered.
  const answers = statuses.filter((s) => s.status !== 0);
  assert.equal(answers[0]?.status, 200, '/readyz was 200 before the restart');
  assert.ok(notReady, '/readyz said 503 while the broker was down');
  assert.ok(notReady.at < startedAt, '... and it said so before the broker was back');
  assert.ok(readyAgain, '/readyz said 200 again after the restart');
  assert.equal(answers.at(-1)?.status, 200, '/readyz ends at 200');
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
});
