/**
 * `npm run bench`: for each model (iris, then the MLP), on the same broker, queue type, message count
 * and bodies, in one run:
 *   - the broker ceiling (bench/noop-consumer.ts at its best prefetch),
 *   - the compute ceiling (InferenceSession.run in a loop, no broker),
 *   - the hand-written consumer (bench/hand-consumer.ts, prefetch 1),
 *   - this consumer as users start it (`node --import tsx src/main.ts`, defaults, env for the queues),
 * then the Python row (bench/python-row.ts: the seed's score.py behind this consumer and behind pika),
 * then a table on stdout and bench/results.json (`--models python` alone: bench/results.python.json). `--soak` runs the memory soak instead.
 *
 * Options: --messages N (measured per row, default 50000), --warmup N (answered first and not measured,
 * default 20000; the hand-written consumer's is 10% of N), --models iris,mlp,image640,python (image640: one
 * 1x3x640x640 image as JSON, end to end against onnxruntime alone, --large-tensor-runs N of them; python: the
 * seed's score.py behind this consumer and behind pika; `--models image640` or `--models python` runs that row
 * alone), --prefetch 512,1024,4096 (the
 * no-op consumer's sweep), --latency-seconds S, --low-warmup-seconds S (offered at 1,000 msg/s first and
 * not counted, default 12, for both consumers: V8 re-optimises for lone messages once the load drops), --hand-seconds S (the hand-written consumer drains
 * for at most this long: at about 1k msg/s it would take a minute per model), --set KEY=VALUE
 * (repeatable: config for this consumer only, for tuning runs), --only ours, --cpu-prof (profiles of
 * this consumer in bench/work/prof), --soak [--soak-messages N], --binary (only the binary-payload rows,
 * bench/binary.ts, written to bench/results.binary.json), --tracing (only this consumer, twice:
 * tracing off, then on, exporting OTLP/HTTP to a sink this process runs on 127.0.0.1; nothing written),
 * --rounds N (default 5: this consumer, the no-op at its best prefetch and the no-op with our reply
 * properties drained N times each, alternating, each round starting one row later, and each row's median taken: a row moves by ±10–15% here
 * from drain to drain, more than some targets' margins).
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { binaryRows, binaryTable } from './binary.js';
import { brokerCeiling, computeCeiling, type BrokerCeiling } from './ceilings.js';
import {
  drain,
  medianRound,
  rotated,
  settingsEnv,
  type BenchLinks,
  type DrainResult,
  type LatencyResult,
} from './drain.js';
import { connect } from './load.js';
import { benchModels, replyContractEnv, ROOT, type BenchModel } from './models.js';
import { pythonLines, pythonRow, type PythonRowResult } from './python-row.js';
import { notes, soakTable, table, targetLines, targetsOf, type ModelResult, type SoakResult } from './report.js';
import { soak } from './soak.js';
import { stageCosts } from './stages.js';
import { largeTensorRow, type LargeTensorResult } from './large-tensor.js';

const { values: opts } = parseArgs({
  options: {
    messages: { type: 'string', default: '50000' },
    warmup: { type: 'string', default: '20000' },
    models: { type: 'string', default: 'iris,mlp,image640,python' },
    'large-tensor-runs': { type: 'string', default: '5' },
    prefetch: { type: 'string', default: '512,1024,4096' },
    rounds: { type: 'string', default: '5' },
    'latency-seconds': { type: 'string', default: '6' },
    'low-warmup-seconds': { type: 'string', default: '12' },
    'hand-seconds': { type: 'string', default: '15' },
    set: { type: 'string', multiple: true, default: [] },
    only: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    soak: { type: 'boolean', default: false },
    binary: { type: 'boolean', default: false },
    tracing: { type: 'boolean', default: false },
    'soak-messages': { type: 'string', default: '200000' },
    out: { type: 'string', default: join(ROOT, 'bench', 'results.json') },
  },
});

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
// The shipped defaults, as the consumer under test will read them (it gets no tuning env).
const config = loadConfig({ AMQP_URL: url });
const count = Number(opts.messages);
const warmup = Number(opts.warmup);
const oursEnv = settingsEnv(opts.set);
const log = (line: string) => process.stdout.write(`${line}\n`);
const latencySeconds = Number(opts['latency-seconds']);
/** A second, light latency point: what the path costs when nothing queues. */
const LOW_RATE = 1000;
/** Offered at LOW_RATE first and not counted, for this consumer and the no-op alike: the JIT's re-tiering for lone messages. */
const lowWarmupSeconds = Number(opts['low-warmup-seconds']);

