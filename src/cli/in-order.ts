/**
 * Replies arrive in any order; results are written in input order. This holds each result until
 * every earlier line has its own, along with the `ack` that lets the broker forget the reply: a
 * reply is acked only once written, so a run killed before that finds it again when resumed. Pure.
 */

export interface Ready<A> {
  line: number;
  text: string;
  ok: boolean;
  ack?: A;
}

interface Slot<A> {
  text?: string;
  ok?: boolean;
  ack?: A;
}

export type Accepted = 'accepted' | 'early' | 'duplicate';

export class InOrder<A> {
  private readonly lines: number[] = [];
  private head = 0;
  private readonly slots = new Map<number, Slot<A>>();
  /** Replies to lines sent by an earlier run that this run has not reached in the input yet. */
  private readonly early = new Map<number, Slot<A>>();
  private lastExpected: number;

  /**
   * @param writtenThrough lines up to here are in the results file already
   * @param sentThrough lines up to here were sent by an earlier run: their replies may come before we reach them
   */
  constructor(
    writtenThrough: number,
    private readonly sentThrough: number,
  ) {
    this.lastExpected = writtenThrough;
  }

  /** Lines expected and not yet written. */
  get pending(): number {
    return this.slots.size;
  }

  /** Lines must be expected in increasing order. */
  expect(line: number): void {
    if (line <= this.lastExpected) throw new Error(`line ${line} expected after line ${this.lastExpected}`);
    this.lastExpected = line;
    this.lines.push(line);
    const early = this.early.get(line);
    this.early.delete(line);
    this.slots.set(line, early ?? {});
  }

  /**
   * A result for `line`. 'duplicate' (already has one, or written, or never sent by this run): the
   * caller acks it and drops it. 'early': kept until `expect(line)`.
   */
  resolve(line: number, text: string, ok: boolean, ack?: A): Accepted {
    const slot = this.slots.get(line);
    if (slot) {
      if (slot.text !== undefined) return 'duplicate';
      Object.assign(slot, { text, ok, ack });
      return 'accepted';
    }
    if (line > this.lastExpected && line <= this.sentThrough && !this.early.has(line)) {
      this.early.set(line, { text, ok, ack });
      return 'early';
    }
    return 'duplicate';
  }

  /** The results that can be written now, in input order, removed from here. */
  takeReady(): Ready<A>[] {
    const ready: Ready<A>[] = [];
    while (this.head < this.lines.length) {
      const line = this.lines[this.head];
      const slot = this.slots.get(line)!;
      if (slot.text === undefined) break;
      ready.push({ line, text: slot.text, ok: slot.ok!, ack: slot.ack });
      this.slots.delete(line);
      this.head++;
    }
    if (this.head > 4096) {
      this.lines.splice(0, this.head);
      this.head = 0;
    }
    return ready;
  }

  /** Early replies to lines the input never reached (blank lines, a shorter file): to ack and drop at the end. */
  takeStrays(): A[] {
    const acks = [...this.early.values()].map((s) => s.ack).filter((a): a is A => a !== undefined);
    this.early.clear();
    return acks;
  }
}
