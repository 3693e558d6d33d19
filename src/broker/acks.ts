/**
 * One object per consume channel: its state, which deliveries are its own, the ack window that lets
 * many acks go as one `multiple` ack, the hold timer, and the grace before the channel closes. An ack
 * is only valid on the channel its delivery came on, so this object is the one that sends it.
 */
import type { Logger } from 'pino';
import type { Delivery } from './delivery.js';

/** How an input leaves us. 'none': its channel has gone; the broker has it back and will redeliver it. */
export type Settlement = 'ack' | 'requeue' | 'dead-letter' | 'none';

/** How long settled inputs wait for older ones, to go in one `multiple` ack, before each is acked on its own. */
export const ACK_HOLD_MS = 20;
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
  /** When this channel last sent acks or nacks: close() lets the broker apply them first. */
  private lastAckAt = 0;

  constructor(
    readonly generation: number,
    private readonly channel: AckChannel,
    private readonly log: Logger,
    private readonly holdMs = ACK_HOLD_MS,
    private readonly graceMs = ACK_SETTLE_GRACE_MS,
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
   * back). Acks go as `multiple` acks, held briefly while older inputs are still open.
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
    if (upTo !== undefined) this.channel.ack(tagged(upTo), true);
    if (this.window.heldCount > 0 && !this.holdTimer) this.holdTimer = setTimeout(() => this.ackHeld(), this.holdMs);
  }

  /** The channel or its connection has gone: nothing more is sent on it. */
  lost(): void {
    if (this.state === 'closed') return;
    this.to('closed', 'lost');
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
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
    if (this.window.heldCount > 0) this.ackHeld();
    this.to('closing', 'close');
    const graceMs = this.graceMs - (Date.now() - this.lastAckAt);
    if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
    this.to('closed', 'closed');
    await this.channel.close().catch(() => {});
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

/**
 * Delivery tags of one channel, in arrival order, until they are acked. A settled tag is acked with
 * the next `multiple` ack once nothing older is still open; until then it is held (two isolates
 * finish their batches out of order), and the caller acks what is held one by one if the wait runs
 * long. Fewer ack frames is less work for a quorum queue, where each is a command in its log.
 */
export class AckWindow {
  /** Delivered, not yet settled. */
  private readonly open = new Set<number>();
  /** Settled (to ack), not yet acked: something older is still open. */
  private readonly held = new Set<number>();
  private readonly order: number[] = [];
  private head = 0;

  delivered(tag: number): void {
    this.open.add(tag);
    this.order.push(tag);
  }

  /**
   * Marks tags settled, to be acked. Returns the tag to ack with `multiple` (every tag up to it is
   * settled, and it has not been acked yet), or undefined while something older is still open.
   */
  settle(tags: readonly number[]): number | undefined {
    for (const t of tags) {
      this.open.delete(t);
      this.held.add(t);
    }
    const oldestOpen = this.advance();
    // RabbitMQ refuses a multiple ack whose own tag was already acked: the highest held tag, never one acked on its own.
    let upTo = 0;
    for (const t of this.held) {
      if (t < oldestOpen) {
        if (t > upTo) upTo = t;
        this.held.delete(t);
      }
    }
    return upTo > 0 ? upTo : undefined;
  }

  /** A tag settled some other way (nacked): it no longer holds back a multiple ack. */
  release(tag: number): void {
    this.open.delete(tag);
  }

  /** The held tags, for the caller to ack one by one: the wait for the older ones has run long. */
  takeHeld(): number[] {
    const tags = [...this.held];
    this.held.clear();
    return tags;
  }

  get heldCount(): number {
    return this.held.size;
  }

  get size(): number {
    return this.open.size + this.held.size;
  }

  /** Moves past settled tags; returns the oldest open tag (Infinity when none). */
  private advance(): number {
    while (this.head < this.order.length && !this.open.has(this.order[this.head])) this.head++;
    if (this.head > 4096) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
    return this.head < this.order.length ? this.order[this.head] : Infinity;
  }
}
