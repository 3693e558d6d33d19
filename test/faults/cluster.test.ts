/**
 * The consumer on a real three-node RabbitMQ cluster (test/support/cluster.ts), its input a quorum queue
 * replicated on all three nodes. Through HAProxy: the node leading the input queue is killed (SIGKILL to
 * its Erlang VM) mid-stream and brought back, then each node is stopped and started in turn (a rolling
 * restart). With every node's address in AMQP_URL instead: the node the consumer reads from is killed.
 * Each phase streams inputs through a publisher and a reply reader on a node that stays up, and counts
 * inputs without a reply (must be 0), duplicates, and how long replies stopped.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestClient, uniqueName } from '../support/broker.js';
import { haproxyAvailable, startCluster, type Cluster } from '../support/cluster.js';
import { TestConsumers, type ConsumerProcess, type ConsumerQueues } from '../support/consumer-process.js';
import { logLines, publishStream, report } from '../support/faults.js';
import type { PrivateBroker } from '../support/private-broker.js';
import { RestartProofWatcher } from '../support/restart-proof-watcher.js';

let cluster: Cluster | undefined;
const consumers = new TestConsumers();
/** Whatever a phase left open when it failed half-way: closed by after(). */
const open = new Set<{ stop(): Promise<void> }>();

before(
  async () => {
    assert.ok(haproxyAvailable(), 'haproxy is not installed: apt-get install -y haproxy (.ci/run does it)');
    cluster = await startCluster();
  },
  { timeout: 300_000 },
);

after(
  async () => {
    await consumers.stopAll('SIGKILL');
    for (const o of open) await o.stop().catch(() => {});
    // The queues go with the nodes.
    await cluster?.stop();
  },
  { timeout: 120_000 },
);

interface PhaseFigures {
  name: string;
  published: number;
  missing: string[];
  duplicated: number;
  /** From the fault until the first reply to an input published after it (new work answered again). */
  recoveryMs: number | undefined;
  /** The longest time without any reply, from 2 s before the fault to the end of the phase. */
  longestSilenceMs: number;
  errorReplies: number;
}

/**
 * One fault under a steady stream of inputs: the publisher and the reply reader sit on `survivor`, a
 * node the fault leaves up. The stream runs through the fault and `bringBack`, and until the cluster
 * has every node and every replica of the consumer's queues online again.
 */
/** The consumer's log lines from `since` on (its last 60), for a failure's message. */
function linesSince(output: string, since: number): string {
  const lines = output.split('\n').filter((line) => {
    const time = Number(/"time":(\d+)/.exec(line)?.[1]);
    return Number.isFinite(time) && time >= since;
  });
  return lines.slice(-60).join('\n');
}

async function phase(
  name: string,
  q: ConsumerQueues,
  survivor: PrivateBroker,
  fault: () => Promise<void>,
  bringBack: () => Promise<void>,
  consumer: ConsumerProcess,
): Promise<PhaseFigures & { faultAt: number }> {
  const c = cluster!;
  const client = await TestClient.connect(survivor.url);
  const closeClient = { stop: () => client.close() };
  open.add(closeClient);
  const watcher = await RestartProofWatcher.start(survivor.url, q.replies);
  open.add(watcher);
  const stream = publishStream(client, q.input, uniqueName(name), 200);
  open.add(stream);

  assert.ok(
    await watcher.waitUntil(() => watcher.arrivals.length >= 200, 60_000),
    `${name}: replies flow before the fault`,
  );
  const faultAt = Date.now();
  await fault();
  const publishedAfter = (id: string) => (stream.publishedAt.get(id) ?? 0) > faultAt;
  assert.ok(
    await watcher.waitUntil(
      () => watcher.arrivals.some((a) => a.at > faultAt && publishedAfter(a.correlationId)),
      90_000,
    ),
    // What the consumer said from the fault on: a stall that happens once in many runs can be read afterwards.
    `${name}: inputs published after the fault are answered; the consumer's log since the fault:\n${linesSince(consumer.output(), faultAt)}`,
  );
  await bringBack();
  await c.awaitOnline(q.input, c.nodes.length, 120_000);
  await c.awaitOnline(q.replies, c.nodes.length, 120_000);
  // A little more traffic on the whole cluster before the stream ends.
  await new Promise((r) => setTimeout(r, 1000));
  await stream.stop();
  open.delete(stream);
  const ids = stream.ids;
  const all = await watcher.waitAll(ids, 120_000);
  await watcher.quiet(1500);
  await watcher.stop();
  open.delete(watcher);
  await client.close();
  open.delete(closeClient);

  const { missing, duplicated } = watcher.tally(ids);
  const firstNew = watcher.arrivals.find((a) => a.at > faultAt && publishedAfter(a.correlationId));
  const times = watcher.arrivals.map((a) => a.at).filter((at) => at >= faultAt - 2000);
  let longestSilenceMs = 0;
  for (let i = 1; i < times.length; i++) longestSilenceMs = Math.max(longestSilenceMs, times[i] - times[i - 1]);
  assert.ok(all || missing.length > 0, 'waitAll and tally agree');
  return {
    name,
    faultAt,
    published: ids.length,
    missing,
    duplicated,
    recoveryMs: firstNew ? firstNew.at - faultAt : undefined,
    longestSilenceMs,
    errorReplies: watcher.arrivals.filter((a) => a.status !== 'ok').length,
  };
}

