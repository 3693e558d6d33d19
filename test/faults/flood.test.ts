import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WatchedRun, report, sampleRss } from '../support/faults.js';

const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_TENSOR_ELEMENTS = 4096;
let run: WatchedRun;

before(async () => {
  run = await WatchedRun.open('flood');
});

after(() => run.close());

/** A seeded generator, so a failure can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Case {
  kind: string;
  body: Buffer;
  expect: 'ok' | 'error';
}

const ROW = '[5.1,3.5,1.4,0.2]';
const rows = (n: number, row = ROW) => `[${Array.from({ length: n }, () => row).join(',')}]`;
const nested = (depth: number, open: string, close: string, leaf: string) =>
  open.repeat(depth) + leaf + close.repeat(depth);

/** One hostile message of each kind, varied by `r`; every one must get an error reply. */
function hostile(r: () => number): Array<[string, string | Buffer]> {
  const n = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
  const good = `{"data":${rows(n(1, 20))}}`;
  return [
    ['random bytes', Buffer.from(Array.from({ length: n(0, 2000) }, () => n(0, 256)))],
    ['truncated JSON', good.slice(0, n(1, good.length - 1))],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from('{"data":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe]), Buffer.from('"}')]),
    ],
    ['nesting 100,000 deep', `{"data":${nested(100_000, '[', ']', '1')}}`],
    ['nesting 30,000 deep', `{"data":${nested(30_000, '[', ']', '1')}}`],
    ['unclosed nesting', `{"data":${'['.repeat(n(65, 60_000))}`],
    ['deeply nested objects', `{"data":${nested(n(65, 5000), '{"a":', '}', '1')}}`],
    ['nested objects within the depth limit', `{"data":${nested(n(2, 60), '{"a":', '}', ROW)}}`],
    ['over MAX_MESSAGE_BYTES', `{"data":[[1,2,3,4]],"pad":"${'x'.repeat(MAX_MESSAGE_BYTES + n(0, 4096))}"}`],
    ['NaN', `{"data":[[NaN,1,2,3]]}`],
    ['Infinity', `{"data":[[1,${r() < 0.5 ? '-' : ''}Infinity,2,3]]}`],
    ['1e400', `{"data":[[1e400,1,2,3]]}`],
    ['1e39 for float32', `{"data":[[5.1,${r() < 0.5 ? '-' : ''}1e39,1.4,0.2]]}`],
    ['string where a number belongs', `{"data":[["5.1","3.5","1.4","0.2"]]}`],
    ['null, bool or object elements', `{"data":[[${['null', 'true', '{}', '"x"'][n(0, 4)]},1,2,3]]}`],
    ['wrong width', `{"data":[[${'1,'.repeat([0, 1, 2, 4, 5, 7, 99][n(0, 7)])}1]]}`],
    ['wrong rank', `{"data":${['[1,2,3,4]', '[[[1,2,3,4]]]', '1', '[[[[[[1]]]]]]'][n(0, 4)]}}`],
    ['ragged rows', `{"data":[${ROW},[1,2,3]]}`],
    ['a row that is not an array', `{"data":[${ROW},5]}`],
    ['empty arrays', `{"data":${['[]', '[[]]', '[[],[]]', `[${ROW},[]]`][n(0, 4)]}}`],
    ['wrong data type', `{"data":${['"abc"', '42', 'null', 'true', '{}', '{"other_input":[[1,2,3,4]]}'][n(0, 6)]}}`],
    ['a long string as data', `{"data":"${'x'.repeat(n(1000, 60_000))}"}`],
    ['many keys', `{"data":{${Array.from({ length: n(10, 4000) }, (_, i) => `"k${i}":1`).join(',')}}}`],
    ['__proto__ key at the top', `{"__proto__":{"data":${rows(1)}}}`],
    ['__proto__ key in data', `{"data":{"__proto__":${rows(1)}}}`],
    ['constructor.prototype', `{"constructor":{"prototype":{"data":${rows(1)}}}}`],
    ['over MAX_TENSOR_ELEMENTS', `{"data":${rows(n(1025, 1600), '[1,2,3,4]')}}`],
    ['a row of 20,000 elements', `{"data":[[${'0,'.repeat(19_999)}0]]}`],
    ['not an object', ['[1,2]', '"str"', '42', 'null', 'true', ''][n(0, 6)]],
    ['no data key', ['{}', '{"dat":[[1,2,3,4]]}', '{"DATA":1}'][n(0, 3)]],
  ];
}

