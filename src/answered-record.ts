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

/** The ring of confirmed replies starts this big and doubles up to ANSWERED_RECORD_MAX. */
const FIRST_CAPACITY = 1024;

/**
 * A 53-bit hash of an input's id and which id it is (cyrb53, public domain: two 32-bit multiply-xor
 * lanes mixed at the end), a safe integer. Two ids share one with a chance of 2^-53: a redelivery is
 * taken for an answered input only if its hash equals one of the ANSWERED_RECORD_MAX remembered, about
 * one redelivery in 10^11 at the default 100,000.
 */
export function idHash(id: string, kind: number): number {
  // The kind goes in as a first code unit of its own ('m' or 'c', as answeredKeyOf's prefix): one more
  // unit, so no id of one kind hashes as an id of the other (a seed xored in would let 'e' meet 'd').
  const first = kind === 0 ? 0x6d : 0x63;
  let h1 = Math.imul(0xdeadbeef ^ first, 2654435761);
  let h2 = Math.imul(0x41c6ce57 ^ first, 1597334677);
  for (let i = 0; i < id.length; i++) {
    const ch = id.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

export class AnsweredRecord<R extends { body: Buffer } = { body: Buffer }> {
  /**
   * The inputs of the confirmed replies, oldest first, in a ring of typed arrays: each one's id hash
   * (idHash) and when. A reply costs a hash and two stores, and leaves nothing for the garbage collector:
   * the id strings themselves, kept in arrays of 100,000, were old-generation objects the collector traced.
   * Only a redelivery looks anything up, so the index by hash (`index`) is built when one comes and
   * dropped once none has come for INDEX_IDLE_MS.
   */
  private hashes = new Float64Array(0);
  private ats = new Float64Array(0);
  /** The ring slot of the oldest place, and how many places are kept. */
  private start = 0;
  private count = 0;
  /** Places ever taken: the newest is number `taken - 1`, the oldest kept `taken - count`. */
  private taken = 0;
  /** Hash → the number of its latest place; while redeliveries come. */
  private index: Map<number, number> | undefined;
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
    return this.count;
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
    const hash = idHash(id, ids.messageId ? 0 : 1);
    this.evict(nowMs, 1);
    if (this.count === this.hashes.length) this.grow();
    const slot = (this.start + this.count) % this.hashes.length;
    this.hashes[slot] = hash;
    this.ats[slot] = nowMs;
    this.count++;
    if (this.index) {
      if (nowMs - this.indexUsedAt > INDEX_IDLE_MS) this.index = undefined;
      else this.index.set(hash, this.taken);
    }
    this.taken++;
    // A copy of its reply in doubt was confirmed: answered now.
    if (this.doubts.size > 0) this.forgetDoubt(answeredKeyOf(ids)!);
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
    this.evict(nowMs, 0);
    const id = delivery.messageId || delivery.correlationId;
    if (!id) return false;
    const at = this.indexed(nowMs).get(idHash(id, delivery.messageId ? 0 : 1));
    return at !== undefined && at >= this.taken - this.count;
  }

  /** The index by hash, built from the places still remembered when a redelivery first asks. */
  private indexed(nowMs: number): Map<number, number> {
    this.indexUsedAt = nowMs;
    if (this.index) return this.index;
    const index = new Map<number, number>();
    const first = this.taken - this.count;
    for (let k = 0; k < this.count; k++) index.set(this.hashes[(this.start + k) % this.hashes.length], first + k);
    this.index = index;
    return index;
  }

  /** Room for one more place: twice the ring, up to maxEntries, the places copied oldest first. */
  private grow(): void {
    const size = Math.min(this.o.maxEntries, Math.max(FIRST_CAPACITY, 2 * this.hashes.length));
    const hashes = new Float64Array(size);
    const ats = new Float64Array(size);
    for (let k = 0; k < this.count; k++) {
      const slot = (this.start + k) % this.hashes.length;
      hashes[k] = this.hashes[slot];
      ats[k] = this.ats[slot];
    }
    this.hashes = hashes;
    this.ats = ats;
    this.start = 0;
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

  /** Forgets the places past maxAgeMs, and the oldest while fewer than `room` more would fit in maxEntries. */
  private evict(nowMs: number, room: number): void {
    const { maxEntries, maxAgeMs } = this.o;
    while (this.count > 0 && (this.count + room > maxEntries || nowMs - this.ats[this.start] > maxAgeMs)) {
      // Its hash leaves the index only if this was its latest place.
      const hash = this.hashes[this.start];
      if (this.index?.get(hash) === this.taken - this.count) this.index.delete(hash);
      this.start = (this.start + 1) % this.hashes.length;
      this.count--;
    }
  }
}
