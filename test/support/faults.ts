/**
 * Tools for the fault suite: a run under watch (its own queues, reply watcher and consumers), a consumer
 * stopped mid-stream and another taking over, numbered messages, a reply watcher that counts replies per
 * correlation id with arrival times, cutting a consumer's broker connections with rabbitmqctl, and the
 * RSS of a process.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import type * as amqp from 'amqplib';
import { TestClient, queuesOf, uniqueName, type PublishOptions } from './broker.js';
import { TestConsumers, type ConsumerProcess } from './consumer-process.js';

const run = promisify(execFile);

export interface Arrival {
  correlationId: string;
  status?: string;
  errorCode?: string;
  /** x-dead-letter-queue, on POISON replies. */
  deadLetterQueue?: string;
  body: string;
  /** The reply's own message id: two copies of one reply share it, a second reply has another. */
  messageId?: string;
  /** Date.now() when the test received it. */
  at: number;
}

/**
 * The replies a watcher has read, counted per correlation id with their arrival times, and waits on
 * them. ReplyWatcher and RestartProofWatcher read the queue each in their own way and record here.
 */
export class ReplyLog {
  readonly arrivals: Arrival[] = [];
  readonly counts = new Map<string, number>();
  private waiters: Array<() => void> = [];

  /** How many distinct ids of `ids` have at least one reply. */
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

  /** Replies per id: the ids with none, how many replies beyond the first in all, and the ids answered more than once. */
  tally(ids: readonly string[]): { missing: string[]; duplicated: number; duplicatedIds: string[] } {
    const missing = ids.filter((id) => !this.counts.get(id));
    const duplicatedIds = [...new Set(ids)].filter((id) => (this.counts.get(id) ?? 0) > 1);
    const duplicated = duplicatedIds.reduce((n, id) => n + this.counts.get(id)! - 1, 0);
    return { missing, duplicated, duplicatedIds };
  }

  /** The replies for one id, oldest first. */
  of(id: string): Arrival[] {
    return this.arrivals.filter((a) => a.correlationId === id);
  }

  /** Resolves once no reply has arrived for `ms`. */
  async quiet(ms: number): Promise<void> {
    for (;;) {
      const seen = this.arrivals.length;
      await new Promise((r) => setTimeout(r, ms));
      if (this.arrivals.length === seen) return;
    }
  }

  /** Records a reply read from the queue (ignored without a correlation id). */
  protected record(m: amqp.ConsumeMessage): void {
    const id = m.properties.correlationId as string | undefined;
    if (!id) return;
    const headers = m.properties.headers ?? {};
    this.arrivals.push({
      correlationId: id,
      status: headers['x-status'] as string | undefined,
      errorCode: headers['x-error-code'] as string | undefined,
      deadLetterQueue: headers['x-dead-letter-queue'] as string | undefined,
      body: m.content.toString(),
      messageId: (m.properties.messageId as string | undefined) || undefined,
      at: Date.now(),
    });
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    for (const w of [...this.waiters]) w();
  }
}

/**
 * Reads a reply queue from now until stop(), counting replies per correlation id. Unlike
 * TestClient.collect it keeps running across waits, so a test can wait, act, and wait again.
 */
export class ReplyWatcher extends ReplyLog {
  private constructor(
    private readonly channel: amqp.Channel,
    private readonly consumerTag: string,
  ) {
    super();
  }

  /** Declares `queue` as the consumer would (durable, of `queueType`), so replies published before the consumer is up are kept. */
  static async start(
    client: TestClient,
    queue: string,
    queueType: 'quorum' | 'classic' = 'quorum',
  ): Promise<ReplyWatcher> {
    // On a throwaway channel: a queue declared with other arguments fails the declaration and closes its channel.
    const declare = await client.connection.createChannel();
    declare.on('error', () => {});
    await declare.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType } }).catch(() => {});
    await declare.close().catch(() => {});
    const ch = await client.connection.createChannel();
    ch.on('error', () => {});
    let watcher!: ReplyWatcher;
    const pending: amqp.ConsumeMessage[] = [];
    const { consumerTag } = await ch.consume(
      queue,
      (m) => {
        if (!m) return;
        if (watcher) watcher.record(m);
        else pending.push(m);
      },
      { noAck: true },
    );
    watcher = new ReplyWatcher(ch, consumerTag);
    for (const m of pending) watcher.record(m);
    return watcher;
  }

  async stop(): Promise<void> {
    await this.channel.cancel(this.consumerTag).catch(() => {});
    await this.channel.close().catch(() => {});
  }
}

/**
 * One fault run on the shared broker: its own client, input and reply queues (`<name>…`,
 * `<name>.replies…`) with a watcher on the replies, and the consumers started on them, each
 * connecting as `<name>.conn…` (CONNECTION_NAME). close() kills the consumers and deletes the queues.
 */
export class WatchedRun {
  readonly consumers = new TestConsumers();
  readonly input: string;
  readonly replies: string;
  readonly connectionName: string;

