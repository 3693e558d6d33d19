/**
 * Where the built-in script scores (INLINE_SCORING): on the consumer's thread for a model whose full
 * batch is cheap, in worker threads otherwise, and the same answers either way, each equal to
 * onnxruntime-node run directly on the same input. No broker: the Scorer is driven directly.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { placementOf, Scorer, scorerOptions } from '../../src/scorer.js';
import { ScriptRuntime } from '../../src/isolate/runtime.js';
import { encode, modelDir, node, numbers, rowWise, tensorInfo } from '../support/onnx-models.js';

const model = rowWise();
const dir = modelDir('rowwise', model);
const scorers: Scorer[] = [];
after(async () => {
  await Promise.all(scorers.map((s) => s.stop()));
});

async function start(env: Record<string, string>, modelFolder = dir): Promise<Scorer> {
  const config = loadConfig({ AMQP_URL: 'amqp://localhost', MODEL_DIR: modelFolder, ...env });
  const scorer = await Scorer.start(scorerOptions(config, pino({ level: 'silent' })));
  scorers.push(scorer);
  return scorer;
}

const placement = (s: Scorer) => s.info.bootLog?.find((l) => l.msg.startsWith('scoring '));

/** `n` rows of 4 numbers, from `seed`: one message each. */
function rows(n: number, seed: number): number[][] {
  const flat = numbers(4 * n, seed);
  return Array.from({ length: n }, (_, k) => flat.slice(4 * k, 4 * k + 4));
}
const bodiesOf = (rs: number[][]) => rs.map((r) => Buffer.from(JSON.stringify({ data: [r] })));

/** Each row's answer from onnxruntime-node alone, as the reply's JSON carries it. */
async function ortAlone(rs: number[][]): Promise<unknown[]> {
  const session = await ort.InferenceSession.create(model);
  try {
    const answers: unknown[] = [];
    for (const r of rs) {
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(r), [1, 4]) });
      answers.push([[...(out.y.data as Float32Array)]]);
    }
    return answers;
  } finally {
    await session.release();
  }
}

async function answers(s: Scorer, rs: number[][]): Promise<unknown[]> {
  const { results } = await s.score(bodiesOf(rs));
  return results.map((r) => {
    assert.ok(r.ok, JSON.stringify(r));
    return JSON.parse(r.body.toString());
  });
}

test('INLINE_SCORING=auto: a model whose full batch costs at most INLINE_MAX_BATCH_MS scores on the consumer thread, and the boot log says what it measured', async () => {
  const s = await start({ INLINE_SCORING: 'auto', INLINE_MAX_BATCH_MS: '1000' });
  const line = placement(s);
  assert.equal(line?.msg, 'scoring on the consumer thread');
  assert.equal(line.fields.rows, 128);
  assert.ok(
    (line.fields.batchCostMs as number) > 0 && (line.fields.batchCostMs as number) <= 1000,
    JSON.stringify(line),
  );
  assert.match(String(line.fields.override), /INLINE_SCORING=off/);
  const rs = rows(40, 3);
  assert.deepEqual(await answers(s, rs), await ortAlone(rs));
});

test('INLINE_SCORING=auto: a full batch over INLINE_MAX_BATCH_MS keeps the model in worker threads, and the boot log says why', async () => {
  const s = await start({ INLINE_SCORING: 'auto', INLINE_MAX_BATCH_MS: '0' });
  const line = placement(s);
  assert.equal(line?.msg, 'scoring in worker threads');
  assert.match(String(line.fields.reason), /more than INLINE_MAX_BATCH_MS/);
  assert.match(String(line.fields.override), /INLINE_SCORING=on/);
  const rs = rows(40, 4);
  assert.deepEqual(await answers(s, rs), await ortAlone(rs));
});

/** x [N, ...dims] → Relu → y: no weights, a shape of our choosing. */
const reluOf = (dims: Array<string | number>) =>
  modelDir(
    'relu',
    encode({
      nodes: [node('Relu', ['x'], ['y'])],
      inputs: [tensorInfo('x', 'float32', ['N', ...dims])],
      outputs: [tensorInfo('y', 'float32', ['N', ...dims])],
    }),
  );

test('INLINE_SCORING=auto leaves in worker threads, untimed, a model whose messages cost what their own shape makes them cost (a free axis beyond the first), and one whose full batch is too many numbers', async () => {
  const free = placement(await start({ INLINE_SCORING: 'auto' }, reluOf([3, 'seq'])));
  assert.equal(free?.msg, 'scoring in worker threads');
  assert.match(String(free.fields.reason), /axis 2 of an input is free/);
  assert.equal(free.fields.batchCostMs, undefined);
  const wide = placement(await start({ INLINE_SCORING: 'auto' }, reluOf([20_000])));
  assert.equal(wide?.msg, 'scoring in worker threads');
  assert.match(String(wide.fields.reason), /2560000 numbers, too many/);
});

