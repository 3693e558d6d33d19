/**
 * The load generator and the reply reader: the producer's side, on their own connections, never in
 * the process under test. Queues are declared exactly as the consumer declares them (src/broker/topology.ts),
 * so every row of the table runs against the same queue type and arguments.
 */
import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';
import type { Config } from '../src/config.js';
import { topologyFor } from '../src/broker/topology.js';

export interface Queues {
  input: string;
  reply: string;
  dead: string;
}

export function uniqueQueues(runId: string, label: string): Queues {
  const input = `bench.${runId}.${label}.${randomBytes(3).toString('hex')}`;
  return { input, reply: `${input}.replies`, dead: `${input}.dead` };
}

export async function connect(url: string, name: string): Promise<amqp.ChannelModel> {
  // Nagle off: with it, a lone small publish can wait for the broker's delayed TCP ack (tens of ms).
  const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: name } });
  conn.on('error', () => {});
  return conn;
}

/** Input, dead-letter and reply queues with the consumer's own arguments (quorum by default). */
export async function declareQueues(conn: amqp.ChannelModel, q: Queues, config: Readonly<Config>): Promise<void> {
  const t = topologyFor({
    inputQueue: q.input,
    replyQueue: q.reply,
    queueType: config.queueType,
    deliveryLimit: config.deliveryLimit,
  });
  const ch = await conn.createChannel();
  await ch.assertQueue(q.input, { durable: true, arguments: t.inputArguments });
  await ch.assertQueue(q.dead, { durable: true, arguments: { 'x-queue-type': t.queueType } });
  await ch.assertQueue(q.reply, { durable: true, arguments: { 'x-queue-type': t.queueType } });
  await ch.close();
}

export async function deleteQueues(conn: amqp.ChannelModel, q: Queues): Promise<void> {
  for (const name of [q.input, q.dead, q.reply]) {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    await ch.deleteQueue(name).catch(() => {});
    await ch.close().catch(() => {});
  }
}

/** Publishes with confirms, a bounded window of unconfirmed messages, and the channel's back-pressure. */
export class Publisher {
  private outstanding = 0;
  private wake: (() => void) | undefined;
  failed = 0;

  private constructor(
    private readonly ch: amqp.ConfirmChannel,
    private readonly contentType: string,
  ) {}

