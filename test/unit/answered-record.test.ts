import assert from 'node:assert/strict';
import { test } from 'node:test';
import { INDEX_IDLE_MS, AnsweredRecord, answeredKeyOf, idHash } from '../../src/answered-record.js';

const again = (ids: { messageId?: string; correlationId?: string }) => ({ ...ids, redelivered: true });

test('a redelivered input whose reply was confirmed is known; one never answered is not', () => {
  const r = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000 });
  r.remember({ messageId: 'm1', correlationId: 'c1' }, 0);
  assert.equal(r.wasAnswered(again({ messageId: 'm1', correlationId: 'c1' }), 10), true);
  assert.equal(
    r.wasAnswered(again({ messageId: 'm2', correlationId: 'c1' }), 10),
    false,
    'keyed by messageId when there is one',
  );
});

test('only redelivered inputs are looked up: a new message reusing an id is scored and answered', () => {
  const r = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000 });
  r.remember({ messageId: 'm1' }, 0);
  assert.equal(r.wasAnswered({ messageId: 'm1', redelivered: false }, 10), false);
});

test('without a messageId the correlationId is the key; with neither, nothing is recorded', () => {
  const r = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000 });
  r.remember({ correlationId: 'c1' }, 0);
  assert.equal(r.wasAnswered(again({ correlationId: 'c1' }), 1), true);
  assert.equal(r.wasAnswered(again({ messageId: 'c1' }), 1), false, 'a message id and a correlation id never collide');
  r.remember({}, 0);
  assert.equal(r.size, 1);
  assert.equal(r.wasAnswered(again({}), 1), false);
  assert.equal(answeredKeyOf({ messageId: '', correlationId: 'c' }), 'c:c', 'an empty id is no id');
});

test('the record holds at most maxEntries, forgetting the oldest first', () => {
  const r = new AnsweredRecord({ maxEntries: 3, maxAgeMs: 60_000 });
  for (let i = 1; i <= 5; i++) r.remember({ messageId: `m${i}` }, i);
  assert.equal(r.size, 3);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((i) => r.wasAnswered(again({ messageId: `m${i}` }), 6)),
    [false, false, true, true, true],
  );
});

test('an entry older than maxAgeMs is forgotten', () => {
  const r = new AnsweredRecord({ maxEntries: 100, maxAgeMs: 1000 });
  r.remember({ messageId: 'old' }, 0);
  r.remember({ messageId: 'young' }, 900);
  assert.equal(r.wasAnswered(again({ messageId: 'old' }), 1000), true, 'at the bound it is still kept');
  assert.equal(r.wasAnswered(again({ messageId: 'old' }), 1001), false);
  assert.equal(r.wasAnswered(again({ messageId: 'young' }), 1001), true);
  assert.equal(r.size, 1, 'the old one is gone, not just hidden');
});

test('remembering a key again renews it, so it is not evicted as old', () => {
  const r = new AnsweredRecord({ maxEntries: 2, maxAgeMs: 1000 });
  r.remember({ messageId: 'a' }, 0);
  r.remember({ messageId: 'b' }, 10);
  r.remember({ messageId: 'a' }, 20);
  r.remember({ messageId: 'c' }, 30);
  assert.equal(r.wasAnswered(again({ messageId: 'a' }), 40), true);
  assert.equal(r.wasAnswered(again({ messageId: 'b' }), 40), false, 'b was the oldest');
});

test('either bound at 0 turns the record off', () => {
  for (const o of [
    { maxEntries: 0, maxAgeMs: 1000 },
    { maxEntries: 10, maxAgeMs: 0 },
  ]) {
    const r = new AnsweredRecord(o);
    r.remember({ messageId: 'm' }, 0);
    assert.equal(r.enabled, false);
    assert.equal(r.wasAnswered(again({ messageId: 'm' }), 0), false);
    assert.equal(r.size, 0);
  }
});

test('memory stays bounded under many inputs', () => {
  const r = new AnsweredRecord({ maxEntries: 1000, maxAgeMs: 1e9 });
  for (let i = 0; i < 100_000; i++) r.remember({ messageId: `m${i}` }, i);
  assert.equal(r.size, 1000);
  assert.equal(r.wasAnswered(again({ messageId: 'm99999' }), 100_000), true);
  assert.equal(r.wasAnswered(again({ messageId: 'm98999' }), 100_000), false);
});