  private constructor(
    readonly client: TestClient,
    readonly watcher: ReplyWatcher,
    queues: { input: string; replies: string },
    connectionName: string,
    private readonly env: Record<string, string>,
  ) {
    this.input = queues.input;
    this.replies = queues.replies;
    this.connectionName = connectionName;
  }

  /** `env`: settings of every consumer of this run; `queueType`: of the reply queue the watcher declares. */
  static async open(
    name: string,
    options: { env?: Record<string, string>; queueType?: 'quorum' | 'classic' } = {},
  ): Promise<WatchedRun> {
    const client = await TestClient.connect();
    const queues = { input: uniqueName(name), replies: uniqueName(`${name}.replies`) };
    const watcher = await ReplyWatcher.start(client, queues.replies, options.queueType);
    return new WatchedRun(client, watcher, queues, uniqueName(`${name}.conn`), options.env ?? {});
  }

  /** Starts a consumer of this run's queues; `env` adds to the run's settings. */
  start(env: Record<string, string> = {}): ConsumerProcess {
    return this.consumers.start({
      INPUT_QUEUE: this.input,
      REPLY_QUEUE: this.replies,
      CONNECTION_NAME: this.connectionName,
      ...this.env,
      ...env,
    });
  }

  async close(): Promise<void> {
    await this.consumers.stopAll('SIGKILL');
    await this.watcher.stop();
    await this.client.deleteQueues(...queuesOf(this.input, this.replies));
    await this.client.close();
  }
}

/**
 * The first half of a stop-and-restart run: a consumer takes `items` as they are published, and once
 * `share` of them are answered it is sent `signal`. Resolves when it has exited and every item is
 * published, with its exit code (or signal), when it was signalled and how many ids were answered by then.
 */
export async function stopMidStream(
  run: WatchedRun,
  items: Array<{ body: Buffer | string | object; options: PublishOptions }>,
  share: number,
  signal: NodeJS.Signals,
): Promise<{ consumer: ConsumerProcess; exit: number | string; signalledAt: number; answered: number }> {
  const { watcher } = run;
  const consumer = run.start();
  await consumer.waitFor('"msg":"consuming"');
  const published = run.client.publishMany(run.input, items);
  assert.ok(
    await watcher.waitUntil(() => watcher.arrivals.length >= items.length * share, 30_000),
    `the first consumer answered ${Math.round(share * 100)}% of the inputs`,
  );
  consumer.child.kill(signal);
  const signalledAt = Date.now();
  const exit = await consumer.exited;
  const answered = watcher.answered(idsOf(items));
  await published;
  return { consumer, exit, signalledAt, answered };
}

/**
 * The second half: another consumer on the run's queues answers what is left. Asserts that every id is
 * answered within `timeoutMs`, then waits for the replies to go quiet (a redelivered input may be
 * answered a second time after the last first answer). Resolves with when the new consumer was consuming.
 */
export async function restartUntilAnswered(
  run: WatchedRun,
  ids: readonly string[],
  timeoutMs: number,
): Promise<number> {
  const { watcher } = run;
  const consumer = run.start();
  await consumer.waitFor('"msg":"consuming"');
  const consumingAt = Date.now();
  assert.ok(
    await watcher.waitAll(ids, timeoutMs),
    `every input answered after the restart (${watcher.answered(ids)} of ${ids.length})`,
  );
  await watcher.quiet(1000);
  return consumingAt;
}

/** N messages with unique correlation ids `<prefix>-<i>`; the body defaults to one iris row. */
export function numbered(
  prefix: string,
  n: number,
  body: (i: number) => Buffer | string | object = () => IRIS_ROW,
): Array<{ body: Buffer | string | object; options: PublishOptions }> {
  return Array.from({ length: n }, (_, i) => ({ body: body(i), options: { correlationId: `${prefix}-${i}` } }));
}

export const IRIS_ROW = { data: [[5.1, 3.5, 1.4, 0.2]] };

export function idsOf(items: ReadonlyArray<{ options: PublishOptions }>): string[] {
  return items.map((it) => it.options.correlationId!);
}

