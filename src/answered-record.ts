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
 * Bounded by count (oldest forgotten first) and by age; both configurable (ANSWERED_RECORD_MAX,
 * ANSWERED_RECORD_MAX_AGE_MS); the replies in doubt also by their bytes. It lives in this process: after
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

export class AnsweredRecord<R extends { body: Buffer } = { body: Buffer }> {
  /** Key → the sequence number of its latest remember(). */
  private readonly entries = new Map<string, number>();
  /**
   * Every remember() in order, oldest at `head`: key, sequence number and time. Not the Map's own order:
   * V8 leaves a hole for each key deleted at a Map's front, and every later look at the front walks over
   * them until the table is rehashed; once the record was full that cost tens to hundreds of µs a message here. An entry
   * whose key was remembered again since is stale (its number is no longer the key's) and is skipped.
   */
  private order: { keys: string[]; seqs: number[]; ats: number[] } = { keys: [], seqs: [], ats: [] };
  private head = 0;
  private seq = 0;
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

  get size(): number {
    return this.entries.size;
  }

  /** How many replies are in doubt, and their bodies' bytes. */
  get inDoubtSize(): { entries: number; bytes: number } {
    return { entries: this.doubts.size, bytes: this.doubtBytes };
  }

  /** After the reply is confirmed, before the ack is sent. */
  remember(ids: InputIds, nowMs: number): void {
    if (!this.enabled) return;
    const key = answeredKeyOf(ids);
    if (key === undefined) return;
    // A key seen again moves to the young end: its older place in the order goes stale.
    const seq = ++this.seq;
    this.entries.set(key, seq);
    this.order.keys.push(key);
    this.order.seqs.push(seq);
    this.order.ats.push(nowMs);
    // A copy of its reply in doubt was confirmed: answered now.
    this.forgetDoubt(key);
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
    const key = answeredKeyOf(delivery);
    return key !== undefined && this.entries.has(key);
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
    const { keys, seqs, ats } = this.order;
    while (this.head < keys.length) {
      const key = keys[this.head];
      const current = this.entries.get(key) === seqs[this.head];
      if (current && this.entries.size <= this.o.maxEntries && nowMs - ats[this.head] <= this.o.maxAgeMs) break;
      if (current) this.entries.delete(key);
      this.head++;
    }
    const live = keys.length - this.head;
    // Dropped from the front in one go, once most of it is gone or stale: amortised, a few ns a message.
    if (this.head > 1024 && this.head > live) this.compact(false);
    else if (live > 2 * this.o.maxEntries + 1024) this.compact(true);
  }

  /** The order from `head` on; `staleToo`: without the stale entries (one key remembered again and again). */
  private compact(staleToo: boolean): void {
    const { keys, seqs, ats } = this.order;
    const next: { keys: string[]; seqs: number[]; ats: number[] } = { keys: [], seqs: [], ats: [] };
    for (let i = this.head; i < keys.length; i++) {
      if (staleToo && this.entries.get(keys[i]) !== seqs[i]) continue;
      next.keys.push(keys[i]);
      next.seqs.push(seqs[i]);
      next.ats.push(ats[i]);
    }
    this.order = next;
    this.head = 0;
  }
}
