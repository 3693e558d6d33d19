/**
 * The broker ceiling: consume → publish a reply with confirms → ack after the confirm, and no
 * scoring at all. Same guarantees as the consumer under test (the ack waits for the reply's confirm),
 * as little work as amqplib allows: one canned reply body, acks coalesced into one `multiple` ack per
 * turn of the event loop. Run as its own process by bench/ceilings.ts.
 *
 * env: AMQP_URL, INPUT_QUEUE, REPLY_QUEUE, PREFETCH, REPLY_BODY, CONNECTIONS (1: consume and publish
 * share one connection; 2: one each, as the consumer under test does), NO_DELAY (0: leave Nagle on),
 * REPLY_PROPS (full, or a list of id,mandatory,headers: the reply properties the consumer under test
 * sends, to price the reply contract apart from scoring), MODEL_NAME and MODEL_VERSION (the x-model and
 * x-model-version headers).
 */
import { randomUUID } from 'node:crypto';
import * as amqp from 'amqplib';

const env = process.env;
const url = env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const prefetch = Number(env.PREFETCH ?? 300);
const replyBody = Buffer.from(env.REPLY_BODY ?? '{}');
const replyQueue = env.REPLY_QUEUE!;
/** REPLY_PROPS=full: the properties and headers this consumer's replies carry (the contract), still with no scoring. */
const fullProps = env.REPLY_PROPS === 'full';
const props = new Set((env.REPLY_PROPS ?? '').split(','));
const modelName = env.MODEL_NAME ?? 'model';
const modelVersion = env.MODEL_VERSION;

const noDelay = env.NO_DELAY !== '0';
const consumeConn = await amqp.connect(url, { noDelay, clientProperties: { connection_name: 'bench-noop/consume' } });
const publishConn =
  env.CONNECTIONS === '1'
    ? consumeConn
    : await amqp.connect(url, { noDelay, clientProperties: { connection_name: 'bench-noop/publish' } });
const consumeCh = await consumeConn.createChannel();
const publishCh = await publishConn.createConfirmChannel();
await consumeCh.prefetch(prefetch);

// Deliveries are handled in order and one channel confirms in order, so the highest confirmed tag acks everything before it.
let ackUpTo = 0;
let flushQueued = false;
const flush = () => {
  flushQueued = false;
  consumeCh.ack({ fields: { deliveryTag: ackUpTo } } as amqp.Message, true);
};

await consumeCh.consume(env.INPUT_QUEUE!, (msg) => {
  if (!msg) return;
  const tag = msg.fields.deliveryTag;
  const { correlationId } = msg.properties;
  const options: amqp.Options.Publish = { persistent: true, contentType: 'application/json', correlationId };
  if (fullProps || props.has('id'))
    Object.assign(options, { messageId: randomUUID(), timestamp: Math.floor(Date.now() / 1000) });
  if (fullProps || props.has('mandatory')) options.mandatory = true;
  if (fullProps || props.has('headers')) {
    options.headers = { 'x-status': 'ok', 'x-model': modelName, 'x-scoring-ms': 0.123 };
    if (modelVersion) options.headers['x-model-version'] = modelVersion;
  }
  publishCh.publish('', msg.properties.replyTo || replyQueue, replyBody, options, (err) => {
    if (err) throw err; // a nacked reply would be acked by the next multiple ack: stop the run instead
    if (tag > ackUpTo) ackUpTo = tag;
    if (!flushQueued) {
      flushQueued = true;
      setImmediate(flush);
    }
  });
});
console.log(JSON.stringify({ msg: 'ready', prefetch }));

process.on('SIGTERM', () => {
  void Promise.allSettled([consumeConn.close(), publishConn.close()]).then(() => process.exit(0));
});
