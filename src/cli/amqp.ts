/**
 * The CLI's side of the broker, and the only file under src/cli/ that knows amqplib. One connection
 * without recovery: a batch run that loses the broker stops, and `--resume` is its recovery.
 */
import * as amqp from 'amqplib';
import { redactUrl } from '../config.js';

export interface ReplyMessage {
  correlationId?: string;
  contentType?: string;
  headers: Record<string, unknown>;
  body: Buffer;
}

export interface Published {
  correlationId: string;
  replyTo: string;
  /** Default application/json; a file's own type for binary payloads. */
  contentType?: string;
  headers?: Record<string, unknown>;
}

/** An abandoned run's reply queue removes itself after a week unused (no consumer, not declared again). */
const RUN_QUEUE_EXPIRES_MS = 7 * 24 * 3600 * 1000;

export class CliBroker {
  private lost: ((reason: string) => void) | undefined;
  private closing = false;

  private constructor(
    private readonly connection: amqp.ChannelModel,
    private readonly publisher: amqp.ConfirmChannel,
  ) {
    const onLost = (why: string) => {
      if (!this.closing) this.lost?.(why);
    };
    connection.on('error', (err: Error) => onLost(`broker connection error: ${err.message}`));
    connection.on('close', () => onLost('broker connection closed'));
    publisher.on('error', (err: Error) => onLost(`broker channel error: ${err.message}`));
  }

  static async connect(url: string, connectionName: string): Promise<CliBroker> {
    let connection: amqp.ChannelModel;
    try {
      // noDelay: without it Nagle holds each small get, publish and ack ~40 ms (NOTES), and dead-letters waits on one at a time.
      connection = await amqp.connect(url, { clientProperties: { connection_name: connectionName }, noDelay: true });
    } catch (err) {
      throw new Error(`broker ${redactUrl(url)} unreachable: ${(err as Error).message}`);
    }
    connection.on('error', () => {});
    const publisher = await connection.createConfirmChannel();
    return new CliBroker(connection, publisher);
  }

  /** Called once if the connection or the publishing channel dies before close(). */
  onLost(handler: (reason: string) => void): void {
    this.lost = handler;
  }

  /** A publish the broker could not route (returned under `mandatory`). */
  onReturn(
    handler: (correlationId: string | undefined, routingKey: string, messageId: string | undefined) => void,
  ): void {
    this.publisher.on('return', (m: amqp.Message) =>
      handler(m.properties.correlationId, m.fields.routingKey, m.properties.messageId),
    );
  }

  /** The queue's message count, or undefined when it does not exist. Passive, on a throwaway channel. */
  async queueDepth(queue: string): Promise<number | undefined> {
    return this.onThrowawayChannel((ch) =>
      ch.checkQueue(queue).then(
        (q) => q.messageCount,
        () => undefined,
      ),
    );
  }

  /** A queue the consumer declares must be there before anything is sent to it; `hint`: what else the user can do. */
  async requireQueue(queue: string, hint = ''): Promise<void> {
    if ((await this.queueDepth(queue)) === undefined)
      throw new Error(`queue '${queue}' does not exist: start a consumer first (it declares the queue)${hint}`);
  }

  /** A durable queue of our own for one run's replies: it outlives the CLI, so an interrupted run can resume. */
  async declareRunQueue(queue: string): Promise<void> {
    await this.onThrowawayChannel((ch) =>
      ch.assertQueue(queue, {
        durable: true,
        arguments: { 'x-queue-type': 'classic', 'x-expires': RUN_QUEUE_EXPIRES_MS },
      }),
    );
  }

  async deleteQueue(queue: string): Promise<void> {
    await this.onThrowawayChannel((ch) => ch.deleteQueue(queue).catch(() => {}));
  }

