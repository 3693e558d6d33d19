/**
 * The broker adapter, with broker/ the only code that knows amqplib. Two recovering connections, as
 * RabbitMQ advises: this file's consumes (and acks); broker/publisher.ts's publishes replies with
 * confirms, so a memory alarm that blocks publishers never stalls acks. amqplib's opt-in recovery runs
 * `setup` after every connect, so declaring the topology and consuming again is the normal path.
 */
import { EventEmitter } from 'node:events';
import type * as amqp from 'amqplib';
import type { Logger } from 'pino';
import { AckWindow, type Settlement } from './acknowledger.js';
import { redactUrl, type Config } from './config.js';
import { BootError } from './errors.js';
import type { Reply } from './reply.js';
import { topologyFor, type Topology } from './topology.js';
import { declareQueues, openConnection, watchChannel, type Role } from './broker/connection.js';
import { ReplyPublisher, type PublishResult } from './broker/publisher.js';

export type { PublishResult };

/** How long close() waits after the last ack before closing the consume channel (see close()). */
const ACK_SETTLE_GRACE_MS = 250;
/** How long settled inputs wait for older ones, to go in one `multiple` ack, before each is acked on its own. */
const ACK_HOLD_MS = 20;

/** One input message, in the project's words. */
export interface Delivery {
  body: Buffer;
  correlationId?: string;
  messageId?: string;
  replyTo?: string;
  /** Binary payloads (issue 14): the message's contentType and headers reach the entry script. */
  contentType?: string;
  headers?: Record<string, unknown>;
  redelivered: boolean;
  /** x-delivery-count on quorum queues: how many times it was delivered before. */
  deliveryCount: number;
  readonly tag: number;
  /** Which consume channel it came on: acks are only valid on that one. */
  readonly channel: number;
}

export interface BrokerEvents {
  connected: [role: Role];
  disconnected: [role: Role, reason: string];
  returned: [reply: { routingKey: string; correlationId?: string }];
}

export class Broker extends EventEmitter<BrokerEvents> {
  private consumeConn!: amqp.RecoveringChannelModel;
  private publishConn!: amqp.RecoveringChannelModel;
  private consumeChannel: amqp.Channel | undefined;
  private readonly publisher: ReplyPublisher;
  private generation = 0;
  /** When the consume channel last sent acks or nacks: close() lets the broker apply them first. */
  private lastAckAt = 0;
  private window = new AckWindow();
  private holdTimer: NodeJS.Timeout | undefined;
  private onDelivery: ((d: Delivery) => void) | undefined;
  private consumerTag: string | undefined;
  private consuming = false;
  private resubscribe = true;
  private closing = false;
  private fatal: Error | undefined;
  private readonly topology: Topology;

  private constructor(
    private readonly config: Readonly<Config>,
    private readonly log: Logger,
  ) {
    super();
    this.topology = topologyFor(config);
    this.publisher = new ReplyPublisher(this.topology, config.amqp.confirmTimeoutMs, log, (r) => this.emit('returned', r));
  }

  /** Fails fast at boot (unreachable broker, refused login, a queue that clashes); retries for ever once connected. */
  static async connect(config: Readonly<Config>, log: Logger): Promise<Broker> {
    const broker = new Broker(config, log);
    try {
      broker.publishConn = await broker.open('publish', (m) => broker.publisher.setup(m));
      broker.consumeConn = await broker.open('consume', (m) => broker.setupConsumer(m));
    } catch (err) {
      await broker.close();
      // A BootError already says what is wrong (an unreadable AMQP_CERT_FILE): the broker was never tried.
      throw broker.fatal ?? (err instanceof BootError ? err : new BootError(`broker ${redactUrl(config.amqp.url)} unreachable: ${(err as Error).message}`));
    }
    return broker;
  }

