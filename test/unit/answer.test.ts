/**
 * answer.ts over every outcome, against a fake broker: the one function from a scored item to its
 * reply and its settlement. A property test drives random broker answers and channel closings.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import {
  answer,
  answerAgain,
  dropStale,
  fateOf,
  settleAnswered,
  type AnswerBroker,
  type AnswerOptions,
  type ScoredItem,
  type Settled,
} from '../../src/answer.js';
import { AnsweredRecord } from '../../src/answered-record.js';
import type { Settlement } from '../../src/broker/acks.js';
import type { Delivery } from '../../src/broker/delivery.js';
import type { PublishResult } from '../../src/broker/publisher.js';
import type { Reply } from '../../src/reply.js';
import type { ItemResult } from '../../src/scorer.js';
import { mulberry32 } from '../../scripts/train-iris.js';

const silent = pino({ level: 'silent' });

/** Each reply's publishes answered by `script(correlationId, attempt)`; records every publish and settlement. */
class FakeBroker implements AnswerBroker {
  generation = 1;
  /** Every outcome the broker gave, of a publish or (wait) of a wait for a late one's confirm. */
  readonly publishes: Array<{ reply: Reply; result: PublishResult; wait?: boolean }> = [];
  readonly settlements: Array<{ delivery: Delivery; settlement: Settlement; current: boolean }> = [];
  redeclared = 0;
  private readonly attempts = new Map<string, number>();
  onPublish: () => void = () => {};

  constructor(private readonly script: (id: string, attempt: number, reply: Reply) => PublishResult) {}

  isCurrent(d: Delivery): boolean {
    return d.channel === this.generation;
  }

  async publishAll(replies: readonly Reply[]): Promise<PublishResult[]> {
    this.onPublish();
    return replies.map((reply) => {
      const id = reply.correlationId!;
      const attempt = (this.attempts.get(id) ?? 0) + 1;
      this.attempts.set(id, attempt);
      const result = this.script(id, attempt, reply);
      this.publishes.push({ reply, result });
      return result;
    });
  }

  settle(items: ReadonlyArray<{ delivery: Delivery; settlement: Settlement }>): void {
    for (const { delivery, settlement } of items)
      this.settlements.push({ delivery, settlement, current: this.isCurrent(delivery) });
  }

  async redeclareReplyQueue(): Promise<void> {
    this.redeclared++;
  }

  /** A late reply's eventual outcome: the script's next answer for it, without a publish. */
  readonly waits: string[] = [];
  /** The test's clock: a wait for a late confirm takes its time on it. */
  sleep: (ms: number) => Promise<void> = async () => {};
  async awaitLate(reply: Reply, waitMs: number): Promise<PublishResult> {
    await this.sleep(waitMs);
    const id = reply.correlationId!;
    const attempt = (this.attempts.get(id) ?? 0) + 1;
    this.attempts.set(id, attempt);
    this.waits.push(id);
    this.onPublish();
    const result = this.script(id, attempt, reply);
    this.publishes.push({ reply, result, wait: true });
    return result;
  }

  forgetLate(): void {}

  of(id: string): Settlement[] {
    return this.settlements.filter((s) => s.delivery.correlationId === id).map((s) => s.settlement);
  }
}

let tag = 0;
function delivery(id: string, extra: Partial<Delivery> = {}): Delivery {
  return {
    body: Buffer.from('{"data":1}'),
    bytes: 10,
    correlationId: id,
    redelivered: false,
    deliveryCount: 0,
    tag: ++tag,
    channel: 1,
    ...extra,
  };
}

const OK: ItemResult = { ok: true, body: Buffer.from('[1]') };

function scored(d: Delivery, result: ItemResult = OK): ScoredItem {
  return { delivery: d, result, scoringMs: 1 };
}

