/**
 * Scores a batch of message bodies with a pool of entry-script isolates (CONCURRENCY of them, one
 * batch each at a time). Every item comes back as a reply outcome, or as `crashed` when the isolate
 * died under it: the consumer then leaves it to the broker's delivery limit rather than answering.
 */
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { ScoringError } from './errors.js';
import { BUILT_IN_ENTRY_SCRIPT, resolveEntryScript, resolveModelDir, type InitContext } from './entry-script.js';
import type { Outcome } from './reply.js';
import type { ScriptInfo } from './runtime/protocol.js';
import { ScriptHost, type Isolation } from './script-host.js';

/** CRASHED: the isolate died under it. SKIPPED: not scored, since `skip` said its input is no longer ours. */
export type ItemResult = Outcome | { ok: false; code: 'CRASHED' | 'SKIPPED'; message: string };

export interface ScoreHooks {
  /** Called as each item is scored when the script answers them one at a time (run), not for a runBatch call. */
  onItem?(index: number, result: ItemResult): void;
  /** Asked before each item run on its own: true leaves it unscored (SKIPPED). */
  skip?(index: number): boolean;
}

export interface ScorerOptions {
  entryScript: string;
  isolation: Isolation;
  concurrency: number;
  context: InitContext;
  maxMessageBytes: number;
  runTimeoutMs: number;
  logger: Logger;
}

/**
 * The configured entry script and how to run it: the built-in ONNX script in worker threads (cheap, and
 * never hung), a user's script in child processes (the only place a synchronous hang can be cut off).
 */
export function scorerOptions(config: Readonly<Config>, logger: Logger): ScorerOptions {
  const entryScript = resolveEntryScript(config.entryScript);
  return {
    entryScript,
    isolation: entryScript === BUILT_IN_ENTRY_SCRIPT ? 'thread' : 'process',
    concurrency: config.concurrency,
    context: { modelDir: resolveModelDir(config.modelDir), maxTensorElements: config.maxTensorElements, ort: config.ort },
    maxMessageBytes: config.maxMessageBytes,
    runTimeoutMs: config.runTimeoutMs,
    logger,
  };
}

export class Scorer {
  private readonly idle: ScriptHost[];

  private constructor(
    private readonly hosts: ScriptHost[],
    private readonly runTimeoutMs: number,
  ) {
    this.idle = [...hosts];
  }

  static async start(options: ScorerOptions): Promise<Scorer> {
    const { concurrency, runTimeoutMs, ...hostOptions } = options;
    const started = await Promise.allSettled(Array.from({ length: concurrency }, () => ScriptHost.start(hostOptions)));
    const failed = started.find((s) => s.status === 'rejected');
    if (failed) {
      await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.close() : undefined)));
      throw (failed as PromiseRejectedResult).reason;
    }
    return new Scorer(started.map((s) => (s as PromiseFulfilledResult<ScriptHost>).value), runTimeoutMs);
  }

  get info(): ScriptInfo {
    return this.hosts[0].info;
  }

  async score(bodies: Uint8Array[], hooks: ScoreHooks = {}): Promise<ItemResult[]> {
    const host = this.idle.pop();
    if (!host) throw new Error('Scorer.score called with every isolate busy: the caller must bound concurrency');
    try {
      if (this.info.hasRunBatch && bodies.length > 1) {
        const r = await host.call('runBatch', bodies, this.runTimeoutMs);
        if (r.kind === 'done') return r.outcomes;
        if (r.kind === 'crash') return bodies.map(() => crashed(r.reason));
        // A batch that hung: run its items one by one, each with its own deadline, to find the one that hangs.
      }
      const results: ItemResult[] = [];
      for (let i = 0; i < bodies.length; i++) {
        if (hooks.skip?.(i)) {
          results.push(SKIPPED);
          continue;
        }
        const r = await host.call('run', [bodies[i]], this.runTimeoutMs);
        const result = r.kind === 'done' ? r.outcomes[0] : r.kind === 'crash' ? crashed(r.reason) : this.timedOut();
        results.push(result);
        hooks.onItem?.(i, result);
      }
      return results;
    } finally {
      this.idle.push(host);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.close()));
  }

  private timedOut(): Outcome {
    const err = new ScoringError('TIMEOUT', `run did not return within RUN_TIMEOUT_MS (${this.runTimeoutMs} ms)`);
    return { ok: false, code: err.code, message: err.message };
  }
}

const SKIPPED: ItemResult = { ok: false, code: 'SKIPPED', message: 'not scored: its input is no longer ours' };

function crashed(reason: string): ItemResult {
  return { ok: false, code: 'CRASHED', message: `the entry script's process died while scoring: ${reason}` };
}
