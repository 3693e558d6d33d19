/**
 * The broker adapter, with broker/ the only code that knows amqplib. Two recovering connections, as
 * RabbitMQ advises: this file's consumes (and acks); broker/publisher.ts's publishes replies with
 * confirms, so a memory alarm that blocks publishers never stalls acks. amqplib's opt-in recovery runs
 * `setup` after every connect, so declaring the topology and consuming again is the normal path.
 */
import { EventEmitter } from 'node:events';
import type * as amqp from 'amqplib';
import type { Logger } from 'pino';
import { backoffMs } from '../backoff.js';
import { redactUrl, type Config } from '../config.js';
import { BootError } from '../errors.js';
import type { Reply } from '../reply.js';
import { topologyFor, type Topology } from './topology.js';
import { declareQueues, openConnection, watchChannel, type Role } from './connection.js';
import { ReplyPublisher, type PublishResult } from './publisher.js';
import { ChannelAcks, type AckChannel, type Settlement } from './acks.js';
import { toDelivery, type Delivery } from './delivery.js';

export type { PublishResult, Settlement };

/** One input message, in the project's words (broker/delivery.ts). */
export type { Delivery };

export interface BrokerEvents {
  connected: [role: Role];
  disconnected: [role: Role, reason: string];
  returned: [reply: { routingKey: string; correlationId?: string; replyText: string }];
}

/**
 * The consume side. 'down': no channel. 'idle': a channel, no consumer on it (not asked yet, paused,
 * stopped, or cancelled by the broker). 'consuming': deliveries flow. 'closed': close() was called.
 */
type ConsumeState =
  | { name: 'down' }
  | { name: 'idle'; channel: amqp.Channel; acks: ChannelAcks }
  | { name: 'consuming'; channel: amqp.Channel; acks: ChannelAcks; consumerTag: string }
  | { name: 'closed' };

/** What the consumer asks of the consume side: deliveries, a pause (the byte budget is spent), or no more. */
type Demand = 'none' | 'deliveries' | 'paused' | 'stopped';

export class Broker extends EventEmitter<BrokerEvents> {
  private consumeConn!: amqp.RecoveringChannelModel;
  private publishConn!: amqp.RecoveringChannelModel;
  private readonly publisher: ReplyPublisher;
  private generation = 0;
  private consumeState: ConsumeState = { name: 'down' };
  private demand: Demand = 'none';
  /** The prefetch the next consumer is made with, and the one the channel has now. */
  private nextPrefetch: number;
  private channelPrefetch = 0;
  /** consume and cancel calls, one at a time, each making the state match the demand. */
  private reconciling: Promise<void> = Promise.resolve();
  private onDelivery: ((d: Delivery) => void) | undefined;
  private fatal: Error | undefined;
  private readonly topology: Topology;