const reply = (bytes: number, tag = '') => ({ body: Buffer.alloc(bytes), tag });

test('a reply in doubt is handed back for a redelivery of its input, as it was; not for a new message', () => {
  const r = new AnsweredRecord<{ body: Buffer; tag: string }>({ maxEntries: 10, maxAgeMs: 60_000 });
  const sent = reply(4, 'first');
  r.rememberInDoubt({ correlationId: 'c1' }, sent, 0);
  assert.equal(r.inDoubt(again({ correlationId: 'c1' }), 10), sent);
  assert.equal(r.inDoubt({ correlationId: 'c1', redelivered: false }, 10), undefined);
  assert.equal(r.inDoubt(again({ correlationId: 'c2' }), 10), undefined);
  assert.equal(r.wasAnswered(again({ correlationId: 'c1' }), 10), false, 'in doubt is not answered');
  r.rememberInDoubt({}, reply(1), 0);
  assert.deepEqual(r.inDoubtSize, { entries: 1, bytes: 4 }, 'an input with no id is not kept');
});

test('once a copy is confirmed the input is answered, no longer in doubt', () => {
  const r = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000 });
  r.rememberInDoubt({ messageId: 'm1' }, reply(8), 0);
  r.remember({ messageId: 'm1' }, 5);
  assert.equal(r.inDoubt(again({ messageId: 'm1' }), 6), undefined);
  assert.equal(r.wasAnswered(again({ messageId: 'm1' }), 6), true);
  assert.deepEqual(r.inDoubtSize, { entries: 0, bytes: 0 });
});

test('replies in doubt are bounded by count, age and bytes, oldest forgotten first', () => {
  const byCount = new AnsweredRecord({ maxEntries: 2, maxAgeMs: 60_000 });
  for (let i = 1; i <= 3; i++) byCount.rememberInDoubt({ messageId: `m${i}` }, reply(1), i);
  assert.deepEqual(
    [1, 2, 3].map((i) => byCount.inDoubt(again({ messageId: `m${i}` }), 4) !== undefined),
    [false, true, true],
  );

  const byAge = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 1000 });
  byAge.rememberInDoubt({ messageId: 'old' }, reply(1), 0);
  byAge.rememberInDoubt({ messageId: 'young' }, reply(1), 900);
  assert.equal(byAge.inDoubt(again({ messageId: 'old' }), 1000) !== undefined, true, 'at the bound it is still kept');
  assert.equal(byAge.inDoubt(again({ messageId: 'old' }), 1001), undefined);
  assert.equal(byAge.inDoubt(again({ messageId: 'young' }), 1001) !== undefined, true);

  const byBytes = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000, maxInDoubtBytes: 10 });
  byBytes.rememberInDoubt({ messageId: 'a' }, reply(4), 0);
  byBytes.rememberInDoubt({ messageId: 'b' }, reply(4), 1);
  byBytes.rememberInDoubt({ messageId: 'c' }, reply(4), 2);
  assert.deepEqual(byBytes.inDoubtSize, { entries: 2, bytes: 8 });
  assert.equal(byBytes.inDoubt(again({ messageId: 'a' }), 3), undefined, 'a was the oldest');
  byBytes.rememberInDoubt({ messageId: 'huge' }, reply(11), 3);
  assert.equal(byBytes.inDoubt(again({ messageId: 'huge' }), 4), undefined, 'a reply over the bound is not kept');
  assert.deepEqual(byBytes.inDoubtSize, { entries: 2, bytes: 8 }, 'nor does it push the others out');
  byBytes.rememberInDoubt({ messageId: 'b' }, reply(2), 4);
  assert.deepEqual(byBytes.inDoubtSize, { entries: 2, bytes: 6 }, 'the same input again replaces its entry');
});

test('with the record off nothing is kept in doubt', () => {
  const r = new AnsweredRecord({ maxEntries: 0, maxAgeMs: 1000 });
  r.rememberInDoubt({ messageId: 'm' }, reply(1), 0);
  assert.equal(r.inDoubt(again({ messageId: 'm' }), 0), undefined);
  assert.deepEqual(r.inDoubtSize, { entries: 0, bytes: 0 });
});

