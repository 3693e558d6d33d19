/**
 * The built-in ONNX script run on the consumer's own thread (INLINE_SCORING): for a model whose batches
 * are cheap, a worker thread's round trip (the bodies packed and posted, two wake-ups, a heap of its own
 * for the garbage collector) costs more than it saves. The event loop is held for one batch at a time,
 * which the scorer has timed at boot to be within INLINE_MAX_BATCH_MS (batch-cost.ts).
 *
 * Batches may be under way at once (CONCURRENCY of them, each awaiting its run): the script keeps no
 * state between a batch's read and its run that another batch could overwrite (numeric-data.ts never
 * reuses a slab). RUN_TIMEOUT_MS does not apply: a call here cannot be cut off, and the built-in script
 * never hangs.
 */
import { BootError } from '../errors.js';
import { ScriptRuntime } from './runtime.js';
import { unpackOutcomes, type BodyMeta, type CallMethod, type ScriptInfo } from './protocol.js';
import type { CallResult, HostOptions } from './host.js';

export class InlineHost {
  /** Calls under way: close() waits for them before it frees the model. */
  private readonly calls = new Set<Promise<CallResult>>();

  private constructor(
    private readonly runtime: ScriptRuntime,
    readonly info: ScriptInfo,
  ) {}

  static async start(options: Pick<HostOptions, 'entryScript' | 'context' | 'maxMessageBytes'>): Promise<InlineHost> {
    const runtime = new ScriptRuntime();
    const { entryScript, context, maxMessageBytes } = options;
    const ready = await runtime.init({ type: 'init', entryScript, context, maxMessageBytes });
    if (ready.type === 'init-failed') throw new BootError(ready.message);
    return new InlineHost(runtime, ready.info);
  }

  call(method: CallMethod, bodies: Uint8Array[], _timeoutMs: number, metas?: Array<BodyMeta | undefined>) {
    const call = this.runtime.call(method, bodies, metas).then(
      (packed): CallResult => ({ kind: 'done', outcomes: unpackOutcomes(packed) }),
      // A call that throws (a bug: call-script answers every item) fails only its own batch, as a crash.
      (err: Error): CallResult => ({ kind: 'crash', reason: err.message }),
    );
    this.calls.add(call);
    void call.finally(() => this.calls.delete(call));
    return call;
  }

  /** Once the calls under way are answered: the model's memory freed (a reload replaces this host). */
  async close(): Promise<void> {
    await Promise.all(this.calls);
    await this.runtime.close();
  }
}
