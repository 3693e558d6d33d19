import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import pino from 'pino';
import { ACK_COALESCE_MS, ACK_HOLD_MS, AckWindow, ChannelAcks, type AckChannel } from '../../src/broker/acks.js';
import type { Delivery } from '../../src/broker/delivery.js';
import { mulberry32 } from '../../scripts/train-iris.js';

function windowOf(...tags: number[]): AckWindow {
  const w = new AckWindow();
  for (const t of tags) w.delivered(t);
  return w;
}

test('settling in order gives the highest tag, to ack with multiple', () => {
  const w = windowOf(1, 2, 3, 4, 5);
  assert.equal(w.settle([1, 2]), 2);
  assert.equal(w.settle([3]), 3);
  assert.equal(w.settle([5, 4]), 5);
  assert.equal(w.size, 0);
});

test('tags settled out of order are held until the gap closes, then go in one multiple ack', () => {
  const w = windowOf(1, 2, 3, 4, 5);
  assert.equal(w.settle([2, 3]), undefined, '1 is still open');
  assert.equal(w.settle([5]), undefined);
  assert.equal(w.heldCount, 3);
  assert.equal(w.settle([1, 4]), 5, 'one multiple ack for all five');
  assert.equal(w.size, 0);
});

test('held tags taken to ack one by one never become the tag of a later multiple ack', () => {
  const w = windowOf(1, 2, 3);
  assert.equal(w.settle([3]), undefined);
  assert.deepEqual(w.takeHeld(), [3]);
  assert.equal(w.settle([1]), 1);
  assert.equal(w.settle([2]), 2, 'not 3: RabbitMQ refuses a multiple ack on a tag already acked');
  assert.equal(w.size, 0);
});

test('release() of a nacked tag unblocks the held acks', () => {
  const w = windowOf(1, 2, 3);
  assert.equal(w.settle([2, 3]), undefined, 'held back by 1');
  w.release(1); // nacked: the broker no longer counts it
  assert.equal(w.settle([]), 3);
  assert.equal(w.size, 0);
  w.delivered(4);
  assert.equal(w.settle([4]), 4);
});

test('whatever the order of settling and taking, every ack is one RabbitMQ accepts and every tag is acked once', () => {
  const next = mulberry32(5);
  for (let run = 0; run < 300; run++) {
    const w = new AckWindow();
    const outstanding = new Set<number>(); // the broker's view of one channel
    const ack = (tag: number, multiple: boolean) => {
      assert.ok(outstanding.has(tag), `run ${run}: ack of tag ${tag}, which is not outstanding (PRECONDITION_FAILED)`);
      if (multiple) for (const t of outstanding) if (t <= tag) outstanding.delete(t);
      outstanding.delete(tag);
    };
    const unsettled: number[] = [];
    let tag = 0;
    for (let step = 0; step < 200; step++) {
      const r = next();
      if (r < 0.4 || unsettled.length === 0) {
        w.delivered(++tag);
        outstanding.add(tag);
        unsettled.push(tag);
      } else if (r < 0.9) {
        const batch = unsettled.splice(Math.floor(next() * unsettled.length), 1 + Math.floor(next() * 4));
        if (next() < 0.1) {
          for (const t of batch) {
            outstanding.delete(t); // nacked
            w.release(t);
          }
          const upTo = w.settle([]);
          if (upTo !== undefined) ack(upTo, true);
        } else {
          const upTo = w.settle(batch);
          if (upTo !== undefined) ack(upTo, true);
        }
      } else for (const t of w.takeHeld()) ack(t, false);
    }
    const upTo = w.settle(unsettled.splice(0));
    if (upTo !== undefined) ack(upTo, true);
    for (const t of w.takeHeld()) ack(t, false);
    assert.equal(outstanding.size, 0, `run ${run}: every delivery acked or nacked`);
    assert.equal(w.size, 0);
  }
});

test('a large window keeps its answers right, and its ring one byte a tag, not growing with the tags acked', () => {
  const w = new AckWindow();
  const ring = () => (w as unknown as { states: Uint8Array }).states.length;
  const n = 20_000;
  for (let t = 1; t <= n; t++) w.delivered(t);
  for (let t = 1; t <= n / 2; t++) assert.equal(w.settle([t]), t);
  assert.equal(w.settle([n]), undefined);
  assert.equal(
    w.settle(Array.from({ length: n / 2 - 1 }, (_, i) => n / 2 + 1 + i)),
    n,
    'the held tag n goes with them',
  );
  assert.equal(w.size, 0);
  const grown = ring();
  assert.ok(grown >= n && grown <= 2 * n, `the ring holds ${grown} tags for a window of ${n}`);
  for (let t = n + 1; t <= n + 100_000; t++) {
    w.delivered(t);
    assert.equal(w.settle([t]), t);
  }
  assert.equal(ring(), grown, 'tags acked in order reuse the ring');
});