  /** `contentType`: the bodies' type (binary rows send .npy). */
  static async open(conn: amqp.ChannelModel, contentType = 'application/json'): Promise<Publisher> {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => {});
    return new Publisher(ch, contentType);
  }

  /** Sends `count` messages, ids `${prefix}${i}`, and resolves once the broker has confirmed them all. */
  async fill(queue: string, bodies: readonly Buffer[], count: number, prefix = ''): Promise<void> {
    for (let i = 0; i < count; i++) await this.send(queue, bodies[i % bodies.length], `${prefix}${i}`);
    await this.ch.waitForConfirms();
  }

  /**
   * Offers `count` messages at `ratePerS`, in ticks of about a millisecond; `onSent(i)` runs just before
   * each publish, which is when its latency clock starts.
   */
  async atRate(
    queue: string,
    bodies: readonly Buffer[],
    count: number,
    ratePerS: number,
    onSent: (i: number) => void,
    prefix = '',
    /** The first message's number (its correlation id after the prefix): a phase offered in two parts numbers on. */
    first = 0,
  ): Promise<void> {
    const start = performance.now();
    let sent = 0;
    while (sent < count) {
      const due = Math.min(count, Math.floor(((performance.now() - start) * ratePerS) / 1000) + 1);
      while (sent < due) {
        onSent(first + sent);
        await this.send(queue, bodies[(first + sent) % bodies.length], `${prefix}${first + sent}`);
        sent++;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await this.ch.waitForConfirms();
  }

  /** Sends `count` messages as fast as `gate` lets through (a soak keeps a bounded backlog this way). */
  async gated(
    queue: string,
    bodies: readonly Buffer[],
    count: number,
    gate: (sent: number) => Promise<void>,
    prefix = '',
  ): Promise<void> {
    for (let i = 0; i < count; i++) {
      await gate(i);
      await this.send(queue, bodies[i % bodies.length], `${prefix}${i}`);
    }
    await this.ch.waitForConfirms();
  }

  async close(): Promise<void> {
    await this.ch.close().catch(() => {});
  }

  private async send(queue: string, body: Buffer, correlationId: string): Promise<void> {
    while (this.outstanding >= 2000) await new Promise<void>((r) => (this.wake = r));
    this.outstanding++;
    const ok = this.ch.sendToQueue(
      queue,
      body,
      { persistent: true, correlationId, contentType: this.contentType },
      (err) => {
        if (err) this.failed++;
        this.outstanding--;
        if (this.outstanding < 1000 && this.wake) {
          const w = this.wake;
          this.wake = undefined;
          w();
        }
      },
    );
    if (!ok) await new Promise((r) => this.ch.once('drain', r));
  }
}

export interface ReplySeen {
  correlationId: string;
  ok: boolean;
  at: number;
  /** The reply's x-scoring-ms (this consumer's replies): the scoring's share of its latency. */
  scoringMs?: number;
}

/** Reads a reply queue (no acks: the reader must never be the bottleneck) and hands each reply on. */
export class ReplyReader {
  private constructor(
    private readonly ch: amqp.Channel,
    private readonly consumerTag: string,
  ) {}

  static async open(conn: amqp.ChannelModel, queue: string, onReply: (r: ReplySeen) => void): Promise<ReplyReader> {
    const ch = await conn.createChannel();
    ch.on('error', () => {});
    const { consumerTag } = await ch.consume(
      queue,
      (m) => {
        if (!m) return;
        const scoring = m.properties.headers?.['x-scoring-ms'];
        onReply({
          correlationId: m.properties.correlationId ?? '',
          ok: m.properties.headers?.['x-status'] !== 'error',
          at: performance.now(),
          scoringMs: typeof scoring === 'number' ? scoring : undefined,
        });
      },
      { noAck: true },
    );
    return new ReplyReader(ch, consumerTag);
  }

  async close(): Promise<void> {
    await this.ch.cancel(this.consumerTag).catch(() => {});
    await this.ch.close().catch(() => {});
  }
}

/** Counts replies to ids 0..count-1: first and last arrival, duplicates, errors; resolves when all are in. */
export class Tally {
  readonly seen: Uint8Array;
  /** Arrival time of the 1st, 2nd, ... reply. */
  readonly arrivals: Float64Array;
  received = 0;
  duplicates = 0;
  errors = 0;
  strays = 0;
  firstAt = 0;
  lastAt = 0;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reached: { count: number; fn: () => void } | undefined;

  constructor(
    readonly count: number,
    protected readonly prefixText = '',
  ) {
    this.seen = new Uint8Array(count);
    this.arrivals = new Float64Array(count);
    this.done = new Promise((r) => (this.resolve = r));
    if (count === 0) this.resolve();
  }

  readonly onReply = (r: ReplySeen): void => this.tallyReply(r);

  protected tallyReply(r: ReplySeen): void {
    const i = r.correlationId.startsWith(this.prefixText) ? Number(r.correlationId.slice(this.prefixText.length)) : NaN;
    if (!Number.isInteger(i) || i < 0 || i >= this.count) {
      this.strays++;
      return;
    }
    if (this.seen[i]++) {
      this.duplicates++;
      return;
    }
    if (!r.ok) this.errors++;
    this.arrivals[this.received] = r.at;
    if (this.received++ === 0) this.firstAt = r.at;
    this.lastAt = r.at;
    if (this.received === this.reached?.count) this.reached.fn();
    if (this.received === this.count) this.resolve();
  }

  /** Runs `fn` when the `count`th reply arrives. */
  onReached(count: number, fn: () => void): void {
    this.reached = { count, fn };
  }

  /**
   * Replies per second from the reply that makes `from` of them (default 10%) to the last: the
   * consumer's boot, the first prefetch window answered at once and JIT warm-up are left out.
   */
  steadyRatePerS(from = Math.floor(this.received / 10)): number {
    const n = this.received - 1 - from;
    return n > 0 ? (n * 1000) / (this.arrivals[this.received - 1] - this.arrivals[from]) : 0;
  }

  /** Replies per 100 ms from the first reply: the run's timeline. */
  timeline(): number[] {
    const out: number[] = [];
    for (let k = 0; k < this.received; k++) {
      const slot = Math.floor((this.arrivals[k] - this.firstAt) / 100);
      out[slot] = (out[slot] ?? 0) + 1;
    }
    return Array.from(out, (x) => x ?? 0);
  }

  within(ms: number): Promise<boolean> {
    return Promise.race([
      this.done.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref()),
    ]);
  }
}

/** Latency of each reply from its publish, for a run at a fixed offered rate. */
export class LatencyTally extends Tally {
  readonly sentAt: Float64Array;
  readonly latenciesMs: number[] = [];
  readonly scoringMs: number[] = [];

  constructor(count: number, prefix: string) {
    super(count, prefix);
    this.sentAt = new Float64Array(count);
  }

  readonly markSent = (i: number): void => {
    this.sentAt[i] = performance.now();
  };

  protected override tallyReply(r: ReplySeen): void {
    const before = this.received;
    super.tallyReply(r);
    if (this.received > before) {
      this.latenciesMs.push(r.at - this.sentAt[Number(r.correlationId.slice(this.prefixText.length))]);
      if (r.scoringMs !== undefined) this.scoringMs.push(r.scoringMs);
    }
  }

  /** The p-th percentile of each run of `size` replies in arrival order (a second's worth at a fixed rate): when in a phase the tail came. */
  percentiles(p: number, size: number, of: readonly number[] = this.latenciesMs): number[] {
    const out: number[] = [];
    for (let at = 0; at + size <= of.length; at += size) out.push(percentileOf(of.slice(at, at + size), p));
    return out;
  }

  /** The p-th percentile (0–100) of the replies after the first `skip` (warm-up); of their x-scoring-ms with `of`. */
  percentile(p: number, skip = 0, of: readonly number[] = this.latenciesMs): number {
    return percentileOf(of.slice(skip), p);
  }
}

/** The p-th percentile (0–100) of `values`, which it sorts; NaN when there are none. */
export function percentileOf(values: number[], p: number): number {
  const sorted = values.sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}
