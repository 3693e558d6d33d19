/**
 * The consumer as users run it: a separate process started from src/main.ts, with its own environment;
 * the consumers a test file starts, kept together to be stopped together; the one line of a failed boot.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AMQP_URL, queuesOf, uniqueName, TestClient } from './broker.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ConsumerProcess {
  child: ChildProcess;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Only what it wrote to stderr so far (boot failures; the logs go to stdout). */
  stderr(): string;
  /** Resolves when a log line contains `text` (rejects after timeoutMs). */
  waitFor(text: string, timeoutMs?: number): Promise<void>;
  /** Sends a signal and resolves with the exit code (or signal). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  exited: Promise<number | string>;
  /** Like `exited`, but once stdout and stderr are read to the end too: use it before reading the last output. */
  closed: Promise<number | string>;
}

export interface StartOptions {
  cwd?: string;
  /** Another script to run the same way (the benchmark's baseline consumers); default src/main.ts. */
  script?: string;
  /** Extra node flags before the script, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Run `script` with this program instead of node (the benchmark's pika baseline: a python3). */
  command?: string;
  /** A program and its arguments that run node in turn (the benchmark's `valgrind --tool=callgrind`). */
  wrapper?: string[];
}

export function startConsumer(env: Record<string, string>, options: StartOptions = {}): ConsumerProcess {
  // node itself, not the tsx wrapper: a SIGKILL must reach the consumer, not a parent that leaves it running.
  const argv = options.command
    ? [options.script!]
    : [...(options.nodeArgs ?? []), '--import', 'tsx', options.script ?? 'src/main.ts'];
  const [program, ...args] = options.wrapper
    ? [...options.wrapper, process.execPath, ...argv]
    : [options.command ?? process.execPath, ...argv];
  const child = spawn(program, args, {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, AMQP_URL, HTTP_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  const onData = (chunk: Buffer) => {
    out += chunk.toString();
    for (const w of [...waiters])
      if (out.includes(w.text)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const closed = once(child, 'close').then(([code, signal]) => (code ?? signal) as number | string);
  return {
    child,
    output: () => out,
    stderr: () => err,
    exited,
    closed,
    // Generous: a consumer boots a model and its isolates, and CI machines run several test files at once.
    waitFor(text, timeoutMs = 90_000) {
      if (out.includes(text)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(new Error(`consumer did not log "${text}" within ${timeoutMs} ms; output:\n${out.slice(-3000)}`)),
          timeoutMs,
        );
        waiters.push({
          text,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`consumer exited (${code}) before logging "${text}"; output:\n${out.slice(-3000)}`));
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** The one plain line of a consumer that must fail at boot, after checking it exits 1, with that line the only one besides the JSON logs and no stack trace. */
export async function bootFailure(c: ConsumerProcess): Promise<string> {
  assert.equal(await c.exited, 1, 'boot fails with exit code 1');
  const plain = c
    .output()
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('{'));
  assert.equal(plain.length, 1, `one line besides the JSON logs, got:\n${plain.join('\n')}`);
  assert.ok(!/^\s+at /m.test(c.output()), 'no stack trace');
  return plain[0];
}

export interface ConsumerQueues {
  input: string;
  replies: string;
}

/**
 * The consumers a test file starts and the queues it names for them, so that its after() stops and
 * deletes them all in one call.
 */
export class TestConsumers {
  private readonly started: ConsumerProcess[] = [];
  private readonly queues: string[] = [];

  /** Unique input and reply queue names (`<prefix>…`, `<prefix>.replies…`), deleted by close() with the input's dead-letter queue. */
  queuesFor(prefix: string): ConsumerQueues {
    const q = { input: uniqueName(prefix), replies: uniqueName(`${prefix}.replies`) };
    this.queues.push(...queuesOf(q.input, q.replies));
    return q;
  }

  /** Starts a consumer as startConsumer does; stopped by stopAll() and close(). */
  start(env: Record<string, string>, options?: StartOptions): ConsumerProcess {
    const c = startConsumer(env, options);
    this.started.push(c);
    return c;
  }

  /** Starts a consumer of `q` (INPUT_QUEUE, REPLY_QUEUE), `env` added. */
  startOn(q: ConsumerQueues, env: Record<string, string> = {}, options?: StartOptions): ConsumerProcess {
    return this.start({ INPUT_QUEUE: q.input, REPLY_QUEUE: q.replies, ...env }, options);
  }

  /** Resolves once every consumer started so far has logged that it is consuming. */
  async allConsuming(timeoutMs?: number): Promise<void> {
    await Promise.all(this.started.map((c) => c.waitFor('"msg":"consuming"', timeoutMs)));
  }

  /** Stops every consumer started with `signal` (one already gone is left as it is); their exit codes. */
  stopAll(signal: NodeJS.Signals = 'SIGKILL'): Promise<Array<number | string>> {
    return Promise.all(this.started.map((c) => c.stop(signal)));
  }

  /** stopAll(signal), then deletes the queues named by queuesFor() through `client`. */
  async close(client: TestClient | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.stopAll(signal);
    if (this.queues.length > 0) await client?.deleteQueues(...this.queues);
  }
}

/**
 * A test file's broker client and consumers: the client connected before the file's tests; after them,
 * the consumers stopped, their queues deleted and the client closed.
 */
export function consumersOfFile(): { readonly consumers: TestConsumers; readonly client: TestClient } {
  const consumers = new TestConsumers();
  let client: TestClient | undefined;
  before(async () => {
    client = await TestClient.connect();
  });
  after(async () => {
    await consumers.close(client);
    await client?.close();
  });
  return {
    consumers,
    get client(): TestClient {
      if (!client) throw new Error('the broker client is connected before the tests, not at load');
      return client;
    },
  };
}
