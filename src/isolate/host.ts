/**
 * One isolate running the entry script, seen from the consumer: start it, call it with a deadline,
 * and replace it when it crashes or hangs. The built-in ONNX script runs in a worker thread (cheap
 * messages, and it cannot hang); a user's script runs in a child process, the only place a
 * synchronous hang can be cut off safely: terminating a thread inside onnxruntime aborts the process.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { delimiter } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { backoffMs, type Backoff } from '../backoff.js';
import { BootError } from '../errors.js';
import type { InitContext } from './entry-script.js';
import type { Outcome } from '../reply.js';
import { spawnPythonIsolate } from './python-isolate.js';
import {
  packBodies,
  unpackOutcomes,
  type BodyMeta,
  type CallMethod,
  type FromRuntime,
  type ScriptInfo,
  type ToRuntime,
} from './protocol.js';

const BOOTSTRAP = new URL('./bootstrap.mjs', import.meta.url);
const PROJECT_NODE_MODULES = fileURLToPath(new URL('../../node_modules/', import.meta.url));

export type Isolation = 'thread' | 'process' | 'python';
export type CallResult =
  | { kind: 'done'; outcomes: Outcome[] }
  | { kind: 'timeout' }
  | { kind: 'crash'; reason: string };

export interface HostOptions {
  entryScript: string;
  isolation: Isolation;
  context: InitContext;
  maxMessageBytes: number;
  logger: Logger;
  /** The interpreter of a 'python' isolate (PYTHON). */
  python?: string;
  /**
   * INIT_TIMEOUT_MS: a child process or Python process whose init() has not returned by then is killed,
   * and its start fails. Not for a thread (the built-in script, which cannot hang): ending a thread inside
   * onnxruntime aborts the process. Absent: no limit.
   */
  initTimeoutMs?: number;
  /** ISOLATE_RESTART_*: the waits between failed starts of a replacement isolate. */
  restartBackoff?: Backoff;
  /** Time a full batch of generated inputs once init() has returned (ScriptInfo.batchCost). */
  costProbe?: { rows: number; limitMs: number };
}

/** config/default.json's ISOLATE_RESTART_*, for hosts built by hand (tests) without them. */
const DEFAULT_RESTART: Backoff = { initialMs: 1000, maxMs: 30_000 };

/** A worker thread or a child process behind one interface. */
interface Isolate {
  /** `transfer`: buffers a thread takes over without a copy (a process gets a copy of each, once). */
  send(msg: ToRuntime, transfer?: ArrayBuffer[]): void;
  /** Safe at any time for a process; for a thread only when it is not inside a call. */
  kill(): void;
  onMessage(fn: (msg: FromRuntime) => void): void;
  onExit(fn: (reason: string) => void): void;
}

