/** The consumer as users run it: a separate process started from src/main.ts, with its own environment. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { AMQP_URL } from './broker.js';

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
}

export function startConsumer(env: Record<string, string>, options: StartOptions = {}): ConsumerProcess {
  // node itself, not the tsx wrapper: a SIGKILL must reach the consumer, not a parent that leaves it running.
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', options.script ?? 'src/main.ts'], {
    cwd: options.cwd ?? ROOT,
    env: { ...process.env, AMQP_URL, HTTP_PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  const waiters: Array<{ text: string; resolve: () => void }> = [];
  const onData = (chunk: Buffer) => {
    out += chunk.toString();
    for (const w of [...waiters]) if (out.includes(w.text)) {
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
    waitFor(text, timeoutMs = 30_000) {
      if (out.includes(text)) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`consumer did not log "${text}" within ${timeoutMs} ms; output:\n${out.slice(-3000)}`)), timeoutMs);
        waiters.push({ text, resolve: () => (clearTimeout(timer), resolve()) });
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