/** The error codes each hostile kind may get: the reply names what is wrong, not just that something is. */
const CODES: Record<string, readonly string[]> = {
  // Random bytes are mostly not UTF-8; the rest is mostly not JSON, and a digit or two is JSON but no object.
  'random bytes': ['BAD_UTF8', 'BAD_JSON', 'NOT_OBJECT'],
  'truncated JSON': ['BAD_JSON'],
  'invalid UTF-8': ['BAD_UTF8'],
  // 200 KB: the size is checked before anything is read.
  'nesting 100,000 deep': ['TOO_LARGE'],
  'nesting 30,000 deep': ['TOO_DEEP'],
  // Fewer than 65 brackets never happens (n(65, ...)): too deep before it is found unterminated.
  'unclosed nesting': ['TOO_DEEP'],
  'deeply nested objects': ['TOO_DEEP'],
  'nested objects within the depth limit': ['SHAPE'],
  'over MAX_MESSAGE_BYTES': ['TOO_LARGE'],
  NaN: ['BAD_JSON'],
  Infinity: ['BAD_JSON'],
  // Read as Infinity: not a float32 (TYPE) for the model's reader; BAD_JSON once parseMessage rejects it (see message.test.ts).
  '1e400': ['BAD_JSON', 'TYPE'],
  '1e39 for float32': ['TYPE'],
  'string where a number belongs': ['TYPE'],
  'null, bool or object elements': ['TYPE'],
  'wrong width': ['SHAPE'],
  'wrong rank': ['SHAPE'],
  'ragged rows': ['SHAPE'],
  'a row that is not an array': ['SHAPE'],
  'empty arrays': ['SHAPE'],
  'wrong data type': ['SHAPE'],
  'a long string as data': ['SHAPE'],
  'many keys': ['SHAPE'],
  '__proto__ key at the top': ['NO_DATA'],
  '__proto__ key in data': ['SHAPE'],
  'constructor.prototype': ['NO_DATA'],
  'over MAX_TENSOR_ELEMENTS': ['TOO_MANY_ELEMENTS'],
  'a row of 20,000 elements': ['SHAPE'],
  'not an object': ['NOT_OBJECT', 'BAD_JSON'],
  'no data key': ['NO_DATA'],
  'several MiB': ['TOO_LARGE'],
};

/** Well-formed messages mixed in: each must get an ok reply. */
function controls(r: () => number): Array<[string, string]> {
  const n = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
  return [
    ['control: rows', `{"data":${rows(n(1, 30))}}`],
    ['control: keyed by input name', `{"data":{"float_input":${rows(n(1, 5))}}}`],
    [
      'control: extra keys, __proto__ among them',
      `{"data":${rows(1)},"__proto__":{"polluted":true},"meta":{"a":[1,2]}}`,
    ],
    ['control: extreme but finite float32', `{"data":[[1e9,-1e9,3.4e38,1e-45]]}`],
  ];
}