function spawnIsolate(isolation: Isolation, env: NodeJS.ProcessEnv, options: HostOptions): Isolate {
  if (isolation === 'python')
    return spawnPythonIsolate(env, { python: options.python ?? 'python3', logger: options.logger });
  if (isolation === 'thread') {
    const worker = new Worker(BOOTSTRAP, { env });
    return {
      send: (msg, transfer) => worker.postMessage(msg, transfer),
      kill: () => void worker.terminate(),
      onMessage: (fn) => worker.on('message', fn),
      onExit: (fn) => {
        worker.on('error', (err) => fn(`worker thread failed: ${err.message}`));
        worker.on('exit', (code) => fn(`worker thread exited with code ${code}`));
      },
    };
  }
  const child: ChildProcess = fork(BOOTSTRAP, [], {
    env,
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    send: (msg) => child.send(msg),
    kill: () => void child.kill('SIGKILL'),
    onMessage: (fn) => child.on('message', fn as (m: unknown) => void),
    onExit: (fn) => {
      child.on('error', (err) => fn(`script process failed: ${err.message}`));
      child.on('exit', (code, signal) => fn(`script process exited with ${signal ?? `code ${code}`}`));
    },
  };
}

interface Pending {
  id: number;
  resolve: (r: CallResult) => void;
  timer: NodeJS.Timeout;
}

/**
 * 'starting': an isolate is running init(). 'idle': ready for a call. 'calling': one call out.
 * 'replacing': the last isolate hung or died; a fresh one is starting. 'closed': for good.
 */
type HostState = 'starting' | 'idle' | 'calling' | 'replacing' | 'closed';

export class ScriptHost {
  info!: ScriptInfo;
  private state: HostState = 'starting';
  private isolate!: Isolate;
  private pending: Pending | undefined;
  private nextId = 1;
  private ready!: Promise<void>;

  private constructor(private readonly options: HostOptions) {}

  /** Resolves once init() has returned; rejects with a BootError when it throws. */
  static async start(options: HostOptions): Promise<ScriptHost> {
    const host = new ScriptHost(options);
    host.ready = host.spawn();
    await host.ready;
    host.to('idle', 'init returned');
    return host;
  }

  /** One call at a time per host; the consumer's queue guarantees it. */
  async call(
    method: CallMethod,
    bodies: Uint8Array[],
    timeoutMs: number,
    metas?: Array<BodyMeta | undefined>,
  ): Promise<CallResult> {
    await this.ready;
    const id = this.nextId++;
    if (this.state === 'idle') this.to('calling', method);
    return new Promise<CallResult>((resolve) => {
      const timer = setTimeout(() => this.fail({ kind: 'timeout' }), timeoutMs);
      this.pending = { id, resolve, timer };
      const packed = packBodies(bodies);
      this.isolate.send({ type: 'call', id, method, bodies: packed, ...(metas ? { metas } : {}) }, [
        packed.bytes.buffer as ArrayBuffer,
      ]);
    });
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.to('closed', 'close');
    await this.ready.catch(() => {});
    this.isolate.kill();
  }

  private spawn(): Promise<void> {
    const { entryScript, isolation, context, maxMessageBytes, costProbe } = this.options;
    // Azure ML scripts find their model through AZUREML_MODEL_DIR; ours through MODEL_DIR. Both are set.
    const env = {
      ...process.env,
      AZUREML_MODEL_DIR: context.modelDir,
      MODEL_DIR: context.modelDir,
      // A script outside this project (mounted into a container, say) can still import onnxruntime-node and
      // the rest of our packages when compiled to CommonJS; resolve-fallback.mjs does it for ESM.
      NODE_PATH: [PROJECT_NODE_MODULES, process.env.NODE_PATH].filter(Boolean).join(delimiter),
    };
    const isolate = spawnIsolate(isolation, env, this.options);
    this.isolate = isolate;
    const { initTimeoutMs } = this.options;
    return new Promise<void>((resolve, reject) => {
      // 'init' until init() returns; 'timed out': given up on (INIT_TIMEOUT_MS), killed, whatever it says next.
      let start: 'init' | 'ready' | 'timed out' = 'init';
      // A hung init (a model fetched from a host that never answers) would hold boot, or a replacement, for ever.
      const initTimer =
        initTimeoutMs !== undefined && isolation !== 'thread'
          ? setTimeout(() => {
              start = 'timed out';
              isolate.kill();
              reject(
                new BootError(
                  `entry script init() did not return within INIT_TIMEOUT_MS (${initTimeoutMs} ms); its process was killed. Raise INIT_TIMEOUT_MS if loading the model takes longer`,
                ),
              );
            }, initTimeoutMs)
          : undefined;
      isolate.onMessage((msg) => {
        if (start === 'timed out') return;
        if (msg.type === 'ready') {
          clearTimeout(initTimer);
          start = 'ready';
          this.info = msg.info;
          resolve();
        } else if (msg.type === 'init-failed') {
          clearTimeout(initTimer);
          isolate.kill();
          reject(new BootError(msg.message));
        } else if (this.pending?.id === msg.id && this.isolate === isolate) {
          this.settle({ kind: 'done', outcomes: unpackOutcomes(msg.outcomes) });
        }
      });
      let exited = false;
      isolate.onExit((reason) => {
        if (exited) return;
        exited = true;
        clearTimeout(initTimer);
        if (start === 'timed out') return;
        if (start === 'init') reject(new BootError(`entry script could not start: ${reason}`));
        else if (this.isolate === isolate && this.state !== 'closed') this.fail({ kind: 'crash', reason });
      });
      isolate.send({ type: 'init', entryScript, context, maxMessageBytes, costProbe });
    });
  }

  private to(state: HostState, why: string): void {
    this.options.logger.debug({ from: this.state, to: state, why }, 'isolate host state');
    this.state = state;
  }

  private settle(result: CallResult): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    if (this.state === 'calling') this.to('idle', result.kind);
    p.resolve(result);
  }

  /** The current isolate hung or died: answer its call, and put a fresh one in its place. */
  private fail(result: CallResult): void {
    const old = this.isolate;
    this.settle(result);
    if (result.kind === 'timeout') {
      if (this.options.isolation !== 'thread') old.kill();
      else old.onMessage(() => old.kill()); // a thread may be inside onnxruntime: end it once its call returns
    }
    this.options.logger.warn(
      { reason: result.kind === 'crash' ? result.reason : 'run timed out' },
      'replacing entry-script isolate',
    );
    if (this.state === 'closed') return;
    this.to('replacing', result.kind);
    this.ready = this.respawn().then(() => {
      if (this.state === 'replacing') this.to('idle', 'replaced');
    });
  }

  private async respawn(): Promise<void> {
    for (let attempt = 1; this.state !== 'closed'; attempt++) {
      try {
        return await this.spawn();
      } catch (err) {
        this.options.logger.error({ err: (err as Error).message, attempt }, 'entry script restart failed');
        await new Promise((r) => setTimeout(r, backoffMs(this.options.restartBackoff ?? DEFAULT_RESTART, attempt - 1)));
      }
    }
  }
}