async function benchModel(links: BenchLinks, model: BenchModel): Promise<ModelResult> {
  const only = opts.only;
  log(`${model.name}: compute ceiling`);
  const compute = await computeCeiling(model, config);
  log(`${model.name}: this consumer (${count} messages, then latency at half its rate)`);
  const profDir = join(ROOT, 'bench', 'work', 'prof');
  if (opts['cpu-prof']) mkdirSync(profDir, { recursive: true });
  const ours = await drain(links, {
    label: `${model.name}.ours`,
    bodies: model.bodies,
    count,
    warmup,
    env: { MODEL_DIR: model.modelDir, ...oursEnv },
    nodeArgs: opts['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    readyText: '"msg":"consuming"',
    latency: [
      { fractionOfPeak: 0.5, seconds: latencySeconds },
      { ratePerS: LOW_RATE, seconds: latencySeconds / 2, warmupSeconds: lowWarmupSeconds },
    ],
  });
  const [half, low] = ours.latencies;
  const batch = Math.max(1, Math.round(ours.meanBatch ?? config.maxBatchSize));
  log(`${model.name}: each stage alone, batches of ${batch} (this consumer's mean), scored on the ${ours.placement}`);
  const stages = await stageCosts(model, batch, undefined, 0, ours.placement === 'consumer thread');
  log(
    `  ${Math.round(ours.msgPerS)} msg/s; at ${half?.offeredPerS} msg/s p50 ${half?.p50Ms.toFixed(1)} ms, p99 ${half?.p99Ms.toFixed(1)} ms; at ${LOW_RATE} msg/s p50 ${low?.p50Ms.toFixed(1)} ms, p99 ${low?.p99Ms.toFixed(1)} ms`,
  );
  if (only === 'ours')
    return {
      model: model.name,
      count,
      compute,
      broker: { best: { ...ours, prefetch: 0 }, tried: [], withReplyContract: ours },
      brokerLatencies: [],
      hand: ours,
      ours,
      stages,
    };

  log(`${model.name}: broker ceiling (no-op consumer, prefetch ${opts.prefetch})`);
  const broker = await brokerCeiling(
    links,
    model,
    count,
    warmup,
    opts.prefetch.split(',').map(Number),
    compute.sampleReply,
  );
  log(`  ${broker.tried.map((t) => `prefetch ${t.prefetch}: ${Math.round(t.msgPerS)} msg/s`).join(', ')}`);
  const brokerLatencies = (
    await drain(links, {
      label: `${model.name}.noop.latency`,
      bodies: model.bodies,
      count: 0,
      script: 'bench/noop-consumer.ts',
      env: { PREFETCH: String(broker.best.prefetch), REPLY_BODY: compute.sampleReply, CONNECTIONS: '2' },
      readyText: '"msg":"ready"',
      latency: [
        { ratePerS: half?.offeredPerS ?? ours.msgPerS / 2, seconds: latencySeconds },
        { ratePerS: LOW_RATE, seconds: latencySeconds / 2, warmupSeconds: lowWarmupSeconds },
      ],
    })
  ).latencies;

  log(`${model.name}: hand-written consumer`);
  const hand: DrainResult = await drain(links, {
    label: `${model.name}.hand`,
    bodies: model.bodies,
    count,
    script: 'bench/hand-consumer.ts',
    env: { MODEL_FILE: model.modelFile, NO_DELAY: '1' },
    readyText: '"msg":"ready"',
    // It answers a few hundred a second: a warm-up of 10% of the count would outlast its time limit.
    warmup: 200,
    timeLimitMs: Number(opts['hand-seconds']) * 1000,
  });
  log(`  ${Math.round(hand.msgPerS)} msg/s`);
  const rounds = await moreRounds(links, model, broker, compute.sampleReply, ours, brokerLatencies);
  return {
    model: model.name,
    count,
    compute,
    broker: rounds.broker,
    brokerLatencies: rounds.brokerLatencies,
    hand,
    ours: rounds.ours,
    stages,
  };
}

const ROW_NAMES = {
  ours: 'this consumer',
  noop: 'the no-op',
  contract: 'the no-op with our reply properties',
} as const;

/**
 * Rounds 2..N of the rows the targets compare: this consumer, the no-op at the prefetch the sweep
 * chose, the no-op with our reply properties, one after another, each round starting one row later
 * than the one before (`rotated`), this consumer and the no-op each followed by a phase at LOW_RATE. Each row becomes its median round by CPU per message, with the
 * median rate of its rounds; every round's figures are kept in `rounds`. The p99 at LOW_RATE of this
 * consumer and of the no-op is each the median of its rounds' (a p99 of a few thousand replies moves
 * with any one pause of the broker, the machine or either process).
 */
async function moreRounds(
  links: BenchLinks,
  model: BenchModel,
  broker: BrokerCeiling,
  sampleReply: string,
  first: DrainResult,
  firstNoopLatencies: LatencyResult[],
): Promise<{ ours: DrainResult; broker: BrokerCeiling; brokerLatencies: LatencyResult[] }> {
  const n = Number(opts.rounds);
  const rows = { ours: [first], noop: [broker.best as DrainResult], contract: [broker.withReplyContract] };
  const low = { ours: [first.latencies[1]], noop: [firstNoopLatencies[1]] };
  const lowPhase = [{ ratePerS: LOW_RATE, seconds: latencySeconds / 2, warmupSeconds: lowWarmupSeconds }];
  const noopEnv = { PREFETCH: String(broker.best.prefetch), REPLY_BODY: sampleReply, CONNECTIONS: '2' };
  const noopRow = (env: Record<string, string>, latency: typeof lowPhase) => ({
    script: 'bench/noop-consumer.ts',
    env,
    readyText: '"msg":"ready"',
    latency,
  });
  const specs = {
    ours: { env: { MODEL_DIR: model.modelDir, ...oursEnv }, readyText: '"msg":"consuming"', latency: lowPhase },
    noop: noopRow(noopEnv, lowPhase),
    contract: noopRow({ ...noopEnv, ...replyContractEnv(model) }, []),
  };
  for (let round = 2; round <= n; round++) {
    // Round 1 drained this consumer, then the no-op, then the no-op with our properties; each later round starts one row later.
    const order = rotated(['ours', 'noop', 'contract'] as const, round - 1);
    log(`${model.name}: round ${round} of ${n} (${order.map((row) => ROW_NAMES[row]).join(', ')})`);
    for (const row of order) {
      const r = await drain(links, {
        label: `${model.name}.${row}.r${round}`,
        bodies: model.bodies,
        count,
        warmup,
        ...specs[row],
      });
      rows[row].push(r);
      if (row !== 'contract') low[row].push(r.latencies[0]);
    }
  }
  const medianP99 = (phases: Array<LatencyResult | undefined>) => {
    const sorted = phases.filter((p) => p !== undefined).sort((a, b) => a.p99Ms - b.p99Ms);
    return { ...sorted[Math.floor((sorted.length - 1) / 2)], p99Rounds: sorted.map((p) => p.p99Ms) };
  };
  return {
    // The first round's phase at half the rate stands for the row.
    ours: { ...medianRound(rows.ours), latencies: [first.latencies[0], medianP99(low.ours)] },
    broker: {
      ...broker,
      best: { ...medianRound(rows.noop), prefetch: broker.best.prefetch },
      withReplyContract: medianRound(rows.contract),
    },
    brokerLatencies: [firstNoopLatencies[0], medianP99(low.noop)],
  };
}

/**
 * This consumer with tracing off (no OTEL_*: the SDK not loaded) and on (every input traced, spans
 * exported in batches to a sink that reads and drops them), same bodies and count.
 */
async function tracingRows(links: BenchLinks, model: BenchModel): Promise<void> {
  let spans = 0;
  const sink = createServer((req, res) => {
    req.on('data', () => {});
    req.on('end', () => {
      spans++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  const endpoint = `http://127.0.0.1:${(sink.address() as AddressInfo).port}`;
  try {
    const rows: Array<{ tracing: string; result: DrainResult }> = [];
    for (const [tracing, env] of [
      ['off', {}],
      ['on', { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint }],
    ] as const) {
      log(`${model.name}: this consumer, tracing ${tracing}`);
      const result = await drain(links, {
        label: `${model.name}.tracing-${tracing}`,
        bodies: model.bodies,
        count,
        warmup,
        env: { MODEL_DIR: model.modelDir, ...oursEnv, ...env },
        readyText: '"msg":"consuming"',
        latency: [{ ratePerS: LOW_RATE, seconds: latencySeconds / 2 }],
      });
      rows.push({ tracing, result });
    }
    log(
      `\n| model | tracing | msg/s | CPU ms/msg | p50 ms at ${LOW_RATE} msg/s | p99 ms | load avg |\n| --- | --- | --- | --- | --- | --- | --- |`,
    );
    for (const { tracing, result: r } of rows) {
      const l = r.latencies[0];
      log(
        `| ${model.name} | ${tracing} | ${Math.round(r.msgPerS)} | ${r.cpuMsPerMsg.toFixed(3)} | ${l?.p50Ms.toFixed(1)} | ${l?.p99Ms.toFixed(1)} | ${r.loadAvg.toFixed(1)} |`,
      );
    }
    log(`(${spans} OTLP export requests received with tracing on)`);
  } finally {
    sink.close();
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  const runId = `${Date.now().toString(36)}.${randomBytes(2).toString('hex')}`;
  const models = (await benchModels()).filter((m) => opts.models.split(',').includes(m.name));
  const publish = await connect(url, 'bench/load');
  const read = await connect(url, 'bench/replies');
  const links: BenchLinks = { url, runId, config, publish, read };
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model, node: process.version };
  const defaults = {
    PREFETCH: config.prefetch,
    CONCURRENCY: config.concurrency,
    MAX_BATCH_SIZE: config.maxBatchSize,
    MAX_BATCH_DELAY_MS: config.maxBatchDelayMs,
    ORT_INTRA_OP_THREADS: config.ort.intraOpNumThreads,
    ORT_GRAPH_OPTIMIZATION: config.ort.graphOptimizationLevel,
    QUEUE_TYPE: config.queueType,
  };
  try {
    if (opts.tracing) {
      for (const model of models) await tracingRows(links, model);
      return;
    }
    if (opts.soak) {
      const soaks: SoakResult[] = [];
      for (const model of models) soaks.push(await soak(links, model, Number(opts['soak-messages'])));
      log(`\n${soakTable(soaks)}\n\n${targetLines(targetsOf([], config.maxBatchDelayMs, soaks))}`);
      writeFileSync(
        opts.out.replace(/\.json$/, '.soak.json'),
        `${JSON.stringify({ date: new Date().toISOString(), machine, defaults, soak: soaks }, null, 2)}\n`,
      );
      return;
    }
    if (opts.binary) {
      const mlp = (await benchModels()).find((m) => m.name === 'mlp')!;
      const r = await binaryRows(links, mlp, count, warmup, log, Number(opts.rounds));
      log(`\n${binaryTable(r)}\n\n${((Date.now() - started) / 1000).toFixed(0)} s`);
      writeFileSync(
        opts.out.replace(/\.json$/, '.binary.json'),
        `${JSON.stringify({ date: new Date().toISOString(), machine, defaults, messagesPerRow: count, ...r }, null, 2)}\n`,
      );
      return;
    }
    const results: ModelResult[] = [];
    for (const model of models) results.push(await benchModel(links, model));
    const largeTensor: LargeTensorResult | undefined = opts.models.split(',').includes('image640')
      ? await largeTensorRow(config, Number(opts['large-tensor-runs']), log)
      : undefined;
    let python: PythonRowResult | undefined;
    if (opts.models.split(',').includes('python')) {
      python = await pythonRow(links, {
        count: Math.min(count, 20_000),
        warmup: Math.min(warmup, 2000),
        handSeconds: Number(opts['hand-seconds']),
        log,
      });
    }
    const targets = targetsOf(results, config.maxBatchDelayMs, []);
    if (largeTensor) {
      const m = largeTensor;
      targets.push({
        model: 'image640',
        target: 'one 1x3x640x640 image as JSON end to end ≤ 2× onnxruntime alone',
        measured: `${m.endToEndMs.toFixed(0)} ms vs ${m.onnxruntimeMs.toFixed(0)} ms (${m.ratio.toFixed(1)}×)`,
        met: m.ratio <= 2,
      });
    }
    if (python)
      targets.push({
        model: 'py',
        target: '≥ 4× the pika consumer (seed score.py)',
        measured: `${python.vsPika.toFixed(1)}×`,
        met: python.vsPika >= 4,
      });
    if (results.length > 0) log(`\n${table(results)}\n\n${notes(results)}`);
    if (python) log(`\n${pythonLines(python)}`);
    log(`\n${opts.only ? '' : targetLines(targets)}`);
    if (python && results.length === 0) {
      const file = opts.out.replace(/\.json$/, '.python.json');
      writeFileSync(
        file,
        `${JSON.stringify({ date: new Date().toISOString(), machine, defaults, python, targets }, null, 2)}\n`,
      );
      log(`wrote ${file}`);
    }
    log(
      `\n${Object.keys(oursEnv).length ? `this consumer with ${JSON.stringify(oursEnv)}; ` : ''}defaults ${JSON.stringify(defaults)}; ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
    // A row alone (--models image640 or python) leaves results.json as it is: it would lose its models.
    if (!opts.only && Object.keys(oursEnv).length === 0 && results.length > 0) {
      writeFileSync(
        opts.out,
        `${JSON.stringify({ date: new Date().toISOString(), machine, defaults, messagesPerRow: count, results, largeTensor, python, targets }, null, 2)}\n`,
      );
      log(`wrote ${opts.out}`);
    }
  } finally {
    await publish.close().catch(() => {});
    await read.close().catch(() => {});
  }
}

await main();
