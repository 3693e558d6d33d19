/**
 * Gathers items into batches: a batch goes when it holds maxBatchSize items or when its first item
 * has waited maxBatchDelayMs. A delay of 0 still gathers what arrived in the same turn of the event
 * loop, which is how a socket read full of deliveries becomes one batch.
 */
export class Batcher<T> {
  private items: T[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maxBatchSize: number,
    private readonly maxBatchDelayMs: number,
    private readonly onBatch: (batch: T[]) => void,
  ) {}

  add(item: T): void {
    this.items.push(item);
    if (this.items.length >= this.maxBatchSize) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), this.maxBatchDelayMs);
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.items.length === 0) return;
    const batch = this.items;
    this.items = [];
    this.onBatch(batch);
  }

  get size(): number {
    return this.items.length;
  }
}