function options(
  broker: FakeBroker,
  extra: Partial<AnswerOptions> = {},
): AnswerOptions & { settled: Settled[]; retries: PublishResult[] } {
  let clock = 0;
  const settled: Settled[] = [];
  const retries: PublishResult[] = [];
  const o: AnswerOptions & { settled: Settled[]; retries: PublishResult[] } = {
    broker,
    replyQueue: 'replies',
    modelName: 'm',
    queueType: 'quorum',
    deliveryLimit: 3,
    replyAttempts: 3,
    refusedMinMs: 0,
    giveUpMs: 10_000,
    backoffMs: (attempt) => 100 * attempt,
    logger: silent,
    onSettled: (items) => settled.push(...items),
    onRetry: (why) => retries.push(why),
    sleep: async (ms) => void (clock += ms),
    now: () => clock,
    settled,
    retries,
    ...extra,
  };
  broker.sleep = o.sleep!;
  return o;
}

const RULES = { queueType: 'quorum' as const, replyAttempts: 3, refusedMinMs: 0, giveUpMs: 1000 };
const FRESH = { toReplyQueue: true, redelivered: false, refusals: 0, elapsedMs: 0 };

test('the table: every stage has its fate', () => {
  assert.deepEqual(fateOf('confirmed', FRESH, RULES), { kind: 'settle', settlement: 'ack', reason: 'confirmed' });
  assert.deepEqual(fateOf('stale', FRESH, RULES), { kind: 'settle', settlement: 'none', reason: 'stale' });
  assert.deepEqual(fateOf('crashed', FRESH, RULES), { kind: 'settle', settlement: 'requeue', reason: 'crashed' });
  assert.deepEqual(fateOf('crashed', { ...FRESH, redelivered: true }, { ...RULES, queueType: 'classic' }), {
    kind: 'settle',
    settlement: 'dead-letter',
    reason: 'crashed',
  });
  assert.deepEqual(fateOf('crashed', { ...FRESH, redelivered: true }, RULES), {
    kind: 'settle',
    settlement: 'requeue',
    reason: 'crashed',
  });
  assert.deepEqual(fateOf('returned', { ...FRESH, toReplyQueue: false }, RULES), {
    kind: 'settle',
    settlement: 'ack',
    reason: 'caller gone',
  });
  assert.deepEqual(fateOf('returned', { ...FRESH, refusals: 1 }, RULES), {
    kind: 'retry',
    refusal: true,
    redeclare: true,
  });
  assert.deepEqual(fateOf('returned', { ...FRESH, refusals: 3 }, RULES), {
    kind: 'settle',
    settlement: 'dead-letter',
    reason: 'reply queue returns',
  });
  assert.deepEqual(fateOf('nacked', { ...FRESH, refusals: 2 }, RULES), {
    kind: 'retry',
    refusal: true,
    redeclare: false,
  });
  assert.deepEqual(fateOf('nacked', { ...FRESH, refusals: 3 }, RULES), {
    kind: 'settle',
    settlement: 'dead-letter',
    reason: 'reply refused',
  });
  // A refusal is for good only after REPLY_ATTEMPTS tries spanning REPLY_REFUSED_MIN_MS.
  const floor = { ...RULES, refusedMinMs: 500 };
  for (const stage of ['nacked', 'returned'] as const) {
    assert.equal(fateOf(stage, { ...FRESH, refusals: 30, elapsedMs: 499 }, floor).kind, 'retry');
    assert.equal(fateOf(stage, { ...FRESH, refusals: 2, elapsedMs: 5000 }, floor).kind, 'retry');
    assert.equal(fateOf(stage, { ...FRESH, refusals: 3, elapsedMs: 500 }, floor).kind, 'settle');
  }
  assert.deepEqual(fateOf('too-large', FRESH, RULES), { kind: 'error-reply', reason: 'reply too large' });
  for (const stage of ['late', 'lost'] as const) {
    assert.deepEqual(fateOf(stage, { ...FRESH, elapsedMs: 999 }, RULES), {
      kind: 'retry',
      refusal: false,
      redeclare: false,
    });
    assert.deepEqual(fateOf(stage, { ...FRESH, elapsedMs: 1000 }, RULES), {
      kind: 'settle',
      settlement: 'requeue',
      reason: 'gave up',
    });
  }
});

test('a confirmed reply acks its input, with the reply counted', async () => {
  const broker = new FakeBroker(() => 'confirmed');
  const o = options(broker);
  await answer([scored(delivery('a')), scored(delivery('b'), { ok: false, code: 'SHAPE', message: 'bad shape' })], o);
  assert.deepEqual(broker.of('a'), ['ack']);
  assert.deepEqual(broker.of('b'), ['ack']);
  assert.equal(broker.publishes[1].reply.properties.headers['x-error-code'], 'SHAPE');
  assert.deepEqual(
    o.settled.map((s) => s.reply?.status),
    ['ok', 'error'],
  );
});

