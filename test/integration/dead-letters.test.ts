/**
 * `scorer dead-letters` as users run it (bin/scorer.js, a real process) on messages really dead-lettered
 * by the broker: a quorum input queue with x-delivery-limit 1, each message nacked until the broker moves
 * it to <input>.dead, exactly as the consumer's topology declares it.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import type * as amqp from 'amqplib';
import { DEFAULT_WINDOW } from '../../src/cli/dead-letters.js';
import { topologyFor } from '../../src/broker/topology.js';
import { AMQP_URL, TestClient, uniqueName } from '../support/broker.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'scorer-dead-letters-'));
const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
let client: TestClient;
const queues: string[] = [];

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  await client.deleteQueues(...queues);
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Parked {
  input: string;
  dead: string;
  replies: string;
  caller: string;
  state: string;
  ids: string[];
}

/** n messages, every other one with a replyTo of its caller's own queue, really dead-lettered by the broker. */
async function parkMessages(name: string, n: number): Promise<Parked> {
  const input = uniqueName(`dl.${name}`);
  const replies = uniqueName(`dl.${name}.replies`);
  const caller = uniqueName(`dl.${name}.caller`);
  const topology = topologyFor({ inputQueue: input, replyQueue: replies, queueType: 'quorum', deliveryLimit: 1 });
  queues.push(input, topology.deadQueue, replies, caller);
  const ch = await client.connection.createChannel();
  for (const q of [topology.deadQueue, input, replies])
    await ch.assertQueue(q, { durable: true, arguments: topology.argumentsOf(q) });
  await ch.assertQueue(caller, { durable: true });
  const ids = Array.from({ length: n }, (_, i) => `${name}-${i}`);
  await client.publishMany(
    input,
    ids.map((id, i) => ({
      body: { data: i },
      options: {
        correlationId: id,
        messageId: `m-${id}`,
        ...(i % 2 === 0 ? { replyTo: caller } : {}),
        headers: { traceparent: TRACEPARENT },
      },
    })),
  );
  // A consumer that gives every delivery back: past x-delivery-limit the broker dead-letters it.
  await ch.prefetch(500);
  const { consumerTag } = await ch.consume(input, (m) => m && ch.nack(m, false, true));
  const deadline = Date.now() + 60_000;
  while ((await client.messageCount(topology.deadQueue)) < n) {
    if (Date.now() > deadline) throw new Error('messages were not dead-lettered in time');
    await new Promise((r) => setTimeout(r, 50));
  }
  await ch.cancel(consumerTag);
  await ch.close();
  return { input, dead: topology.deadQueue, replies, caller, state: join(dir, `${name}.state.jsonl`), ids };
}

function runCli(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | string; stdout: string; stderr: string }>;
} {
  const child = spawn(process.execPath, ['bin/scorer.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, AMQP_URL, DELIVERY_LIMIT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout, stderr })),
  );
  return { child, done };
}

const dl = (p: Parked, command: string, ...more: string[]) =>
  runCli([
    'dead-letters',
    command,
    '--queue',
    p.input,
    '--state',
    p.state,
    ...(command === 'answer' ? ['--reply-queue', p.replies] : []),
    ...more,
  ]);

interface Listed {
  n: number;
  correlationId: string;
  messageId: string;
  replyTo?: string;
  reason: string;
  fromQueue: string;
  deaths: number;
  deliveries: number;
  deadLetteredAt: string;
  answeredAt?: string;
}

async function list(p: Parked, ...more: string[]): Promise<Listed[]> {
  const { code, stdout, stderr } = await dl(p, 'list', '--json', ...more).done;
  assert.equal(code, 0, stderr);
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Listed);
}

/** Every reply on the caller's queue and the reply queue, as it arrives. */
async function watchReplies(p: Parked): Promise<{ got: amqp.ConsumeMessage[]; stop: () => Promise<void> }> {
  const ch = await client.connection.createChannel();
  const got: amqp.ConsumeMessage[] = [];
  const tags: string[] = [];
  for (const q of [p.caller, p.replies])
    tags.push((await ch.consume(q, (m) => m && got.push(m), { noAck: true })).consumerTag);
  return {
    got,
    stop: async () => {
      await new Promise((r) => setTimeout(r, 300)); // let the last deliveries arrive
      for (const t of tags) await ch.cancel(t);
      await ch.close();
    },
  };
}

/** The queue's messages' correlation ids, in order, taken off it. */
async function drainIds(queue: string): Promise<string[]> {
  const ch = await client.connection.createChannel();
  const ids: string[] = [];
  for (let m = await ch.get(queue, { noAck: true }); m; m = await ch.get(queue, { noAck: true }))
    ids.push(m.properties.correlationId as string);
  await ch.close();
  return ids;
}

