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
 * It also keeps the inputs *in doubt*: their reply was published, but its channel went before the
 * broker confirmed it, and the input went back to the broker with its own channel. The broker may have
 * routed that reply (a broker that stops closes its connections with confirms still owed: tens of replies
 * at a restart), so a redelivery of such an input is answered with the SAME reply, body and messageId, not
 * scored again: a receiver that keeps the message ids it has seen drops the copy. Their reply is kept
 * until a copy of it is confirmed (then the input is answered) or the bounds forget it (then the input is
 * scored again: a second, different reply, as the contract allows).
 *
 * And it knows the inputs whose reply is on its way (published, its fate not known yet). A redelivery
 * of one waits for that first copy to be settled, then is looked up: otherwise it would be scored
 * beside a reply that may still be confirmed (one held for a publish channel that comes back after the
 * consume channel does), and answered twice with two different replies. Those entries last as long as
 * their input is held, so PREFETCH bounds them.
 *
 * Bounded by count (the last ANSWERED_RECORD_MAX confirmed replies, oldest forgotten first) and by age
 * (ANSWERED_RECORD_MAX_AGE_MS); the replies in doubt also by their bytes. It lives in this process: after
 * a SIGKILL the record is gone and a redelivered input is answered again, which the contract allows
 * (twice, never zero times).
 */

export interface AnsweredRecordOptions {
  /** Entries kept at most; 0 turns the record off. */
  maxEntries: number;
  /** An entry older than this is forgotten; 0 turns the record off. */
  maxAgeMs: number;
  /** The bodies of the replies in doubt kept at most, in bytes (oldest forgotten first); default IN_DOUBT_MAX_BYTES. */
  maxInDoubtBytes?: number;
}

/** A reply in doubt is kept whole (it is sent again as it was): a few replies of 1 MB, or thousands of small ones. */
export const IN_DOUBT_MAX_BYTES = 16 * 1024 * 1024;

export interface InputIds {
  messageId?: string;
  correlationId?: string;
}

export function answeredKeyOf(ids: InputIds): string | undefined {
  if (ids.messageId) return `m:${ids.messageId}`;
  if (ids.correlationId) return `c:${ids.correlationId}`;
  return undefined;
}

/** How long the index of the confirmed replies is kept after the last redelivery looked it up. */
export const INDEX_IDLE_MS = 60_000;

export class AnsweredRecord<R extends { body: Buffer } = { body: Buffer }> {
  /**
   * The inputs of the confirmed replies, oldest at `head`: each one's id, which id it is (0 messageId, 1
   * correlationId) and when. A reply costs three pushes and no hash: only a redelivery looks anything up,
   * so the index by id (`index`) is built when one comes and dropped once none has come for
   * INDEX_IDLE_MS. A hash map of every reply (100,000 by default) cost a set, a get and a delete on a
   * table too large for the cache per reply, and a key string made and hashed per reply.
   */
  private order: { ids: string[]; kinds: number[]; ats: number[] } = { ids: [], kinds: [], ats: [] };
  private head = 0;
  /** Every place in `order` is numbered from the record's start: `base` is the number of order[0]. */
  private base = 0;
  /** Per kind of id, the id → the number of its latest place; while redeliveries come. */
  private index: [Map<string, number>, Map<string, number>] | undefined;
  private indexUsedAt = 0;
  /** Key → the reply in doubt and when its input went back, oldest first. */
  private readonly doubts = new Map<string, { at: number; reply: R }>();
  private doubtBytes = 0;
  /**
   * The inputs (their delivery objects) whose reply is on its way. A Set of objects, not keys: no key is
   * made per reply; a redelivery, rare, looks through them (PREFETCH at most) for its own key.
   */
  private readonly replying = new Set<InputIds>();
  /** Input → the redeliveries waiting for it to be settled. */
  private readonly waiting = new Map<InputIds, Array<() => void>>();
  private readonly maxInDoubtBytes: number;

  constructor(private readonly o: AnsweredRecordOptions) {
    this.maxInDoubtBytes = o.maxInDoubtBytes ?? IN_DOUBT_MAX_BYTES;
  }

  get enabled(): boolean {
    return this.o.maxEntries > 0 && this.o.maxAgeMs > 0;
  }

  /** The confirmed replies remembered: each reply a place, a key answered twice two. */
  get size(): number {
    return this.order.ids.length - this.head;
  }

  /** How many replies are in doubt, and their bodies' bytes. */
  get inDoubtSize(): { entries: number; bytes: number } {
    return { entries: this.doubts.size, bytes: this.doubtBytes };
  }

  /** After the reply is confirmed, before the ack is sent. */
  remember(ids: InputIds, nowMs: number): void {
    if (!this.enabled) return;
    // The messageId, else the correlationId (answeredKeyOf's choice), without making the key string.
    const id = ids.messageId || ids.correlationId;
    if (!id) return;
    const kind = ids.messageId ? 0 : 1;
    const { order } = this;
    order.ids.push(id);
    order.kinds.push(kind);
    order.ats.push(nowMs);
    if (this.index) {
      if (nowMs - this.indexUsedAt > INDEX_IDLE_MS) this.index = undefined;
      else this.index[kind].set(id, this.base + order.ids.length - 1);
    }
    // A copy of its reply in doubt was confirmed: answered now.
    if (this.doubts.size > 0) this.forgetDoubt(answeredKeyOf(ids)!);
    this.evict(nowMs);
  }

