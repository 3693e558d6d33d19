import assert from 'node:assert/strict';
import { test } from 'node:test';
import { segmentsOf, segmentTable } from '../../bench/segments.js';

// tshark's lines as bench/segments.ts asks for them: time|src port|dst port|routing keys|correlation ids.
// 5672 is the broker; 4001 the load generator, 4002 and 4003 the consumer's consume and publish links, 4004 the reader.
const lines = [
  '10.000|4001|5672|in|L0.1',
  '10.001|5672|4002|in|L0.1',
  '10.0015|4001|5672|in,in|L0.2,L0.3',
  '10.003|4003|5672|in.replies|L0.1',
  // A reply's content header in a packet of its own: no routing key, known by its connection.
  '10.0045|4003|5672||L0.2',
  '10.004|5672|4002|in,in|L0.2,L0.3',
  '10.006|5672|4004|in.replies|L0.1',
  '10.007|5672|4004|in.replies|L0.2',
  // L0.3's reply is not in the capture: it is left out, not counted as zero.
  '10.008|4001|5672|in|',
  '',
];

test('bench segments split each reply latency into the broker before the consumer, the consumer and the broker after it', () => {
  const s = segmentsOf(lines, 5672);
  const round = (xs: number[]) => xs.map((x) => Math.round(x * 10) / 10);
  assert.deepEqual(round(s['broker before the consumer']), [1, 2.5]);
  assert.deepEqual(round(s['the consumer']), [2, 0.5]);
  assert.deepEqual(round(s['broker after the consumer']), [3, 2.5]);
  assert.deepEqual(round(s['on the wire, all']), [6, 5.5]);
});

test('bench segments: a frame seen twice (a redelivery, a copy) keeps its first time', () => {
  const s = segmentsOf([...lines, '10.009|5672|4002|in|L0.1'], 5672);
  assert.deepEqual(
    s['broker before the consumer'].map((x) => Math.round(x * 10) / 10),
    [1, 2.5],
  );
});

test('bench segments table names each segment and says when no message was seen whole', () => {
  const table = segmentTable(segmentsOf(lines, 5672));
  assert.match(table, /segments of 2 messages/);
  assert.match(table, /the consumer +0\.50 +2\.00 +2\.00 +2\.00/);
  assert.match(segmentTable(segmentsOf([], 5672)), /no message was seen in all four frames/);
});
