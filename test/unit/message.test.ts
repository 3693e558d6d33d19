import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ScoringError, type ErrorCode } from '../../src/errors.js';
import {
  MAX_JSON_DEPTH,
  checkSize,
  dataText,
  jsonKind,
  jsonType,
  parseMessage,
} from '../../src/isolate/parse-message.js';

const MAX = 1 << 20;
const parse = (body: string | Buffer, max = MAX) =>
  parseMessage(typeof body === 'string' ? Buffer.from(body) : body, max);

function rejects(body: string | Buffer, code: ErrorCode, ...parts: (string | RegExp)[]): void {
  rejectsWithin(MAX, body, code, ...parts);
}

function rejectsWithin(max: number, body: string | Buffer, code: ErrorCode, ...parts: (string | RegExp)[]): void {
  assert.throws(
    () => parse(body, max),
    (err: unknown) => {
      assert.ok(err instanceof ScoringError, `expected a ScoringError, got ${String(err)}`);
      assert.equal(err.code, code, err.message);
      assert.ok(!err.message.includes('\n'), 'messages are one line');
      for (const p of parts)
        typeof p === 'string'
          ? assert.ok(err.message.includes(p), `"${err.message}" should include "${p}"`)
          : assert.match(err.message, p);
      return true;
    },
  );
}

const nested = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);

test('the value under "data" comes back parsed', () => {
  assert.deepEqual(parse('{"data": [[5.1, 3.5, 1.4, 0.2]]}'), [[5.1, 3.5, 1.4, 0.2]]);
  assert.deepEqual(parse('{"data": {"a": 1}, "other": "ignored"}'), { a: 1 });
});

test('a body over MAX_MESSAGE_BYTES is rejected before it is decoded, naming its size and the limit', () => {
  rejectsWithin(100, Buffer.alloc(101, 0xff), 'TOO_LARGE', '101 bytes', 'MAX_MESSAGE_BYTES (100)');
  rejectsWithin(100, `{"data": "${'x'.repeat(100)}"}`, 'TOO_LARGE');
  assert.doesNotThrow(() => checkSize(100, 100), 'exactly the limit is allowed');
  assert.throws(() => checkSize(101, 100), { code: 'TOO_LARGE' });
});

test('a body that is not valid UTF-8 is rejected', () => {
  rejects(Buffer.from([0x7b, 0x22, 0x64, 0xff, 0xfe, 0x7d]), 'BAD_UTF8', 'UTF-8');
  rejects(Buffer.from([0xc3]), 'BAD_UTF8'); // a truncated two-byte sequence
});

test("a body that is not JSON is rejected with the parser's reason", () => {
  rejects('nope', 'BAD_JSON', 'not JSON');
  rejects('{"data": [1, 2', 'BAD_JSON');
  rejects('', 'BAD_JSON');
});

test(`JSON nested deeper than ${MAX_JSON_DEPTH} levels is rejected before it is parsed`, () => {
  // The body's own object is the first level.
  assert.doesNotThrow(() => parse(`{"data": ${nested(MAX_JSON_DEPTH - 1)}}`));
  rejects(`{"data": ${nested(MAX_JSON_DEPTH)}}`, 'TOO_DEEP', `deeper than ${MAX_JSON_DEPTH}`);
  rejects(`{"data": ${'{"a":'.repeat(100)}1${'}'.repeat(100)}}`, 'TOO_DEEP');
  rejects('['.repeat(100_000), 'TOO_DEEP');
});

test('brackets inside strings do not count as nesting, escaped quotes included', () => {
  assert.equal(parse(`{"data": "${'['.repeat(200)}"}`), '['.repeat(200));
  assert.equal(parse(`{"data": "\\"${'{'.repeat(200)}"}`), `"${'{'.repeat(200)}`);
});

test('JSON that is not an object is rejected, naming what it is', () => {
  rejects('[{"data": 1}]', 'NOT_OBJECT', 'an array');
  rejects('42', 'NOT_OBJECT', 'a number');
  rejects('null', 'NOT_OBJECT', 'null');
  rejects('"data"', 'NOT_OBJECT', 'a string');
  rejects('true', 'NOT_OBJECT', 'a boolean');
});

test('an object without a "data" key is rejected', () => {
  rejects('{}', 'NO_DATA', '"data"');
  rejects('{"Data": [[1, 2, 3, 4]]}', 'NO_DATA');
});

test('a "data" key reached only through __proto__ does not count', () => {
  rejects('{"__proto__": {"data": [[1, 2, 3, 4]]}}', 'NO_DATA');
  rejects('{"__proto__": null}', 'NO_DATA');
});

test('"data" is present even when its value is null, 0, false or empty', () => {
  assert.equal(parse('{"data": null}'), null);
  assert.equal(parse('{"data": 0}'), 0);
  assert.equal(parse('{"data": false}'), false);
  assert.equal(parse('{"data": ""}'), '');
  assert.deepEqual(parse('{"data": []}'), []);
});

test('a UTF-8 byte order mark before the JSON is accepted', () => {
  assert.equal(parse(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"data": 1}')])), 1);
});

test('dataText is the JSON text of the data value, the string run() receives', () => {
  assert.equal(dataText([[5.1, 3.5, 1.4, 0.2]]), '[[5.1,3.5,1.4,0.2]]');
  assert.equal(dataText({ a: 'é' }), '{"a":"é"}');
  assert.equal(dataText(null), 'null');
  assert.equal(dataText('text'), '"text"');
  assert.equal(dataText(0), '0');
  assert.deepEqual(JSON.parse(dataText(parse('{"data": {"x": [1, 2.5e-3]}}'))), { x: [1, 0.0025] });
});

test('jsonType names a value the way an error message reads', () => {
  assert.equal(jsonType(null), 'null');
  assert.equal(jsonType([]), 'an array');
  assert.equal(jsonType({}), 'an object');
  assert.equal(jsonType(1), 'a number');
  assert.equal(jsonType('s'), 'a string');
  assert.deepEqual([null, [], {}, 1, 's', true].map(jsonKind), [
    'null',
    'array',
    'object',
    'number',
    'string',
    'boolean',
  ]);
});

test('a number beyond a double (1e400, 400 digits) is rejected as BAD_JSON naming where it is; big finite ones and exponents in strings are kept', () => {
  rejects('{"data":[1e400]}', 'BAD_JSON', 'out of range', 'data[0]');
  rejects('{"data":{"x":[1,-1e400]}}', 'BAD_JSON', 'out of range', 'data.x[1]');
  rejects(`{"data":[${'9'.repeat(400)}]}`, 'BAD_JSON', 'out of range');
  assert.deepEqual(parse('{"data":[1e308,-1.7e308,1e-400]}'), [1e308, -1.7e308, 0]);
  assert.deepEqual(parse('{"data":["1e400"]}'), ['1e400']);
});