test('an input whose isolate died gets no reply and is requeued for the delivery limit', async () => {
  const broker = new FakeBroker(() => 'confirmed');
  await answer([scored(delivery('a'), { ok: false, code: 'CRASHED', message: 'died' })], options(broker));
  assert.equal(broker.publishes.length, 0);
  assert.deepEqual(broker.of('a'), ['requeue']);
});

test('an input whose channel has closed is neither answered nor acked', async () => {
  const broker = new FakeBroker(() => 'confirmed');
  const o = options(broker);
  const d = delivery('a', { channel: 0 });
  await answer([scored(d)], o);
  assert.equal(broker.publishes.length, 0);
  assert.deepEqual(
    o.settled.map((s) => s.settlement),
    ['none'],
  );
  assert.deepEqual(
    dropStale([delivery('b', { channel: 0 }), delivery('c')], o).map((x) => x.correlationId),
    ['c'],
  );
  assert.deepEqual(
    o.settled.map((s) => s.settlement),
    ['none', 'none'],
  );
});

test("a reply returned from a caller's replyTo acks its input: no one is left to answer", async () => {
  const broker = new FakeBroker(() => 'returned');
  await answer([scored(delivery('a', { replyTo: 'gone' }))], options(broker));
  assert.equal(broker.publishes.length, 1);
  assert.deepEqual(broker.of('a'), ['ack']);
});

test('a reply returned from REPLY_QUEUE is sent again after declaring it; one that keeps returning is dead-lettered', async () => {
  const once = new FakeBroker((_, attempt) => (attempt === 1 ? 'returned' : 'confirmed'));
  await answer([scored(delivery('a'))], options(once));
  assert.equal(once.redeclared, 1);
  assert.deepEqual(once.of('a'), ['ack']);
  const always = new FakeBroker(() => 'returned');
  const o = options(always);
  await answer([scored(delivery('b'))], o);
  assert.equal(always.publishes.length, 3, 'REPLY_ATTEMPTS tries');
  assert.deepEqual(always.of('b'), ['dead-letter']);
  assert.equal(o.settled[0].reason, 'reply queue returns');
});

test('a nacked reply is retried; one nacked every time is dead-lettered after REPLY_ATTEMPTS', async () => {
  const once = new FakeBroker((_, attempt) => (attempt === 1 ? 'nacked' : 'confirmed'));
  const o1 = options(once);
  await answer([scored(delivery('a'))], o1);
  assert.deepEqual(once.of('a'), ['ack']);
  assert.deepEqual(o1.retries, ['nacked']);
  const always = new FakeBroker(() => 'nacked');
  const o = options(always);
  await answer([scored(delivery('b'))], o);
  assert.equal(always.publishes.length, 3);
  assert.deepEqual(always.of('b'), ['dead-letter']);
  assert.equal(o.settled[0].reason, 'reply refused');
});

test('refusals that end within REPLY_REFUSED_MIN_MS are retried past REPLY_ATTEMPTS: a quorum reply queue electing a leader nacks for a while', async () => {
  // Nacked for 8 tries (backoff 100 ms × try: 2.8 s in all), then taken, as when a new leader is in place.
  const electing = new FakeBroker((_, attempt) => (attempt <= 8 ? 'nacked' : 'confirmed'));
  const o = options(electing, { refusedMinMs: 5000 });
  await answer([scored(delivery('a'))], o);
  assert.deepEqual(electing.of('a'), ['ack']);
  assert.equal(electing.publishes.length, 9);
  // Refused for longer than the floor: dead-lettered once both the count and the time are past.
  const full = new FakeBroker(() => 'nacked');
  const o2 = options(full, { refusedMinMs: 5000 });
  await answer([scored(delivery('b'))], o2);
  assert.deepEqual(full.of('b'), ['dead-letter']);
  assert.equal(o2.settled[0].reason, 'reply refused');
  // Tries at 0, 100, 300, …: the first at or past 5,000 ms is the 11th (5,500 ms).
  assert.equal(full.publishes.length, 11);
});