const perCaller = (got: amqp.ConsumeMessage[]) => {
  const counts = new Map<string, number>();
  for (const m of got) counts.set(m.properties.correlationId, (counts.get(m.properties.correlationId) ?? 0) + 1);
  return counts;
};

async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('list shows each parked message (why, from where, how often, when) and leaves the queue as it was, in the same order', async () => {
  const p = await parkMessages('list', 50);
  const first = await list(p);
  assert.equal(first.length, 50);
  assert.deepEqual(first.map((l) => l.correlationId).sort(), [...p.ids].sort());
  for (const l of first) {
    assert.equal(l.reason, 'delivery_limit');
    assert.equal(l.fromQueue, p.input);
    assert.equal(l.deaths, 1);
    assert.equal(l.deliveries, 2, 'x-delivery-limit 1: delivered twice');
    assert.ok(Date.now() - Date.parse(l.deadLetteredAt) < 120_000, 'dead-lettered moments ago');
    assert.equal(l.answeredAt, undefined);
  }
  assert.equal(await client.messageCount(p.dead), 50, 'nothing taken away');
  const second = await list(p, '--window', '8');
  assert.deepEqual(
    second.map((l) => l.correlationId),
    first.map((l) => l.correlationId),
    'a second list, 8 in hand at once, sees the same order',
  );
  assert.equal(existsSync(p.state), false, 'no state left once the pass is complete');
  const { stdout } = await dl(p, 'list').done;
  assert.match(
    stdout,
    new RegExp(
      `dead-letters list: 50 parked in '${p.dead.replaceAll('.', '\\.')}' \\(0 answered, 50 not\\); reasons: delivery_limit 50; oldest dead-lettered 20`,
    ),
  );
});

test('answer sends each caller exactly one POISON reply, as the consumer builds error replies, naming the dead queue; a second run sends none; replay then puts them back in order', async () => {
  const p = await parkMessages('answer', 60);
  const order = (await list(p)).map((l) => l.correlationId);
  const watch = await watchReplies(p);
  const run = await dl(p, 'answer', '--model-name', 'poison-test').done;
  assert.equal(run.code, 0, run.stderr);
  await until(() => watch.got.length >= 60, 10_000, 'the replies');
  assert.match(
    run.stdout,
    /dead-letters answer: 60 parked in .*; 60 callers sent a POISON reply, 0 answered before; 60 kept \(marked x-poison-answered\)/,
  );
  assert.match(run.stderr, /dead-letters answer: \d+\/60 messages/, 'progress lines as submit prints them');

  const again = await dl(p, 'answer', '--model-name', 'poison-test').done;
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /60 parked in .*; 0 callers sent a POISON reply, 60 answered before/);
  await watch.stop();

  const counts = perCaller(watch.got);
  assert.deepEqual([...counts.keys()].sort(), [...p.ids].sort(), 'every caller answered');
  assert.ok(
    [...counts.values()].every((c) => c === 1),
    'exactly once, over both runs',
  );
  for (const m of watch.got) {
    const i = Number(m.properties.correlationId.split('-').pop());
    const h = m.properties.headers!;
    assert.equal(h['x-status'], 'error');
    assert.equal(h['x-error-code'], 'POISON');
    assert.equal(h['x-model'], 'poison-test');
    assert.equal(h['x-scoring-ms'], 0);
    assert.equal(h['x-dead-letter-queue'], p.dead);
    assert.equal(h.traceparent, TRACEPARENT, "the caller's trace rides along");
    assert.equal(m.properties.contentType, 'application/json');
    assert.equal(m.properties.deliveryMode, 2, 'persistent');
    assert.equal(m.fields.routingKey, i % 2 === 0 ? p.caller : p.replies, 'to replyTo, else to REPLY_QUEUE');
    const text = JSON.parse(m.content.toString()) as string;
    assert.ok(text.includes(`parked in queue '${p.dead}'`), text);
    assert.match(text, /delivered 2 times/);
  }

  const marked = await list(p);
  assert.deepEqual(
    marked.map((l) => l.correlationId),
    order,
    'kept in the same order',
  );
  assert.ok(
    marked.every((l) => l.answeredAt && Date.now() - Date.parse(l.answeredAt) < 120_000),
    'each marked answered',
  );

  const replay = await dl(p, 'replay').done;
  assert.equal(replay.code, 0, replay.stderr);
  assert.match(replay.stdout, /dead-letters replay: 60 put back on .* in order/);
  assert.equal(await client.messageCount(p.dead), 0);
  const ch = await client.connection.createChannel();
  const firstBack = await ch.get(p.input, { noAck: false });
  assert.ok(firstBack);
  assert.equal(
    (firstBack.properties.headers?.['x-death'] as Array<{ reason: string }> | undefined)?.[0]?.reason,
    'delivery_limit',
    'its history rides along',
  );
  assert.equal(firstBack.properties.messageId, `m-${firstBack.properties.correlationId}`, 'ids as published');
  ch.nack(firstBack, false, true);
  await ch.close();
  assert.deepEqual(await drainIds(p.input), order, 'back on the input queue in the order they were parked');
  const idle = await dl(p, 'replay').done;
  assert.match(idle.stdout, /dead-letters replay: 0 put back/, 'a second replay finds nothing');
});

