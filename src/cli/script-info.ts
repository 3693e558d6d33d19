/**
 * What the configured entry script says about itself (model name, data and result schemas): the
 * consumer's own way of loading it, one isolate, stopped again. No broker involved.
 */
import { pino } from 'pino';
import type { Config } from '../config.js';
import { BUILT_IN_ENTRY_SCRIPT, resolveEntryScript, resolveModelDir } from '../entry-script.js';
import type { ScriptInfo } from '../runtime/protocol.js';
import { Scorer } from '../scorer.js';

export async function loadScriptInfo(config: Readonly<Config>): Promise<ScriptInfo> {
  const entryScript = resolveEntryScript(config.entryScript);
  const scorer = await Scorer.start({
    entryScript,
    isolation: entryScript === BUILT_IN_ENTRY_SCRIPT ? 'thread' : 'process',
    concurrency: 1,
    context: { modelDir: resolveModelDir(config.modelDir), maxTensorElements: config.maxTensorElements, ort: config.ort },
    maxMessageBytes: config.maxMessageBytes,
    runTimeoutMs: config.runTimeoutMs,
    // stdout may be the document itself: the script's logs go to stderr.
    logger: pino({ level: 'warn' }, pino.destination(2)),
  });
  try {
    return scorer.info;
  } finally {
    await scorer.stop();
  }
}
