/**
 * The inputs the consumer holds and has not yet given to an isolate, taken in the order they should be
 * scored: redelivered inputs first (one of them may be what killed an isolate, and its caller has waited
 * longest), then by AMQP `priority`, highest first, as Triton's priority levels do; first come, first
 * served within a level. Pure: the consumer decides when to take, this decides what.
 *
 * Priorities are 0–255 as AMQP carries them (none counts as 0); MAX_PRIORITY caps them, as RabbitMQ treats
 * a priority above a queue's x-max-priority as that maximum, so a producer cannot jump ahead of the levels
 * the operator set. With MAX_PRIORITY 0 every input is level 0 and the order is arrival order.
 */

/** One FIFO, an array with a moving head: shift() in O(1) without Array.prototype.shift's copy. */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined as T;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

export interface HeldInfo {
  /** AMQP `priority`, absent when the input has none. */
  priority?: number;
  redelivered: boolean;
}

export class HeldInputs<T> {
  /** levels[0..maxPriority]: by priority; one more, above them all, for redelivered inputs. */
  private readonly levels: Array<Fifo<T>>;
  private readonly redeliveredLevel: number;
  /** The highest level that may be non-empty: take() scans down from here. */
  private top = -1;
  private count = 0;

  /** @param maxPriority MAX_PRIORITY: priorities above it count as it; 0 turns ordering by priority off. */
  constructor(private readonly maxPriority: number) {
    if (!Number.isInteger(maxPriority) || maxPriority < 0 || maxPriority > 255) {
      throw new RangeError(`maxPriority must be an integer from 0 to 255, got ${maxPriority}`);
    }
    this.redeliveredLevel = maxPriority + 1;
    this.levels = Array.from({ length: maxPriority + 2 }, () => new Fifo<T>());
  }

  get size(): number {
    return this.count;
  }

  /** The level an input is held at: its priority clamped to [0, maxPriority], or above all when redelivered. */
  levelOf(info: HeldInfo): number {
    if (info.redelivered) return this.redeliveredLevel;
    const p = info.priority;
    if (p === undefined || !Number.isFinite(p) || p <= 0) return 0;
    return Math.min(Math.floor(p), this.maxPriority);
  }

  add(item: T, info: HeldInfo): void {
    const level = this.levelOf(info);
    this.levels[level].push(item);
    if (level > this.top) this.top = level;
    this.count++;
  }

  /** The next input to score, or undefined when none is held. */
  shift(): T | undefined {
    while (this.top >= 0) {
      const level = this.levels[this.top];
      if (level.size > 0) {
        this.count--;
        return level.shift();
      }
      this.top--;
    }
    return undefined;
  }

  /** Up to `n` inputs in scoring order: the next batch. */
  take(n: number): T[] {
    const out: T[] = [];
    while (out.length < n) {
      if (this.count === 0) break;
      out.push(this.shift() as T);
    }
    return out;
  }

  /**
   * The next batch: a redelivered input alone (it may be what killed an isolate, so it can only take
   * itself down), else up to `n` inputs by priority.
   */
  nextBatch(n: number): T[] {
    if (this.levels[this.redeliveredLevel].size > 0) {
      this.count--;
      return [this.levels[this.redeliveredLevel].shift() as T];
    }
    const out: T[] = [];
    // The redelivered level is empty here, so shift() only meets priority levels.
    while (out.length < n && this.count > 0) out.push(this.shift() as T);
    return out;
  }

  /** Every held input, in scoring order, and none left: for stop(), which scores what it holds. */
  drain(): T[] {
    return this.take(this.count);
  }
}
