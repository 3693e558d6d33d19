/**
 * The only file that knows amqplib. Two recovering connections, as RabbitMQ advises: one consumes
 * (and acks), one publishes replies with confirms, so a memory alarm that blocks publishers never
 * stalls acks. amqplib's opt-in recovery reconnects with capped, jittered backoff and runs `setup`
 * after every connect, so declaring the topology and consuming again is the normal path.
 */
import { EventEmitter, once } from 'node:events';
import { readFileSync } from 'node:fs';
import * as amqp from 'amqplib';
import type { Logger } from 'pino';
import { AckWindow, type Settlement } from './acknowledger.js';
import type { Config } from './config.js';
import { redactUrl } from './config.js';
import { BootError } from './errors.js';
import type { Reply } from './reply.js';
import { explainPreconditionFailed, topologyFor, type Topology } from './topology.js';

export type QueueType = 'quorum' | 'classic';

/** How long close() waits after the last ack before closing the consume channel (see close()). */
const ACK_SETTLE_GRACE_MS = 250;

/** One input message, in the project's words. */
export interface Delivery {
  body: Buffer;
  correlationId?: string;
  messageId?: string;
  replyTo?: string;
  redelivered: boolean;
  /** x-delivery-count on quorum queues: how many times it was delivered before. */
  deliveryCount: number;
  /** For the latency histogram: the producer's timestamp (seconds) when it set one. */
  timestamp?: number;
  readonly tag: number;
  /** Which consume channel it came on: acks are only valid on that one. */
  readonly channel: number;
}

export type PublishResult = 'confirmed' | 'returned';

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

export interface BrokerEvents {
  connected: [role: 'consume' | 'publish'];
  disconnected: [role: 'consume' | 'publish', reason: string];
  returned: [reply: { routingKey: string; correlationId?: string }];
}

export class Broker extends EventEmitter<BrokerEvents> {
  private consumeConn!: amqp.RecoveringChannelModel;
  private publishConn!: amqp.RecoveringChannelModel;
  private consumeChannel: amqp.Channel | undefined;
  private publishChannel: amqp.ConfirmChannel | undefined;
  private publishModel: amqp.ChannelModel | undefined;
  private publisherUp = deferred();
  private unblocked: Deferred | undefined;
  private drained: Promise<unknown> | undefined;
  private generation = 0;
  /** When the consume channel last sent acks or nacks: close() lets the broker apply them first. */
  private lastAckAt = 0;
  private window = new AckWindow();
  private onDelivery: ((d: Delivery) => void) | undefined;
  private consumerTag: string | undefined;
  private consuming = false;
  private resubscribe = true;
  private closing = false;
  private fatal: Error | undefined;
  private readonly returnedIds = new Set<string>();
  private readonly topology: Topology;

  private constructor(
    private readonly config: Readonly<Config>,
    private readonly log: Logger,
  ) {
    super();
    this.topology = topologyFor(config);
  }

