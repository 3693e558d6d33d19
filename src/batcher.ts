import { HeldInputs, type HeldInfo } from './held-inputs.js';

/** How a batcher orders what it holds (held-inputs.ts). */
export interface BatchOrder<T> {
  /** MAX_PRIORITY: 0 keeps arrival order. */
  maxPriority: number;
  infoOf(item: T): HeldInfo;
}

/**
 * Gathers items into batches: a batch is due when it holds maxBatchSize items or when its first item
 * has waited maxBatchDelayMs. A delay of 0 still gathers what arrived in the same turn of the event
 * loop, which is how a socket read full of deliveries becomes one batch.
 *
 * It waits for the delay only while `waits()` says so (the consumer: while its event loop is busy enough
 * for batching to pay, BATCH_DELAY_MIN_LOAD); otherwise a batch is cut at the end of the turn its first
 * item arrived in, as with a delay of 0. At light load nothing then waits on a timer, whose millisecond
 * clock made a 2 ms delay 2–4 ms; under load, deliveries read together still make one batch.
 *
 * A due batch goes only while `hasCapacity()` says so (an isolate is free). While every isolate is
 * busy the waiting items are held, and the next batch is cut when `wake()` says one has freed up: so
 * under load batches grow to maxBatchSize instead of queueing up half-empty behind busy isolates.
 *
 * What it holds is cut into batches in held-inputs.ts's order: by AMQP priority when `order` is given
 * (a high-priority input arriving while the isolates are busy goes into the next batch, ahead of the
 * low ones held before it), else in arrival order.
 */
export class Batcher<T> {
  private readonly items: HeldInputs<T>;
  /**
   * performance.now() of each arrival, oldest first. A cut drops the oldest times, not those of the
   * items it took, so with priorities the age read here is at most one delay short for a low item passed over.
   */
  private arrivals: number[] = [];
  /** The first `flushed` items are due now, whatever their age (flush()). */
  private flushed = 0;
  private timer: NodeJS.Timeout | undefined;
  /** A cut at the end of this turn of the event loop (a delay of 0, or not waiting). */
  private turnEnd: NodeJS.Immediate | undefined;

  constructor(
    /** A number, or asked at each cut (a script without runBatch: Scorer.runGroup). */
    private readonly maxBatchSize: number | (() => number),
    private readonly maxBatchDelayMs: number,
    private readonly onBatch: (batch: T[]) => void,
    private readonly hasCapacity: () => boolean = () => true,
    private readonly order?: BatchOrder<T>,
    private readonly waits: () => boolean = () => true,
  ) {
    this.items = new HeldInputs<T>(order?.maxPriority ?? 0);
  }

  add(item: T): void {
    this.items.add(item, this.order?.infoOf(item) ?? { redelivered: false });
    this.arrivals.push(performance.now());
    if (this.items.size >= this.limit()) this.release();
    else this.arm();
  }

  /** Sends what is gathered now, without waiting for the delay (as capacity allows; the rest on wake()). */
  flush(): void {
    this.flushed = this.items.size;
    this.release();
  }

  /** Capacity has freed up: send the next due batch, if any. */
  wake(): void {
    this.release();
  }

  get size(): number {
    return this.items.size;
  }

  /** Cuts the due batches while there is capacity; at a turn's end (`turnEnded`) whatever is held is due. */
  private release(turnEnded = false): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    clearImmediate(this.turnEnd);
    this.turnEnd = undefined;
    const now = performance.now();
    const limit = this.limit();
    while (this.items.size > 0 && this.hasCapacity()) {
      // 1 ms of slack: timers fire on the event loop's millisecond clock, a hair before performance.now() agrees.
      const due =
        turnEnded || this.flushed > 0 || this.items.size >= limit || now - this.arrivals[0] >= this.maxBatchDelayMs - 1;
      if (!due) break;
      const batch = this.items.nextBatch(limit);
      const n = batch.length;
      this.arrivals = this.items.size === 0 ? [] : this.arrivals.slice(n);
      this.flushed = Math.max(0, this.flushed - n);
      this.onBatch(batch);
    }
    this.arm();
  }

  private limit(): number {
    return typeof this.maxBatchSize === 'number' ? this.maxBatchSize : this.maxBatchSize();
  }

  /**
   * A timer for the first item's deadline, or a cut at the end of this turn when not waiting; neither
   * while there is no capacity, since wake() will come.
   */
  private arm(): void {
    if (this.timer || this.turnEnd || this.items.size === 0 || !this.hasCapacity()) return;
    if (this.maxBatchDelayMs === 0 || !this.waits()) {
      this.turnEnd = setImmediate(() => {
        this.turnEnd = undefined;
        this.release(true);
      });
      return;
    }
    const wait = Math.max(0, this.arrivals[0] + this.maxBatchDelayMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.release();
    }, wait);
  }
}
