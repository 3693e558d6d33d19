/**
 * The entry script as an isolate runs it, wherever that is: loaded and init()'d once, then called
 * with batches of bodies. A worker thread or child process drives it over messages (main.ts); the
 * consumer's own thread drives it directly when scoring runs inline (inline-host.ts).
 */
import { loadEntryScript, type EntryScript } from './entry-script.js';
import { replyText } from '../errors.js';
import { callScript } from './call-script.js';
import { measureBatchCost } from './batch-cost.js';
import {
  packOutcomes,
  type BodyMeta,
  type CallMethod,
  type FromRuntime,
  type PackedOutcomes,
  type ScriptInfo,
  type ToRuntime,
} from './protocol.js';

export class ScriptRuntime {
  private script: EntryScript | undefined;
  private maxMessageBytes = 0;

  /** The 'ready' or 'init-failed' answer to an init message. */
  async init(
    msg: Extract<ToRuntime, { type: 'init' }>,
  ): Promise<Extract<FromRuntime, { type: 'ready' | 'init-failed' }>> {
    let loaded: EntryScript | undefined;
    try {
      this.maxMessageBytes = msg.maxMessageBytes;
      loaded = await loadEntryScript(msg.entryScript);
      await loaded.init(msg.context);
      this.script = loaded;
      const info = describe(loaded);
      if (msg.costProbe) {
        // A timing that fails leaves the script where it is (worker threads); it never fails boot.
        info.batchCost = await measureBatchCost(loaded, info.inputSchema, msg.costProbe, this.maxMessageBytes).catch(
          (err: unknown) => ({ untimed: `timing a batch failed: ${replyText(err)}` }),
        );
      }
      return { type: 'ready', info };
    } catch (err) {
      // A script that cannot load (or lacks run) says so itself: blaming init() would send the user to the wrong place.
      return {
        type: 'init-failed',
        message: loaded ? `entry script init() failed: ${replyText(err)}` : replyText(err),
      };
    }
  }

  async call(method: CallMethod, bodies: Uint8Array[], metas?: Array<BodyMeta | undefined>): Promise<PackedOutcomes> {
    if (!this.script) throw new Error('entry script called before init() returned');
    return packOutcomes(await callScript(this.script, method, bodies, this.maxMessageBytes, metas));
  }

  /** For a runtime that outlives its use (inline-host.ts): an isolate's end frees everything anyway. */
  async close(): Promise<void> {
    await this.script?.close?.();
    this.script = undefined;
  }
}

function describe(s: EntryScript): ScriptInfo {
  const documented = s.apiSchemas?.();
  const inputSchema = s.inputSchema ?? documented?.inputSchema;
  const outputSchema = s.outputSchema ?? documented?.outputSchema;
  return {
    modelName: typeof s.modelName === 'string' && s.modelName ? s.modelName : 'entry-script',
    hasRunBatch: typeof s.runBatch === 'function' || typeof s.runBatchParsed === 'function',
    ...(inputSchema ? { inputSchema } : {}),
    ...(outputSchema ? { outputSchema } : {}),
    ...(typeof s.bootLog === 'function' ? { bootLog: s.bootLog() } : {}),
  };
}
