import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AnsweredRecord, answeredKeyOf } from '../../src/answered-record.js';

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
