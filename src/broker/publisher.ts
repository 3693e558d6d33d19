/**
 * The publishing side of the broker adapter: a confirm channel on a connection of its own, replies
 * published with `mandatory` and resolved on the broker's confirm, returns matched to their publish,
 * and the broker's flow control honoured (`drain`, and `blocked` during a memory or disk alarm).
 */
import { once } from 'node:events';
import type * as amqp from 'amqplib';
import type { Logger } from 'pino';
import type { Reply } from '../reply.js';
import type { Topology } from '../topology.js';
import { declareQueues, watchChannel } from './connection.js';

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

export class ReplyPublisher {
  private channel: amqp.ConfirmChannel | undefined;
  private model: amqp.ChannelModel | undefined;
  private up = deferred();
  private unblocked: Deferred | undefined;
  private drained: Promise<unknown> | undefined;
  private closing = false;
  private readonly returnedIds = new Set<string>();

  constructor(
    private readonly topology: Topology,
    private readonly confirmTimeoutMs: number,
    private readonly log: Logger,
    private readonly onReturned: (reply: { routingKey: string; correlationId?: string }) => void,
  ) {}

  get connected(): boolean {
    return this.channel !== undefined;
  }

  get blocked(): boolean {
    return this.unblocked !== undefined;
  }

  /** amqplib's recovery `setup`, after every (re)connect. */
  async setup(model: amqp.ChannelModel): Promise<void> {
    await declareQueues(model, this.topology, [this.topology.replyQueue], this.log);
    const ch = await model.createConfirmChannel();
    watchChannel(ch, model, 'publish', this.log, () => this.channel === ch && !this.closing);
    ch.on('return', (msg: amqp.Message) => {
      const id = msg.properties.messageId as string | undefined;
      if (id) this.returnedIds.add(id);
      this.onReturned({ routingKey: msg.fields.routingKey, correlationId: msg.properties.correlationId });
    });
    this.channel = ch;
    this.model = model;
    this.up.resolve();
  }

  disconnected(): void {
    this.channel = undefined;
    this.model = undefined;
    this.up = deferred();
    this.unblock();
  }

  block(reason: string): void {
    this.log.warn({ reason }, 'broker blocked publishing: holding replies until it unblocks');
    this.unblocked ??= deferred();
  }

  unblock(): void {
    this.unblocked?.resolve();
    this.unblocked = undefined;
  }

  /**
   * Publishes the replies and resolves once each is settled, with one result per reply: 'confirmed',
   * 'returned' (the broker could not route it, and confirms those too), or the Error that kept it from
   * being confirmed (a nack, the channel died, no confirm in time). One deadline and one promise for
   * the lot, not a timer and a promise per reply: those were a tenth of the consumer's thread.
   */
  async publishAll(replies: readonly Reply[]): Promise<Array<PublishResult | Error>> {
    while (this.unblocked || this.drained || !this.channel) {
      if (this.closing && !this.channel) return replies.map(() => new Error('broker closed'));
      await (this.unblocked?.promise ?? this.drained ?? this.up.promise);
    }
    const ch = this.channel;
    const results: Array<PublishResult | Error | undefined> = new Array(replies.length);
    let unsettled = replies.length;
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        unsettled = -1;
        let late: Error | undefined; // made only when a confirm is missing: an Error captures a stack
        resolve(results.map((r) => r ?? (late ??= new Error(`no publisher confirm within ${this.confirmTimeoutMs} ms`))));
      };
      const timer = setTimeout(finish, this.confirmTimeoutMs);
      const settle = (i: number, result: PublishResult | Error) => {
        if (unsettled < 0 || results[i] !== undefined) return;
        results[i] = result;
        if (--unsettled === 0) finish();
      };
      for (let i = 0; i < replies.length; i++) {
        const reply = replies[i];
        const id = reply.properties.messageId;
        try {
          const ok = publishOn(ch, reply, (err: unknown) =>
            settle(i, err ? (err instanceof Error ? err : new Error(String(err))) : this.returnedIds.delete(id) ? 'returned' : 'confirmed'),
          );
          // A channel whose connection drops with its buffer full never emits 'drain': stop waiting when it closes,
          // or every later reply would wait on it for ever (seen: a broker restarted during a memory alarm).
          if (!ok && !this.drained) this.drained = Promise.race([once(ch, 'drain'), once(ch, 'close')]).finally(() => (this.drained = undefined));
        } catch (err) {
          settle(i, err as Error);
        }
      }
      if (replies.length === 0) finish();
    });
  }

  /** A reply to REPLY_QUEUE came back unroutable: someone deleted it. Declare it again before republishing. */
  async redeclareReplyQueue(): Promise<void> {
    if (this.model) await declareQueues(this.model, this.topology, [this.topology.replyQueue], this.log).catch(() => {});
  }

  /** Whoever waits to publish stops waiting: publish() then fails fast instead of hanging a shutdown. */
  close(): void {
    this.closing = true;
    this.up.resolve();
    this.unblock();
  }
}

/** The two amqplib 2.x channel methods ConfirmChannel.publish() is made of. */
interface ChannelInternals {
  sendMessage(fields: object, properties: object, content: Buffer): boolean;
  pushConfirmCallback(cb: (err: unknown) => void): void;
}

/**
 * ch.publish() as amqplib does it, less its per-message option handling: Args.publish copies every
 * option into a new object and wraps the headers in a prototype for CC and BCC, which made it and the
 * header encoding the largest items of a reply on our thread. Our replies have one shape, so they go
 * straight to the two methods publish() calls, with the same fields. This reaches into amqplib 2.x
 * internals: if they are not there, replies go through publish().
 */
export function publishOn(ch: amqp.ConfirmChannel, reply: Reply, cb: (err: unknown) => void, viaInternals = hasInternals(ch)): boolean {
  if (!viaInternals) return ch.publish('', reply.routingKey, reply.body, { ...reply.properties, mandatory: reply.mandatory }, cb);
  const internals = ch as unknown as ChannelInternals;
  const p = reply.properties;
  const fields = {
    exchange: '',
    routingKey: reply.routingKey,
    mandatory: reply.mandatory,
    immediate: false,
    ticket: undefined,
    contentType: p.contentType,
    contentEncoding: undefined,
    headers: p.headers,
    deliveryMode: 2, // persistent
    priority: undefined,
    correlationId: p.correlationId,
    replyTo: undefined,
    expiration: undefined,
    messageId: p.messageId,
    timestamp: p.timestamp,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
  };
  const ok = internals.sendMessage(fields, fields, reply.body);
  internals.pushConfirmCallback(cb);
  return ok;
}

function hasInternals(ch: amqp.ConfirmChannel): boolean {
  const internals = ch as unknown as Partial<ChannelInternals>;
  return typeof internals.sendMessage === 'function' && typeof internals.pushConfirmCallback === 'function';
}
