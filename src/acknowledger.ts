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

/** Delivery tags of one channel, in arrival order, until they are settled. */
export class AckWindow {
  private readonly open = new Set<number>();
  private readonly order: number[] = [];
  private head = 0;

  delivered(tag: number): void {
    this.open.add(tag);
    this.order.push(tag);
  }

  /**
   * Marks tags settled. Returns the tag to ack with `multiple` when nothing older is still open,
   * else undefined: the caller then acks each tag on its own.
   */
  settle(tags: readonly number[]): number | undefined {
    let highest = 0;
    for (const t of tags) {
      this.open.delete(t);
      if (t > highest) highest = t;
    }
    while (this.head < this.order.length && !this.open.has(this.order[this.head])) this.head++;
    if (this.head > 4096) {
      this.order.splice(0, this.head);
      this.head = 0;
    }
    const oldestOpen = this.head < this.order.length ? this.order[this.head] : Infinity;
    return highest < oldestOpen ? highest : undefined;
  }

  /** A tag settled some other way (nacked): it no longer holds back a multiple ack. */
  release(tag: number): void {
    this.settle([tag]);
  }

  get size(): number {
    return this.open.size;
  }
}
