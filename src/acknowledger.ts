/**
 * What happens to an input once its outcome is known, decided in one place; and the bookkeeping that
 * lets many acks go as one `multiple` ack when every earlier delivery on the channel is settled too.
 */
import type { QueueType } from './topology.js';

export type Settlement = 'ack' | 'requeue' | 'dead-letter';

/**
 * Answered inputs are acked (errors included: bad input is never requeued in a loop). An input whose
 * isolate died under it is requeued so the broker counts it: a quorum queue dead-letters it at
 * x-delivery-limit; a classic queue has no count, so its second death sends it to the dead-letter queue.
 */
export function settlementFor(answered: boolean, redelivered: boolean, queueType: QueueType): Settlement {
  if (answered) return 'ack';
  return queueType === 'classic' && redelivered ? 'dead-letter' : 'requeue';
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