test('a redelivery of an input whose reply is on its way waits for that first copy to be settled', async () => {
  const r = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000 });
  const first = { correlationId: 'c1' };
  assert.equal(r.firstCopySettled(again({ correlationId: 'c1' })), undefined, 'no reply on its way: no wait');
  r.replyingFor(first);
  assert.equal(r.firstCopySettled({ correlationId: 'c1', redelivered: false }), undefined, 'a new message never waits');
  let released = false;
  const waiting = r.firstCopySettled(again({ correlationId: 'c1' }))!.then(() => (released = true));
  r.settled({ correlationId: 'c1' });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(released, false, 'only the first copy itself settles it');
  r.remember(first, 1);
  r.settled(first);
  await waiting;
  assert.equal(r.wasAnswered(again({ correlationId: 'c1' }), 2), true, 'and by then its fate is recorded');
  assert.equal(r.firstCopySettled(again({ correlationId: 'c1' })), undefined, 'settled: no more waiting');
});

test('a redelivery waits for the copy in flight with its key, never for itself', async () => {
  const r = new AnsweredRecord({ maxEntries: 10, maxAgeMs: 60_000 });
  const first = { messageId: 'm' };
  const second = { messageId: 'm', redelivered: true };
  const third = { messageId: 'm', redelivered: true };
  r.replyingFor(first);
  const waiting = r.firstCopySettled(third)!;
  r.replyingFor(second);
  r.settled(first);
  await waiting;
  assert.ok(r.firstCopySettled(third), 'woken, it finds the second copy in flight and waits again');
  r.settled(second);
  assert.equal(r.firstCopySettled(third), undefined);
  r.replyingFor(third);
  assert.equal(r.firstCopySettled(third), undefined, 'its own reply on its way is no reason to wait');
});

test('the count bound counts replies: a key answered again and again takes a place each time, and is known at its latest', () => {
  const r = new AnsweredRecord({ maxEntries: 3, maxAgeMs: 1e9 });
  r.remember({ messageId: 'first' }, 0);
  for (let i = 1; i <= 20_000; i++) r.remember({ messageId: 'again' }, i);
  r.remember({ messageId: 'b' }, 20_001);
  assert.equal(r.size, 3);
  const known = (now: number) =>
    ['first', 'again', 'b', 'c', 'd'].filter((k) => r.wasAnswered(again({ messageId: k }), now));
  assert.deepEqual(known(20_002), ['again', 'b'], 'first was pushed out by the last three replies');
  r.remember({ messageId: 'c' }, 20_003);
  assert.deepEqual(known(20_004), ['again', 'b', 'c']);
  r.remember({ messageId: 'd' }, 20_005);
  assert.deepEqual(known(20_006), ['b', 'c', 'd'], "again's latest place was the oldest");
});

test('the index a redelivery builds follows the replies after it, and is rebuilt right once dropped for idleness', () => {
  const r = new AnsweredRecord({ maxEntries: 4, maxAgeMs: 1e9 });
  for (const [i, id] of ['a', 'b', 'c', 'a'].entries()) r.remember({ messageId: id }, i);
  const known = (now: number) => ['a', 'b', 'c', 'd', 'e'].filter((k) => r.wasAnswered(again({ messageId: k }), now));
  assert.deepEqual(known(10), ['a', 'b', 'c'], 'built now');
  r.remember({ messageId: 'd' }, 11); // the first a leaves; its later place keeps a known
  assert.deepEqual(known(12), ['a', 'b', 'c', 'd']);
  r.remember({ messageId: 'e' }, 13);
  r.remember({ correlationId: 'a' }, 14); // a correlation id is another key than a message id
  assert.deepEqual(known(15), ['a', 'd', 'e'], 'b and c pushed out while the index is kept');
  assert.equal(r.wasAnswered(again({ correlationId: 'a' }), 15), true);
  assert.equal(r.wasAnswered(again({ correlationId: 'd' }), 15), false);
  // No redelivery for longer than the idle time: the next reply drops the index, the next redelivery rebuilds it.
  r.remember({ messageId: 'b' }, 15 + INDEX_IDLE_MS + 1);
  assert.equal((r as unknown as { index?: unknown }).index, undefined, 'dropped');
  assert.deepEqual(known(15 + INDEX_IDLE_MS + 2), ['b', 'd', 'e'], 'the message id a pushed out meanwhile');
  assert.ok((r as unknown as { index?: unknown }).index, 'built again');
});

