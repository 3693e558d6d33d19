/** What `scorer dead-letters` reads from a parked message and writes back: pure, no broker. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  ANSWERED_HEADER,
  PASS_HEADER,
  copyProperties,
  describeParked,
  listLine,
  passOf,
  poisonText,
  requestKey,
  type ParkedMessage,
} from '../../src/cli/parked.js';
import { PassJournal, defaultStatePath, openPass } from '../../src/cli/pass-state.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-parked-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** As amqplib hands over a message that a quorum queue with x-delivery-limit dead-lettered (read from RabbitMQ 3.10.8). */
const parked = (
  over: Partial<ParkedMessage['properties']> = {},
  headers: Record<string, unknown> = {},
): ParkedMessage => ({
  body: Buffer.from('{"data":[1,2]}'),
  properties: {
    correlationId: 'c1',
    messageId: 'm1',
    replyTo: 'caller.q',
    deliveryMode: 2,
    timestamp: 1796119912,
    userId: 'guest',
    ...over,
    headers: {
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      'x-death': [
        {
          count: 1,
          reason: 'delivery_limit',
          queue: 'scoring.requests',
          time: { '!': 'timestamp', value: 1796119912 },
          exchange: '',
          'routing-keys': ['scoring.requests'],
        },
      ],
      'x-delivery-count': 0,
      'x-first-death-exchange': '',
      'x-first-death-queue': 'scoring.requests',
      'x-first-death-reason': 'delivery_limit',
      ...headers,
    },
  },
});

test('a parked message says why, from where, how often and when it was dead-lettered', () => {
  const info = describeParked(parked(), 3);
  assert.deepEqual(info, {
    reason: 'delivery_limit',
    deaths: 1,
    bytes: 14,
    correlationId: 'c1',
    messageId: 'm1',
    replyTo: 'caller.q',
    fromQueue: 'scoring.requests',
    deliveries: 4,
    deadLetteredAt: new Date(1796119912 * 1000).toISOString(),
  });
  const twice = describeParked(
    parked(
      {},
      { 'x-death': [{ count: 2, reason: 'delivery_limit', queue: 'q', time: { '!': 'timestamp', value: 1 } }] },
    ),
    1,
  );
  assert.equal(twice.deaths, 2);
  assert.equal(twice.deliveries, 4, 'two deaths of two deliveries each');
  const rejected = describeParked(
    parked({}, { 'x-first-death-reason': 'rejected', 'x-death': [{ count: 1, reason: 'rejected', queue: 'q' }] }),
    3,
  );
  assert.equal(rejected.reason, 'rejected');
  assert.equal(rejected.deliveries, undefined, 'a classic queue does not count them');
  assert.equal(
    describeParked({ body: Buffer.alloc(0), properties: {} }, 3).reason,
    'unknown',
    'published there by hand',
  );
});

test('a message marked answered says when', () => {
  assert.equal(
    describeParked(parked({}, { [ANSWERED_HEADER]: '2026-12-01T10:00:00.000Z' }), 3).answeredAt,
    '2026-12-01T10:00:00.000Z',
  );
});

test('the POISON text is one line naming the queue it is parked in and why', () => {
  const text = poisonText(describeParked(parked(), 3), 'scoring.requests.dead');
  assert.equal(
    text,
    "input not scored: it was delivered 4 times without an answer (each time the entry script's process died); it is parked in queue 'scoring.requests.dead' for the operators",
  );
  assert.match(
    poisonText(describeParked(parked({}, { 'x-first-death-reason': 'expired' }), 3), 'd'),
    /dead-lettered \(expired\).*queue 'd'/,
  );
});

test("a copy keeps the body's request as it was: properties and headers, x-death included, plus ours; not the dead queue's delivery count or user-id", () => {
  const p = copyProperties(parked(), { [PASS_HEADER]: 'run1' });
  assert.equal(p.correlationId, 'c1');
  assert.equal(p.messageId, 'm1');
  assert.equal(p.replyTo, 'caller.q');
  assert.equal(p.timestamp, 1796119912);
  assert.equal(p.persistent, true);
  assert.equal(p.userId, undefined, 'RabbitMQ refuses a user-id that is not the publisher’s');
  assert.equal(p.headers['x-delivery-count'], undefined);
  assert.ok(Array.isArray(p.headers['x-death']));
  assert.equal(p.headers.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  assert.equal(passOf({ body: Buffer.alloc(0), properties: p }), 'run1');
  assert.equal(
    copyProperties(parked({ deliveryMode: 1 }), {}).persistent,
    false,
    'a transient message stays transient',
  );
});

test('the request key is the same for a copy and its original, and differs between requests', () => {
  const original = parked();
  const copy: ParkedMessage = {
    body: original.body,
    properties: copyProperties(original, { [PASS_HEADER]: 'run1', [ANSWERED_HEADER]: 'now' }),
  };
  assert.equal(requestKey(copy), requestKey(original));
  assert.notEqual(requestKey(parked({ correlationId: 'c2' })), requestKey(original));
  assert.notEqual(requestKey(parked({ replyTo: 'other.caller' })), requestKey(original));
  assert.notEqual(requestKey({ ...original, body: Buffer.from('{"data":[1,3]}') }), requestKey(original));
});

test('a list line has the id, the reason, the counts, the time, the caller and whether it was answered', () => {
  const line = listLine(7, describeParked(parked(), 3));
  assert.match(
    line,
    /^ {4}7 {2}c1 {2}reason=delivery_limit from scoring\.requests {2}deaths=1 {2}deliveries=4 {2}at=20\d\d-.*Z {2}replyTo=caller\.q {2}answered=no {2}14 B$/,
  );
});

test('a pass state file: a new pass, then the same pass resumed with what it finished and how many copies it made', () => {
  const path = join(dir, defaultStatePath('scoring.requests.dead'));
  assert.match(path, /scorer-dead-letters\.scoring\.requests\.dead\.state\.jsonl$/);
  const fresh = openPass(path, 'answer', 'scoring.requests.dead', 40);
  assert.equal(fresh.resumed, false);
  assert.equal(fresh.header.parked, 40);
  const journal = new PassJournal(path);
  journal.record(['a', 'b']);
  journal.close();
  writeFileSync(path, `${readFileSync(path, 'utf8')}{"k":"cut sho`); // a kill mid-write
  const again = openPass(path, 'answer', 'scoring.requests.dead', 77);
  assert.equal(again.resumed, true);
  assert.equal(again.header.runId, fresh.header.runId, 'the same pass: it knows its own copies');
  assert.equal(again.header.parked, 40, 'its size is what was parked when it began, not what is parked now');
  assert.deepEqual([...again.done], ['a', 'b']);
  assert.throws(
    () => openPass(path, 'replay', 'scoring.requests.dead', 1),
    /interrupted `dead-letters answer` of 'scoring.requests.dead' is unfinished .*run it again to finish it first/,
  );
  assert.throws(
    () => openPass(path, 'answer', 'other.dead', 1),
    /a pass over 'scoring.requests.dead', not 'other.dead'/,
  );
  new PassJournal(path).remove();
  assert.equal(openPass(path, 'replay', 'scoring.requests.dead', 1).resumed, false, 'once removed, a new pass');
});