  /** Fails fast at boot (unreachable broker, refused login, a queue that clashes); retries for ever once connected. */
  static async connect(config: Readonly<Config>, log: Logger): Promise<Broker> {
    const broker = new Broker(config, log);
    try {
      broker.publishConn = await broker.open('publish', (m) => broker.setupPublisher(m));
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
      publishConnected: this.publishChannel !== undefined,
      consuming: this.consuming,
      blocked: this.unblocked !== undefined,
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

  /** Applies each settlement; acks go as one `multiple` ack when nothing older is still open. */
  settle(items: ReadonlyArray<{ delivery: Delivery; settlement: Settlement }>): void {
    const ch = this.consumeChannel;
    const acks: number[] = [];
    if (items.length > 0) this.lastAckAt = Date.now();
    for (const { delivery, settlement } of items) {
      if (!ch || !this.isCurrent(delivery)) continue;
      if (settlement === 'ack') acks.push(delivery.tag);
      else {
        ch.nack(tagged(delivery.tag), false, settlement === 'requeue');
        this.window.release(delivery.tag);
      }
    }
    if (!ch || acks.length === 0) return;
    const upTo = this.window.settle(acks);
    if (upTo !== undefined) ch.ack(tagged(upTo), true);
    else for (const t of acks) ch.ack(tagged(t), false);
  }

  /**
   * Publishes with `mandatory` and resolves on the broker's confirm: 'returned' when the broker could
   * not route it (it confirms those too). Rejects when the channel dies or no confirm comes in time.
   */
  async publish(reply: Reply): Promise<PublishResult> {
    while (this.unblocked || this.drained || !this.publishChannel) {
      if (this.closing && !this.publishChannel) throw new Error('broker closed');
      await (this.unblocked?.promise ?? this.drained ?? this.publisherUp.promise);
    }
    const ch = this.publishChannel;
    const id = reply.properties.messageId;
    return new Promise<PublishResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no publisher confirm within ${this.config.amqp.confirmTimeoutMs} ms`)), this.config.amqp.confirmTimeoutMs);
      const onConfirm = (err: unknown) => {
        clearTimeout(timer);
        if (err) reject(err instanceof Error ? err : new Error(String(err)));
        else resolve(this.returnedIds.delete(id) ? 'returned' : 'confirmed');
      };
      try {
        const ok = ch.publish('', reply.routingKey, reply.body, { ...reply.properties, mandatory: reply.mandatory }, onConfirm);
        // A channel whose connection drops with its buffer full never emits 'drain': stop waiting when it closes,
        // or every later reply would wait on it for ever (seen: a broker restarted during a memory alarm).
        if (!ok && !this.drained) this.drained = Promise.race([once(ch, 'drain'), once(ch, 'close')]).finally(() => (this.drained = undefined));
      } catch (err) {
        onConfirm(err);
      }
    });
  }

  /** A reply to REPLY_QUEUE came back unroutable: someone deleted it. Declare it again before republishing. */
  async redeclareReplyQueue(): Promise<void> {
    if (this.publishModel) await this.declareQueues(this.publishModel, [this.topology.replyQueue]).catch(() => {});
  }

  async close(): Promise<void> {
    this.closing = true;
    this.publisherUp.resolve();
    this.unblocked?.resolve();
    // The channel first: its close goes out behind the last acks on that channel, so the broker has them.
    // An ack followed at once by the connection's close was lost (its input redelivered) every time here.
    // And not at once: a quorum queue's channel that has many acks in flight holds the newest back until
    // the queue applies the older ones (RabbitMQ 3.10 rabbit_fifo_client, "slow" above 32 pending
    // commands); closing the channel then drops them. A short wait after the last ack lets them through.
    const settleGraceMs = ACK_SETTLE_GRACE_MS - (Date.now() - this.lastAckAt);
    if (this.consumeChannel && settleGraceMs > 0) await new Promise((r) => setTimeout(r, settleGraceMs));
    await this.consumeChannel?.close().catch(() => {});
    await Promise.all([this.consumeConn?.close().catch(() => {}), this.publishConn?.close().catch(() => {})]);
  }

  private async open(role: 'consume' | 'publish', setup: (m: amqp.ChannelModel) => Promise<void>): Promise<amqp.RecoveringChannelModel> {
    const { amqp: a } = this.config;
    const conn = await amqp.connect(withHeartbeat(a.url, a.heartbeatS), {
      clientProperties: { connection_name: `${a.connectionName}/${role}` },
      // Nagle off: frames are coalesced per event-loop turn instead (coalesceWrites), and a lone reply or
      // ack must not wait for the broker's delayed TCP ack.
      noDelay: true,
      ...tlsOptions(a),
      recovery: {
        initialDelay: a.reconnectInitialDelayMs,
        maxDelay: a.reconnectMaxDelayMs,
        factor: 2,
        jitter: 0.2,
        maxRetries: Infinity,
        initialMaxRetries: a.connectRetriesAtBoot,
        waitForConnect: false,
        setup,
      },
    });
    conn.on('error', (err: Error) => this.log.warn({ role, err: err.message }, 'broker connection error'));
    conn.on('handler-error', (err: Error, event: string) => this.log.error({ role, event, err: err.message }, 'broker event handler threw'));
    conn.on('connect-failed', (err: Error) => {
      this.log.warn({ role, err: err.message }, 'broker connect failed');
      if (this.fatal) void conn.close();
    });
    conn.on('reconnect-scheduled', ({ attempt, delay }: { attempt: number; delay: number }) =>
      this.log.info({ role, attempt, delayMs: delay }, 'reconnect scheduled'),
    );
    conn.on('connect', () => {
      this.log.info({ role, broker: redactUrl(a.url) }, 'broker connected');
      this.emit('connected', role);
    });
    conn.on('disconnect', (err: Error) => this.onDisconnect(role, err));
    if (role === 'publish') {
      conn.on('blocked', (reason: string) => {
        this.log.warn({ reason }, 'broker blocked publishing: holding replies until it unblocks');
        this.unblocked ??= deferred();
      });
      conn.on('unblocked', () => {
        this.log.info('broker unblocked publishing');
        this.unblocked?.resolve();
        this.unblocked = undefined;
      });
    }
    await conn.waitForConnect();
    return conn;
  }

  private onDisconnect(role: 'consume' | 'publish', err: Error): void {
    this.log.warn({ role, err: err.message }, 'broker disconnected');
    if (role === 'consume') {
      this.consumeChannel = undefined;
      this.consuming = false;
      this.generation++;
    } else {
      this.publishChannel = undefined;
      this.publishModel = undefined;
      this.publisherUp = deferred();
      this.unblocked?.resolve();
      this.unblocked = undefined;
    }
    this.emit('disconnected', role, err.message);
  }

  private async setupPublisher(model: amqp.ChannelModel): Promise<void> {
    coalesceWrites(model);
    await this.declareQueues(model, [this.topology.replyQueue]);
    const ch = await model.createConfirmChannel();
    this.watchChannel(ch, model, 'publish');
    ch.on('return', (msg: amqp.Message) => {
      const id = msg.properties.messageId as string | undefined;
      if (id) this.returnedIds.add(id);
      this.emit('returned', { routingKey: msg.fields.routingKey, correlationId: msg.properties.correlationId });
    });
    this.publishChannel = ch;
    this.publishModel = model;
    this.publisherUp.resolve();
  }

  private async setupConsumer(model: amqp.ChannelModel): Promise<void> {
    coalesceWrites(model);
    await this.declareQueues(model, [this.topology.inputQueue, this.topology.deadQueue]);
    const ch = await model.createChannel();
    this.watchChannel(ch, model, 'consume');
    await ch.prefetch(this.config.prefetch);
    this.generation++;
    this.window = new AckWindow();
    this.consumeChannel = ch;
    if (this.onDelivery && this.resubscribe) await this.subscribe(ch);
  }

  /**
   * Each on a throwaway channel, since a clash closes the channel it happens on. The input queue must
   * have our arguments (delivery limit, dead-letter route): a clash there stops boot with one line. The
   * reply and dead-letter queues may be someone else's, declared their way: we use them as they are.
   */
  private async declareQueues(model: amqp.ChannelModel, queues: string[]): Promise<void> {
    const t = this.topology;
    for (const queue of queues) {
      const ch = await model.createChannel();
      ch.on('error', () => {});
      try {
        await ch.assertQueue(queue, { durable: true, arguments: t.argumentsOf(queue) });
        await ch.close();
      } catch (err) {
        const message = (err as Error).message;
        if (!/PRECONDITION_FAILED/.test(message)) throw err;
        if (queue === t.inputQueue) {
          this.fatal = explainPreconditionFailed(queue, message);
          throw err;
        }
        this.log.info({ queue }, 'queue exists with its own arguments; using it as it is');
      }
    }
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

  /** A channel that dies under a live connection would leave us deaf or mute: recycle the connection. */
  private watchChannel(ch: amqp.Channel, model: amqp.ChannelModel, role: string): void {
    ch.on('error', (err: Error) => this.log.warn({ role, err: err.message }, 'channel error'));
    ch.on('handler-error', (err: Error, event: string) => this.log.error({ role, event, err: err.message }, 'channel handler threw'));
    ch.on('close', () => {
      const current = role === 'consume' ? this.consumeChannel : this.publishChannel;
      if (current === ch && !this.closing) void model.close().catch(() => {});
    });
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
    redelivered: msg.fields.redelivered,
    deliveryCount: typeof count === 'number' ? count : msg.fields.redelivered ? 1 : 0,
    timestamp: typeof p.timestamp === 'number' ? p.timestamp : undefined,
    tag: msg.fields.deliveryTag,
    channel,
  };
}

/**
 * amqplib writes every frame to the socket on its own: one system call per reply, which was the
 * largest single cost on the consumer's thread. Corking the socket while amqplib's multiplexer empties
 * its channel buffers (one turn of the event loop) sends the same bytes in the same order in one
 * writev. This reaches into amqplib 2.x internals (`connection.muxer`, `connection.stream`); if they
 * are not there, writes stay as they were.
 */
function coalesceWrites(model: amqp.ChannelModel): void {
  const connection = (model as unknown as { connection?: { stream?: unknown; muxer?: { _readIncoming?: unknown } } }).connection;
  const socket = connection?.stream as { cork?: () => void; uncork?: () => void } | undefined;
  const mux = connection?.muxer;
  if (!mux || typeof mux._readIncoming !== 'function' || typeof socket?.cork !== 'function' || typeof socket.uncork !== 'function') return;
  const readIncoming = (mux._readIncoming as () => void).bind(mux);
  mux._readIncoming = () => {
    socket.cork!();
    try {
      readIncoming();
    } finally {
      socket.uncork!();
    }
  };
}

/** amqplib's ack and nack read only the delivery tag. */
function tagged(deliveryTag: number): amqp.Message {
  return { fields: { deliveryTag } } as amqp.Message;
}

function withHeartbeat(url: string, heartbeatS: number): string {
  const u = new URL(url);
  if (!u.searchParams.has('heartbeat')) u.searchParams.set('heartbeat', String(heartbeatS));
  return u.toString();
}

function tlsOptions(a: Config['amqp']): Record<string, unknown> {
  const read = (key: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new BootError(`config ${key}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  return {
    ...(a.caFile ? { ca: [read('AMQP_CA_FILE', a.caFile)] } : {}),
    ...(a.certFile ? { cert: read('AMQP_CERT_FILE', a.certFile) } : {}),
    ...(a.keyFile ? { key: read('AMQP_KEY_FILE', a.keyFile) } : {}),
  };
}
