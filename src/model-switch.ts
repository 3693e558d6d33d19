/**
 * The Scorer the consumer scores with, swapped for a new one without a pause: a reload starts new
 * isolates on the model MODEL_DIR now holds (its highest version), checks them, then sends every
 * batch after it to them; the old isolates are stopped once the batches they hold are scored. A new
 * model that fails at any step is stopped and the old one serves on: a reload never leaves the
 * consumer without a model.
 *
 * Same interface as Scorer (info, model, score, stop), so the consumer cannot tell them apart.
 */
import type { Logger } from 'pino';
import { BUILT_IN_ENTRY_SCRIPT } from './isolate/entry-script.js';
import { replyText } from './errors.js';
import { sampleInput } from './onnx/sample-input.js';
import type { BodyMeta, ScriptInfo } from './isolate/protocol.js';
import { Scorer, type ModelId, type ScoredBatch, type ScoreHooks, type ScorerOptions } from './scorer.js';

export type ReloadResult = { ok: true; from: ModelId; to: ModelId } | { ok: false; serving: ModelId; reason: string };

export interface ModelSwitchOptions {
  /** The Scorer options for what to serve now: MODEL_DIR resolved again, so a new version folder is found. May throw (a BootError saying why). */
  resolve(): ScorerOptions;
  /** Boot and check of the new isolates past this: the reload is given up. */
  reloadTimeoutMs: number;
  logger: Logger;
  /** Each reload's result, once (metrics). */
  onReload?(result: ReloadResult): void;
}

/** One Scorer and the batches it is scoring now: it is retired when they reach 0 after a switch. */
interface Generation {
  scorer: Scorer;
  busy: number;
}

type SwitchState = 'serving' | 'stopping' | 'stopped';

export class ModelSwitch {
  private state: SwitchState = 'serving';
  private current: Generation;
  private readonly retiring = new Set<Promise<void>>();
  /** The last reload asked for; reloads run one after another. */
  private reloads: Promise<unknown> = Promise.resolve();
  /** A reload asked for and not begun: further requests share it (it reads the folder after all of them). */
  private queued: Promise<ReloadResult> | undefined;
  private stopped: Promise<void> | undefined;

  private constructor(
    scorer: Scorer,
    private readonly options: ModelSwitchOptions,
  ) {
    this.current = { scorer, busy: 0 };
  }

  /** Boots the first model as Scorer.start does (a BootError stops boot); reloads use `options.resolve()`. */
  static async start(first: ScorerOptions, options: ModelSwitchOptions): Promise<ModelSwitch> {
    return new ModelSwitch(await Scorer.start(first), options);
  }

  get info(): ScriptInfo {
    return this.current.scorer.info;
  }

  get model(): ModelId {
    return this.current.scorer.model;
  }

  get runGroup(): number {
    return this.current.scorer.runGroup;
  }

  async score(bodies: Uint8Array[], metas?: Array<BodyMeta | undefined>, hooks?: ScoreHooks): Promise<ScoredBatch> {
    // The Scorer is chosen when the batch starts, and its results carry its own version.
    const g = this.current;
    g.busy++;
    try {
      return await g.scorer.score(bodies, metas, hooks);
    } finally {
      g.busy--;
      if (g !== this.current && g.busy === 0) this.retire(g);
    }
  }

  /** Never rejects: the result says what serves now and, for a failure, why. */
  reload(trigger: string): Promise<ReloadResult> {
    if (this.queued) return this.queued;
    const next = this.reloads.then(() => {
      this.queued = undefined;
      return this.reloadNow(trigger);
    });
    this.queued = next;
    this.reloads = next;
    return next;
  }

  /** Waits for a reload under way (its new isolates are then stopped, not switched to), then stops every isolate. */
  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.state = 'stopping';
      await this.reloads;
      await Promise.all([...this.retiring]);
      await this.current.scorer.stop();
      this.state = 'stopped';
    })();
    return this.stopped;
  }

  private async reloadNow(trigger: string): Promise<ReloadResult> {
    const { logger, onReload } = this.options;
    const from = this.model;
    const report = (result: ReloadResult): ReloadResult => {
      onReload?.(result);
      return result;
    };
    if (this.state !== 'serving') return { ok: false, serving: from, reason: 'the consumer is stopping' };
    logger.info({ trigger, serving: from.version }, 'model reload started');
    let next: Scorer;
    try {
      next = await this.bootChecked(this.options.resolve());
    } catch (err) {
      const reason = replyText(err);
      logger.error({ trigger, serving: from.version, reason }, 'model reload failed; the old model serves on');
      return report({ ok: false, serving: from, reason });
    }
    if (this.state !== 'serving') {
      await next.stop();
      return { ok: false, serving: from, reason: 'the consumer is stopping' };
    }
    const old = this.current;
    this.current = { scorer: next, busy: 0 };
    logger.info(
      { trigger, from: from.version, to: next.model.version, model: next.model.name, oldBatches: old.busy },
      'model switched',
    );
    if (old.busy === 0) this.retire(old);
    return report({ ok: true, from, to: next.model });
  }

  /** New isolates booted and, for the built-in script, each answering a generated input, within RELOAD_TIMEOUT_MS. */
  private async bootChecked(options: ScorerOptions): Promise<Scorer> {
    const { reloadTimeoutMs } = this.options;
    let booted: Scorer | undefined;
    let late = false;
    const work = (async () => {
      booted = await Scorer.start(options);
      if (late) return booted;
      await check(booted, options);
      return booted;
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new Error(`the new model did not boot and answer within RELOAD_TIMEOUT_MS (${reloadTimeoutMs} ms)`)),
        reloadTimeoutMs,
      );
    });
    try {
      return await Promise.race([work, deadline]);
    } catch (err) {
      // Whatever started is stopped, now or once it has finished starting.
      late = true;
      void work.catch(() => booted).then((s) => s?.stop());
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private retire(g: Generation): void {
    const { version } = g.scorer.model;
    const retired = g.scorer
      .stop()
      .then(() => this.options.logger.info({ version }, 'old model retired: its batches were scored'))
      .finally(() => this.retiring.delete(retired));
    this.retiring.add(retired);
  }
}

/** Every isolate of the built-in script scores one generated input of the model's input shape. */
async function check(scorer: Scorer, options: ScorerOptions): Promise<void> {
  const schema = scorer.info.inputSchema;
  if (options.entryScript !== BUILT_IN_ENTRY_SCRIPT || !schema) return;
  const body = Buffer.from(JSON.stringify({ data: sampleInput(schema) }));
  const batches = await Promise.all(Array.from({ length: options.concurrency }, () => scorer.score([body])));
  for (const { results } of batches) {
    const [r] = results;
    if (!r.ok) throw new Error(`the new model could not answer a generated input of its input shape: ${r.message}`);
  }
}