function describe(f: PhaseFigures): string {
  return `${f.name}: inputs=${f.published}, without a reply=${f.missing.length}, duplicates=${f.duplicated}, error replies=${f.errorReplies}, new inputs answered again ${f.recoveryMs ?? 'never'} ms after the fault, longest time without a reply ${f.longestSilenceMs} ms`;
}

/** The brokers the consumer's `role` connection connected to from `since` on, as its log names them. */
function connectedTo(consumer: ConsumerProcess, role: 'consume' | 'publish', since = 0): string[] {
  return logLines(consumer.output(), 'broker connected')
    .filter((l) => l.role === role && l.time >= since)
    .map((l) => String(l.broker));
}

/** The cluster's node at a (redacted) address. */
function nodeAt(url: string | undefined): PrivateBroker | undefined {
  return cluster!.nodes.find((n) => String(url).endsWith(`:${n.port}`));
}

function assertWhole(f: PhaseFigures): void {
  assert.deepEqual(f.missing.slice(0, 10), [], `${f.name}: every input answered (${f.missing.length} without a reply)`);
  assert.equal(f.errorReplies, 0, `${f.name}: every reply is a normal one`);
}

/**
 * Declares the reply queue as a quorum queue first, as the README tells operators of a cluster to (the
 * consumer declares it classic, which lives on one node), then starts a consumer of `q` on `url`.
 */
