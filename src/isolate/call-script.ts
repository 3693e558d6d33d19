/**
 * One call from the consumer, inside the isolate: parse each message and call runBatch (or
 * runBatchParsed) or run. Every per-item failure becomes that item's outcome here, so one bad message
 * never fails its neighbours; a runBatch that throws is retried item by item to find the culprit.
 */
import type { EntryScript, ScriptMeta } from './entry-script.js';
import { ScoringError, replyText } from '../errors.js';
import { dataText, parseMessage } from './parse-message.js';
import { validateSchema } from './input-schema.js';
import { readNumericData } from './numeric-data.js';
import { binaryResult, scriptMeta } from './binary-calls.js';
import { textOf } from './json-text.js';
import { isJsonContentType } from './content-types.js';
import type { BodyMeta, CallMethod, Scored } from './protocol.js';
import { packedArray, packedMap } from '../packed-array.js';

export async function callScript(
  s: EntryScript,
  method: CallMethod,
  bodies: Uint8Array[],
  maxMessageBytes: number,
  bodyMetas: Array<BodyMeta | undefined> = [],
): Promise<Scored[]> {
  const outcomes = packedArray<Scored>(bodies.length, undefined as unknown as Scored);
  const valid: number[] = [];
  const values: unknown[] = [];
  const metas = packedMap(bodies, (_, i) => scriptMeta(bodyMetas[i]));
  // What readBody makes, only runBatchParsed understands. A script that reads bodies itself gets a
  // batch of one that way too: run() would turn the tensor back into text to be parsed again.
  const readBody = s.runBatchParsed && !s.inputSchema ? s.readBody : undefined;
  const batch = method === 'runBatch' || (readBody !== undefined && bodies.length === 1);
  bodies.forEach((body, i) => {
    // A binary body (not JSON by its contentType) reaches the script as its bytes, unparsed.
    if (!isJsonContentType(metas[i].contentType)) {
      valid.push(i);
      values.push(body);
      return;
    }
    try {
      // Number-only data (most tensor requests) is read without JSON.parse; anything else, errors included, the general way.
      const fast = body.byteLength <= maxMessageBytes ? (readBody?.(body) ?? readNumericData(body)) : undefined;
      const value = fast ?? parseMessage(body, maxMessageBytes);
      if (s.inputSchema) validateSchema(value, s.inputSchema);
      valid.push(i);
      values.push(value);
    } catch (err) {
      outcomes[i] = failure(err);
    }
  });
  if (valid.length === 0) return outcomes;

  const validMetas = packedMap(valid, (i) => metas[i]);
  const batched = batch ? await tryRunBatch(s, values, validMetas) : undefined;
  for (let k = 0; k < valid.length; k++) {
    if (batched) outcomes[valid[k]] = toOutcome(batched[k]);
    // A value readBody made is the script's own: run() gets the body's data text, read the general way.
    else
      outcomes[valid[k]] = await runOne(
        s,
        () =>
          readBody && !(values[k] instanceof Uint8Array) ? parseMessage(bodies[valid[k]], maxMessageBytes) : values[k],
        validMetas[k],
      );
  }
  return outcomes;
}

/** JSON data goes to run/runBatch as its text (the seed's contract), binary as its bytes. */
const scriptInput = (value: unknown): string | Uint8Array => (value instanceof Uint8Array ? value : dataText(value));

/** undefined when runBatch threw or broke its contract: the caller then runs item by item to find the culprit. */
async function tryRunBatch(s: EntryScript, values: unknown[], metas: ScriptMeta[]): Promise<unknown[] | undefined> {
  try {
    const results = s.runBatchParsed
      ? await s.runBatchParsed(values, metas)
      : await s.runBatch!(packedMap(values, scriptInput), metas);
    if (Array.isArray(results) && results.length === values.length) return results;
  } catch {
    // fall through to item-by-item
  }
  return undefined;
}

async function runOne(s: EntryScript, value: () => unknown, meta: ScriptMeta): Promise<Scored> {
  try {
    return toOutcome(await s.run(scriptInput(value()), meta));
  } catch (err) {
    return failure(err);
  }
}

function toOutcome(result: unknown): Scored {
  if (result instanceof Error) return failure(result);
  const text = textOf(result);
  if (text !== undefined) return { ok: true, json: text };
  const binary = binaryResult(result);
  if (binary) return binary;
  try {
    return { ok: true, json: JSON.stringify(result) ?? 'null' };
  } catch (err) {
    return { ok: false, code: 'BAD_RESULT', message: `run returned a value JSON cannot carry: ${replyText(err)}` };
  }
}

function failure(err: unknown): Scored {
  const code = err instanceof ScoringError ? err.code : 'RUN_FAILED';
  return { ok: false, code, message: replyText(err) };
}
