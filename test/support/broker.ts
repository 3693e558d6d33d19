/** The real broker, for tests: unique names, a client that publishes and counts replies per id, cleanup. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as amqp from 'amqplib';

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';

export function uniqueName(prefix: string): string {
  return `test.${prefix}.${process.pid}.${randomBytes(4).toString('hex')}`;
}

/** The three queues a consumer on `input` declares. */
export function queuesOf(input: string, reply: string): string[] {
  return [input, `${input}.dead`, reply];
}

export interface ReceivedReply {
  correlationId?: string;
  status?: string;
  headers: Record<string, unknown>;
  body: string;
  /** The reply's bytes and contentType as they came (binary replies). */
  content: Buffer;
  contentType?: string;
  json(): unknown;
}

export interface PublishOptions {
  correlationId?: string;
  messageId?: string;
  replyTo?: string;
  contentType?: string;
  headers?: Record<string, unknown>;
  /** AMQP timestamp, seconds. */
  timestamp?: number;
  /** AMQP per-message TTL, ms. */
  expiration?: string;
  priority?: number;
}

/** One connection for the test's side: publish with confirms, read replies, delete queues. */
export class TestClient {
  private constructor(
    readonly connection: amqp.ChannelModel,
    readonly channel: amqp.ConfirmChannel,
  ) {}

  static async connect(url = AMQP_URL): Promise<TestClient> {
    const connection = await amqp.connect(url);
    connection.on('error', () => {});
    const channel = await connection.createConfirmChannel();
    channel.on('error', () => {});
    return new TestClient(connection, channel);
  }

  /** Publishes and waits for the broker's confirm. `body` goes as-is when a Buffer, else as JSON. */
  async publish(queue: string, body: Buffer | string | object, options: PublishOptions = {}): Promise<void> {
    const content = Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    this.channel.sendToQueue(queue, content, { persistent: true, ...options });
    await this.channel.waitForConfirms();
  }

  /** Publishes many without waiting on each confirm, honouring back-pressure. */
  async publishMany(
    queue: string,
    items: Array<{ body: Buffer | string | object; options?: PublishOptions }>,
  ): Promise<void> {
    for (const { body, options } of items) {
      const content = Buffer.isBuffer(body)
        ? body
        : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      if (!this.channel.sendToQueue(queue, content, { persistent: true, ...options })) {
        await new Promise((r) => this.channel.once('drain', r));
      }
    }
    await this.channel.waitForConfirms();
  }

  /** Collects replies from `queue` until `done(replies)` says so or `timeoutMs` passes; acks each. */
  async collect(
    queue: string,
    done: (replies: ReceivedReply[]) => boolean,
    timeoutMs = 30_000,
  ): Promise<ReceivedReply[]> {
    const ch = await this.connection.createChannel();
    ch.on('error', () => {});
    const replies: ReceivedReply[] = [];
    return new Promise<ReceivedReply[]>((resolve) => {
      let consumerTag: string | undefined;
      const finish = () => {
        clearTimeout(timer);
        if (consumerTag) void ch.cancel(consumerTag).catch(() => {});
        void ch.close().catch(() => {});
        resolve(replies);
      };
      const timer = setTimeout(finish, timeoutMs);
      void ch
        .consume(
          queue,
          (m) => {
            if (!m) return;
            const body = m.content.toString();
            replies.push({
              correlationId: m.properties.correlationId,
              status: m.properties.headers?.['x-status'],
              headers: m.properties.headers ?? {},
              body,
              content: m.content,
              contentType: m.properties.contentType,
              json: () => JSON.parse(body),
            });
            if (done(replies)) finish();
          },
          { noAck: true },
        )
        .then(
          (r) => (consumerTag = r.consumerTag),
          () => finish(),
        );
    });
  }

  /**
   * Publishes every item at once (so they can share a batch), reads `replyQueue` until each id has a
   * reply or `timeoutMs` passes, asserts that every id got exactly one, and returns it per id. An item
   * goes with `options` when given, else with its id as the correlation id.
   */
  async ask(
    input: string,
    replyQueue: string,
    items: ReadonlyArray<{ id: string; body: Buffer | string | object; options?: PublishOptions }>,
    timeoutMs = 30_000,
  ): Promise<Map<string, ReceivedReply>> {
    const ids = items.map(({ id }) => id);
    await this.publishMany(
      input,
      items.map(({ id, body, options }) => ({ body, options: options ?? { correlationId: id } })),
    );
    const got = await this.collect(replyQueue, (rs) => tally(ids, rs).missing.length === 0, timeoutMs);
    const { missing, duplicated } = tally(ids, got);
    assert.deepEqual(missing, [], 'every input answered');
    assert.equal(duplicated, 0, 'no input answered twice');
    return new Map(got.map((r) => [r.correlationId!, r]));
  }

  async messageCount(queue: string): Promise<number> {
    const ch = await this.connection.createChannel();
    ch.on('error', () => {});
    try {
      return (await ch.checkQueue(queue)).messageCount;
    } finally {
      await ch.close().catch(() => {});
    }
  }

  /** Declares `queue` full (one message, `x-overflow: reject-publish`): the broker nacks everything published to it. */
  async refusingQueue(queue: string): Promise<void> {
    const ch = await this.connection.createChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } });
    await ch.close();
    await this.publish(queue, { filler: true });
  }

  /** Deletes queues, ignoring ones that are already gone. */
  async deleteQueues(...queues: string[]): Promise<void> {
    for (const q of queues) {
      const ch = await this.connection.createChannel();
      ch.on('error', () => {});
      await ch.deleteQueue(q).catch(() => {});
      await ch.close().catch(() => {});
    }
  }

  async close(): Promise<void> {
    await this.connection.close().catch(() => {});
  }
}

/** Replies counted per correlation id: how many ids got none, how many got more than one. */
export function tally(
  ids: readonly string[],
  replies: readonly ReceivedReply[],
): { missing: string[]; duplicated: number; counts: Map<string, number> } {
  const counts = new Map<string, number>(ids.map((id) => [id, 0]));
  for (const r of replies)
    if (r.correlationId && counts.has(r.correlationId)) counts.set(r.correlationId, counts.get(r.correlationId)! + 1);
  const missing = ids.filter((id) => counts.get(id) === 0);
  const duplicated = [...counts.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
  return { missing, duplicated, counts };
}
