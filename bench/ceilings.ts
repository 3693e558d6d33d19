/**
 * The two ceilings a consumer cannot beat on this machine: what the broker moves with no scoring at
 * all (a no-op consumer at its best prefetch), and what onnxruntime computes with no broker at all
 * (InferenceSession.run in a loop, batches of MAX_BATCH_SIZE rows).
 */
import * as ort from 'onnxruntime-node';
import type { Config } from '../src/config.js';
import { drain, type BenchLinks, type DrainResult } from './drain.js';
import { replyContractEnv, type BenchModel } from './models.js';

export interface ComputeCeiling {
  rowsPerS: number;
  batchSize: number;
  intraOpThreads: number;
  tried: Array<{ intraOpThreads: number; rowsPerS: number }>;
  /** The model's JSON reply to the first body: the no-op consumer sends a reply of this size. */
  sampleReply: string;
}

/** Best of one and two intra-op threads, each timed over `seconds` after a warm-up. */
export async function computeCeiling(
  model: BenchModel,
  config: Readonly<Config>,
  seconds = 1.5,
): Promise<ComputeCeiling> {
  const batchSize = config.maxBatchSize;
  const x = new Float32Array(batchSize * model.width);
  for (let r = 0; r < batchSize; r++) x.set(model.rows[r % model.rows.length], r * model.width);
  const tried: ComputeCeiling['tried'] = [];
  let sampleReply = '';
  for (const intraOpThreads of [1, 2]) {
    const session = await ort.InferenceSession.create(model.modelFile, {
      intraOpNumThreads: intraOpThreads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: config.ort.graphOptimizationLevel,
    });
    const feeds = { [model.inputName]: new ort.Tensor('float32', x, [batchSize, model.width]) };
    if (!sampleReply)
      sampleReply = JSON.stringify(
        resultJson(
          session,
          await session.run({
            [model.inputName]: new ort.Tensor('float32', Float32Array.from(model.rows[0]), [1, model.width]),
          }),
        ),
      );
    for (let i = 0; i < 50; i++) await session.run(feeds);
    let runs = 0;
    const start = performance.now();
    while (performance.now() - start < seconds * 1000) {
      await session.run(feeds);
      runs++;
    }
    tried.push({ intraOpThreads, rowsPerS: (runs * batchSize * 1000) / (performance.now() - start) });
    await session.release();
  }
  const best = tried.reduce((a, b) => (b.rowsPerS > a.rowsPerS ? b : a));
  return { rowsPerS: best.rowsPerS, batchSize, intraOpThreads: best.intraOpThreads, tried, sampleReply };
}

/** What the built-in entry script replies: the single output's nested array, or an object keyed by output name. */
function resultJson(session: ort.InferenceSession, outputs: ort.InferenceSession.ReturnType): unknown {
  const nested = (t: ort.Tensor) => {
    const flat = Array.from(t.data as ArrayLike<number | bigint>, Number);
    const [rows, ...rest] = t.dims;
    const width = rest.reduce((a, b) => a * b, 1);
    return Array.from({ length: rows }, (_, r) =>
      rest.length === 0 ? flat[r] : flat.slice(r * width, (r + 1) * width),
    );
  };
  const names = session.outputNames;
  return names.length === 1 ? nested(outputs[names[0]]) : Object.fromEntries(names.map((n) => [n, nested(outputs[n])]));
}

export interface BrokerCeiling {
  best: DrainResult & { prefetch: number };
  tried: Array<{ prefetch: number; msgPerS: number; loadAvg: number }>;
  /** The same no-op consumer at the best prefetch, its replies carrying this consumer's properties and headers. */
  withReplyContract: DrainResult;
}

/** The no-op consumer at each prefetch; the best one is the ceiling. */
export async function brokerCeiling(
  links: BenchLinks,
  model: BenchModel,
  count: number,
  warmup: number,
  prefetches: readonly number[],
  sampleReply: string,
): Promise<BrokerCeiling> {
  const tried: BrokerCeiling['tried'] = [];
  let best: BrokerCeiling['best'] | undefined;
  for (const prefetch of prefetches) {
    const r = await drain(links, {
      label: `${model.name}.noop.p${prefetch}`,
      bodies: model.bodies,
      count,
      warmup,
      script: 'bench/noop-consumer.ts',
      env: { PREFETCH: String(prefetch), REPLY_BODY: sampleReply, CONNECTIONS: '2' },
      readyText: '"msg":"ready"',
    });
    tried.push({ prefetch, msgPerS: r.msgPerS, loadAvg: r.loadAvg });
    if (!best || r.msgPerS > best.msgPerS) best = { ...r, prefetch };
  }
  // Not a ceiling the issue asks for: it prices the reply contract (headers, messageId, timestamp, mandatory) apart from scoring.
  const withReplyContract = await drain(links, {
    label: `${model.name}.noop.contract`,
    bodies: model.bodies,
    count,
    warmup,
    script: 'bench/noop-consumer.ts',
    env: {
      PREFETCH: String(best!.prefetch),
      REPLY_BODY: sampleReply,
      CONNECTIONS: '2',
      ...replyContractEnv(model),
    },
    readyText: '"msg":"ready"',
  });
  return { best: best!, tried, withReplyContract };
}