test('a late or lost reply is retried with growing delays, and its input requeued after REPLY_GIVE_UP_MS', async () => {
  for (const stage of ['late', 'lost'] as const) {
    const recovers = new FakeBroker((_, attempt) => (attempt < 3 ? stage : 'confirmed'));
    await answer([scored(delivery('a'))], options(recovers));
    assert.deepEqual(recovers.of('a'), ['ack']);
    // A late reply is waited for, not published again (a copy would be a duplicate); a lost one is published again.
    assert.equal(recovers.publishes.filter((p) => !p.wait).length, stage === 'late' ? 1 : 3);
    const delays: number[] = [];
    const never = new FakeBroker(() => stage);
    let clock = 0;
    const o = options(never, { now: () => clock, sleep: async (ms) => void (delays.push(ms), (clock += ms)) });
    await answer([scored(delivery('b'))], o);
    assert.deepEqual(never.of('b'), ['requeue']);
    assert.equal(o.settled[0].reason, 'gave up');
    assert.ok(clock >= 10_000 && clock < 10_000 + 100 * (delays.length + 1), `gave up after ${clock} ms`);
    assert.deepEqual(
      delays,
      [...delays].sort((x, y) => x - y),
      'delays never shrink',
    );
  }
});

test('a reply over the broker max size is answered with a short error reply and its input dead-lettered', async () => {
  const broker = new FakeBroker((_, __, reply) => (reply.body.byteLength > 500 ? 'too-large' : 'confirmed'));
  const o = options(broker);
  await answer([scored(delivery('a'), { ok: true, body: Buffer.alloc(1000, 0x31) })], o);
  assert.equal(broker.publishes.length, 2);
  const short = broker.publishes[1].reply;
  assert.equal(short.properties.headers['x-error-code'], 'REPLY_TOO_LARGE');
  assert.equal(short.correlationId, 'a');
  assert.deepEqual(broker.of('a'), ['dead-letter']);
  assert.equal(o.settled[0].reason, 'reply too large');
});

test('a retry stops when the input channel closes: no reply again, no ack', async () => {
  const broker = new FakeBroker(() => 'late');
  const o = options(broker, {
    sleep: async () => {
      broker.generation = 2;
    },
  });
  await answer([scored(delivery('a'))], o);
  assert.equal(broker.publishes.filter((p) => !p.wait).length, 1, 'published once');
  assert.deepEqual(
    o.settled.map((s) => s.settlement),
    ['none'],
  );
  // And a lost one: not published again once its channel has gone.
  const lost = new FakeBroker(() => 'lost');
  const o2 = options(lost, { sleep: async () => void (lost.generation = 2) });
  await answer([scored(delivery('b'))], o2);
  assert.equal(lost.publishes.length, 1);
  assert.deepEqual(
    o2.settled.map((s) => s.settlement),
    ['none'],
  );
});

test('confirmed inputs are acked at once, while a neighbour is still retried', async () => {
  const broker = new FakeBroker((id) => (id === 'slow' ? 'nacked' : 'confirmed'));
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const o = options(broker, { sleep: () => held });
  const done = answer([scored(delivery('a')), scored(delivery('slow')), scored(delivery('b'))], o);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(
    o.settled.map((s) => s.delivery.correlationId),
    ['a', 'b'],
    'a and b acked while slow waits to retry',
  );
  release();
  await done;
  assert.deepEqual(broker.of('slow'), ['dead-letter']);
});

