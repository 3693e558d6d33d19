/**
 * `npm run bench -- --binary`: the binary-payload rows (issue 14), apart from the main table.
 *   - one 1x3x640x640 float32 image as .npy, request by request, end to end (publish → reply), against
 *     onnxruntime alone on the same tensor (target: within 1.25×);
 *   - the same image as a PNG, against onnxruntime plus the decode measured alone (sharp + layout);
 *   - the MLP's 784 floats as .npy beside the same rows as JSON: msg/s and the consumer's CPU per message,
 *     against the no-op consumer sending our replies' properties plus onnxruntime's per-row CPU alone (target 1.1×).
 * The image model is made here, seeded, no download: three 3×3 convolutions (3→16 at full size, 16→32 and
 * 32→64 at stride 2, each with a ReLU), global average pool: about 1.1 GMAC, a small detector's backbone.
 * The broker's own round trip for the same body (the no-op consumer) is measured too, and each reply's
 * x-scoring-ms (time in the entry script), so the end-to-end time splits into broker, scoring and the rest.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as amqp from 'amqplib';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { decodeImage, planImage } from '../src/isolate/image.js';
import { writeNpy } from '../src/isolate/npy.js';
import { FLOAT, Int, buildModel, encodeModel, floatTensor, node, valueInfo } from '../scripts/onnx-writer.js';
import { mulberry32 } from '../scripts/train-iris.js';
import { startConsumer } from '../test/support/consumer-process.js';
import { computeCeiling } from './ceilings.js';
import { drain, medianRound, rotated, stopProcess, type BenchLinks, type DrainResult } from './drain.js';
import { declareQueues, deleteQueues, uniqueQueues } from './load.js';
import { ROOT, npyBodies, replyContractEnv, type BenchModel } from './models.js';
import { RUNTIME_STAGE, stageUs } from './report.js';
import { stageCosts } from './stages.js';

const SIDE = 640;
const IMAGE_ENV = { MAX_MESSAGE_BYTES: String(16 << 20), MAX_TENSOR_ELEMENTS: String(4 << 20) };

export interface BinaryResults {
  image: {
    requests: number;
    ortMs: number;
    decodeMs: number;
    npy: {
      bytes: number;
      endToEndMs: number;
      scoringMs: number;
      brokerMs: number;
      ratio: number;
      target: number;
      met: boolean;
    };
    png: { bytes: number; endToEndMs: number; scoringMs: number; brokerMs: number; budgetMs: number; met: boolean };
  };
  mlp: {
    json: DrainResult;
    npy: DrainResult;
    noopCpuMsPerMsg: number;
    ortMsPerRow: number;
    npyCpuRatio: number;
    target: number;
    met: boolean;
  };
}

function writeImageModel(): string {
  const dir = join(ROOT, 'bench', 'work', 'conv');
  mkdirSync(dir, { recursive: true });
  const next = mulberry32(640);
  const w = (name: string, dims: number[]) =>
    floatTensor(
      name,
      dims,
      Array.from({ length: dims.reduce((a, b) => a * b, 1) }, () => (next() - 0.5) / 4),
    );
  const graph = {
    name: 'conv',
    nodes: [
      node('Conv', ['images', 'w1'], ['c1'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }),
      node('Relu', ['c1'], ['r1']),
      node('Conv', ['r1', 'w2'], ['c2'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] }),
      node('Relu', ['c2'], ['r2']),
      node('Conv', ['r2', 'w3'], ['c3'], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2] }),
      node('Relu', ['c3'], ['r3']),
      node('GlobalAveragePool', ['r3'], ['g']),
      node('Flatten', ['g'], ['features'], { axis: new Int(1) }),
    ],
    initializers: [w('w1', [16, 3, 3, 3]), w('w2', [32, 16, 3, 3]), w('w3', [64, 32, 3, 3])],
    inputs: [valueInfo('images', FLOAT, [1, 3, SIDE, SIDE])],
    outputs: [valueInfo('features', FLOAT, [1, 64])],
  };
  writeFileSync(join(dir, 'conv.onnx'), encodeModel(buildModel(graph)));
  return dir;
}

/** A smooth synthetic photo-like image (gradients and rings), so its PNG is of a photo's size, not noise's. */
function pixels(): Buffer {
  const raw = Buffer.alloc(SIDE * SIDE * 3);
  for (let y = 0; y < SIDE; y++)
    for (let x = 0; x < SIDE; x++) {
      const i = (y * SIDE + x) * 3;
      raw[i] = x % 256;
      raw[i + 1] = y % 256;
      raw[i + 2] = Math.round(127 + 127 * Math.sin(Math.hypot(x - 320, y - 320) / 9));
    }
  return raw;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Requests one at a time through a consumer of the image model (or the no-op consumer): the median
 * publish-to-reply time, and the median of the replies' x-scoring-ms.
 */
async function endToEnd(
  links: BenchLinks,
  label: string,
  body: Buffer,
  contentType: string,
  requests: number,
  modelDir: string,
  noop = false,
): Promise<{ ms: number; scoringMs: number }> {
  const q = uniqueQueues(links.runId, label);
  await declareQueues(links.publish, q, links.config);
  const env = {
    ...IMAGE_ENV,
    AMQP_URL: links.url,
    INPUT_QUEUE: q.input,
    REPLY_QUEUE: q.reply,
    MODEL_DIR: modelDir,
    CONCURRENCY: '1',
    ...(noop ? { PREFETCH: '1', CONNECTIONS: '2' } : {}),
  };
  const proc = startConsumer(env, noop ? { script: 'bench/noop-consumer.ts' } : {});
  const pub: amqp.ConfirmChannel = await links.publish.createConfirmChannel();
  const sub = await links.read.createChannel();
  try {
    await proc.waitFor(noop ? '"msg":"ready"' : '"msg":"consuming"', 120_000);
    let waiting: ((m: amqp.ConsumeMessage) => void) | undefined;
    await sub.consume(q.reply, (m) => m && waiting?.(m), { noAck: true });
    const times: number[] = [];
    const scoring: number[] = [];
    for (let i = 0; i < requests + 3; i++) {
      const replied = new Promise<amqp.ConsumeMessage>((r) => (waiting = r));
      const start = performance.now();
      pub.sendToQueue(q.input, body, { correlationId: `${label}.${i}`, contentType, persistent: true });
      const m = await replied;
      const elapsed = performance.now() - start;
      const status = noop ? 'ok' : String(m.properties.headers?.['x-status']);
      if (status !== 'ok') throw new Error(`${label}: reply ${status}: ${m.content.toString().slice(0, 300)}`);
      if (i < 3) continue; // three warm-up requests
      times.push(elapsed);
      scoring.push(Number(m.properties.headers?.['x-scoring-ms'] ?? 0));
    }
    return { ms: median(times), scoringMs: median(scoring) };
  } finally {
    await stopProcess(proc);
    await pub.close().catch(() => {});
    await sub.close().catch(() => {});
    await deleteQueues(links.publish, q);
  }
}

export async function binaryRows(
  links: BenchLinks,
  mlp: BenchModel,
  count: number,
  warmup: number,
  log: (l: string) => void,
  rounds = 1,
): Promise<BinaryResults> {
  const modelDir = writeImageModel();
  const raw = pixels();
  const { config } = links;
  const prep = { ...config.image };
  const plan = planImage({ name: 'images', type: 'float32', dims: [1, 3, SIDE, SIDE] }, prep);
  if (typeof plan === 'string') throw new Error(plan);
  const png = await sharp(raw, { raw: { width: SIDE, height: SIDE, channels: 3 } })
    .png()
    .toBuffer();
  const tensor = await decodeImage(png, plan);
  const npy = Buffer.from(writeNpy(tensor));
  const requests = 15;

  log(`image: onnxruntime alone and the decode alone (${requests} runs each)`);
  const session = await ort.InferenceSession.create(join(modelDir, 'conv.onnx'), {
    intraOpNumThreads: config.ort.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: config.ort.graphOptimizationLevel,
  });
  const ortTimes: number[] = [];
  const decodeTimes: number[] = [];
  for (let i = 0; i < requests + 3; i++) {
    let t = performance.now();
    await session.run({ images: new ort.Tensor('float32', tensor.data as Float32Array, tensor.dims) });
    if (i >= 3) ortTimes.push(performance.now() - t);
    t = performance.now();
    await decodeImage(png, plan);
    if (i >= 3) decodeTimes.push(performance.now() - t);
  }
  await session.release();
  const ortMs = median(ortTimes);
  const decodeMs = median(decodeTimes);
  log(`  onnxruntime ${ortMs.toFixed(1)} ms, decode ${decodeMs.toFixed(1)} ms`);
  log(`image: .npy (${(npy.length / 1e6).toFixed(1)} MB) end to end, and the no-op consumer's round trip of it`);
  const npyRun = await endToEnd(links, 'image.npy', npy, 'application/x-npy', requests, modelDir);
  const npyBroker = (await endToEnd(links, 'image.npy.noop', npy, 'application/x-npy', requests, modelDir, true)).ms;
  log(
    `  ${npyRun.ms.toFixed(1)} ms (in the entry script ${npyRun.scoringMs.toFixed(1)} ms; the broker's round trip alone ${npyBroker.toFixed(1)} ms)`,
  );
  log(`image: PNG (${(png.length / 1e6).toFixed(2)} MB) end to end`);
  const pngRun = await endToEnd(links, 'image.png', png, 'image/png', requests, modelDir);
  const pngBroker = (await endToEnd(links, 'image.png.noop', png, 'image/png', requests, modelDir, true)).ms;
  log(
    `  ${pngRun.ms.toFixed(1)} ms (in the entry script ${pngRun.scoringMs.toFixed(1)} ms; the broker's round trip alone ${pngBroker.toFixed(1)} ms)`,
  );

  log(
    `mlp: JSON and .npy drains (${count} messages each), the no-op consumer with our reply properties, onnxruntime per row`,
  );
  const mlpNpy = npyBodies(mlp);
  const env = { MODEL_DIR: mlp.modelDir };
  const compute = await computeCeiling(mlp, config);
  // JSON, .npy and the no-op with our reply properties, drained `rounds` times alternating (each round starting one row later); each its median round.
  const rows: Record<'json' | 'npy' | 'noop', DrainResult[]> = { json: [], npy: [], noop: [] };
  const specs = {
    json: { bodies: mlp.bodies, env, readyText: '"msg":"consuming"' },
    npy: { bodies: mlpNpy, contentType: 'application/x-npy', env, readyText: '"msg":"consuming"' },
    noop: {
      bodies: mlpNpy,
      contentType: 'application/x-npy',
      script: 'bench/noop-consumer.ts',
      env: {
        PREFETCH: String(config.prefetch),
        REPLY_BODY: compute.sampleReply,
        CONNECTIONS: '2',
        ...replyContractEnv(mlp),
      },
      readyText: '"msg":"ready"',
    },
  };
  for (let round = 1; round <= rounds; round++) {
    if (rounds > 1) log(`  round ${round} of ${rounds}`);
    for (const row of rotated(['json', 'npy', 'noop'] as const, round - 1)) {
      const label = `mlp.${row === 'noop' ? 'noop.contract' : row}.r${round}`;
      rows[row].push(await drain(links, { label, count, warmup, ...specs[row] }));
    }
  }
  const json = medianRound(rows.json);
  const npyDrain = medianRound(rows.npy);
  const noop = medianRound(rows.noop);
  if (rounds > 1)
    log(
      `  each round, CPU per message: ${(['json', 'npy', 'noop'] as const).map((k) => `${k === 'noop' ? 'no-op with our reply properties' : k} ${rows[k].map((r) => `${(r.cpuMsPerMsg * 1000).toFixed(1)} µs`).join(', ')}`).join('; ')} (each row its median round)`,
    );
  // onnxruntime's CPU per row alone, one thread, at the batch the consumer ran the .npy bodies at (bench/stages.ts).
  const stages = await stageCosts(
    mlp,
    Math.max(1, Math.round(npyDrain.meanBatch ?? config.maxBatchSize)),
    RUNTIME_STAGE,
  );
  const ortMsPerRow = stageUs(stages, RUNTIME_STAGE) / 1000;
  const npyCpuRatio = npyDrain.cpuMsPerMsg / (noop.cpuMsPerMsg + ortMsPerRow);
  return {
    image: {
      requests,
      ortMs,
      decodeMs,
      npy: {
        bytes: npy.length,
        endToEndMs: npyRun.ms,
        scoringMs: npyRun.scoringMs,
        brokerMs: npyBroker,
        ratio: npyRun.ms / ortMs,
        target: 1.25,
        met: npyRun.ms / ortMs <= 1.25,
      },
      png: {
        bytes: png.length,
        endToEndMs: pngRun.ms,
        scoringMs: pngRun.scoringMs,
        brokerMs: pngBroker,
        budgetMs: ortMs + decodeMs,
        met: pngRun.ms <= ortMs + decodeMs,
      },
    },
    mlp: {
      json,
      npy: npyDrain,
      noopCpuMsPerMsg: noop.cpuMsPerMsg,
      ortMsPerRow,
      npyCpuRatio,
      target: 1.1,
      met: npyCpuRatio <= 1.1,
    },
  };
}

export function binaryTable(r: BinaryResults): string {
  const { image, mlp } = r;
  const row = (cells: string[]) => `| ${cells.join(' | ')} |`;
  return [
    row(['row', 'measured', 'against', 'target', 'met']),
    row(['---', '---', '---', '---', '---']),
    row([
      `1x3x640x640 .npy (${(image.npy.bytes / 1e6).toFixed(1)} MB), end to end`,
      `${image.npy.endToEndMs.toFixed(1)} ms median (entry script ${image.npy.scoringMs.toFixed(1)}; broker round trip alone ${image.npy.brokerMs.toFixed(1)})`,
      `onnxruntime alone ${image.ortMs.toFixed(1)} ms (×${image.npy.ratio.toFixed(2)})`,
      '≤ ×1.25',
      image.npy.met ? 'yes' : 'no',
    ]),
    row([
      `same image as PNG (${(image.png.bytes / 1e6).toFixed(2)} MB), end to end`,
      `${image.png.endToEndMs.toFixed(1)} ms median (entry script ${image.png.scoringMs.toFixed(1)}; broker round trip alone ${image.png.brokerMs.toFixed(1)})`,
      `onnxruntime + decode alone ${image.ortMs.toFixed(1)} + ${image.decodeMs.toFixed(1)} = ${image.png.budgetMs.toFixed(1)} ms`,
      '≤ that',
      image.png.met ? 'yes' : 'no',
    ]),
    row([
      'MLP 784 floats as JSON',
      `${Math.round(mlp.json.msgPerS)} msg/s, ${mlp.json.cpuMsPerMsg.toFixed(3)} ms CPU/msg`,
      '',
      '',
      '',
    ]),
    row([
      'MLP 784 floats as .npy',
      `${Math.round(mlp.npy.msgPerS)} msg/s, ${mlp.npy.cpuMsPerMsg.toFixed(3)} ms CPU/msg`,
      `no-op with our reply properties ${mlp.noopCpuMsPerMsg.toFixed(3)} + onnxruntime ${mlp.ortMsPerRow.toFixed(3)} ms/row (×${mlp.npyCpuRatio.toFixed(2)})`,
      `≤ ×${mlp.target}`,
      mlp.met ? 'yes' : 'no',
    ]),
  ].join('\n');
}