  private constructor(
    private readonly config: Readonly<Config>,
    private readonly log: Logger,
  ) {
    super();
    this.nextPrefetch = config.prefetch;
    this.topology = topologyFor(config);
    this.publisher = new ReplyPublisher(this.topology, config.amqp.confirmTimeoutMs, log, (r) =>
      this.emit('returned', r),
    );
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
      throw (
        broker.fatal ??
        (err instanceof BootError
          ? err
          : new BootError(`broker ${redactUrl(config.amqp.url)} unreachable: ${(err as Error).message}`))
      );
    }
    return broker;
  }

  get state(): {
    consumeConnected: boolean;
    publishConnected: boolean;
    consuming: boolean;
    paused: boolean;
    blocked: boolean;
  } {
    const c = this.consumeState.name;
    return {
      consumeConnected: c === 'idle' || c === 'consuming',
      publishConnected: this.publisher.connected,
      consuming: c === 'consuming' || (c === 'idle' && this.demand === 'paused'),
      paused: this.demand === 'paused',
      blocked: this.publisher.blocked,
    };
  }

  /** Starts consuming now and again after every reconnect, until stopConsuming(). */
  async consume(onDelivery: (d: Delivery) => void): Promise<void> {
    this.onDelivery = onDelivery;
    await this.want('deliveries');
  }

  /**
   * Takes no new deliveries until resume(): the consumer is cancelled, and what was delivered stays
   * ours (unacked, neither dropped nor requeued). RabbitMQ does not support channel.flow for consumers,
   * and a new basic.qos does not change the prefetch of a consumer that already exists.
   */
  pause(): Promise<void> {
    return this.demand === 'deliveries' ? this.want('paused') : this.reconciling;
  }

  /**
   * Takes deliveries again. `prefetch`: the new consumer's own limit (basic.qos before basic.consume
   * applies to the consumers made after it), so what arrives after a pause fits the byte budget.
   */
  resume(prefetch = this.config.prefetch): Promise<void> {
    if (this.demand !== 'paused') return this.reconciling;
    this.nextPrefetch = Math.max(1, Math.min(this.config.prefetch, Math.floor(prefetch)));
    return this.want('deliveries');
  }

  /** The prefetch of the consumer now (lowered by resume() after a pause). */
  get prefetch(): number {
    return this.channelPrefetch;
  }

  /**
   * Consumes again with a higher prefetch, once bodies are small again after a pause lowered it: a
   * consumer's prefetch is fixed when it is made, so this is cancel, basic.qos, consume.
   */
  raisePrefetch(prefetch: number): Promise<void> {
    const n = Math.min(this.config.prefetch, Math.floor(prefetch));
    if (this.demand !== 'deliveries' || n <= this.channelPrefetch) return this.reconciling;
    this.nextPrefetch = n;
    return this.want('deliveries');
  }

  /** Deliveries already on their way are still handed over: they are ours to answer. */
  stopConsuming(): Promise<void> {
    return this.want('stopped');
  }

  /** False once the channel it came on has closed: the broker has requeued it, and acking it elsewhere would fail. */
  isCurrent(d: Delivery): boolean {
    return this.acks()?.owns(d) ?? false;
  }

  /** Applies each settlement on the channel its delivery came on (broker/acks.ts). */
  settle(items: ReadonlyArray<{ delivery: Delivery; settlement: Settlement }>): void {
    if (items.length > 0) this.acks()?.settle(items);
  }

  /** Resolves once the broker has settled every reply; see broker/publisher.ts. */
  publishAll(replies: readonly Reply[]): Promise<PublishResult[]> {
    return this.publisher.publishAll(replies);
  }

  redeclareReplyQueue(): Promise<void> {
    return this.publisher.redeclareReplyQueue();
  }

  awaitLate(reply: Reply, waitMs: number): Promise<PublishResult> {
    return this.publisher.awaitLate(reply, waitMs);
  }

  forgetLate(reply: Reply): void {
    this.publisher.forgetLate(reply);
  }

  async close(): Promise<void> {
    this.demand = 'stopped';
    this.publisher.close();
    const acks = this.acks();
    this.consumeState = { name: 'closed' };
    // The channel first, behind its last acks (broker/acks.ts close()).
    await acks?.close();
    await Promise.all([this.consumeConn?.close().catch(() => {}), this.publishConn?.close().catch(() => {})]);
  }

  private acks(): ChannelAcks | undefined {
    const s = this.consumeState;
    return s.name === 'idle' || s.name === 'consuming' ? s.acks : undefined;
  }

  private want(demand: Demand): Promise<void> {
    if (this.demand !== 'stopped') this.demand = demand;
    this.reconciling = this.reconciling
      .then(() => this.reconcile())
      .catch((err: Error) => this.log.warn({ err: err.message }, 'consume or cancel failed'));
    return this.reconciling;
  }

  /** Makes the consume state match the demand: consume on an idle channel, or cancel a consumer no longer wanted. */
  private async reconcile(): Promise<void> {
    const s = this.consumeState;
    if (s.name === 'idle' && this.demand === 'deliveries' && this.onDelivery) await this.subscribe(s);
    else if (s.name === 'consuming' && this.demand !== 'deliveries') {
      this.toConsume({ name: 'idle', channel: s.channel, acks: s.acks }, this.demand);
      await s.channel.cancel(s.consumerTag).catch(() => {});
    } else if (s.name === 'consuming' && this.nextPrefetch !== this.channelPrefetch) {
      // A consumer's prefetch is fixed when it is made: cancel, basic.qos, consume.
      const idle = { name: 'idle' as const, channel: s.channel, acks: s.acks };
      this.toConsume(idle, 'new prefetch');
      await s.channel.cancel(s.consumerTag).catch(() => {});
      if (this.consumeState === idle) await this.subscribe(idle, 'prefetch changed');
    }
  }

  private toConsume(next: ConsumeState, why: string): void {
    this.log.debug({ from: this.consumeState.name, to: next.name, why }, 'consume state');
    this.consumeState = next;
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
      this.acks()?.lost();
      this.generation++;
      if (this.consumeState.name !== 'closed') this.toConsume({ name: 'down' }, 'disconnected');
    } else this.publisher.disconnected();
    this.emit('disconnected', role, err.message);
  }

  private async setupConsumer(model: amqp.ChannelModel): Promise<void> {
    await declareQueues(model, this.topology, [this.topology.inputQueue, this.topology.deadQueue], this.log);
    const ch = await model.createChannel();
    let generation = -1;
    watchChannel(
      ch,
      model,
      'consume',
      this.log,
      () => this.acks()?.generation === generation && this.consumeState.name !== 'closed',
    );
    // Cautious at first: as many of the largest bodies as fit in the byte budget. Deliveries the broker
    // sent before a pause reaches it still arrive, so a first prefetch of PREFETCH could overshoot the
    // budget by hundreds of MiB; the consumer raises it once it has seen how large the bodies are.
    const first = Math.max(
      1,
      Math.min(this.config.prefetch, Math.floor(this.config.maxInFlightBytes / this.config.maxMessageBytes)),
    );
    await ch.prefetch(first);
    this.channelPrefetch = first;
    this.nextPrefetch = first;
    this.acks()?.lost();
    generation = ++this.generation;
    if (this.consumeState.name === 'closed') return;
    this.toConsume(
      { name: 'idle', channel: ch, acks: new ChannelAcks(generation, ch as unknown as AckChannel, this.log) },
      'connected',
    );
    await this.want(this.demand);
  }

  /** `msg`: the log line; 'consuming' marks a (re)subscription, which tests and operators look for. */
  private async subscribe(
    s: { channel: amqp.Channel; acks: ChannelAcks },
    msg: 'consuming' | 'prefetch changed' = 'consuming',
  ): Promise<void> {
    const { channel: ch, acks } = s;
    if (this.channelPrefetch !== this.nextPrefetch) {
      await ch.prefetch(this.nextPrefetch);
      this.channelPrefetch = this.nextPrefetch;
    }
    const { consumerTag } = await ch.consume(this.topology.inputQueue, (msg) => {
      if (msg === null) return this.onCancelled(ch);
      acks.delivered(msg.fields.deliveryTag);
      this.onDelivery?.(toDelivery(msg, acks.generation));
    });
    if (this.acks() !== acks) return; // the channel went while the consume was on its way
    this.toConsume({ name: 'consuming', channel: ch, acks, consumerTag }, 'consume-ok');
    this.log.info({ queue: this.topology.inputQueue, prefetch: this.channelPrefetch }, msg);
    // Asked to pause or stop meanwhile: reconcile again.
    if (this.demand !== 'deliveries') void this.want(this.demand);
  }

  /** The broker cancelled us (the queue was deleted): declare it again and go on, rather than sit idle. */
  private onCancelled(ch: amqp.Channel): void {
    const s = this.consumeState;
    if (s.name !== 'consuming' || s.channel !== ch) return;
    this.toConsume({ name: 'idle', channel: ch, acks: s.acks }, 'cancelled by the broker');
    this.log.warn({ queue: this.topology.inputQueue }, 'consumer cancelled by the broker; declaring the queue again');
    const retry = async (attempt: number): Promise<void> => {
      if (this.acks() !== s.acks || this.consumeState.name !== 'idle' || this.demand !== 'deliveries') return;
      try {
        await ch.assertQueue(this.topology.inputQueue, { durable: true, arguments: this.topology.inputArguments });
        await this.want('deliveries');
        if (!this.state.consuming) throw new Error('consume did not take');
      } catch (err) {
        this.log.warn({ err: (err as Error).message, attempt }, 're-consume failed');
        setTimeout(() => void retry(attempt + 1), backoffMs(this.config.amqp.reconnect, attempt)).unref();
      }
    };
    void retry(0);
  }
}
