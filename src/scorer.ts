/**
 * Scores a batch of message bodies with a pool of entry-script isolates (CONCURRENCY of them, one
 * batch each at a time), or, for the built-in script on a model cheap enough, on the consumer's own
 * thread (INLINE_SCORING). Every item comes back as a reply outcome, or as `crashed` when the isolate
 * died under it: the consumer then leaves it to the broker's delivery limit rather than answering.
 */
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { ScoringError } from './errors.js';
import { BUILT_IN_ENTRY_SCRIPT, resolveEntryScript, resolveModelDir } from './isolate/entry-script.js';
import type { Outcome } from './reply.js';
import type { BatchCost, BodyMeta, ScriptInfo } from './isolate/protocol.js';
import { resolveModelVersion, type ModelVersion } from './model-version.js';
import { ScriptHost, type HostOptions } from './isolate/host.js';
import { InlineHost } from './isolate/inline-host.js';
import { packedMap } from './packed-array.js';

/** CRASHED: the isolate died under it. SKIPPED: not scored, since `skip` said its input is no longer ours. */
export type ItemResult = Outcome | { ok: false; code: 'CRASHED' | 'SKIPPED'; message: string };

/** The model that scored a batch: its name (x-model) and version (x-model-version). */
export interface ModelId {
  name: string;
  version: string;
}

/** A batch's results and the model that scored them: a reply says the version that actually scored it. */
export interface ScoredBatch {
  results: ItemResult[];
  model: ModelId;
}

export interface ScoreHooks {
  /** Called for each item as its `run` call returns (one message, or a group: RUN_GROUP_MS), not for a runBatch call. */
  onItem?(index: number, result: ItemResult, model: ModelId): void;
  /** Asked of each item before its `run` call: true leaves it unscored (SKIPPED). */
  skip?(index: number): boolean;
}

/** A host's options (each of the `concurrency` hosts gets them), and the scorer's own. */
export interface ScorerOptions extends HostOptions {
  concurrency: number;
  runTimeoutMs: number;
  /** RUN_GROUP_MS: how long a group of `run` calls sent to an isolate at once may be expected to take; 0: one message per call. */
  runGroupMs: number;
  /** The version of the model in `context.modelDir` (src/model-version.ts). */
  modelVersion: string;
  /** INLINE_SCORING and INLINE_MAX_BATCH_MS; the batch timed to decide has maxBatchSize rows. */
  inline: Config['inline'];
  maxBatchSize: number;
}

/** What scores a batch: an isolate (host.ts), or the built-in script on the consumer's thread (inline-host.ts). */
type Host = Pick<ScriptHost, 'info' | 'call' | 'close'>;
type BootLine = NonNullable<ScriptInfo['bootLog']>[number];

/**
 * The configured entry script and how to run it: the built-in ONNX script in worker threads (cheap, and
 * never hung), a user's script in child processes (the only place a synchronous hang can be cut off): a
 * .py script in PYTHON processes.
 */
export function scorerOptions(config: Readonly<Config>, logger: Logger, version?: ModelVersion): ScorerOptions {
  const entryScript = resolveEntryScript(config.entryScript);
  const model = version ?? modelVersionFor(entryScript, resolveModelDir(config.modelDir), logger);
  return {
    entryScript,
    isolation: entryScript === BUILT_IN_ENTRY_SCRIPT ? 'thread' : entryScript.endsWith('.py') ? 'python' : 'process',
    python: config.python,
    restartBackoff: config.isolateRestart,
    initTimeoutMs: config.initTimeoutMs,
    concurrency: config.concurrency,
    inline: config.inline,
    maxBatchSize: config.maxBatchSize,
    modelVersion: model.version,
    context: {
      modelDir: model.dir,
      maxTensorElements: config.maxTensorElements,
      ort: config.ort,
      onnx: config.onnx,
      image: config.image,
    },
    maxMessageBytes: config.maxMessageBytes,
    runTimeoutMs: config.runTimeoutMs,
    runGroupMs: config.runGroupMs,
    logger,
  };
}

/**
 * The built-in script needs its model folder; a user's script may load its model from anywhere (the
 * seed's "local model"), so a folder that is not there is its init()'s business, and the version says so.
 */
