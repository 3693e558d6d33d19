/**
 * The hand-written consumer, as RabbitMQ's RPC tutorial writes it (rpc_server.js): prefetch 1, and for
 * each message parse it, run the model, send the reply, ack. No batching, no worker threads, no
 * publisher confirms (the tutorial has none, which makes this baseline faster, not slower). Run as its
 * own process by bench/run.ts.
 *
 * env: AMQP_URL, INPUT_QUEUE, REPLY_QUEUE, MODEL_FILE, NO_DELAY
 */
import * as amqp from 'amqplib';
import * as ort from 'onnxruntime-node';

const env = process.env;
const session = await ort.InferenceSession.create(env.MODEL_FILE!);
const inputName = session.inputNames[0];

// The tutorial leaves Nagle on (amqplib's default); here that costs a delayed TCP ack per message, so the
// benchmark turns it off (NO_DELAY=1) to compare against the best this shape can do.
const conn = await amqp.connect(env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672', {
  noDelay: env.NO_DELAY === '1',
  clientProperties: { connection_name: 'bench-hand' },
});
const channel = await conn.createChannel();
await channel.prefetch(1);

function nested(t: ort.Tensor): unknown {
  const flat = Array.from(t.data as ArrayLike<number | bigint>, Number);
  const [rows, ...rest] = t.dims;
  const width = rest.reduce((a, b) => a * b, 1);
  return Array.from({ length: rows }, (_, r) => (rest.length === 0 ? flat[r] : flat.slice(r * width, (r + 1) * width)));
}

await channel.consume(env.INPUT_QUEUE!, async (msg) => {
  if (!msg) return;
  const rows = (JSON.parse(msg.content.toString()) as { data: number[][] }).data;
  const input = new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, rows[0].length]);
  const outputs = await session.run({ [inputName]: input });
  const names = session.outputNames;
  const result =
    names.length === 1 ? nested(outputs[names[0]]) : Object.fromEntries(names.map((n) => [n, nested(outputs[n])]));
  channel.sendToQueue(msg.properties.replyTo || env.REPLY_QUEUE!, Buffer.from(JSON.stringify(result)), {
    correlationId: msg.properties.correlationId,
    headers: { 'x-status': 'ok' },
  });
  channel.ack(msg);
});
console.log(JSON.stringify({ msg: 'ready', prefetch: 1 }));

process.on(
  'SIGTERM',
  () =>
    void conn.close().then(
      () => process.exit(0),
      () => process.exit(0),
    ),
);
