/** The `scorer submit` file formats and its in-order writer: pure, no broker. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InOrder } from '../../src/cli/in-order.js';
import { correlationIdFor, lineOf, prepareLine, readWrittenResults, resultRecord } from '../../src/cli/records.js';

const body = (p: ReturnType<typeof prepareLine>) => ('body' in p ? JSON.parse(p.body.toString()) : p);

test('a line that is an object with a data key is sent as it is; any other JSON is wrapped as {"data": line}', () => {
  assert.deepEqual(body(prepareLine('{"data": [[1,2,3,4]], "id": 7}')), { data: [[1, 2, 3, 4]], id: 7 });
  assert.deepEqual(body(prepareLine('[[1,2,3,4]]')), { data: [[1, 2, 3, 4]] });
  assert.deepEqual(body(prepareLine('{"input": [1]}')), { data: { input: [1] } });
  assert.deepEqual(body(prepareLine('"text"')), { data: 'text' });
  assert.deepEqual(body(prepareLine('null')), { data: null });
});

test('a line that is not JSON is not sent and says why', () => {
  const p = prepareLine('not json');
  assert.ok('error' in p);
  assert.match(p.error, /^line is not JSON/);
});

test("correlation ids carry the run id and the line number, and only this run's are read back", () => {
  assert.equal(correlationIdFor('run1', 42), 'run1:42');
  assert.equal(lineOf('run1', 'run1:42'), 42);
  assert.equal(lineOf('run1', 'run2:42'), undefined);
  assert.equal(lineOf('run1', 'run1:x'), undefined);
  assert.equal(lineOf('run1', undefined), undefined);
});

test('an ok reply becomes {"line", "status": "ok", "result"} and an error reply {"line", "status": "error", "error", "code"}', () => {
  const ok = resultRecord(3, { headers: { 'x-status': 'ok' }, body: Buffer.from('{"label":[0]}') });
  assert.deepEqual(JSON.parse(ok.text), { line: 3, status: 'ok', result: { label: [0] } });
  assert.ok(ok.ok && ok.text.endsWith('\n'));
  const err = resultRecord(4, {
    headers: { 'x-status': 'error', 'x-error-code': 'SHAPE' },
    body: Buffer.from('"expects shape [-1,4], got [1,3]"'),
  });
  assert.deepEqual(JSON.parse(err.text), {
    line: 4,
    status: 'error',
    error: 'expects shape [-1,4], got [1,3]',
    code: 'SHAPE',
  });
  assert.equal(err.ok, false);
});

test('a results file is read back up to its last complete record', () => {
  const text = '{"line":1,"status":"ok","result":1}\n{"line":3,"status":"error","error":"x"}\n{"line":4,"sta';
  const w = readWrittenResults(text);
  assert.deepEqual(w, { lastLine: 3, ok: 1, errors: 1, validLength: text.indexOf('{"line":4') });
  assert.deepEqual(readWrittenResults(''), { lastLine: 0, ok: 0, errors: 0, validLength: 0 });
});

test('a results file out of order, or not ours, is refused', () => {
  assert.throws(
    () => readWrittenResults('{"line":2,"status":"ok","result":1}\n{"line":1,"status":"ok","result":1}\n'),
    /input order/,
  );
  assert.throws(() => readWrittenResults('hello\n'), /not a result record/);
});

test('results are released in input order, each with its ack', () => {
  const order = new InOrder<string>(0, 0);
  for (const line of [1, 2, 4]) order.expect(line);
  assert.equal(order.resolve(2, 'two\n', true, 'ack2'), 'accepted');
  assert.deepEqual(order.takeReady(), []);
  assert.equal(order.resolve(1, 'one\n', false, 'ack1'), 'accepted');
  assert.deepEqual(
    order.takeReady().map((r) => [r.line, r.text, r.ack]),
    [
      [1, 'one\n', 'ack1'],
      [2, 'two\n', 'ack2'],
    ],
  );
  assert.equal(order.pending, 1);
  order.resolve(4, 'four\n', true, 'ack4');
  assert.deepEqual(
    order.takeReady().map((r) => r.line),
    [4],
  );
  assert.equal(order.pending, 0);
});

test('a second reply for a line, or one for a line already written, is a duplicate', () => {
  const order = new InOrder<string>(5, 5);
  order.expect(6);
  assert.equal(order.resolve(6, 'a\n', true), 'accepted');
  assert.equal(order.resolve(6, 'b\n', true), 'duplicate');
  assert.equal(order.resolve(3, 'old\n', true), 'duplicate');
  assert.equal(order.resolve(99, 'never sent\n', true), 'duplicate');
});

test('when resuming, a reply to a line sent by the interrupted run may come before the input reaches it', () => {
  const order = new InOrder<string>(10, 20);
  assert.equal(order.resolve(15, 'fifteen\n', true, 'ack15'), 'early');
  assert.equal(order.resolve(15, 'again\n', true, 'again'), 'duplicate');
  assert.equal(order.resolve(25, 'unsent\n', true), 'duplicate');
  for (let line = 11; line <= 15; line++) order.expect(line);
  for (let line = 11; line <= 14; line++) order.resolve(line, `${line}\n`, true);
  assert.deepEqual(
    order
      .takeReady()
      .map((r) => [r.line, r.ack])
      .at(-1),
    [15, 'ack15'],
  );
  order.resolve(18, 'eighteen\n', true, 'ack18');
  assert.deepEqual(order.takeStrays(), ['ack18']);
});
