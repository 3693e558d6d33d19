/**
 * What the configured entry script says about itself (model name, data and result schemas): the
 * consumer's own way of loading it, one isolate, stopped again. No broker involved.
 */
import { pino } from 'pino';
import type { Config } from '../config.js';
import type { ScriptInfo } from '../isolate/protocol.js';
import { Scorer, scorerOptions } from '../scorer.js';

export async function loadScriptInfo(config: Readonly<Config>): Promise<ScriptInfo> {
  // stdout may be the document itself: the script's logs go to stderr.
  const scorer = await Scorer.start({
    ...scorerOptions(config, pino({ level: 'warn' }, pino.destination(2))),
    concurrency: 1,
  });
  try {
    return scorer.info;
  } finally {
    await scorer.stop();
  }
}
