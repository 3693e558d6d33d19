/**
 * Inputs whose reply the broker confirmed, remembered for a while because their ack may be lost: an
 * ack sent on a connection that is cut before the broker reads it is no ack, and the broker delivers the
 * input again (`redelivered`). Scoring and replying once more would answer the caller twice; the answer
 * path asks `wasAnswered` of a redelivered input and, on a hit, acks it without scoring or replying.
 *
 * Keyed by `messageId`, else `correlationId`: the message id names one message (our CLI and most
 * publishers make it unique), while a correlation id names a conversation, which a caller may reuse for
 * several requests. Only redelivered inputs are looked up: a new message that happens to reuse an id is
 * never taken for an old one, and so is never left unanswered. An input with neither id is not recorded.
 *
 * Bounded by count (oldest forgotten first) and by age; both configurable (ANSWERED_RECORD_MAX,
 * ANSWERED_RECORD_MAX_AGE_MS). It lives in this process: after a SIGKILL the record is gone and a
 * redelivered input is answered again, which the contract allows (twice, never zero times).
 */

export interface AnsweredRecordOptions {
  /** Entries kept at most; 0 turns the record off. */
  maxEntries: number;
  /** An entry older than this is forgotten; 0 turns the record off. */
  maxAgeMs: number;
}

export interface InputIds {
  messageId?: string;
  correlationId?: string;
}

export function answeredKeyOf(ids: InputIds): string | undefined {
  if (ids.messageId) return `m:${ids.messageId}`;
  if (ids.correlationId) return `c:${ids.correlationId}`;
  return undefined;
}

/**
 * Keys in the order they were remembered, each with when: a queue with a moving head. Evicting the
 * oldest is O(1); a Map's own oldest-first iteration is not: each one starts over the deleted entries at
 * the front of its table, which made a full record of 100,000 cost about 100 µs per reply here.
 */
class Remembered {
  private keys: string[] = [];
  private times: number[] = [];
  private head = 0;
  /** The number of the next place: a key's newest place is the one whose number the record holds. */
  next = 0;

  get size(): number {
    return this.keys.length - this.head;
  }

  /** The new place's number. */
  push(key: string, at: number): number {
    this.keys.push(key);
    this.times.push(at);
    return this.next++;
  }

  /** The number of the oldest place. */
  oldestPlace(): number {
    return this.next - this.size;
  }

  oldestAt(): number {
    return this.times[this.head];
  }

  shift(): string {
    const key = this.keys[this.head];
    this.keys[this.head] = '';
    this.head++;
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
    return key;
  }
}

export class AnsweredRecord {
  /** Key → the number of its newest place in `order`. */
  private readonly entries = new Map<string, number>();
  /** Every remember, oldest first; a key remembered again also has older places here, skipped as they come. */
  private readonly order = new Remembered();

  constructor(private readonly o: AnsweredRecordOptions) {}

  get enabled(): boolean {
    return this.o.maxEntries > 0 && this.o.maxAgeMs > 0;
  }

  get size(): number {
    return this.entries.size;
  }

  /** After the reply is confirmed, before the ack is sent. */
  remember(ids: InputIds, nowMs: number): void {
    if (!this.enabled) return;
    const key = answeredKeyOf(ids);
    if (key === undefined) return;
    this.entries.set(key, this.order.push(key, nowMs));
    this.evict(nowMs);
  }

  /** For a delivery: true when it is a redelivery of an input answered within the bounds. */
  wasAnswered(delivery: InputIds & { redelivered: boolean }, nowMs: number): boolean {
    if (!delivery.redelivered || !this.enabled) return false;
    this.evict(nowMs);
    const key = answeredKeyOf(delivery);
    return key !== undefined && this.entries.has(key);
  }

  /** Oldest first, while over the count (places in the queue, so renewals count too) or past the age. */
  private evict(nowMs: number): void {
    while (
      this.order.size > 0 &&
      (this.order.size > this.o.maxEntries || nowMs - this.order.oldestAt() > this.o.maxAgeMs)
    ) {
      const place = this.order.oldestPlace();
      const key = this.order.shift();
      // Only its newest place forgets it: an older one of a key remembered again is just dropped.
      if (this.entries.get(key) === place) this.entries.delete(key);
    }
  }
}