test('the ring grows while an old tag stays open, with every held tag kept in its place', () => {
  const w = windowOf(1);
  for (let t = 2; t <= 5000; t++) {
    w.delivered(t);
    assert.equal(w.settle([t]), undefined, '1 is still open');
  }
  assert.equal(w.heldCount, 4999);
  assert.equal(w.settle([1]), 5000, 'one multiple ack for all of them');
  assert.equal(w.size, 0);
  w.delivered(5001);
  w.delivered(5002);
  assert.equal(w.settle([5002]), undefined);
  assert.deepEqual(w.takeHeld(), [5002]);
  assert.equal(w.settle([5001]), 5001);
});

test('tags past 2^31 and 2^32 (a channel open for days) are acked as before', () => {
  for (const start of [2 ** 31 - 3, 2 ** 32 - 3]) {
    const w = new AckWindow();
    for (let t = start; t < start + 6; t++) w.delivered(t);
    assert.equal(w.settle([start + 1, start + 4]), undefined);
    assert.equal(w.settle([start]), start + 1);
    assert.equal(w.settle([start + 2, start + 3]), start + 4);
    assert.equal(w.settle([start + 5]), start + 5);
    assert.equal(w.size, 0);
  }
});

/** A consume channel that records what ChannelAcks sends on it. */
function recordingChannel(): AckChannel & { sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    ack: (m, allUpTo) => void sent.push(`ack ${m.fields.deliveryTag}${allUpTo ? ' multiple' : ''}`),
    nack: (m, _allUpTo, requeue) => void sent.push(`nack ${m.fields.deliveryTag}${requeue ? ' requeue' : ''}`),
    close: async () => void sent.push('close'),
  };
}

const silent = pino({ level: 'silent' });

/** ChannelAcks on a recording channel, no grace before close; its timers are the test's (t.mock.timers). */
function channelAcks(t: TestContext, coalesceMs: number) {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const channel = recordingChannel();
  const acks = new ChannelAcks(1, channel, silent, ACK_HOLD_MS, 0, coalesceMs);
  const delivery = (tag: number) => {
    acks.delivered(tag);
    return { channel: 1, tag } as Delivery;
  };
  return { channel, acks, delivery, tick: (ms: number) => t.mock.timers.tick(ms) };
}

test('inputs settled one at a time within ACK_COALESCE_MS go in one multiple ack, sent once the wait is over', (t) => {
  const { channel, acks, delivery, tick } = channelAcks(t, ACK_COALESCE_MS);
  for (const d of [1, 2, 3].map(delivery)) {
    acks.settle([{ delivery: d, settlement: 'ack' }]);
    tick(1);
  }
  assert.deepEqual(channel.sent, [], 'nothing sent while the wait runs');
  tick(ACK_COALESCE_MS);
  assert.deepEqual(channel.sent, ['ack 3 multiple']);
  // The next ones start a wait of their own.
  acks.settle([{ delivery: delivery(4), settlement: 'ack' }]);
  tick(ACK_COALESCE_MS);
  assert.deepEqual(channel.sent, ['ack 3 multiple', 'ack 4 multiple']);
});

test('a nack goes at once, beside a multiple ack still waiting', (t) => {
  const { channel, acks, delivery, tick } = channelAcks(t, ACK_COALESCE_MS);
  const [a, b] = [1, 2].map(delivery);
  acks.settle([{ delivery: a, settlement: 'ack' }]);
  acks.settle([{ delivery: b, settlement: 'requeue' }]);
  assert.deepEqual(channel.sent, ['nack 2 requeue']);
  tick(ACK_COALESCE_MS);
  assert.deepEqual(channel.sent, ['nack 2 requeue', 'ack 1 multiple']);
});

test('close() sends the waiting ack before the channel closes', async (t) => {
  const { channel, acks, delivery } = channelAcks(t, ACK_COALESCE_MS);
  acks.settle([{ delivery: delivery(1), settlement: 'ack' }]);
  await acks.close();
  assert.deepEqual(channel.sent, ['ack 1 multiple', 'close']);
});

test('a lost channel sends nothing more, not even the waiting ack', (t) => {
  const { channel, acks, delivery, tick } = channelAcks(t, ACK_COALESCE_MS);
  acks.settle([{ delivery: delivery(1), settlement: 'ack' }]);
  acks.lost();
  tick(10 * ACK_COALESCE_MS);
  assert.deepEqual(channel.sent, []);
});

test('ACK_COALESCE_MS 0 acks at once', (t) => {
  const { channel, acks, delivery } = channelAcks(t, 0);
  acks.settle([{ delivery: delivery(1), settlement: 'ack' }]);
  assert.deepEqual(channel.sent, ['ack 1 multiple']);
});