test('property: every delivery settled exactly once, never acked before its reply is confirmed, never on another channel', async () => {
  const rand = mulberry32(12);
  const stages: PublishResult[] = [
    'confirmed',
    'confirmed',
    'confirmed',
    'returned',
    'nacked',
    'late',
    'lost',
    'too-large',
  ];
  for (let run = 0; run < 300; run++) {
    const broker = new FakeBroker((_, __, reply) =>
      reply.properties.headers['x-error-code'] === 'REPLY_TOO_LARGE' && rand() < 0.5
        ? 'confirmed'
        : stages[Math.floor(rand() * stages.length)],
    );
    // Now and then the consume channel closes under a publish.
    broker.onPublish = () => {
      if (rand() < 0.05) broker.generation++;
    };
    const o = options(broker, { replyAttempts: 1 + Math.floor(rand() * 4), giveUpMs: 100 + Math.floor(rand() * 2000) });
    const n = 1 + Math.floor(rand() * 12);
    const items: ScoredItem[] = Array.from({ length: n }, (_, i): ScoredItem => {
      const d = delivery(`r${run}-${i}`, {
        replyTo: rand() < 0.3 ? 'caller' : undefined,
        channel: rand() < 0.1 ? 0 : broker.generation,
      });
      const r = rand();
      const result: ItemResult =
        r < 0.1
          ? { ok: false, code: 'CRASHED', message: 'x' }
          : r < 0.2
            ? { ok: false, code: 'RUN_FAILED', message: 'x' }
            : OK;
      return scored(d, result);
    });
    await answer(items, o);
    for (const { delivery: d } of items as ScoredItem[]) {
      const id = d.correlationId!;
      const mine = o.settled.filter((s) => s.delivery === d);
      assert.equal(mine.length, 1, `run ${run} ${id}: settled exactly once`);
      const { settlement } = mine[0];
      const sent = broker.publishes.filter((p) => p.reply.correlationId === id);
      if (settlement === 'ack') {
        const last = sent.at(-1);
        assert.ok(
          last && (last.result === 'confirmed' || (last.result === 'returned' && d.replyTo)),
          `run ${run} ${id}: acked on ${last?.result}`,
        );
      }
      if (settlement !== 'none') {
        const record = broker.settlements.find((s) => s.delivery === d)!;
        assert.ok(record.current, `run ${run} ${id}: ${settlement} on a channel it did not come from`);
      }
    }
  }
});

test('the answered record: an input is remembered once its reply is confirmed, even when its channel closed meanwhile; not when unanswered', async () => {
  const record = new AnsweredRecord({ maxEntries: 100, maxAgeMs: 60_000 });
  const broker = new FakeBroker((id) => (id === 'refused' ? 'nacked' : 'confirmed'));
  const o = options(broker, { record, replyAttempts: 1 });
  // 'cut' loses its channel while its reply is being confirmed: no ack can go, and it will come back.
  const cut = delivery('cut');
  const slow = answer([scored(cut)], o);
  broker.generation = 2;
  await slow;
  await answer(
    [
      scored(delivery('ok', { channel: 2 })),
      scored(delivery('refused', { channel: 2 })),
      scored(delivery('died', { channel: 2 }), { ok: false, code: 'CRASHED', message: 'x' }),
    ],
    o,
  );
  const back = (id: string) => record.wasAnswered({ correlationId: id, redelivered: true }, Date.now());
  assert.deepEqual(broker.of('cut'), ['none'], 'no ack on a closed channel');
  assert.equal(back('cut'), true, 'remembered: its caller has the reply');
  assert.equal(back('ok'), true);
  assert.equal(back('refused'), false, 'dead-lettered, never answered');
  assert.equal(back('died'), false);
});

test('settleAnswered acks a redelivery of an answered input without a reply', () => {
  const broker = new FakeBroker(() => 'confirmed');
  const o = options(broker);
  settleAnswered([delivery('again', { redelivered: true })], o);
  assert.equal(broker.publishes.length, 0);
  assert.deepEqual(broker.of('again'), ['ack']);
  assert.deepEqual(
    o.settled.map((s) => [s.reason, s.reply]),
    [['already answered', undefined]],
  );
});

test('answerPoison: an input dead-lettered on its second death gets one POISON reply naming the queue; off, none', async () => {
  for (const on of [true, false]) {
    const broker = new FakeBroker(() => 'confirmed');
    const o = options(broker, { queueType: 'classic', answerPoison: on ? { deadLetterQueue: 'in.dead' } : undefined });
    await answer([scored(delivery('p', { redelivered: true }), { ok: false, code: 'CRASHED', message: 'died' })], o);
    assert.deepEqual(broker.of('p'), ['dead-letter']);
    if (!on) {
      assert.equal(broker.publishes.length, 0);
      continue;
    }
    assert.equal(broker.publishes.length, 1);
    const { headers } = broker.publishes[0].reply.properties;
    assert.equal(headers['x-error-code'], 'POISON');
    assert.equal(headers['x-dead-letter-queue'], 'in.dead');
  }
});