/** Publishes `items` at about `perSecond`, in slices every 20 ms, so a run lasts long enough to be cut. */
export async function publishPaced(
  client: TestClient,
  queue: string,
  items: ReadonlyArray<{ body: Buffer | string | object; options?: PublishOptions }>,
  perSecond: number,
): Promise<void> {
  const sliceMs = 20;
  const perSlice = Math.max(1, Math.round((perSecond * sliceMs) / 1000));
  const started = Date.now();
  for (let at = 0, slice = 0; at < items.length; at += perSlice, slice++) {
    await client.publishMany(queue, items.slice(at, at + perSlice));
    const wait = started + (slice + 1) * sliceMs - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * Publishes numbered messages `<prefix>-<i>` at about `perSecond` until stop(), for runs whose length
 * is set by what happens during them (cuts) rather than by a count. Records when each was published.
 */
export function publishStream(
  client: TestClient,
  queue: string,
  prefix: string,
  perSecond: number,
  body: (i: number) => Buffer | string | object = () => IRIS_ROW,
): { ids: string[]; publishedAt: Map<string, number>; stop(): Promise<void> } {
  const ids: string[] = [];
  const publishedAt = new Map<string, number>();
  const sliceMs = 20;
  const perSlice = Math.max(1, Math.round((perSecond * sliceMs) / 1000));
  let stopping = false;
  const loop = (async () => {
    const started = Date.now();
    for (let slice = 0; !stopping; slice++) {
      const items = Array.from({ length: perSlice }, () => {
        const i = ids.length;
        const id = `${prefix}-${i}`;
        ids.push(id);
        publishedAt.set(id, Date.now());
        return { body: body(i), options: { correlationId: id } };
      });
      await client.publishMany(queue, items);
      const wait = started + (slice + 1) * sliceMs - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  return {
    ids,
    publishedAt,
    async stop() {
      stopping = true;
      await loop;
    },
  };
}

export interface BrokerConnection {
  pid: string;
  connectionName: string;
}

/** The broker's connections whose client-given name starts with `namePrefix` (`<CONNECTION_NAME>/consume`, `/publish`). */
export async function connectionsNamed(namePrefix: string): Promise<BrokerConnection[]> {
  const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q'], {
    timeout: 30_000,
  });
  const found: BrokerConnection[] = [];
  for (const line of stdout.split('\n')) {
    const pid = /^(<[^>]+>)/.exec(line)?.[1];
    const name = /\{"connection_name","((?:[^"\\]|\\.)*)"\}/.exec(line)?.[1];
    if (pid && name?.startsWith(namePrefix)) found.push({ pid, connectionName: name });
  }
  return found;
}

/** Closes every connection named `<namePrefix>...` from the broker side; returns the names cut. */
export async function cutConnections(namePrefix: string, reason = 'test cut'): Promise<string[]> {
  return closeConnections(await connectionsNamed(namePrefix), reason);
}

/** Closes the given connections from the broker side, all at once; returns their names. */
export async function closeConnections(conns: readonly BrokerConnection[], reason = 'test cut'): Promise<string[]> {
  await Promise.all(
    conns.map((c) => run('rabbitmqctl', ['close_connection', c.pid, reason], { timeout: 30_000 }).catch(() => {})),
  );
  return conns.map((c) => c.connectionName);
}

/** Polls rabbitmqctl until at least `count` connections named `namePrefix...` exist, and returns them. */
export async function awaitConnections(
  namePrefix: string,
  count: number,
  timeoutMs: number,
): Promise<BrokerConnection[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const conns = await connectionsNamed(namePrefix);
    if (conns.length >= count) return conns;
    if (Date.now() > deadline)
      throw new Error(`${conns.length} of ${count} connections named ${namePrefix}* after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The resident set size of a process in MiB (VmRSS in /proc), or undefined once it has gone. */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples a process's RSS every `everyMs` until stop(). The sampling runs in a worker thread, so a
 * busy test (publishing a flood) does not skip samples.
 */
export function sampleRss(
  pid: number,
  everyMs = 20,
): { stop(): Promise<{ startMiB: number; peakMiB: number; endMiB: number; samples: number }> } {
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const { readFileSync } = require('node:fs');
    const read = () => {
      try {
        const m = /^VmRSS:\\s+(\\d+)\\s+kB/m.exec(readFileSync('/proc/' + workerData.pid + '/status', 'utf8'));
        return m ? Number(m[1]) / 1024 : undefined;
      } catch { return undefined; }
    };
    let samples = 0, peakMiB = 0, endMiB = 0;
    const take = () => { const v = read(); if (v === undefined) return; samples++; endMiB = v; if (v > peakMiB) peakMiB = v; };
    take();
    const startMiB = endMiB;
    const timer = setInterval(take, workerData.everyMs);
    parentPort.on('message', () => { clearInterval(timer); take(); parentPort.postMessage({ startMiB, peakMiB, endMiB, samples }); parentPort.close(); });
    `,
    { eval: true, workerData: { pid, everyMs } },
  );
  return {
    async stop() {
      worker.postMessage('stop');
      const [result] = (await once(worker, 'message')) as [
        { startMiB: number; peakMiB: number; endMiB: number; samples: number },
      ];
      await worker.terminate();
      return result;
    },
  };
}

/** Log lines (pino JSON) of a consumer's output with the given msg, parsed. */
export function logLines(output: string, msg: string): Array<Record<string, unknown> & { time: number }> {
  const out: Array<Record<string, unknown> & { time: number }> = [];
  for (const line of output.split('\n')) {
    if (!line.includes(`"msg":"${msg}"`)) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown> & { time: number });
    } catch {
      // a partial line at the end of the buffer
    }
  }
  return out;
}

/** Prints a figure both to the test's diagnostics (TAP) and to the console. */
export function report(t: { diagnostic(message: string): void }, message: string): void {
  t.diagnostic(message);
  console.log(message);
}
