/**
 * What a full batch costs the thread that scores it: the fastest of a few batches of one generated
 * input (the script's documented input shape, typical values), read, run and answered exactly as
 * messages are (call-script.ts). The scorer asks for it to decide whether scoring may run on the
 * consumer's own thread (scorer.ts, INLINE_SCORING=auto).
 */
import type { EntryScript } from './entry-script.js';
import { callScript } from './call-script.js';
import { sampleInput, typicalValues } from '../onnx/sample-input.js';

/** Enough runs for the JIT to have compiled the read and answer paths; no more than this long in all. */
const MAX_RUNS = 30;
const MAX_TOTAL_MS = 250;

/** undefined when the script documents no input shape, or its generated input does not score. */
export async function batchCostMs(
  script: EntryScript,
  inputSchema: object | undefined,
  rows: number,
  maxMessageBytes: number,
): Promise<number | undefined> {
  if (!inputSchema || rows < 1) return undefined;
  const body = Buffer.from(JSON.stringify({ data: sampleInput(inputSchema, typicalValues) }));
  const bodies: Uint8Array[] = Array.from({ length: rows }, () => body);
  const method = rows > 1 && (script.runBatch || script.runBatchParsed) ? 'runBatch' : 'run';
  let fastest = Infinity;
  const started = performance.now();
  for (let run = 0; run < MAX_RUNS && performance.now() - started < MAX_TOTAL_MS; run++) {
    const t0 = performance.now();
    const [first] = await callScript(script, method, bodies, maxMessageBytes);
    if (!first.ok) return undefined;
    fastest = Math.min(fastest, performance.now() - t0);
  }
  return fastest;
}