  get state(): { consumeConnected: boolean; publishConnected: boolean; consuming: boolean; blocked: boolean } {
    return {
      consumeConnected: this.consumeChannel !== undefined,
      publishConnected: this.publisher.connected,
      consuming: this.consuming,
      blocked: this.publisher.blocked,
    };
  }

  /** Starts consuming now and again after every reconnect, until stopConsuming(). */
  async consume(onDelivery: (d: Delivery) => void): Promise<void> {
    this.onDelivery = onDelivery;
    if (this.consumeChannel) await this.subscribe(this.consumeChannel);
  }

  /** Deliveries already on their way are still handed over: they are ours to answer. */
  async stopConsuming(): Promise<void> {
    this.resubscribe = false;
    const ch = this.consumeChannel;
    const tag = this.consumerTag;
    this.consuming = false;
    this.consumerTag = undefined;
    if (ch && tag) await ch.cancel(tag).catch(() => {});
  }

  /** False once the channel it came on has closed: the broker has requeued it, and acking it elsewhere would fail. */
  isCurrent(d: Delivery): boolean {
    return d.channel === this.generation && this.consumeChannel !== undefined;
  }

  /** Applies each settlement; acks go as `multiple` acks, held briefly (ACK_HOLD_MS) while older inputs are open. */
  settle(items: ReadonlyArray<{ delivery: Delivery; settlement: Settlement }>): void {
    const ch = this.consumeChannel;
    if (!ch || items.length === 0) return;
    this.lastAckAt = Date.now();
    const acks: number[] = [];
    for (const { delivery, settlement } of items) {
      if (!this.isCurrent(delivery)) continue;
      if (settlement === 'ack') acks.push(delivery.tag);
      else {
        ch.nack(tagged(delivery.tag), false, settlement === 'requeue');
        this.window.release(delivery.tag);
      }
    }
    const upTo = this.window.settle(acks);
    if (upTo !== undefined) ch.ack(tagged(upTo), true);
    if (this.window.heldCount > 0 && !this.holdTimer) this.holdTimer = setTimeout(() => this.ackHeld(ch), ACK_HOLD_MS);
  }

  /** Older inputs are still being scored: ack the held ones on their own rather than keep the broker's count of unacked up. */
  private ackHeld(ch: amqp.Channel): void {
    this.holdTimer = undefined;
    if (ch !== this.consumeChannel) return; // a new channel: the broker redelivers the old one's inputs
    this.lastAckAt = Date.now();
    for (const t of this.window.takeHeld()) ch.ack(tagged(t), false);
  }

  /** Resolves once the broker has settled every reply; see broker/publisher.ts. */
  publishAll(replies: readonly Reply[]): Promise<Array<PublishResult | Error>> {
    return this.publisher.publishAll(replies);
  }

  redeclareReplyQueue(): Promise<void> {
    return this.publisher.redeclareReplyQueue();
  }

  async close(): Promise<void> {
    this.closing = true;
    this.publisher.close();
    // The channel first: its close goes out behind the last acks on that channel, so the broker has them.
    // An ack followed at once by the connection's close was lost (its input redelivered) every time here.
    // And not at once: a quorum queue's channel that has many acks in flight holds the newest back until
    // the queue applies the older ones (RabbitMQ 3.10 rabbit_fifo_client, "slow" above 32 pending
    // commands); closing the channel then drops them. A short wait after the last ack lets them through.
    clearTimeout(this.holdTimer);
    if (this.consumeChannel && this.window.heldCount > 0) this.ackHeld(this.consumeChannel);
    const settleGraceMs = ACK_SETTLE_GRACE_MS - (Date.now() - this.lastAckAt);
    if (this.consumeChannel && settleGraceMs > 0) await new Promise((r) => setTimeout(r, settleGraceMs));
    await this.consumeChannel?.close().catch(() => {});
    await Promise.all([this.consumeConn?.close().catch(() => {}), this.publishConn?.close().catch(() => {})]);
  }

