/**
 * The publishing side of the broker adapter: a confirm channel on a connection of its own, replies
 * published with `mandatory` and resolved on the broker's confirm, returns matched to their publish,
 * and the broker's flow control honoured (`drain`, and `blocked` during a memory or disk alarm).
 */
import type * as amqp from 'amqplib';
import type { Logger } from 'pino';
import type { Reply } from '../reply.js';
import type { Topology } from './topology.js';
import { publishOn } from './amqplib-internals.js';
import { declareQueues, watchChannel } from './connection.js';
import { packedArray } from '../packed-array.js';

/**
 * How the broker took one reply. 'returned': unroutable (the broker confirms those too). 'nacked': the
 * broker refused it (a queue full with reject-publish). 'late': no confirm within CONFIRM_TIMEOUT_MS.
 * 'lost': the channel or connection went before the confirm, or the reply could not be sent in time
 * (publishing blocked, no connection). 'too-large': over the broker's max_message_size, which closes
 * the channel every time: refused for good.
 */
export type PublishResult = 'confirmed' | 'returned' | 'nacked' | 'late' | 'lost' | 'too-large';

/** A transition of the one state is awaited through this: each change resolves the current one. */
interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
}
function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * 'down': no channel (connecting). 'up': publishing. 'full': the channel's buffer is full, until
 * 'drain'. 'blocked': a memory or disk alarm holds this connection's publishes. 'closed': for good.
 */
type PublisherState =
  | { name: 'down' }
  | { name: 'up' | 'full' | 'blocked'; channel: amqp.ConfirmChannel; model: amqp.ChannelModel }
  | { name: 'closed' };

/** RabbitMQ's text when a publish is over max_message_size (rabbit_channel:check_msg_size). */
const TOO_LARGE = /message size \d+ is larger than configured max size (\d+)/;

export class ReplyPublisher {
  private state: PublisherState = { name: 'down' };
  private changed = deferred();
  /** Set by the connection's `blocked` (which can come before setup makes the channel), cleared by `unblocked` or a disconnect. */
  private blockedReason: string | undefined;
  /** The broker's max_message_size, once a reply over it has closed the channel: later ones are not sent. */
  private maxMessageBytes = Infinity;
  private readonly returnedIds = new Set<string>();
  /** Replies reported 'late' whose confirm may still come (it does, or the channel's close fails it): by messageId. */
  private readonly late = new Map<string, { promise: Promise<PublishResult>; resolve: (r: PublishResult) => void }>();

  constructor(
    private readonly topology: Topology,
    private readonly confirmTimeoutMs: number,
    private readonly log: Logger,
    private readonly onReturned: (reply: { routingKey: string; correlationId?: string; replyText: string }) => void,
  ) {}

  get connected(): boolean {
    return this.state.name !== 'down' && this.state.name !== 'closed';
  }

  get blocked(): boolean {
    return this.blockedReason !== undefined;
  }

  /** amqplib's recovery `setup`, after every (re)connect. */
  async setup(model: amqp.ChannelModel): Promise<void> {
    await declareQueues(model, this.topology, [this.topology.replyQueue], this.log);
    const ch = await model.createConfirmChannel();
    // A return is told on the channel it came on, just before its confirm: one left from a channel that closed
    // in between must not make the same reply sent again here (in doubt, same messageId) read as returned.
    this.returnedIds.clear();
    watchChannel(ch, model, 'publish', this.log, () => this.channelOf() === ch);
    ch.on('error', (err: Error) => {
      const max = TOO_LARGE.exec(err.message);
      if (max) {
        this.maxMessageBytes = Number(max[1]);
        this.log.warn(
          { maxMessageBytes: this.maxMessageBytes },
          'broker refused a reply over its max_message_size; such replies are answered with an error instead',
        );
      }
    });
    ch.on('return', (msg: amqp.Message) => {
      const id = msg.properties.messageId as string | undefined;
      if (id) this.returnedIds.add(id);
      this.onReturned({
        routingKey: msg.fields.routingKey,
        correlationId: msg.properties.correlationId,
        replyText: String((msg.fields as { replyText?: string }).replyText ?? ''),
      });
    });
    ch.on('drain', () => {
      if (this.state.name === 'full' && this.state.channel === ch) this.to({ name: 'up', channel: ch, model }, 'drain');
    });
    if (this.state.name === 'closed') return;
    this.to({ name: this.blockedReason ? 'blocked' : 'up', channel: ch, model }, 'connected');
  }

  disconnected(): void {
    // A new connection starts unblocked: the broker says connection.blocked again if its alarm still holds.
    this.blockedReason = undefined;
    if (this.state.name !== 'closed') this.to({ name: 'down' }, 'disconnected');
  }

  block(reason: string): void {
    this.log.warn({ reason }, 'broker blocked publishing: holding replies until it unblocks');
    this.blockedReason = reason;
    if (this.state.name === 'up' || this.state.name === 'full') this.to({ ...this.state, name: 'blocked' }, 'blocked');
  }

  unblock(): void {
    this.blockedReason = undefined;
    if (this.state.name === 'blocked') this.to({ ...this.state, name: 'up' }, 'unblocked');
  }

