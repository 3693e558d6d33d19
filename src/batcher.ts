/**
 * Gathers items into batches: a batch is due when it holds maxBatchSize items or when its first item
 * has waited maxBatchDelayMs. A delay of 0 still gathers what arrived in the same turn of the event
 * loop, which is how a socket read full of deliveries becomes one batch.
 *
 * A due batch goes only while `hasCapacity()` says so (an isolate is free). While every isolate is
 * busy the waiting items are held, and the next batch is cut when `wake()` says one has freed up: so
 * under load batches grow to maxBatchSize instead of queueing up half-empty behind busy isolates.
 */
export class Batcher<T> {
  private items: T[] = [];
  /** performance.now() at each item's arrival, in step with `items`. */
  private arrivals: number[] = [];
  /** The first `flushed` items are due now, whatever their age (flush()). */
  private flushed = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maxBatchSize: number,
    private readonly maxBatchDelayMs: number,
    private readonly onBatch: (batch: T[]) => void,
    private readonly hasCapacity: () => boolean = () => true,
  ) {}

  add(item: T): void {
    this.items.push(item);
    this.arrivals.push(performance.now());
    if (this.items.length >= this.maxBatchSize) this.release();
    else if (!this.timer) this.arm();
  }

  /** Sends what is gathered now, without waiting for the delay (as capacity allows; the rest on wake()). */
  flush(): void {
    this.flushed = this.items.length;
    this.release();
  }

  /** Capacity has freed up: send the next due batch, if any. */
  wake(): void {
    this.release();
  }

  get size(): number {
    return this.items.length;
  }

  private release(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const now = performance.now();
    while (this.items.length > 0 && this.hasCapacity()) {
      // 1 ms of slack: timers fire on the event loop's millisecond clock, a hair before performance.now() agrees.
      const due = this.flushed > 0 || this.items.length >= this.maxBatchSize || now - this.arrivals[0] >= this.maxBatchDelayMs - 1;
      if (!due) break;
      const n = Math.min(this.maxBatchSize, this.items.length);
      const batch = n === this.items.length ? this.items : this.items.slice(0, n);
      this.items = n === this.items.length ? [] : this.items.slice(n);
      this.arrivals = this.items.length === 0 ? [] : this.arrivals.slice(n);
      this.flushed = Math.max(0, this.flushed - n);
      this.onBatch(batch);
    }
    this.arm();
  }

  /** A timer for the first item's deadline; none while there is no capacity, since wake() will come. */
  private arm(): void {
    if (this.timer || this.items.length === 0 || !this.hasCapacity()) return;
    const wait = Math.max(0, this.arrivals[0] + this.maxBatchDelayMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.release();
    }, wait);
  }
}
