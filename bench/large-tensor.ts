/**
 * The large-tensor row: one 1x3x640x640 float32 image as full-precision JSON (25 MB, as json.dumps
 * writes it), end to end through the broker and this consumer, against onnxruntime-node alone on the
 * same tensor. Messages go one at a time, so each is a batch of one: the time is the path's, not a
 * queue's. Target: end to end within 2× of onnxruntime's own time.
 */
import * as ort from 'onnxruntime-node';
import type { Config } from '../src/config.js';
import { TestClient, queuesOf, uniqueName } from '../test/support/broker.js';
import { startConsumer } from '../test/support/consumer-process.js';
import { image640, image640Body, modelDir } from '../test/support/onnx-models.js';

export interface LargeTensorResult {
  model: 'image640';
  bodyBytes: number;
  runs: number;
  /** Median ms from publish to reply, one message at a time. */
  endToEndMs: number;
  /** Median ms of InferenceSession.run on the same tensor, with the consumer's session options. */
  onnxruntimeMs: number;
  /** Median ms for the broker alone to take the same bytes into a queue of QUEUE_TYPE and deliver them: the floor under end to end. */
  brokerMs: number;
  ratio: number;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function largeTensorRow(
  config: Readonly<Config>,
  runs: number,
  log: (line: string) => void,
): Promise<LargeTensorResult> {
  const bytes = image640();
  const { body, tensor } = image640Body();
  log(`image640: onnxruntime alone (${runs} runs)`);
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: config.ort.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: config.ort.graphOptimizationLevel,
  });
  const feeds = { x: new ort.Tensor('float32', tensor, [1, 3, 640, 640]) };
  await session.run(feeds);
  const alone: number[] = [];
  for (let k = 0; k < runs; k++) {
    const t = performance.now();
    await session.run(feeds);
    alone.push(performance.now() - t);
  }
  await session.release();

  log(`image640: the broker alone (${runs} messages of the same bytes into a ${config.queueType} queue and out)`);
  const brokerMs = median(await brokerAlone(body, config, runs));

  log(`image640: this consumer, end to end (${runs} messages of ${(body.length / 1e6).toFixed(1)} MB, one at a time)`);
  const q = { input: uniqueName('bench.image640'), replies: uniqueName('bench.image640.replies') };
  const client = await TestClient.connect();
  const consumer = startConsumer({
    INPUT_QUEUE: q.input,
    REPLY_QUEUE: q.replies,
    MODEL_DIR: modelDir('image640', bytes),
    MAX_MESSAGE_BYTES: String(64 << 20),
    MAX_TENSOR_ELEMENTS: '2000000',
  });
  const endToEnd: number[] = [];
  try {
    await consumer.waitFor('"msg":"consuming"', 120_000);
    for (let k = -1; k < runs; k++) {
      // k = -1: warm-up, not measured
      const t = performance.now();
      const replies = await client.ask(q.input, q.replies, [{ id: `img-${k}`, body }], 120_000);
      const r = replies.get(`img-${k}`);
      if (r?.status !== 'ok') throw new Error(`image640: reply ${r?.status ?? 'missing'}: ${r?.body.slice(0, 200)}`);
      if (k >= 0) endToEnd.push(performance.now() - t);
    }
  } finally {
    await consumer.stop();
    await client.deleteQueues(...queuesOf(q.input, q.replies)).catch(() => {});
    await client.close();
  }
  const result: LargeTensorResult = {
    model: 'image640',
    bodyBytes: body.length,
    runs,
    endToEndMs: median(endToEnd),
    onnxruntimeMs: median(alone),
    brokerMs,
    ratio: median(endToEnd) / median(alone),
  };
  log(
    `  end to end p50 ${result.endToEndMs.toFixed(0)} ms; onnxruntime alone p50 ${result.onnxruntimeMs.toFixed(0)} ms (${result.ratio.toFixed(1)}×, target ≤ 2×); the broker alone moving the bytes p50 ${brokerMs.toFixed(0)} ms`,
  );
  return result;
}

/** Publish (confirmed) and delivery of `body`, nothing else: what any consumer of this broker pays for the bytes. */
async function brokerAlone(body: Buffer, config: Readonly<Config>, runs: number): Promise<number[]> {
  const client = await TestClient.connect();
  const queue = uniqueName('bench.image640.broker');
  const ch = await client.connection.createChannel();
  await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': config.queueType } });
  const times: number[] = [];
  let delivered: (() => void) | undefined;
  await ch.consume(queue, () => delivered?.(), { noAck: true });
  try {
    for (let k = -1; k < runs; k++) {
      const t = performance.now();
      const got = new Promise<void>((resolve) => (delivered = resolve));
      await client.publish(queue, body);
      await got;
      if (k >= 0) times.push(performance.now() - t);
    }
  } finally {
    await ch.deleteQueue(queue).catch(() => {});
    await ch.close().catch(() => {});
    await client.close();
  }
  return times;
}