  /**
   * Publishes the replies and resolves once each is settled, with one result per reply (see
   * PublishResult). One deadline and one promise for the lot, not a timer and a promise per reply:
   * those were a tenth of the consumer's thread. Never waits longer than CONFIRM_TIMEOUT_MS for the
   * channel to take them, nor as long again for the confirms: every reply gets a result.
   */
  async publishAll(replies: readonly Reply[]): Promise<PublishResult[]> {
    const ready = await this.whenUp(Date.now() + this.confirmTimeoutMs);
    if (!ready) return packedArray<PublishResult>(replies.length, 'lost');
    const { channel: ch } = ready;
    const results = packedArray<PublishResult | undefined>(replies.length, undefined);
    let unsettled = replies.length;
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        unsettled = -1;
        const out = results as PublishResult[];
        // Every slot is visited (an Array's map skips holes: that left the unconfirmed ones undefined).
        for (let i = 0; i < out.length; i++) {
          if (out[i] !== undefined) continue;
          out[i] = 'late';
          let done!: (r: PublishResult) => void;
          const promise = new Promise<PublishResult>((r) => (done = r));
          this.late.set(replies[i].properties.messageId, { promise, resolve: done });
        }
        resolve(out);
      };
      const timer = setTimeout(finish, this.confirmTimeoutMs);
      const settle = (i: number, result: PublishResult) => {
        if (unsettled < 0) {
          // A confirm after the deadline: whoever waits on it in awaitLate() gets it.
          this.late.get(replies[i].properties.messageId)?.resolve(result);
          return;
        }
        if (results[i] !== undefined) return;
        results[i] = result;
        if (--unsettled === 0) finish();
      };
      const tooLarge = (i: number) => replies[i].body.byteLength > this.maxMessageBytes;
      const failed = (i: number, err: unknown): PublishResult => {
        if (tooLarge(i)) return 'too-large';
        return /nack/i.test(String((err as Error)?.message ?? err)) ? 'nacked' : 'lost';
      };
      for (let i = 0; i < replies.length; i++) {
        const reply = replies[i];
        if (tooLarge(i)) {
          settle(i, 'too-large');
          continue;
        }
        const id = reply.properties.messageId;
        try {
          const ok = publishOn(ch, reply, (err: unknown) =>
            settle(i, err ? failed(i, err) : this.returnedIds.delete(id) ? 'returned' : 'confirmed'),
          );
          if (!ok && this.state.name === 'up' && this.state.channel === ch)
            this.to({ ...this.state, name: 'full' }, 'buffer full');
        } catch (err) {
          settle(i, failed(i, err));
        }
      }
      if (unsettled === 0) finish();
    });
  }

  /**
   * The outcome of a reply publishAll() reported 'late', once the broker gives it within `waitMs`,
   * else 'late' again. Waiting costs nothing; publishing again on a slow link only adds to the
   * queue ahead of the confirms, and makes a duplicate of every reply that was merely slow. The
   * confirm comes, or the channel's close (a heartbeat timeout on a dead link) fails it as 'lost'.
   */
  async awaitLate(reply: Reply, waitMs: number): Promise<PublishResult> {
    const id = reply.properties.messageId;
    const entry = this.late.get(id);
    if (!entry) return 'lost';
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      entry.promise,
      new Promise<PublishResult>((r) => (timer = setTimeout(() => r('late'), waitMs))),
    ]);
    clearTimeout(timer);
    if (result !== 'late') this.late.delete(id);
    return result;
  }

  /** Stops keeping a late reply's outcome: its input is settled some other way. */
  forgetLate(reply: Reply): void {
    this.late.delete(reply.properties.messageId);
  }

  /** A reply to REPLY_QUEUE came back unroutable: someone deleted it. Declare it again before republishing. */
  async redeclareReplyQueue(): Promise<void> {
    const s = this.state;
    if (s.name === 'up' || s.name === 'full' || s.name === 'blocked')
      await declareQueues(s.model, this.topology, [this.topology.replyQueue], this.log).catch(() => {});
  }

  /** Whoever waits to publish stops waiting: publishAll() then fails fast instead of hanging a shutdown. */
  close(): void {
    if (this.state.name !== 'closed') this.to({ name: 'closed' }, 'close');
  }

  /** The channel once it takes publishes, or undefined when the deadline passes (or the publisher closes) first. */
  private async whenUp(deadline: number): Promise<{ channel: amqp.ConfirmChannel } | undefined> {
    for (;;) {
      const s = this.state;
      if (s.name === 'up') return s;
      if (s.name === 'closed') return undefined;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.changed.promise, new Promise((r) => (timer = setTimeout(r, left)))]);
      clearTimeout(timer);
    }
  }

  private channelOf(): amqp.ConfirmChannel | undefined {
    const s = this.state;
    return s.name === 'up' || s.name === 'full' || s.name === 'blocked' ? s.channel : undefined;
  }

  private to(next: PublisherState, why: string): void {
    this.log.debug({ from: this.state.name, to: next.name, why }, 'publisher state');
    this.state = next;
    const done = this.changed;
    this.changed = deferred();
    done.resolve();
  }
}