test('a hostile flood of 10,000+ malformed, over-size and deeply nested messages gets an error reply for each, the well-formed ones mixed in are answered ok, and the consumer stays up with bounded memory', {
  timeout: 120_000,
}, async (t) => {
  const { client, input, watcher } = run;
  const consumer = run.start({
    MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
    MAX_TENSOR_ELEMENTS: String(MAX_TENSOR_ELEMENTS),
  });
  await consumer.waitFor('"msg":"consuming"');
  const rss = sampleRss(consumer.child.pid!);

  const r = prng(20240611);
  const cases: Case[] = [];
  while (cases.length < 10_000) {
    for (const [kind, body] of hostile(r))
      cases.push({ kind, body: Buffer.isBuffer(body) ? body : Buffer.from(body), expect: 'error' });
    for (const [kind, body] of controls(r)) cases.push({ kind, body: Buffer.from(body), expect: 'ok' });
  }
  // A few bodies of several MiB: a row of 3.5 million elements, and padding.
  cases.push({ kind: 'several MiB', body: Buffer.from(`{"data":[[${'0,'.repeat(3_500_000)}0]]}`), expect: 'error' });
  for (const mib of [4, 6, 8])
    cases.push({ kind: 'several MiB', body: Buffer.alloc(mib * 1024 * 1024, 0x5b), expect: 'error' });
  // Shuffled, so every kind meets every other in a batch.
  for (let i = cases.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [cases[i], cases[j]] = [cases[j], cases[i]];
  }
  const ids = cases.map((_, i) => `flood-${i}`);
  await client.publishMany(
    input,
    cases.map((c, i) => ({ body: c.body, options: { correlationId: ids[i] } })),
  );

  const all = await watcher.waitAll(ids, 90_000);
  const { startMiB, peakMiB, endMiB, samples } = await rss.stop();
  const wrong: string[] = [];
  const wrongCode: string[] = [];
  const codes = new Map<string, number>();
  const codesByKind = new Map<string, Set<string>>();
  cases.forEach((c, i) => {
    const [reply] = watcher.of(ids[i]);
    if (!reply) return;
    if (reply.status !== c.expect) wrong.push(`${c.kind} (${ids[i]}): ${reply.status} ${reply.body.slice(0, 200)}`);
    if (reply.status === 'error') {
      codes.set(reply.errorCode ?? '?', (codes.get(reply.errorCode ?? '?') ?? 0) + 1);
      codesByKind.set(c.kind, (codesByKind.get(c.kind) ?? new Set()).add(reply.errorCode ?? '?'));
      if (!CODES[c.kind]?.includes(reply.errorCode ?? '?'))
        wrongCode.push(`${c.kind} (${ids[i]}): ${reply.errorCode} ${reply.body.slice(0, 200)}`);
      assert.equal(typeof JSON.parse(reply.body), 'string', 'an error body is a JSON string');
    }
  });
  const { missing, duplicated } = watcher.tally(ids);
  const hostileCount = cases.filter((c) => c.expect === 'error').length;
  report(
    t,
    `flood: N=${cases.length} (${hostileCount} hostile, ${cases.length - hostileCount} controls), lost=${missing.length}, duplicated=${duplicated}, ` +
      `RSS ${startMiB.toFixed(0)} MiB before, peak ${peakMiB.toFixed(0)} MiB over ${samples} samples, ${endMiB.toFixed(0)} MiB after; error codes ${JSON.stringify(Object.fromEntries([...codes].sort()))}; ` +
      `by kind ${JSON.stringify(Object.fromEntries([...codesByKind].map(([k, s]) => [k, [...s].sort()])))}`,
  );
  assert.ok(
    all,
    `every message answered (${watcher.answered(ids)} of ${ids.length}); first missing: ${missing.slice(0, 5).join(', ')}`,
  );
  assert.deepEqual(wrong.slice(0, 10), [], 'each hostile message gets an error reply, each control an ok one');
  assert.deepEqual(wrongCode.slice(0, 10), [], 'each error reply has the code of what is wrong with its message');
  assert.deepEqual(
    [...codesByKind.keys()].sort(),
    Object.keys(CODES).sort(),
    'every hostile kind was sent and answered',
  );
  assert.equal(duplicated, 0, 'no message answered twice');
  assert.equal(consumer.child.exitCode, null, 'the consumer is still running');
  assert.equal(await client.messageCount(input), 0, 'the input queue is empty');
  assert.equal(await client.messageCount(`${input}.dead`), 0, 'nothing dead-lettered: no message killed the scorer');
});
