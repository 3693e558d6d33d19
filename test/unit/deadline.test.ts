import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deadlineOf, expiredOutcome, isExpired, publishedAtMs, queueWaitMs } from '../../src/deadline.js';

const T0 = Date.parse('2026-12-01T10:00:00Z');
const seconds = T0 / 1000;

test('x-deadline as RFC 3339 or epoch milliseconds is an absolute deadline', () => {
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline': '2026-12-01T10:00:05.250Z' } }, T0, 0), {
    atMs: T0 + 5250,
    origin: 'x-deadline',
  });
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline': '2026-12-01T11:00:05+01:00' } }, T0, 0), {
    atMs: T0 + 5000,
    origin: 'x-deadline',
  });
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline': T0 + 7 } }, T0, 0), { atMs: T0 + 7, origin: 'x-deadline' });
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline': String(T0 + 8) } }, T0, 0), {
    atMs: T0 + 8,
    origin: 'x-deadline',
  });
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline': Buffer.from('2026-12-01T10:00:01Z') } }, T0, 0), {
    atMs: T0 + 1000,
    origin: 'x-deadline',
  });
});

test('an x-deadline that is not a time is invalid, and the reason names the header and both forms', () => {
  for (const bad of ['tomorrow', '2026-12-01', '2026-12-01T10:00:00', seconds, true, -5]) {
    const d = deadlineOf({ headers: { 'x-deadline': bad } }, T0, 0);
    assert.ok('invalid' in d, `${String(bad)} is refused`);
    assert.match(d.invalid, /x-deadline/);
    assert.match(d.invalid, /RFC 3339.*epoch milliseconds/);
    assert.equal(isExpired(d, T0 + 1e9), false, 'invalid is not expired: it gets its own error');
  }
});

test('x-deadline-ms counts from the AMQP timestamp (seconds), else from receipt', () => {
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline-ms': 1500 }, timestamp: seconds }, T0 + 900, 0), {
    atMs: T0 + 1500,
    origin: 'x-deadline-ms',
  });
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline-ms': '1500' } }, T0 + 900, 0), {
    atMs: T0 + 2400,
    origin: 'x-deadline-ms',
  });
  const bad = deadlineOf({ headers: { 'x-deadline-ms': 'soon' } }, T0, 0);
  assert.ok('invalid' in bad && bad.invalid.includes('x-deadline-ms "soon"'));
});

test('a timestamp too large to be seconds is read as milliseconds', () => {
  assert.equal(publishedAtMs(seconds), T0);
  assert.equal(publishedAtMs(T0), T0);
  assert.equal(publishedAtMs(undefined), undefined);
  assert.equal(publishedAtMs(0), undefined);
  assert.deepEqual(deadlineOf({ headers: { 'x-deadline-ms': 10 }, timestamp: T0 }, T0, 0), {
    atMs: T0 + 10,
    origin: 'x-deadline-ms',
  });
});

test('AMQP expiration counts as a deadline from the timestamp', () => {
  assert.deepEqual(deadlineOf({ expiration: '3000', timestamp: seconds }, T0 + 10, 0), {
    atMs: T0 + 3000,
    origin: 'expiration',
  });
  assert.deepEqual(deadlineOf({ expiration: '3000' }, T0 + 10, 0), { atMs: T0 + 3010, origin: 'expiration' });
});

test('when an input carries several deadlines, the earliest wins', () => {
  const d = deadlineOf(
    { headers: { 'x-deadline': T0 + 5000, 'x-deadline-ms': 2000 }, expiration: '4000', timestamp: seconds },
    T0,
    60_000,
  );
  assert.deepEqual(d, { atMs: T0 + 2000, origin: 'x-deadline-ms' });
  assert.deepEqual(
    deadlineOf({ headers: { 'x-deadline': T0 + 1000 }, expiration: '4000', timestamp: seconds }, T0, 0),
    { atMs: T0 + 1000, origin: 'x-deadline' },
  );
});

test('DEADLINE_MS applies to inputs that carry none, and only to them; 0 means none', () => {
  assert.deepEqual(deadlineOf({ timestamp: seconds }, T0 + 5, 250), { atMs: T0 + 250, origin: 'DEADLINE_MS' });
  assert.deepEqual(deadlineOf({}, T0, 250), { atMs: T0 + 250, origin: 'DEADLINE_MS' });
  assert.deepEqual(
    deadlineOf({ headers: { 'x-deadline-ms': 10_000 } }, T0, 250),
    { atMs: T0 + 10_000, origin: 'x-deadline-ms' },
    'its own, even a later one',
  );
  const none = deadlineOf({}, T0, 0);
  assert.equal(isExpired(none, Number.MAX_SAFE_INTEGER), false);
});

test('isExpired is true only past the deadline', () => {
  const d = deadlineOf({ headers: { 'x-deadline': T0 } }, T0, 0);
  assert.equal(isExpired(d, T0 - 1), false);
  assert.equal(isExpired(d, T0), false, 'at the deadline is still in time');
  assert.equal(isExpired(d, T0 + 1), true);
});

test('the EXPIRED reply says when, by which rule, and how late', () => {
  const d = deadlineOf({ headers: { 'x-deadline-ms': 100 }, timestamp: seconds }, T0, 0);
  assert.ok('atMs' in d);
  const o = expiredOutcome(d, T0 + 350);
  assert.deepEqual(o, {
    ok: false,
    code: 'EXPIRED',
    message: 'input expired at 2026-12-01T10:00:00.100Z (x-deadline-ms), 250 ms before it could be scored: not scored',
  });
});

test('queue wait is the time from the timestamp to delivery, never negative, none without a timestamp', () => {
  assert.equal(queueWaitMs(seconds, T0 + 1234), 1234);
  assert.equal(queueWaitMs(seconds, T0 - 500), 0, 'the producer clock ahead of ours');
  assert.equal(queueWaitMs(undefined, T0), undefined);
});