async function startOn(q: ConsumerQueues, url: string): Promise<ConsumerProcess> {
  const client = await TestClient.connect(cluster!.nodes[0].url);
  await client.channel.assertQueue(q.replies, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  await client.close();
  return consumers.startOn(q, {
    AMQP_URL: url,
    CONNECTION_NAME: uniqueName('cluster.conn'),
    PREFETCH: '200',
    // Reconnects spaced as users run them, but capped low: the figures are the cluster's, not our backoff's.
    RECONNECT_MAX_DELAY_MS: '2000',
  });
}

test('through HAProxy: killing the node that leads the input queue mid-stream, bringing it back, then a rolling restart of all three nodes leave no input without a reply', {
  timeout: 900_000,
}, async (t) => {
  const c = cluster!;
  const q = consumers.queuesFor('cluster');
  const consumer = await startOn(q, c.url!);
  await consumer.waitFor('"msg":"consuming"', 60_000);
  const before = await c.awaitOnline(q.input, 3, 60_000);
  assert.deepEqual(
    [...before.members].sort(),
    c.nodes.map((n) => n.nodeName).sort(),
    'the input queue is replicated on all three nodes',
  );

  const figures: PhaseFigures[] = [];
  const leader = c.node(before.leader);
  const survivor = c.nodes.find((n) => n !== leader)!;
  figures.push(
    await phase(
      'leader SIGKILL',
      q,
      survivor,
      () => leader.kill(),
      async () => {
        await leader.restart();
        await c.awaitRejoined(leader, 120_000);
      },
      consumer,
    ),
  );
  const after = await c.members(q.input);
  report(t, `${describe(figures[0])}; the leader moved from ${before.leader} to ${after.leader}`);

  for (const [i, node] of c.nodes.entries()) {
    const f = await phase(
      `rolling restart, node ${i + 1} of 3`,
      q,
      c.nodes[(i + 1) % c.nodes.length],
      () => node.halt(),
      async () => {
        await node.restart();
        await c.awaitRejoined(node, 120_000);
      },
      consumer,
    );
    figures.push(f);
    report(t, describe(f));
  }

  for (const f of figures) assertWhole(f);
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
  const disconnects = logLines(consumer.output(), 'broker disconnected');
  assert.ok(disconnects.length > 0, 'the consumer did lose a node along the way');
});

test("with every node's address in AMQP_URL and no load balancer: killing the node the consumer reads from sends it to another node, and no input goes without a reply", {
  timeout: 600_000,
}, async (t) => {
  const c = cluster!;
  const q = consumers.queuesFor('cluster.list');
  const consumer = await startOn(q, c.urls);
  await consumer.waitFor('"msg":"consuming"', 60_000);
  await c.awaitOnline(q.input, 3, 60_000);
  const first = connectedTo(consumer, 'consume')[0];
  const node = nodeAt(first);
  assert.ok(node, `the consumer's node is one of the cluster's (${first})`);
  const survivor = c.nodes.find((n) => n !== node)!;

  const f = await phase(
    `list form, SIGKILL of the consumer's node`,
    q,
    survivor,
    () => node.kill(),
    async () => {
      await node.restart();
      await c.awaitRejoined(node, 120_000);
    },
    consumer,
  );
  const movedTo = connectedTo(consumer, 'consume', f.faultAt);
  report(t, `${describe(f)}; consume connection moved from ${first} to ${movedTo.join(', ') || 'nowhere'}`);
  assertWhole(f);
  assert.ok(
    movedTo.length > 0 && !movedTo[0].endsWith(`:${node.port}`),
    `it reconnected to another node (${movedTo.join(', ')})`,
  );
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
});

test('a reply queue left without a leader while its node restarts: the replies it refuses meanwhile are retried, and every input is answered once it has one again', {
  timeout: 600_000,
}, async (t) => {
  const c = cluster!;
  const q = consumers.queuesFor('cluster.leaderless');
  const consumer = await startOn(q, c.urls);
  await consumer.waitFor('"msg":"consuming"', 60_000);
  await c.awaitOnline(q.input, 3, 60_000);
  await c.awaitOnline(q.replies, 3, 60_000);
  // Its replies go through their own connection, to a node picked at random from the list.
  const first = connectedTo(consumer, 'publish')[0];
  const node = nodeAt(first);
  assert.ok(node, `the consumer's publishing node is one of the cluster's (${first})`);
  const [survivor, dropped] = c.nodes.filter((n) => n !== node);
  // The reply queue on two nodes, led from the one the consumer publishes through, the input queue led
  // from another: once that node is killed, inputs still flow, and the reply queue has no majority, so no
  // leader, until the node is back. A quorum queue without a leader nacks every publish from a channel
  // opened after it lost it (the consumer's, once it has reconnected; one opened before has its publishes
  // held instead): for seconds, past REPLY_ATTEMPTS quick tries.
  await c.removeMember(q.replies, dropped);
  await c.moveLeader(q.replies, node);
  await c.moveLeader(q.input, survivor);
  const f = await phase(
    "reply queue without a leader: SIGKILL of its leader's node, restarted 5 s later",
    q,
    survivor,
    async () => {
      await node.kill();
      await new Promise((r) => setTimeout(r, 5000));
      await node.restart();
      await c.awaitRejoined(node, 120_000);
    },
    () => c.addMember(q.replies, dropped),
    consumer,
  );
  const nacked = logLines(consumer.output(), 'reply not taken by the broker; retrying').filter(
    (l) => l.why === 'nacked',
  );
  report(t, `${describe(f)}; replies nacked and retried: ${nacked.length > 0 ? 'yes' : 'none'}`);
  assert.ok(nacked.length > 0, 'the reply queue refused replies while it had no leader (else this test shows nothing)');
  assertWhole(f);
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
});