function modelVersionFor(entryScript: string, modelDir: string, logger: Logger): ModelVersion {
  if (entryScript !== BUILT_IN_ENTRY_SCRIPT && !existsSync(modelDir))
    return { dir: modelDir, version: 'no-model-folder' };
  return resolveModelVersion(modelDir, logger);
}

export class Scorer {
  /** Free hosts, one per batch that may be scored at once: CONCURRENCY isolates, or as many turns of the one inline host. */
  private readonly idle: Host[];
  readonly info: ScriptInfo;

  /** What one message's `run` has cost lately, through the isolate (a moving average), for the size of the next group. */
  private runMsPerItem: number | undefined;

  private constructor(
    private readonly hosts: Host[],
    slots: number,
    private readonly calls: { runTimeoutMs: number; runGroupMs: number },
    private readonly version: string,
    placement: BootLine | undefined,
  ) {
    this.idle = Array.from({ length: slots }, (_, i) => hosts[i % hosts.length]);
    const { info } = hosts[0];
    this.info = placement ? { ...info, bootLog: [...(info.bootLog ?? []), placement] } : info;
  }

  static async start(options: ScorerOptions): Promise<Scorer> {
    const { concurrency, runTimeoutMs, runGroupMs, modelVersion, inline, maxBatchSize, ...hostOptions } = options;
    const calls = { runTimeoutMs, runGroupMs };
    const builtIn = hostOptions.entryScript === BUILT_IN_ENTRY_SCRIPT;
    if (builtIn && inline.mode === 'on') {
      const host = await InlineHost.start(hostOptions);
      return new Scorer([host], concurrency, calls, modelVersion, placementLine(true, { reason: 'INLINE_SCORING=on' }));
    }
    // Under auto, the first isolate times a full batch once its init() has returned: is it cheap enough to score here?
    const probe = builtIn && inline.mode === 'auto';
    const costProbe = { rows: maxBatchSize, limitMs: inline.maxBatchMs };
    const threads = await startAll(concurrency, (i) =>
      ScriptHost.start(i === 0 && probe ? { ...hostOptions, costProbe } : hostOptions),
    );
    const cost = threads[0].info.batchCost;
    if (!probe || cost === undefined) return new Scorer(threads, concurrency, calls, modelVersion, undefined);
    const decided = placementOf(cost, inline.maxBatchMs, maxBatchSize);
    if (!decided.inline) return new Scorer(threads, concurrency, calls, modelVersion, decided.line);
    try {
      const host = await InlineHost.start(hostOptions);
      return new Scorer([host], concurrency, calls, modelVersion, decided.line);
    } finally {
      await Promise.all(threads.map((h) => h.close()));
    }
  }

  get model(): ModelId {
    return { name: this.info.modelName, version: this.version };
  }

