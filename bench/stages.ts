/**
 * Each stage of a message's path measured alone, in this process, on the benchmark's own bodies: CPU
 * time (user + system, all threads) per message over many repetitions, at the batch size the consumer
 * ran at. `npm run bench` prints them beside the consumer's measured CPU per message (the rest is the
 * event loop, timers, promises and the socket system calls no stage here makes), and takes the reading
 * and onnxruntime terms of the MLP target from here.
 *
 *   node --import tsx bench/stages.ts [--models iris,mlp] [--batch 64] [--stage reply] [--iterations N]
 *
 * `--stage` runs one stage only, for an instruction count that wall-clock noise cannot move:
 *   valgrind --tool=callgrind --callgrind-out-file=/dev/null node --import tsx bench/stages.ts --stage reply --iterations 20000
 * (compare two encoders or two checkouts by the totals valgrind prints, same iterations).
 */
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { AnsweredRecord } from '../src/answered-record.js';
import { AckWindow } from '../src/broker/acks.js';
import { encodeReplyPublish } from '../src/broker/reply-frames.js';
import { toDelivery } from '../src/broker/delivery.js';
import { readNpy } from '../src/isolate/npy.js';
import { readNumericTensor } from '../src/isolate/numeric-data.js';
import { packBodies, packOutcomes, unpackOutcomes, type PackedOutcomes } from '../src/isolate/protocol.js';
import { stack } from '../src/onnx/batching.js';
import { AnswerWriter } from '../src/onnx/answer-json.js';
import { splitOutputs, type TensorData, type TensorSpec } from '../src/onnx/tensors.js';
import { buildReply } from '../src/reply.js';
import { benchModels, npyBodies, type BenchModel } from './models.js';
import { defs, frames } from '../test/support/amqplib-codec.js';

export interface StageCosts {
  model: string;
  batch: number;
  /** µs of CPU per message, by stage. */
  us: Record<string, number>;
}

/** CPU µs per call of `fn` (each call handles `perCall` messages), after a warm-up. */
async function cpuPerMessage(fn: () => unknown | Promise<unknown>, calls: number, perCall: number): Promise<number> {
  for (let i = 0; i < Math.min(200, calls); i++) await fn();
  const before = process.cpuUsage();
  for (let i = 0; i < calls; i++) await fn();
  const { user, system } = process.cpuUsage(before);
  return (user + system) / calls / perCall;
}

/** A basic.deliver as the broker sends it for one bench body (the load generator's properties). */
function deliverBytes(body: Buffer, tag: number): Buffer {
  const fields = { consumerTag: 'amq.ctag-bench', deliveryTag: tag, redelivered: false, exchange: '', routingKey: 'q' };
  const props = { contentType: 'application/json', deliveryMode: 2, correlationId: String(tag) };
  return Buffer.concat([
    defs.encodeMethod(defs.BasicDeliver, 1, fields),
    defs.encodeProperties(defs.BasicProperties, 1, body.length, props),
    frames.makeBodyFrame(1, body),
  ]);
}

/** amqplib's per-delivery decode: three frames parsed and decoded, the message assembled, then ours. */
function decodeDelivery(bytes: Buffer): void {
  let rest: Buffer = bytes;
  const decoded: Array<{ fields?: object; content?: Buffer }> = [];
  for (let k = 0; k < 3; k++) {
    const f = frames.parseFrame(rest);
    if (!f) throw new Error('a delivery frame did not parse');
    decoded.push(frames.decodeFrame(f));
    rest = f.rest;
  }
  const [method, header, content] = decoded as [{ fields: object }, { fields: object }, { content: Buffer }];
  toDelivery(
    {
      fields: method.fields,
      properties: header.fields,
      content: content.content,
    } as never,
    1,
  );
}

/** A worker that answers each call as an isolate does: unpack views, pack `replyText` per body, transfer back. */
function echoIsolate(replyText: string): Worker {
  return new Worker(
    `const { parentPort, workerData } = require('node:worker_threads');
     const encoder = new TextEncoder();
     parentPort.on('message', (msg) => {
       const n = msg.bodies.ends.length;
       const bytes = encoder.encode(workerData.replyText.repeat(n));
       const ends = new Uint32Array(n);
       for (let i = 0; i < n; i++) ends[i] = (i + 1) * workerData.replyText.length;
       parentPort.postMessage({ type: 'result', id: msg.id, outcomes: { bodies: { bytes, ends }, failures: [] } }, [bytes.buffer]);
     });`,
    { eval: true, workerData: { replyText } },
  );
}