  /** When an input goes back to the broker after its reply was published but not confirmed. */
  rememberInDoubt(ids: InputIds, reply: R, nowMs: number): void {
    if (!this.enabled) return;
    const key = answeredKeyOf(ids);
    if (key === undefined) return;
    this.forgetDoubt(key);
    if (reply.body.byteLength > this.maxInDoubtBytes) return;
    this.doubts.set(key, { at: nowMs, reply });
    this.doubtBytes += reply.body.byteLength;
    this.evictDoubts(nowMs);
  }

  /** Before an input's reply is published: the same object is given to settled(). */
  replyingFor(input: InputIds): void {
    if (this.enabled) this.replying.add(input);
  }

  /** When an input is settled, whatever its fate, after remember() or rememberInDoubt(): its redeliveries waiting go on. */
  settled(input: InputIds): void {
    if (!this.replying.delete(input) || this.waiting.size === 0) return;
    const waiters = this.waiting.get(input);
    this.waiting.delete(input);
    for (const go of waiters ?? []) go();
  }

  /** For a redelivery: resolves once the first copy, whose reply is on its way, is settled; undefined when there is none. */
  firstCopySettled(delivery: InputIds & { redelivered: boolean }): Promise<void> | undefined {
    if (!delivery.redelivered || this.replying.size === 0) return undefined;
    const key = answeredKeyOf(delivery);
    if (key === undefined) return undefined;
    let first: InputIds | undefined;
    for (const input of this.replying)
      if (input !== delivery && answeredKeyOf(input) === key) {
        first = input;
        break;
      }
    if (first === undefined) return undefined;
    const on = first;
    return new Promise((resolve) => {
      const waiters = this.waiting.get(on);
      if (waiters) waiters.push(resolve);
      else this.waiting.set(on, [resolve]);
    });
  }

  /** For a delivery: the reply to send again when it is a redelivery of an input in doubt within the bounds. */
  inDoubt(delivery: InputIds & { redelivered: boolean }, nowMs: number): R | undefined {
    if (!delivery.redelivered || !this.enabled || this.doubts.size === 0) return undefined;
    this.evictDoubts(nowMs);
    const key = answeredKeyOf(delivery);
    return key === undefined ? undefined : this.doubts.get(key)?.reply;
  }

  /** For a delivery: true when it is a redelivery of an input answered within the bounds. */
  wasAnswered(delivery: InputIds & { redelivered: boolean }, nowMs: number): boolean {
    if (!delivery.redelivered || !this.enabled) return false;
    this.evict(nowMs);
    const id = delivery.messageId || delivery.correlationId;
    if (!id) return false;
    const at = this.indexed(nowMs)[delivery.messageId ? 0 : 1].get(id);
    return at !== undefined && at >= this.base + this.head;
  }

  /** The index by id, built from the places still remembered when a redelivery first asks. */
  private indexed(nowMs: number): [Map<string, number>, Map<string, number>] {
    this.indexUsedAt = nowMs;
    if (this.index) return this.index;
    const index: [Map<string, number>, Map<string, number>] = [new Map(), new Map()];
    const { ids, kinds } = this.order;
    for (let i = this.head; i < ids.length; i++) index[kinds[i]].set(ids[i], this.base + i);
    this.index = index;
    return index;
  }

  private forgetDoubt(key: string): void {
    const doubt = this.doubts.get(key);
    if (doubt === undefined) return;
    this.doubts.delete(key);
    this.doubtBytes -= doubt.reply.body.byteLength;
  }

  private evictDoubts(nowMs: number): void {
    for (const [key, { at }] of this.doubts) {
      const over = this.doubts.size > this.o.maxEntries || this.doubtBytes > this.maxInDoubtBytes;
      if (!over && nowMs - at <= this.o.maxAgeMs) break;
      this.forgetDoubt(key);
    }
  }

  private evict(nowMs: number): void {
    const { ids, kinds, ats } = this.order;
    const { maxEntries, maxAgeMs } = this.o;
    while (this.head < ids.length && (ids.length - this.head > maxEntries || nowMs - ats[this.head] > maxAgeMs)) {
      // Its id leaves the index only if this was its latest place.
      const byId = this.index?.[kinds[this.head]];
      if (byId && byId.get(ids[this.head]) === this.base + this.head) byId.delete(ids[this.head]);
      this.head++;
    }
    // Dropped from the front in one go, once most of it is gone: amortised, a few ns a reply.
    if (this.head > 1024 && this.head > ids.length - this.head) {
      this.order = { ids: ids.slice(this.head), kinds: kinds.slice(this.head), ats: ats.slice(this.head) };
      this.base += this.head;
      this.head = 0;
    }
  }
}
