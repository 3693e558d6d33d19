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

export class AnsweredRecord {
  /** Key → when its reply was confirmed (ms, the caller's clock). A Map iterates in insertion order: oldest first. */
  private readonly entries = new Map<string, number>();

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
    // Delete first: a key seen again moves to the young end, and the Map stays ordered by time.
    this.entries.delete(key);
    this.entries.set(key, nowMs);
    this.evict(nowMs);
  }

  /** For a delivery: true when it is a redelivery of an input answered within the bounds. */
  wasAnswered(delivery: InputIds & { redelivered: boolean }, nowMs: number): boolean {
    if (!delivery.redelivered || !this.enabled) return false;
    this.evict(nowMs);
    const key = answeredKeyOf(delivery);
    return key !== undefined && this.entries.has(key);
  }

  private evict(nowMs: number): void {
    while (this.entries.size > this.o.maxEntries) this.entries.delete(this.entries.keys().next().value as string);
    for (const [key, at] of this.entries) {
      if (nowMs - at <= this.o.maxAgeMs) break;
      this.entries.delete(key);
    }
  }
}
