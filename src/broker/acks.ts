/**
 * One object per consume channel: its state, which deliveries are its own, the ack window that lets
 * many acks go as one `multiple` ack, the hold and coalescing timers, and the grace before the channel closes. An ack
 * is only valid on the channel its delivery came on, so this object is the one that sends it.
 */
import type { Logger } from 'pino';
import type { Delivery } from './delivery.js';

/** How an input leaves us. 'none': its channel has gone; the broker has it back and will redeliver it. */
export type Settlement = 'ack' | 'requeue' | 'dead-letter' | 'none';

/** How long settled inputs wait for older ones, to go in one `multiple` ack, before each is acked on its own. */
export const ACK_HOLD_MS = 20;
/**
 * How long an ack that could go now waits for the ones after it, to go with them as one `multiple` ack.
 * At light load every input is settled alone, and each ack was a socket write of its own.
 */
export const ACK_COALESCE_MS = 5;
/** How long close() waits after the last ack before closing the channel (see close()). */
export const ACK_SETTLE_GRACE_MS = 250;

/** The two amqplib channel methods an ack needs, and close; amqplib's ack and nack read only the delivery tag. */
export interface AckChannel {
  ack(message: { fields: { deliveryTag: number } }, allUpTo?: boolean): void;
  nack(message: { fields: { deliveryTag: number } }, allUpTo?: boolean, requeue?: boolean): void;
  close(): Promise<void>;
}

/** 'open': ours to ack on. 'closing': close() is sending the last acks. 'closed': gone, or closed by us. */
type ChannelState = 'open' | 'closing' | 'closed';

export class ChannelAcks {
  private state: ChannelState = 'open';
  private readonly window = new AckWindow();
  private holdTimer: NodeJS.Timeout | undefined;
  /** The tag of the `multiple` ack waiting ACK_COALESCE_MS for the acks after it, and its timer. */
  private pendingUpTo = 0;
  private coalesceTimer: NodeJS.Timeout | undefined;
  /** When this channel last sent acks or nacks: close() lets the broker apply them first. */
  private lastAckAt = 0;

  constructor(
    readonly generation: number,
    private readonly channel: AckChannel,
    private readonly log: Logger,
    private readonly holdMs = ACK_HOLD_MS,
    private readonly graceMs = ACK_SETTLE_GRACE_MS,
    private readonly coalesceMs = ACK_COALESCE_MS,
  ) {}

  get open(): boolean {
    return this.state === 'open';
  }

  delivered(tag: number): void {
    this.window.delivered(tag);
  }

  /** True when `d` came on this channel and the channel is still open: only then may it be acked or nacked here. */
  owns(d: Delivery): boolean {
    return d.channel === this.generation && this.state === 'open';
  }

  /**
   * Applies each settlement of a delivery this channel owns (others are skipped: the broker has them
   * back). Acks go as `multiple` acks, held briefly while older inputs are still open, and each waits
   * ACK_COALESCE_MS for the ones after it; nacks go at once.
   */
  settle(items: ReadonlyArray<{ delivery: Delivery; settlement: Settlement }>): void {
    if (this.state !== 'open') return;
    const acks: number[] = [];
    for (const { delivery, settlement } of items) {
      if (settlement === 'none' || !this.owns(delivery)) continue;
      this.lastAckAt = Date.now();
      if (settlement === 'ack') acks.push(delivery.tag);
      else {
        this.channel.nack(tagged(delivery.tag), false, settlement === 'requeue');
        this.window.release(delivery.tag);
      }
    }
    const upTo = this.window.settle(acks);
    if (upTo !== undefined) {
      this.pendingUpTo = upTo;
      if (this.coalesceMs <= 0) this.ackPending();
      else this.coalesceTimer ??= setTimeout(() => this.ackPending(), this.coalesceMs);
    }
    if (this.window.heldCount > 0 && !this.holdTimer) this.holdTimer = setTimeout(() => this.ackHeld(), this.holdMs);
  }

  /** The channel or its connection has gone: nothing more is sent on it. */
  lost(): void {
    if (this.state === 'closed') return;
    this.to('closed', 'lost');
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    clearTimeout(this.coalesceTimer);
    this.coalesceTimer = undefined;
    this.pendingUpTo = 0;
  }

  /**
   * Sends what is held, then closes the channel: its close goes out behind the last acks on that
   * channel, so the broker has them. An ack followed at once by the connection's close was lost (its
   * input redelivered) every time here. And not at once: a quorum queue's channel that has many acks
   * in flight holds the newest back until the queue applies the older ones (RabbitMQ 3.10
   * rabbit_fifo_client, "slow" above 32 pending commands); closing the channel then drops them. A
   * short wait after the last ack lets them through.
   */
  async close(): Promise<void> {
    if (this.state !== 'open') return;
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    this.ackPending();
    if (this.window.heldCount > 0) this.ackHeld();
    this.to('closing', 'close');
    const graceMs = this.graceMs - (Date.now() - this.lastAckAt);
    if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
    this.to('closed', 'closed');
    await this.channel.close().catch(() => {});
  }