test('answer and replay killed mid-pass resume where they stopped: every caller answered, at most the message in hand twice, the order kept', {
  timeout: 180_000,
}, async (t) => {
  const n = 300;
  const p = await parkMessages('kill', n);
  const order = (await list(p)).map((l) => l.correlationId);

  const watch = await watchReplies(p);
  const killed = dl(p, 'answer', '--model-name', 'poison-test');
  await until(() => watch.got.length >= 50, 60_000, 'the first replies');
  killed.child.kill('SIGKILL');
  assert.equal((await killed.done).code, 'SIGKILL');
  const killedAt = watch.got.length;
  assert.ok(watch.got.length < n, `killed mid-pass (${watch.got.length} replies by then)`);
  assert.ok(existsSync(p.state), 'the pass left its state');

  const resumed = await dl(p, 'answer', '--model-name', 'poison-test').done;
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resuming the interrupted answer pass/);
  await until(() => perCaller(watch.got).size === n, 10_000, 'every caller');
  const idem = await dl(p, 'answer', '--model-name', 'poison-test').done;
  assert.match(idem.stdout, /0 callers sent a POISON reply/, 'a third run answers no one');
  await watch.stop();

  const counts = perCaller(watch.got);
  const twice = [...counts.values()].filter((c) => c > 1).length;
  assert.equal(counts.size, n, 'every caller answered');
  assert.ok(
    [...counts.values()].every((c) => c <= 2),
    'none more than twice',
  );
  assert.ok(twice <= DEFAULT_WINDOW, `at most one chunk answered twice, got ${twice}`);
  const repeatIds = new Map<string, Set<string>>();
  for (const m of watch.got)
    (
      repeatIds.get(m.properties.correlationId) ??
      repeatIds.set(m.properties.correlationId, new Set()).get(m.properties.correlationId)!
    ).add(m.properties.messageId);
  assert.ok(
    [...repeatIds.values()].every((s) => s.size === 1),
    'a repeat carries the same reply messageId, so a caller can drop it',
  );
  const after = await list(p);
  assert.deepEqual(
    after.map((l) => l.correlationId),
    order,
    'every message kept once, in the same order',
  );
  assert.ok(after.every((l) => l.answeredAt));

  const replaying = dl(p, 'replay');
  await until(async () => (await client.messageCount(p.input)) >= 50, 60_000, 'the first replays');
  replaying.child.kill('SIGKILL');
  assert.equal((await replaying.done).code, 'SIGKILL');
  assert.ok((await client.messageCount(p.dead)) > 0, 'killed mid-pass');
  const rest = await dl(p, 'replay').done;
  assert.equal(rest.code, 0, rest.stderr);
  assert.equal(await client.messageCount(p.dead), 0);
  const back = await drainIds(p.input);
  const firsts = back.filter((id, i) => back.indexOf(id) === i);
  assert.deepEqual(firsts, order, 'every message back on the input queue, in order');
  assert.ok(back.length - n <= DEFAULT_WINDOW, `at most one chunk replayed twice, got ${back.length - n}`);
  const idle = await dl(p, 'replay').done;
  assert.match(idle.stdout, /0 put back/);
  t.diagnostic(
    `${n} parked; answer killed after ${killedAt} replies: ${twice} callers answered twice; replay killed: ${back.length - n} replayed twice`,
  );
});

test('answer --drop answers each caller once and drops the messages; answered ones kept by an earlier run are dropped without a second reply', async () => {
  const p = await parkMessages('drop', 12);
  const watch = await watchReplies(p);
  const keep = await dl(p, 'answer', '--model-name', 'm').done;
  assert.equal(keep.code, 0, keep.stderr);
  const drop = await dl(p, 'answer', '--model-name', 'm', '--drop').done;
  assert.equal(drop.code, 0, drop.stderr);
  assert.match(drop.stdout, /12 parked in .*; 0 callers sent a POISON reply, 12 answered before; 12 dropped/);
  assert.equal(await client.messageCount(p.dead), 0, 'dropped');
  await watch.stop();
  const counts = perCaller(watch.got);
  assert.equal(counts.size, 12);
  assert.ok(
    [...counts.values()].every((c) => c === 1),
    'each caller answered once',
  );
});