  /** A clash that retrying cannot mend stops the boot (and the retries) with its own one line. */
  private open(role: Role, setup: (m: amqp.ChannelModel) => Promise<void>): Promise<amqp.RecoveringChannelModel> {
    return openConnection(
      this.config.amqp,
      role,
      this.log,
      async (model) => {
        try {
          await setup(model);
        } catch (err) {
          if (err instanceof BootError) this.fatal = err;
          throw err;
        }
      },
      {
        connected: () => this.emit('connected', role),
        disconnected: (err) => this.onDisconnect(role, err),
        isFatal: () => this.fatal !== undefined,
        ...(role === 'publish'
          ? {
              blocked: (reason: string) => this.publisher.block(reason),
              unblocked: () => {
                this.log.info('broker unblocked publishing');
                this.publisher.unblock();
              },
            }
          : {}),
      },
    );
  }

  private onDisconnect(role: Role, err: Error): void {
    if (role === 'consume') {
      this.consumeChannel = undefined;
      this.consuming = false;
      this.generation++;
    } else this.publisher.disconnected();
    this.emit('disconnected', role, err.message);
  }

  private async setupConsumer(model: amqp.ChannelModel): Promise<void> {
    await declareQueues(model, this.topology, [this.topology.inputQueue, this.topology.deadQueue], this.log);
    const ch = await model.createChannel();
    watchChannel(ch, model, 'consume', this.log, () => this.consumeChannel === ch && !this.closing);
    await ch.prefetch(this.config.prefetch);
    this.generation++;
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.window = new AckWindow();
    this.consumeChannel = ch;
    if (this.onDelivery && this.resubscribe) await this.subscribe(ch);
  }

  private async subscribe(ch: amqp.Channel): Promise<void> {
    if (this.consuming) return;
    const generation = this.generation;
    const { consumerTag } = await ch.consume(this.topology.inputQueue, (msg) => {
      if (msg === null) return this.onCancelled(ch);
      this.window.delivered(msg.fields.deliveryTag);
      this.onDelivery?.(toDelivery(msg, generation));
    });
    this.consumerTag = consumerTag;
    this.consuming = true;
    this.log.info({ queue: this.topology.inputQueue, prefetch: this.config.prefetch }, 'consuming');
  }

  /** The broker cancelled us (the queue was deleted): declare it again and go on, rather than sit idle. */
  private onCancelled(ch: amqp.Channel): void {
    this.consuming = false;
    this.consumerTag = undefined;
    this.log.warn({ queue: this.topology.inputQueue }, 'consumer cancelled by the broker; declaring the queue again');
    const retry = async (attempt: number): Promise<void> => {
      if (this.consumeChannel !== ch || !this.resubscribe || this.closing) return;
      try {
        await ch.assertQueue(this.topology.inputQueue, { durable: true, arguments: this.topology.inputArguments });
        await this.subscribe(ch);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, attempt }, 're-consume failed');
        setTimeout(() => void retry(attempt + 1), Math.min(10_000, 200 * 2 ** attempt)).unref();
      }
    };
    void retry(0);
  }
}

function toDelivery(msg: amqp.ConsumeMessage, channel: number): Delivery {
  const p = msg.properties;
  const count = p.headers?.['x-delivery-count'];
  return {
    body: msg.content,
    correlationId: p.correlationId || undefined,
    messageId: p.messageId || undefined,
    replyTo: p.replyTo || undefined,
    contentType: p.contentType || undefined,
    headers: p.headers && Object.keys(p.headers).length > 0 ? p.headers : undefined,
    redelivered: msg.fields.redelivered,
    deliveryCount: typeof count === 'number' ? count : msg.fields.redelivered ? 1 : 0,
    tag: msg.fields.deliveryTag,
    channel,
  };
}

/** amqplib's ack and nack read only the delivery tag. */
function tagged(deliveryTag: number): amqp.Message {
  return { fields: { deliveryTag } } as amqp.Message;
}