  /** One queue operation on a channel of its own: a failing check or declare closes that channel, not ours. */
  private async onThrowawayChannel<T>(op: (ch: amqp.Channel) => Promise<T>): Promise<T> {
    const ch = await this.connection.createChannel();
    ch.on('error', () => {});
    try {
      return await op(ch);
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /** False when the channel's buffer is full: wait for drain() before the next. */
  publish(queue: string, body: Buffer, p: Published): boolean {
    return this.publisher.sendToQueue(queue, body, {
      persistent: true,
      mandatory: true,
      contentType: p.contentType ?? 'application/json',
      ...(p.headers ? { headers: p.headers } : {}),
      correlationId: p.correlationId,
      messageId: p.correlationId,
      replyTo: p.replyTo,
      timestamp: Math.floor(Date.now() / 1000),
    });
  }

  /**
   * Any message, as `dead-letters` copies and answers them: false when the channel's buffer is full
   * (wait for drain()). `mandatory` brings an unroutable one back through onReturn.
   */
  publishMessage(routingKey: string, body: Buffer, properties: amqp.Options.Publish, mandatory: boolean): boolean {
    return this.publisher.sendToQueue(routingKey, body, { ...properties, mandatory });
  }

  /** A channel that takes a queue's messages one at a time (basic.get, manual ack). */
  async reader(queue: string): Promise<QueueReader> {
    const ch = await this.connection.createChannel();
    ch.on('error', (err: Error) => {
      if (!this.closing) this.lost?.(`reader channel error: ${err.message}`);
    });
    return new QueueReader(ch, queue);
  }

  drain(): Promise<void> {
    return new Promise((resolve) => this.publisher.once('drain', () => resolve()));
  }

  /** Resolves when the broker has confirmed every publish so far; rejects on a nack. */
  waitForConfirms(): Promise<void> {
    return this.publisher.waitForConfirms();
  }

  /**
   * Consumes `queue` with manual acks and at most `prefetch` unacked replies. The handler gets an
   * `ack` to call once the reply is safely written: until then the broker keeps it for a later run.
   */
  async consumeReplies(
    queue: string,
    prefetch: number,
    handler: (reply: ReplyMessage, ack: () => void) => void,
  ): Promise<void> {
    const ch = await this.connection.createChannel();
    ch.on('error', (err: Error) => {
      if (!this.closing) this.lost?.(`reply channel error: ${err.message}`);
    });
    await ch.prefetch(prefetch);
    await ch.consume(queue, (m) => {
      if (!m) {
        if (!this.closing) this.lost?.(`reply queue ${queue} was deleted`);
        return;
      }
      handler(toReply(m), () => {
        try {
          ch.ack(m);
        } catch {
          // the channel has closed: the broker requeued the reply, and a resumed run drops it as a duplicate
        }
      });
    });
  }

  /**
   * One request and its reply over direct reply-to (`amq.rabbitmq.reply-to`): no queue to declare or
   * delete. At-most-once, which is fine for one interactive request.
   */
  async request(
    queue: string,
    body: Buffer,
    correlationId: string,
    timeoutMs: number,
    extra: Pick<Published, 'contentType' | 'headers'> = {},
  ): Promise<ReplyMessage | undefined> {
    const DIRECT = 'amq.rabbitmq.reply-to';
    return new Promise<ReplyMessage | undefined>((resolve, reject) => {
      const timer = setTimeout(() => resolve(undefined), timeoutMs);
      const fail = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      this.lost = (why) => fail(new Error(why));
      this.onReturn(() =>
        fail(new Error(`queue '${queue}' does not exist: start a consumer first (it declares the queue)`)),
      );
      void this.publisher
        .consume(
          DIRECT,
          (m) => {
            if (m && m.properties.correlationId === correlationId) {
              clearTimeout(timer);
              resolve(toReply(m));
            }
          },
          { noAck: true },
        )
        .then(() => {
          this.publish(queue, body, { correlationId, replyTo: DIRECT, ...extra });
          return this.waitForConfirms();
        })
        .catch(fail);
    });
  }

  /** Unacked replies go back to their queue for the next run. */
  async close(): Promise<void> {
    this.closing = true;
    await this.connection.close().catch(() => {});
  }
}

export interface Taken {
  body: Buffer;
  properties: amqp.MessageProperties;
  redelivered: boolean;
  /** The message itself, for ack and requeue. */
  readonly raw: amqp.GetMessage;
}

/**
 * basic.get and its acks on one channel: a message is taken only when asked for, so none is held beyond
 * those in hand. No requeue: a quorum queue (3.10.8) puts a nacked basic.get message at its tail.
 */
export class QueueReader {
  constructor(
    private readonly ch: amqp.Channel,
    private readonly queue: string,
  ) {}

  async get(): Promise<Taken | undefined> {
    const m = await this.ch.get(this.queue, { noAck: false });
    if (!m) return undefined;
    return { body: m.content, properties: m.properties, redelivered: m.fields.redelivered, raw: m };
  }

  /** Acks `last` and every message taken before it on this channel. */
  ackThrough(last: Taken): void {
    this.ch.ack(last.raw, true);
  }

  async close(): Promise<void> {
    await this.ch.close().catch(() => {});
  }
}

function toReply(m: amqp.ConsumeMessage): ReplyMessage {
  return {
    correlationId: m.properties.correlationId || undefined,
    contentType: m.properties.contentType || undefined,
    headers: m.properties.headers ?? {},
    body: m.content,
  };
}