  private ackPending(): void {
    clearTimeout(this.coalesceTimer);
    this.coalesceTimer = undefined;
    if (this.pendingUpTo === 0 || this.state !== 'open') return;
    this.channel.ack(tagged(this.pendingUpTo), true);
    this.pendingUpTo = 0;
    this.lastAckAt = Date.now();
  }

  /** Older inputs are still being scored: ack the held ones on their own rather than keep the broker's count of unacked up. */
  private ackHeld(): void {
    this.holdTimer = undefined;
    if (this.state !== 'open') return;
    this.lastAckAt = Date.now();
    for (const t of this.window.takeHeld()) this.channel.ack(tagged(t), false);
  }

  private to(state: ChannelState, why: string): void {
    this.log.debug({ generation: this.generation, from: this.state, to: state, why }, 'consume channel state');
    this.state = state;
  }
}

function tagged(deliveryTag: number): { fields: { deliveryTag: number } } {
  return { fields: { deliveryTag } };
}

/** A tag's state in the window. GONE: acked, nacked, or never delivered (0: what a fresh ring holds). */
const GONE = 0;
const OPEN = 1;
const HELD = 2;

/**
 * Delivery tags of one channel, in arrival order, until they are acked. A settled tag is acked with
 * the next `multiple` ack once nothing older is still open; until then it is held (two isolates
 * finish their batches out of order), and the caller acks what is held one by one if the wait runs
 * long. Fewer ack frames is less work for a quorum queue, where each is a command in its log.
 *
 * A channel numbers its deliveries 1, 2, 3…, so the window is a ring of one byte per tag from the
 * oldest not yet gone to the newest: no hash set per delivery, which cost more per message than the
 * rest of the ack path. A tag open for long (one slow input) keeps every later tag in the ring, one
 * byte each, until it is settled.
 */
export class AckWindow {
  private states = new Uint8Array(1024);
  /**
   * The oldest tag that may not be gone yet: the ring holds tags first..next-1, each at tag & (size - 1),
   * the low bits, which are right for tags past 2^32 too.
   */
  private first = 0;
  /** One past the newest tag delivered (0 before the first). */
  private next = 0;
  private openCount = 0;
  /** The held tags, in the order they were settled; some may be gone since (a multiple ack took them). */
  private heldTags: number[] = [];
  private heldTotal = 0;

  delivered(tag: number): void {
    if (this.next === 0) this.first = this.next = tag;
    // Tags only grow on a channel; one below the window (none should come) or a gap is never open.
    if (tag < this.next) return;
    this.reserve(tag + 1 - this.first);
    const mask = this.states.length - 1;
    for (let t = this.next; t < tag; t++) this.states[t & mask] = GONE;
    this.states[tag & mask] = OPEN;
    this.next = tag + 1;
    this.openCount++;
  }

  /**
   * Marks tags settled, to be acked. Returns the tag to ack with `multiple` (every tag up to it is
   * settled, and it has not been acked yet), or undefined while something older is still open.
   */
  settle(tags: readonly number[]): number | undefined {
    const { states } = this;
    const mask = states.length - 1;
    for (const t of tags) {
      if (!this.has(t) || states[t & mask] !== OPEN) continue;
      states[t & mask] = HELD;
      this.openCount--;
      this.heldTotal++;
      this.heldTags.push(t);
    }
    // RabbitMQ refuses a multiple ack whose own tag was already acked: the highest held tag, never one acked on its own.
    let upTo = 0;
    let t = this.first;
    for (; t < this.next; t++) {
      const state = states[t & mask];
      if (state === OPEN) break;
      if (state === HELD) {
        upTo = t;
        states[t & mask] = GONE;
        this.heldTotal--;
      }
    }
    this.first = t;
    if (this.heldTotal === 0) this.heldTags.length = 0;
    return upTo > 0 ? upTo : undefined;
  }

  /** A tag settled some other way (nacked): it no longer holds back a multiple ack. */
  release(tag: number): void {
    const mask = this.states.length - 1;
    if (!this.has(tag) || this.states[tag & mask] !== OPEN) return;
    this.states[tag & mask] = GONE;
    this.openCount--;
  }

  /** The held tags, for the caller to ack one by one: the wait for the older ones has run long. */
  takeHeld(): number[] {
    const mask = this.states.length - 1;
    const tags: number[] = [];
    for (const t of this.heldTags) {
      if (!this.has(t) || this.states[t & mask] !== HELD) continue;
      this.states[t & mask] = GONE;
      tags.push(t);
    }
    this.heldTags = [];
    this.heldTotal = 0;
    return tags;
  }

  get heldCount(): number {
    return this.heldTotal;
  }

  get size(): number {
    return this.openCount + this.heldTotal;
  }

  private has(tag: number): boolean {
    return tag >= this.first && tag < this.next;
  }

  /** Room for `span` tags from `first`: the ring doubles, each tag moved to its place modulo the new size. */
  private reserve(span: number): void {
    if (span <= this.states.length) return;
    const old = this.states.length;
    let size = old;
    while (size < span) size *= 2;
    const grown = new Uint8Array(size);
    for (let t = this.first; t < this.next; t++) grown[t & (size - 1)] = this.states[t & (old - 1)];
    this.states = grown;
  }
}
