/**
 * Reads a reply queue across broker restarts: its own recovering connection consumes again after
 * each reconnect. It acks each reply (an auto-acked reply in the socket when the broker stops would
 * be gone for good and look like a lost input), so after a restart the broker may hand it a reply
 * it already read again: those carry `redelivered` and a message id it has seen, and are not
 * counted. A reply published twice by the consumer is a new message and is counted.
 */
import * as amqp from 'amqplib';

export interface WatchedReply {
  correlationId: string;
  status?: string;
  body: string;
  /** Date.now() when the test received it. */
  at: number;
}

export class RestartProofWatcher {
  readonly arrivals: WatchedReply[] = [];
  readonly counts = new Map<string, number>();
  private readonly seenMessageIds = new Set<string>();
  private waiters: Array<() => void> = [];
  private constructor(private readonly connection: amqp.RecoveringChannelModel) {}

  static async start(url: string, queue: string, queueType: 'quorum' | 'classic' = 'quorum'): Promise<RestartProofWatcher> {
    let watcher: RestartProofWatcher | undefined;
    const early: amqp.ConsumeMessage[] = [];
    const connection = await amqp.connect(url, {
      recovery: {
        initialDelay: 100,
        maxDelay: 500,
        factor: 2,
        jitter: 0,
        maxRetries: Infinity,
        initialMaxRetries: 0,
        setup: async (model: amqp.ChannelModel) => {
          const ch = await model.createChannel();
          ch.on('error', () => {});
          await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType } });
          await ch.prefetch(2000);
          await ch.consume(queue, (m) => {
            if (!m) return;
            if (watcher) watcher.onMessage(m);
            else early.push(m);
            ch.ack(m);
          });
        },
      },
    });
    connection.on('error', () => {});
    watcher = new RestartProofWatcher(connection);
    for (const m of early) watcher.onMessage(m);
    return watcher;
  }

  answered(ids: readonly string[]): number {
    let n = 0;
    for (const id of ids) if ((this.counts.get(id) ?? 0) > 0) n++;
    return n;
  }

  /** Resolves true once `predicate()` holds, false after `timeoutMs`. */
  waitUntil(predicate: () => boolean, timeoutMs: number): Promise<boolean> {
    if (predicate()) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const check = () => {
        if (!predicate()) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(false);
      }, timeoutMs);
      this.waiters.push(check);
    });
  }

  /** Every id answered at least once (true), or timeoutMs passed (false). */
  waitAll(ids: readonly string[], timeoutMs: number): Promise<boolean> {
    // The full count only once enough distinct ids have replies: counting on every arrival is O(N²) and
    // starves the test process (its timers, its /readyz polls) at N = 20,000.
    return this.waitUntil(() => this.counts.size >= ids.length && this.answered(ids) === ids.length, timeoutMs);
  }

  /** The ids with no reply, and the replies beyond the first in all. */
  tally(ids: readonly string[]): { missing: string[]; duplicated: number } {
    const missing = ids.filter((id) => !this.counts.get(id));
    const duplicated = ids.reduce((n, id) => n + Math.max(0, (this.counts.get(id) ?? 0) - 1), 0);
    return { missing, duplicated };
  }

  /** Resolves once no reply has arrived for `ms`. */
  async quiet(ms: number): Promise<void> {
    for (;;) {
      const seen = this.arrivals.length;
      await new Promise((r) => setTimeout(r, ms));
      if (this.arrivals.length === seen) return;
    }
  }

  async stop(): Promise<void> {
    await this.connection.close().catch(() => {});
  }

  private onMessage(m: amqp.ConsumeMessage): void {
    const id = m.properties.correlationId as string | undefined;
    const messageId = m.properties.messageId as string | undefined;
    if (!id) return;
    if (messageId) {
      // The same reply handed to us again after a reconnect: we read it before the broker went down.
      if (m.fields.redelivered && this.seenMessageIds.has(messageId)) return;
      this.seenMessageIds.add(messageId);
    }
    this.arrivals.push({ correlationId: id, status: m.properties.headers?.['x-status'] as string | undefined, body: m.content.toString(), at: Date.now() });
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    for (const w of [...this.waiters]) w();
  }
}
