import { performance, type EventLoopUtilization } from 'node:perf_hooks';

type ReadUtilization = (now?: EventLoopUtilization, before?: EventLoopUtilization) => EventLoopUtilization;

/**
 * How busy this thread's event loop has been lately: the share of the last complete window it spent
 * working rather than waiting for I/O (Node's event-loop utilization), read at most once a window. The
 * first read starts the first window (so boot's work never counts), and a window read long after it
 * began (an idle consumer) covers the whole idle stretch.
 */
export class LoopLoad {
  private mark: EventLoopUtilization | undefined;
  private windowStart = 0;
  private share = 0;

  constructor(
    private readonly windowMs = 100,
    private readonly readUtilization: ReadUtilization = performance.eventLoopUtilization,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** 0 (idle) to 1 (never waited), over the last complete window; 0 until one has passed. */
  get utilization(): number {
    const t = this.now();
    if (this.mark === undefined) {
      this.mark = this.readUtilization();
      this.windowStart = t;
    } else if (t - this.windowStart >= this.windowMs) {
      const mark = this.readUtilization();
      this.share = this.readUtilization(mark, this.mark).utilization;
      this.mark = mark;
      this.windowStart = t;
    }
    return this.share;
  }
}