/**
 * `inline`: the consumer scores on its own thread (INLINE_SCORING), so no batch crosses to an isolate and
 * the transfer stage is left out.
 */
export async function stageCosts(
  model: BenchModel,
  batch: number,
  only?: string,
  iterations = 0,
  inline = false,
): Promise<StageCosts> {
  const bodies = Array.from({ length: batch }, (_, i) => model.bodies[i % model.bodies.length]);
  const session = await ort.InferenceSession.create(model.modelFile, {
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  const input: TensorSpec = { name: model.inputName, type: 'float32', dims: [-1, model.width] };
  const feeds = bodies.map((b) => {
    const t = readNumericTensor(b, 'float32', 1 << 20)!;
    return { [input.name]: { type: 'float32', data: t.data, dims: t.dims } as TensorData };
  });
  const stacked = stack(feeds, [input]);
  // The same rows as .npy bodies, each at an odd offset of one buffer, as amqplib slices bodies out of a socket read.
  const npyRows = (() => {
    const bodies = npyBodies(model);
    const one = Array.from({ length: batch }, (_, i) => bodies[i % bodies.length]);
    const read = Buffer.alloc(one.reduce((sum, b) => sum + b.length + 1, 0));
    let at = 0;
    return one.map((b) => {
      read.set(b, ++at);
      const view = read.subarray(at, at + b.length);
      at += b.length;
      return view;
    });
  })();
  const npyLimits = { maxTensorElements: 1 << 20 };
  const ortFeeds = () => {
    const t = stacked[input.name];
    return { [input.name]: new ort.Tensor('float32', t.data as Float32Array, t.dims) };
  };
  const toData = (results: ort.InferenceSession.OnnxValueMapType) =>
    Object.fromEntries(
      Object.entries(results).map(([k, t]) => [k, { type: t.type, data: t.data, dims: [...t.dims] } as TensorData]),
    );
  const outputs = toData(await session.run(ortFeeds()));
  const names = session.outputNames;
  const rows = bodies.map(() => 1);
  // As the built-in script writes them (onnx/answer-json.ts), the general path when it cannot.
  const writer = new AnswerWriter(names, []);
  const replyText = JSON.stringify(splitOutputs(outputs, names, rows)[0]);
  const worker = echoIsolate(replyText);
  let id = 0;
  const roundTrip = () =>
    new Promise<void>((resolve) => {
      worker.once('message', (msg: { outcomes: PackedOutcomes }) => {
        unpackOutcomes(msg.outcomes);
        resolve();
      });
      const packed = packBodies(bodies);
      worker.postMessage({ type: 'call', id: ++id, method: 'runBatch', bodies: packed }, [
        packed.bytes.buffer as ArrayBuffer,
      ]);
    });
  const replyBody = Buffer.from(replyText);
  const context = { replyQueue: 'bench.replies', modelName: model.name, modelVersion: 'sha256:0123456789ab' };
  const delivered = bodies.map((b, i) => deliverBytes(b, i + 1));
  const calls = (perCall: number, base: number) => iterations || Math.max(50, Math.round(base / perCall));
  // The record as it is after its first ANSWERED_RECORD_MAX replies (the default), forgetting one per reply.
  const record = new AnsweredRecord({ maxEntries: 100_000, maxAgeMs: 600_000 });
  let remembered = 0;
  const rememberBatch = () => {
    const now = Date.now();
    for (let i = 0; i < batch; i++) record.remember({ correlationId: `c${remembered++}` }, now);
  };
  for (let i = 0; i < 100_000; i += batch) rememberBatch();
  // Two isolates' batches: delivered together, the second settled first (held), then the first (one multiple ack).
  const window = new AckWindow();
  let lastTag = 0;
  const firstHalf: number[] = new Array(batch);
  const secondHalf: number[] = new Array(batch);
  const ackTwoBatches = () => {
    for (let i = 0; i < batch; i++) window.delivered((firstHalf[i] = ++lastTag));
    for (let i = 0; i < batch; i++) window.delivered((secondHalf[i] = ++lastTag));
    window.settle(secondHalf);
    return window.settle(firstHalf);
  };

  const stages: Record<string, () => Promise<number>> = {
    'broker client: a delivery decoded (amqplib)': () =>
      cpuPerMessage(() => delivered.forEach(decodeDelivery), calls(batch, 50_000), batch),
    'transfer to the isolate and back': () => cpuPerMessage(roundTrip, calls(batch, 50_000), batch),
    'parse: the numbers read into a tensor': () =>
      cpuPerMessage(() => bodies.forEach((b) => readNumericTensor(b, 'float32', 1 << 20)), calls(batch, 50_000), batch),
    'npy: the rows read from .npy bodies and stacked (odd offsets, as in a socket read)': () =>
      cpuPerMessage(
        () =>
          stack(
            npyRows.map((b) => ({ [input.name]: readNpy(b, npyLimits) })),
            [input],
          ),
        calls(batch, 50_000),
        batch,
      ),
    'tensor build: rows stacked into one batch': () =>
      cpuPerMessage(() => stack(feeds, [input]), calls(batch, 50_000), batch),
    'runtime run (onnxruntime, 1 thread)': () =>
      cpuPerMessage(() => session.run(ortFeeds()), calls(batch, model.width > 100 ? 20_000 : 100_000), batch),
    'output encoding: rows to reply JSON': () =>
      cpuPerMessage(
        () =>
          packOutcomes(
            (writer.write(outputs, rows) ?? splitOutputs(outputs, names, rows).map((r) => JSON.stringify(r))).map(
              (json) => ({ ok: true as const, json }),
            ),
          ),
        calls(batch, 50_000),
        batch,
      ),
    'reply: properties, headers and frames': () =>
      cpuPerMessage(
        () => {
          for (let i = 0; i < batch; i++)
            encodeReplyPublish(
              1,
              // The context as answer.ts's replyContext builds it, a literal: V8 takes a runtime call for
              // `{ ...context, scoringMs }` (a spread then a property), which the consumer never pays.
              buildReply(
                { correlationId: String(i) },
                { ok: true, body: replyBody },
                {
                  replyQueue: context.replyQueue,
                  modelName: context.modelName,
                  modelVersion: context.modelVersion,
                  scoringMs: 1.234,
                },
              ),
            );
        },
        calls(batch, 50_000),
        batch,
      ),
    'answered record: a reply remembered (full record)': () =>
      cpuPerMessage(rememberBatch, calls(batch, 50_000), batch),
    'acks: the ack window, two batches settled out of order': () =>
      cpuPerMessage(ackTwoBatches, calls(2 * batch, 50_000), 2 * batch),
  };
  const us: Record<string, number> = {};
  try {
    for (const [name, measure] of Object.entries(stages)) {
      if (only && !name.startsWith(only) && !name.includes(only)) continue;
      if (inline && name.startsWith('transfer')) continue;
      // The main table's consumer reads JSON bodies: the .npy reading is a stage of its own, on request.
      if (!only && name.startsWith('npy:')) continue;
      us[name] = await measure();
    }
  } finally {
    await worker.terminate();
    await session.release();
  }
  return { model: model.name, batch, us };
}

export function stagesTable(costs: readonly StageCosts[]): string {
  return costs
    .map((c) =>
      [
        `${c.model}, batches of ${c.batch}: CPU per message of each stage alone`,
        ...Object.entries(c.us).map(([stage, us]) => `  ${us.toFixed(1).padStart(7)} µs  ${stage}`),
        `  ${Object.values(c.us)
          .reduce((a, b) => a + b, 0)
          .toFixed(1)
          .padStart(7)} µs  in all`,
      ].join('\n'),
    )
    .join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'iris,mlp' },
      batch: { type: 'string', default: '64' },
      stage: { type: 'string' },
      iterations: { type: 'string', default: '0' },
    },
  });
  const costs: StageCosts[] = [];
  for (const m of (await benchModels()).filter((x) => values.models.split(',').includes(x.name)))
    costs.push(await stageCosts(m, Number(values.batch), values.stage, Number(values.iterations)));
  console.log(stagesTable(costs));
}