test('a scored item carries x-queue-wait-ms and the trace headers onto its reply', async () => {
  const broker = new FakeBroker(() => 'confirmed');
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  await answer(
    [{ ...scored(delivery('a')), carries: { queueWaitMs: 1234.4, traceHeaders: { traceparent: tp } } }],
    options(broker),
  );
  const { headers } = broker.publishes[0].reply.properties;
  assert.equal(headers['x-queue-wait-ms'], 1234);
  assert.equal(headers.traceparent, tp);
});

test('an input whose reply went out but whose channel closed before the confirm is in doubt: its redelivery gets the same reply again, unscored, and is acked once that copy is confirmed', async () => {
  const record = new AnsweredRecord<Reply>({ maxEntries: 100, maxAgeMs: 60_000 });
  // The first publish is lost with its connection, which took the input's channel with it.
  const broker = new FakeBroker((_id, attempt) => (attempt === 1 ? 'lost' : 'confirmed'));
  broker.onPublish = () => void (broker.generation = 2);
  let slept = 0;
  const o = options(broker, { record, sleep: async () => void slept++ });
  await answer([scored(delivery('doubt'))], o);
  assert.deepEqual(broker.of('doubt'), ['none'], 'the broker has it back');
  assert.equal(broker.publishes.length, 1, 'not published again on a channel that is not its input’s');
  assert.equal(slept, 0, 'settled at once, not after a backoff');
  const first = broker.publishes[0].reply;
  const again = delivery('doubt', { redelivered: true, channel: 2 });
  assert.equal(
    record.inDoubt({ correlationId: 'doubt', redelivered: false }, Date.now()),
    undefined,
    'only a redelivery',
  );
  const reply = record.inDoubt(again, Date.now());
  assert.equal(reply, first, 'the reply that went out is kept as it was');

  broker.onPublish = () => {};
  await answerAgain(again, reply!, o);
  const copy = broker.publishes[1].reply;
  assert.equal(copy.properties.messageId, first.properties.messageId, 'one messageId: a receiver drops the copy');
  assert.deepEqual(copy.body, first.body);
  assert.deepEqual(copy.properties.headers, first.properties.headers);
  assert.deepEqual(broker.of('doubt'), ['none', 'ack']);
  assert.equal(record.wasAnswered(again, Date.now()), true, 'answered now');
  assert.equal(record.inDoubt(again, Date.now()), undefined, 'and no longer in doubt');
});

test('a late reply whose input went back before its confirm is in doubt too; a reply never published is not', async () => {
  const record = new AnsweredRecord<Reply>({ maxEntries: 100, maxAgeMs: 60_000 });
  const broker = new FakeBroker((_id, attempt) => (attempt === 1 ? 'late' : 'lost'));
  broker.onPublish = () => void (broker.generation = 2);
  const o = options(broker, { record });
  await answer([scored(delivery('late'))], o);
  assert.deepEqual(broker.of('late'), ['none']);
  assert.equal(record.inDoubt({ correlationId: 'late', redelivered: true }, Date.now()), broker.publishes[0].reply);
  // Stale before its reply was built: nothing went out, nothing is in doubt (its redelivery is scored).
  await answer([scored(delivery('unsent', { channel: 1 }))], o);
  assert.equal(broker.publishes.filter((p) => p.reply.correlationId === 'unsent').length, 0);
  assert.equal(record.inDoubt({ correlationId: 'unsent', redelivered: true }, Date.now()), undefined);
});

test('the record is told of a reply on its way before it is published, and of its input once settled', async () => {
  const record = new AnsweredRecord<Reply>({ maxEntries: 100, maxAgeMs: 60_000 });
  const d = delivery('flight');
  const seen: string[] = [];
  const broker = new FakeBroker(() => {
    seen.push(record.firstCopySettled({ correlationId: 'flight', redelivered: true }) ? 'waits' : 'free');
    return 'confirmed';
  });
  await answer([scored(d)], options(broker, { record }));
  assert.deepEqual(seen, ['waits'], 'a redelivery arriving while the reply is published waits');
  assert.equal(record.firstCopySettled({ correlationId: 'flight', redelivered: true }), undefined, 'not after');
});