test('INLINE_SCORING=auto: a batch of one far over the limit is not followed by a full batch; the estimate is reported as such', async () => {
  const line = placement(await start({ INLINE_SCORING: 'auto', INLINE_MAX_BATCH_MS: '0.001' }));
  assert.equal(line?.msg, 'scoring in worker threads');
  assert.equal(line.fields.estimatedFromOneMessage, true);
  assert.ok((line.fields.batchCostMs as number) > 0.001);
});

test('INLINE_SCORING=off: worker threads, nothing timed; on: the consumer thread, nothing timed; both answer alike', async () => {
  const threads = await start({ INLINE_SCORING: 'off' });
  const inline = await start({ INLINE_SCORING: 'on' });
  assert.equal(placement(threads), undefined);
  assert.equal(placement(inline)?.msg, 'scoring on the consumer thread');
  assert.equal(placement(inline)?.fields.batchCostMs, undefined);
  const rs = rows(64, 5);
  const truth = await ortAlone(rs);
  assert.deepEqual(await answers(threads, rs), truth);
  assert.deepEqual(await answers(inline, rs), truth);
});

test('on the consumer thread, batches scored at once each get the answers of their own inputs (calls taken in turn)', async () => {
  const s = await start({ INLINE_SCORING: 'on', CONCURRENCY: '3' });
  const batches = [rows(50, 11), rows(70, 12), rows(1, 13)];
  const scored = await Promise.all(batches.map((b) => answers(s, b)));
  for (let k = 0; k < batches.length; k++) assert.deepEqual(scored[k], await ortAlone(batches[k]), `batch ${k}`);
});

test('a user entry script is never scored on the consumer thread under INLINE_SCORING=auto', async () => {
  const config = loadConfig({ AMQP_URL: 'amqp://localhost', ENTRY_SCRIPT: 'models/score.ts', MODEL_DIR: 'models' });
  const options = scorerOptions(config, pino({ level: 'silent' }));
  assert.equal(options.inline.mode, 'auto');
  assert.equal(options.isolation, 'process');
  const s = await Scorer.start({ ...options, concurrency: 1 });
  scorers.push(s);
  assert.equal(placement(s), undefined);
});

test('placementOf: at or under INLINE_MAX_BATCH_MS the consumer thread, over it or untimed the worker threads, each line with its reason and the way back', () => {
  const at = placementOf({ ms: 10 }, 10, 128);
  assert.equal(at.inline, true);
  assert.deepEqual(at.line, {
    msg: 'scoring on the consumer thread',
    fields: {
      batchCostMs: 10,
      rows: 128,
      inlineMaxBatchMs: 10,
      reason: 'a full batch costs at most INLINE_MAX_BATCH_MS',
      override: 'set INLINE_SCORING=off for worker threads',
    },
  });
  const over = placementOf({ ms: 58.7034, estimated: true }, 10, 128);
  assert.equal(over.inline, false);
  assert.equal(over.line.msg, 'scoring in worker threads');
  assert.equal(over.line.fields.batchCostMs, 58.703);
  assert.equal(over.line.fields.estimatedFromOneMessage, true);
  const untimed = placementOf({ untimed: 'axis 2 of an input is free' }, 10, 128);
  assert.equal(untimed.inline, false);
  assert.deepEqual(untimed.line.fields, {
    reason: 'axis 2 of an input is free',
    override: 'set INLINE_SCORING=on to score on the consumer thread',
  });
});

test('a batch timing that throws leaves the script in worker threads, untimed, and never fails its boot', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'scorer-probe-'));
  try {
    const script = join(dir, 'odd-schema.ts');
    writeFileSync(
      script,
      `export function init() {}
       export function run(data: string) { return data; }
       export const inputSchema = { get type(): string { throw new Error('boom'); } };`,
    );
    const runtime = new ScriptRuntime();
    const ready = await runtime.init({
      type: 'init',
      entryScript: script,
      context: loadConfigContext(),
      maxMessageBytes: 1 << 20,
      costProbe: { rows: 8, limitMs: 10 },
    });
    assert.equal(ready.type, 'ready', ready.type === 'init-failed' ? ready.message : '');
    assert.deepEqual(ready.type === 'ready' && ready.info.batchCost, { untimed: 'timing a batch failed: boom' });
    assert.deepEqual(
      placementOf({ untimed: 'timing a batch failed: boom' }, 10, 8).inline,
      false,
      'so the script stays where it started',
    );
    await runtime.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** An init context as the consumer gives one (the model folder is not read by this script). */
function loadConfigContext() {
  return scorerOptions(loadConfig({ AMQP_URL: 'amqp://localhost', MODEL_DIR: dir }), pino({ level: 'silent' })).context;
}
