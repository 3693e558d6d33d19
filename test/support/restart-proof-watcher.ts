/**
 * Reads a reply queue across broker restarts: its own recovering connection consumes again after
 * each reconnect. It acks each reply (an auto-acked reply in the socket when the broker stops would
 * be gone for good and look like a lost input), so after a restart the broker may hand it a reply
 * it already read again: those carry `redelivered` and a message id it has seen, and are not
 * counted. A reply published twice by the consumer is a new message and is counted.
 */
import * as amqp from 'amqplib';
import { ReplyLog, type Arrival } from './faults.js';

export type WatchedReply = Arrival;

export class RestartProofWatcher extends ReplyLog {
  private readonly seenMessageIds = new Set<string>();
  private constructor(private readonly connection: amqp.RecoveringChannelModel) {
    super();
  }

  static async start(
    url: string,
    queue: string,
    queueType: 'quorum' | 'classic' = 'quorum',
  ): Promise<RestartProofWatcher> {
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
    this.record(m);
  }
}