  /** `metas`: each body's contentType and headers, where any has them (binary payloads). */
  async score(bodies: Uint8Array[], metas?: Array<BodyMeta | undefined>, hooks: ScoreHooks = {}): Promise<ScoredBatch> {
    const host = this.idle.pop();
    if (!host) throw new Error('Scorer.score called with every isolate busy: the caller must bound concurrency');
    const model = this.model;
    try {
      const { runTimeoutMs } = this.calls;
      if (this.info.hasRunBatch && bodies.length > 1) {
        const r = await host.call('runBatch', bodies, runTimeoutMs, metas);
        if (r.kind === 'done') return { results: r.outcomes, model };
        if (r.kind === 'crash') return { results: packedMap(bodies, () => crashed(r.reason)), model };
        // A batch that hung: run its items one by one, each with its own deadline, to find the one that hangs.
      }
      // `run` per message, several messages to a call (the isolate runs them one by one): a call's round
      // trip, not the script, was most of a cheap run's cost. A group that crashed or hung is run again
      // one message a call, each with its own deadline, as the rest of the batch, so only the culprit
      // answers for it (and the broker's delivery count is the culprit's alone).
      const results: ItemResult[] = [];
      let grouping = !this.info.hasRunBatch;
      for (let i = 0; i < bodies.length; ) {
        if (hooks.skip?.(i)) {
          results.push(SKIPPED);
          i++;
          continue;
        }
        const size = grouping ? this.runGroup : 1;
        let end = i + 1;
        while (end < bodies.length && end - i < size && !hooks.skip?.(end)) end++;
        const started = performance.now();
        const r = await host.call('run', bodies.slice(i, end), runTimeoutMs, metas?.slice(i, end));
        if (r.kind === 'done') {
          this.noteRun((performance.now() - started) / (end - i));
          for (let k = i; k < end; k++) {
            results.push(r.outcomes[k - i]);
            hooks.onItem?.(k, r.outcomes[k - i], model);
          }
          i = end;
          continue;
        }
        if (end - i > 1) {
          grouping = false;
          continue;
        }
        const result = r.kind === 'crash' ? crashed(r.reason) : this.timedOut();
        results.push(result);
        hooks.onItem?.(i, result, model);
        i++;
      }
      return { results, model };
    } finally {
      this.idle.push(host);
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.close()));
  }

  /**
   * Messages for the next `run` call of a script without runBatch: as many as its last runs say take
   * RUN_GROUP_MS, one until a run has been timed (and always one at RUN_GROUP_MS 0). The consumer cuts
   * such a script's batches to this size, so a slow script's messages still spread over every isolate.
   */
  get runGroup(): number {
    const { runGroupMs } = this.calls;
    if (runGroupMs === 0 || this.runMsPerItem === undefined) return 1;
    return Math.max(1, Math.floor(runGroupMs / this.runMsPerItem));
  }

  private noteRun(msPerItem: number): void {
    this.runMsPerItem = this.runMsPerItem === undefined ? msPerItem : 0.8 * this.runMsPerItem + 0.2 * msPerItem;
  }

  private timedOut(): Outcome {
    const err = new ScoringError('TIMEOUT', `run did not return within RUN_TIMEOUT_MS (${this.calls.runTimeoutMs} ms)`);
    return { ok: false, code: err.code, message: err.message };
  }
}

/** INLINE_SCORING=auto: whether a full batch's cost lets the built-in script score on the consumer's thread, and the boot line that says so. */
export function placementOf(cost: BatchCost, maxBatchMs: number, rows: number): { inline: boolean; line: BootLine } {
  if ('untimed' in cost) return { inline: false, line: placementLine(false, { reason: cost.untimed }) };
  const inline = cost.ms <= maxBatchMs;
  const fields = {
    batchCostMs: Math.round(cost.ms * 1000) / 1000,
    ...(cost.estimated ? { estimatedFromOneMessage: true } : {}),
    rows,
    inlineMaxBatchMs: maxBatchMs,
    reason: inline
      ? 'a full batch costs at most INLINE_MAX_BATCH_MS'
      : 'a full batch costs more than INLINE_MAX_BATCH_MS',
  };
  return { inline, line: placementLine(inline, fields) };
}

function placementLine(inline: boolean, fields: Record<string, unknown>): BootLine {
  return inline
    ? {
        msg: 'scoring on the consumer thread',
        fields: { ...fields, override: 'set INLINE_SCORING=off for worker threads' },
      }
    : {
        msg: 'scoring in worker threads',
        fields: { ...fields, override: 'set INLINE_SCORING=on to score on the consumer thread' },
      };
}

/** Starts `n` hosts at once; if any fails, the others are closed and its error thrown. */
async function startAll<H extends Host>(n: number, start: (i: number) => Promise<H>): Promise<H[]> {
  const started = await Promise.allSettled(Array.from({ length: n }, (_, i) => start(i)));
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((s) => (s.status === 'fulfilled' ? s.value.close() : undefined)));
    throw (failed as PromiseRejectedResult).reason;
  }
  return started.map((s) => (s as PromiseFulfilledResult<H>).value);
}

const SKIPPED: ItemResult = { ok: false, code: 'SKIPPED', message: 'not scored: its input is no longer ours' };

function crashed(reason: string): ItemResult {
  return { ok: false, code: 'CRASHED', message: `the entry script's process died while scoring: ${reason}` };
}
