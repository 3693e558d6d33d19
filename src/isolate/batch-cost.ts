/**
 * What a full batch costs the thread that scores it: the fastest of a few batches of one generated
 * input (the script's documented input shape, typical values), read, run and answered exactly as
 * messages are (call-script.ts). The scorer asks for it to decide whether scoring may run on the
 * consumer's own thread (scorer.ts, INLINE_SCORING=auto), so it only times what a shape bounds: a
 * model with a free axis beyond the first (a sequence length, an image size) costs what each message
 * makes it cost, which no generated input tells.
 */
import type { EntryScript } from './entry-script.js';
import { callScript } from './call-script.js';
import type { BatchCost } from './protocol.js';
import { sampleInput, typicalValues } from '../onnx/sample-input.js';

/** Enough runs for the JIT to have compiled the read and answer paths; no more than this long in all. */
const MAX_RUNS = 30;
const MAX_TOTAL_MS = 250;
/** Numbers in a full batch past which it is not timed at all: reading them alone would hold a thread for many milliseconds. */
const MAX_BATCH_NUMBERS = 1 << 21;
/**
 * A batch of one whose cost, times the rows, is past this many times the limit: the estimate is answer
 * enough, and a heavy model is not run a full batch at a time at boot. Wide, since a run of one row pays
 * alone the per-run overhead a full batch shares among its rows.
 */
const CLEARLY_OVER = 20;

type Schema = {
  type?: string;
  items?: Schema;
  minItems?: number;
  maxItems?: number;
  properties?: Record<string, Schema>;
};

/** The numbers one message carries when every axis but its first (its rows) is fixed, else why the cost is not bounded. */
function messageNumbers(schema: Schema): number | { untimed: string } {
  const tensors = schema.type === 'object' ? Object.values(schema.properties ?? {}) : [schema];
  let numbers = 0;
  for (const t of tensors) {
    // Axis 0 is the rows (as many as it must have in the generated input); every axis below it must be fixed.
    let n = t.type === 'array' ? (t.minItems ?? 1) : 1;
    for (let axis = t.items, depth = 1; axis?.type === 'array'; axis = axis.items, depth++) {
      if (axis.maxItems === undefined)
        return { untimed: `axis ${depth} of an input is free: a message costs what its own shape makes it cost` };
      n *= axis.maxItems;
    }
    numbers += n;
  }
  return numbers;
}

export async function measureBatchCost(
  script: EntryScript,
  inputSchema: object | undefined,
  probe: { rows: number; limitMs: number },
  maxMessageBytes: number,
): Promise<BatchCost> {
  if (!inputSchema) return { untimed: 'the entry script documents no input shape' };
  const numbers = messageNumbers(inputSchema as Schema);
  if (typeof numbers !== 'number') return numbers;
  if (numbers * probe.rows > MAX_BATCH_NUMBERS)
    return { untimed: `a full batch carries ${numbers * probe.rows} numbers, too many to hold the consumer's thread` };
  const body = Buffer.from(JSON.stringify({ data: sampleInput(inputSchema, typicalValues) }));
  const fastest = async (rows: number, runs: number): Promise<number | string> => {
    const bodies: Uint8Array[] = Array.from({ length: rows }, () => body);
    const method = rows > 1 && (script.runBatch || script.runBatchParsed) ? 'runBatch' : 'run';
    let best = Infinity;
    const started = performance.now();
    for (let run = 0; run < runs && performance.now() - started < MAX_TOTAL_MS; run++) {
      const t0 = performance.now();
      const [first] = await callScript(script, method, bodies, maxMessageBytes);
      if (!first.ok) return first.message;
      best = Math.min(best, performance.now() - t0);
    }
    return best;
  };
  const one = await fastest(1, 5);
  if (typeof one === 'string') return { untimed: `its generated input did not score: ${one}` };
  if (one * probe.rows > CLEARLY_OVER * probe.limitMs) return { ms: one * probe.rows, estimated: true };
  const full = await fastest(probe.rows, MAX_RUNS);
  return typeof full === 'string' ? { untimed: `its generated input did not score: ${full}` } : { ms: full };
}
