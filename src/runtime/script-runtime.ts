/**
 * Runs inside the isolate: loads the entry script, calls init() once, then answers calls by parsing
 * each message and calling runBatch or run. Every per-item failure becomes that item's outcome here,
 * so one bad message never fails its neighbours.
 */
import { Worker, parentPort } from 'node:worker_threads';
import { loadEntryScript, type EntryScript } from '../entry-script.js';
import { ScoringError, replyText } from '../errors.js';
import { dataText, parseMessage } from '../message.js';
import { validateSchema } from '../schema.js';
import { readNumericData } from './numeric-data.js';
import { packOutcomes, unpackBodies, type CallMethod, type FromRuntime, type Scored, type ScriptInfo, type ToRuntime } from './protocol.js';

const send: (msg: FromRuntime, transfer?: ArrayBuffer[]) => void = parentPort
  ? (msg, transfer) => parentPort!.postMessage(msg, transfer)
  : (msg) => process.send!(msg);

let script: EntryScript | undefined;
let maxMessageBytes = 0;

async function handle(msg: ToRuntime): Promise<void> {
  if (msg.type === 'init') {
    let loaded: EntryScript | undefined;
    try {
      maxMessageBytes = msg.maxMessageBytes;
      loaded = await loadEntryScript(msg.entryScript);
      await loaded.init(msg.context);
      script = loaded;
      send({ type: 'ready', info: describe(loaded) });
    } catch (err) {
      // A script that cannot load (or lacks run) says so itself: blaming init() would send the user to the wrong place.
      send({ type: 'init-failed', message: loaded ? `entry script init() failed: ${replyText(err)}` : replyText(err) });
    }
    return;
  }
  const outcomes = packOutcomes(await call(script!, msg.method, unpackBodies(msg.bodies)));
  send({ type: 'result', id: msg.id, outcomes }, [outcomes.bodies.bytes.buffer as ArrayBuffer]);
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
  };
}

export async function call(s: EntryScript, method: CallMethod, bodies: Uint8Array[]): Promise<Scored[]> {
  const outcomes: Scored[] = new Array(bodies.length);
  const valid: number[] = [];
  const values: unknown[] = [];
  // What readBody makes, only runBatchParsed understands.
  const readBody = method === 'runBatch' && s.runBatchParsed && !s.inputSchema ? s.readBody : undefined;
  bodies.forEach((body, i) => {
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

  const batched = method === 'runBatch' ? await tryRunBatch(s, values) : undefined;
  for (let k = 0; k < valid.length; k++) {
    if (batched) outcomes[valid[k]] = toOutcome(batched[k]);
    else outcomes[valid[k]] = await runOne(s, readBody ? parseMessage(bodies[valid[k]], maxMessageBytes) : values[k]);
  }
  return outcomes;
}

/** undefined when runBatch threw or broke its contract: the caller then runs item by item to find the culprit. */
async function tryRunBatch(s: EntryScript, values: unknown[]): Promise<unknown[] | undefined> {
  try {
    const results = s.runBatchParsed ? await s.runBatchParsed(values) : await s.runBatch!(values.map(dataText));
    if (Array.isArray(results) && results.length === values.length) return results;
  } catch {
    // fall through to item-by-item
  }
  return undefined;
}

async function runOne(s: EntryScript, value: unknown): Promise<Scored> {
  try {
    return toOutcome(await s.run(dataText(value)));
  } catch (err) {
    return failure(err);
  }
}

function toOutcome(result: unknown): Scored {
  if (result instanceof Error) return failure(result);
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

const onMessage = (msg: ToRuntime) => void handle(msg);
if (parentPort) parentPort.on('message', onMessage);
else {
  process.on('message', onMessage);
  // The consumer is gone: nothing will read our replies, so do not linger as an orphan.
  process.on('disconnect', () => process.exit(0));
  watchParent();
}

/**
 * A run stuck in a synchronous loop never sees 'disconnect': when the consumer is killed (SIGKILL) it
 * would spin on as an orphan for ever (seen here). A watchdog thread, which the loop cannot block,
 * ends this process once its parent has gone.
 */
function watchParent(): void {
  const watchdog = new Worker(
    `const { workerData } = require('node:worker_threads');
     setInterval(() => { if (process.ppid !== workerData.parent) process.kill(process.pid, 'SIGKILL'); }, 500);`,
    { eval: true, workerData: { parent: process.ppid } },
  );
  watchdog.unref();
}