test('the count bound holds over many times its size (its cost is in bench/stages.ts)', () => {
  const r = new AnsweredRecord({ maxEntries: 1000, maxAgeMs: 60_000 });
  for (let i = 0; i < 50_000; i++) r.remember({ messageId: `m${i}` }, i);
  assert.equal(r.size, 1000);
  assert.equal(r.wasAnswered(again({ messageId: 'm48999' }), 50_000), false, 'the 1,001st newest is forgotten');
  assert.equal(r.wasAnswered(again({ messageId: 'm49000' }), 50_000), true, 'the 1,000th newest is kept');
});

test('a key remembered twice in the same millisecond is kept until its newest place is the oldest', () => {
  const r = new AnsweredRecord({ maxEntries: 2, maxAgeMs: 60_000 });
  r.remember({ messageId: 'a' }, 5);
  r.remember({ messageId: 'a' }, 5);
  r.remember({ messageId: 'b' }, 5);
  assert.equal(r.wasAnswered(again({ messageId: 'a' }), 5), true);
  r.remember({ messageId: 'c' }, 5);
  assert.equal(r.wasAnswered(again({ messageId: 'a' }), 5), false);
  assert.equal(r.wasAnswered(again({ messageId: 'b' }), 5), true);
});

test('ids are remembered by a 53-bit hash: none of 400,000 ids of the usual shapes share one, nor an id as messageId and as correlationId', () => {
  const ids = new Set<string>();
  for (let i = 0; i < 50_000; i++)
    for (const id of [`m${i}`, crypto.randomUUID(), i.toString(36), `run1:${i}`]) ids.add(id);
  const hashes = new Set<number>();
  for (const id of ids)
    for (const kind of [0, 1]) {
      const h = idHash(id, kind);
      assert.ok(Number.isSafeInteger(h) && h >= 0, String(h));
      hashes.add(h);
    }
  assert.ok(ids.size > 190_000);
  assert.equal(hashes.size, 2 * ids.size);
  for (const [a, b] of [
    ['e', 'd'],
    ['a', '`'],
    ['', ' '],
  ])
    assert.notEqual(idHash(a, 0), idHash(b, 1), `${a} / ${b}`);
});

test('the ring grows to maxEntries and wraps round, the index following every place it gains and loses', () => {
  const r = new AnsweredRecord({ maxEntries: 3000, maxAgeMs: 1e9 });
  for (let i = 0; i < 1500; i++) r.remember({ messageId: `a${i}` }, i);
  assert.equal(r.wasAnswered(again({ messageId: 'a0' }), 1500), true, 'the index is built');
  for (let i = 0; i < 4000; i++) r.remember({ correlationId: `b${i}` }, 1500 + i);
  assert.equal(r.size, 3000);
  const known = (ids: string[], kind: 'messageId' | 'correlationId') =>
    ids.filter((id) => r.wasAnswered(again({ [kind]: id }), 6000)).length;
  assert.equal(
    known(
      Array.from({ length: 1500 }, (_, i) => `a${i}`),
      'messageId',
    ),
    0,
    'pushed out',
  );
  assert.equal(
    known(
      Array.from({ length: 1000 }, (_, i) => `b${i}`),
      'correlationId',
    ),
    0,
    'the oldest thousand b',
  );
  assert.equal(
    known(
      Array.from({ length: 3000 }, (_, i) => `b${1000 + i}`),
      'correlationId',
    ),
    3000,
  );
  (r as unknown as { index?: unknown }).index = undefined;
  assert.equal(
    known(
      Array.from({ length: 3000 }, (_, i) => `b${1000 + i}`),
      'correlationId',
    ),
    3000,
    'rebuilt from the ring',
  );
  assert.equal(known(['b999', 'b1000'], 'messageId'), 0, 'kept under its own kind of id only');
});
