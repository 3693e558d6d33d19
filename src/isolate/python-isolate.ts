/**
 * A Python entry script's isolate: one `PYTHON scorer_runtime.py` child process behind the host's
 * Isolate interface (the same messages a TypeScript script's isolate takes and gives), speaking the
 * frames of python-protocol.ts over its stdin and stdout.
 *
 * The consumer side parses each message (message.ts, the fast numeric reader, the inputSchema check)
 * before it goes to Python, so a bad message gets exactly the code and words a TypeScript script's
 * isolate would give it (BAD_UTF8, BAD_JSON, NOT_OBJECT, NO_DATA, TOO_DEEP, TOO_LARGE, SCHEMA), with no
 * JSON Schema validator needed in Python; Python gets the `data` text of each valid message only, and
 * the body's bytes, unparsed, of a message whose contentType is not JSON (as call-script.ts).
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { ScoringError, replyText, type ErrorCode } from '../errors.js';
import { dataText, parseMessage } from './parse-message.js';
import { readNumericData } from './numeric-data.js';
import {
  unpackBodies,
  type BodyMeta,
  type FromRuntime,
  type PackedOutcomes,
  type ScriptInfo,
  type ToRuntime,
} from './protocol.js';
import { validateSchema } from './input-schema.js';
import { isJsonContentType } from './content-types.js';
import {
  FRAME,
  FrameReader,
  STATUS,
  STATUS_CODES,
  decodeResult,
  encodeCall,
  encodeJsonFrame,
  metaSection,
  type ResultFrame,
} from './python-protocol.js';

export const PYTHON_RUNTIME = fileURLToPath(new URL('./python/scorer_runtime.py', import.meta.url));

type Failure = PackedOutcomes['failures'][number];

/** A call's messages made ready for Python: the data texts (or binary bodies) of the valid ones, and what was wrong with the rest. */
export interface ReadItems {
  /** A JSON message's data text, or a binary message's body. */
  items: Array<string | Uint8Array>;
  /** The message index of each item. */
  indexes: number[];
  failures: Failure[];
}

/** What a TypeScript script's isolate does before it calls the script (call-script.ts), to the same codes. */
export function readItems(
  bodies: readonly Uint8Array[],
  maxMessageBytes: number,
  inputSchema?: object,
  metas?: ReadonlyArray<BodyMeta | undefined>,
): ReadItems {
  const items: ReadItems = { items: [], indexes: [], failures: [] };
  bodies.forEach((body, index) => {
    // A binary body (not JSON by its contentType) reaches the script as its bytes: no parse, no input_schema.
    if (!isJsonContentType(metas?.[index]?.contentType)) {
      items.items.push(body);
      items.indexes.push(index);
      return;
    }
    try {
      const fast = body.byteLength <= maxMessageBytes ? readNumericData(body) : undefined;
      const value = fast ?? parseMessage(body, maxMessageBytes);
      if (inputSchema) validateSchema(value, inputSchema);
      items.items.push(dataText(value));
      items.indexes.push(index);
    } catch (err) {
      items.failures.push({
        index,
        code: err instanceof ScoringError ? err.code : 'RUN_FAILED',
        message: replyText(err),
      });
    }
  });
  return items;
}

/** Python's results for the valid items, and the host's failures, as one call's outcomes. No body is copied. */
export function mergeOutcomes(count: number, items: ReadItems, result: ResultFrame | undefined): PackedOutcomes {
  const ends = new Uint32Array(count);
  const failures: Failure[] = [...items.failures];
  const binary: NonNullable<PackedOutcomes['binary']> = [];
  let k = 0;
  let last = 0;
  for (let i = 0; i < count; i++) {
    if (result && items.indexes[k] === i) {
      const status = result.status[k];
      const start = k === 0 ? 0 : result.ends[k - 1];
      last = result.ends[k];
      if (status === STATUS.binary) binary.push({ index: i, contentType: result.contentTypes[binary.length] });
      else if (status !== STATUS.ok) {
        const code: ErrorCode = STATUS_CODES[status] ?? 'RUN_FAILED';
        failures.push({ index: i, code, message: replyText(result.bodies.toString('utf8', start, last)) });
      }
      k++;
    }
    // A failed item's slice is ignored: unpackOutcomes puts its failure in its place.
    ends[i] = last;
  }
  return {
    bodies: { bytes: result?.bodies ?? new Uint8Array(0), ends },
    failures,
    ...(binary.length > 0 ? { binary } : {}),
  };
}

export interface PythonOptions {
  python: string;
  logger: Logger;
}

/** The Isolate of host.ts, for a Python script. */
export function spawnPythonIsolate(env: NodeJS.ProcessEnv, { python, logger }: PythonOptions) {
  const child = spawn(python, [PYTHON_RUNTIME], {
    env: { ...env, SCORER_PARENT_PID: String(process.pid) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const listeners: Array<(msg: FromRuntime) => void> = [];
  const emit = (msg: FromRuntime) => {
    for (const fn of listeners) fn(msg);
  };
  let maxMessageBytes = 0;
  let inputSchema: object | undefined;
  // Whether the script's run (or run_batch) takes a meta argument: if not, no metadata is sent.
  let takesMeta = false;
  const calls = new Map<number, { count: number; items: ReadItems }>();
  const reader = new FrameReader();

  // A write to a process that has just died fails with EPIPE; its exit is what the host hears about.
  child.stdin!.on('error', () => {});
  child.stdout!.on('data', (chunk: Buffer) => {
    for (const { type, payload } of reader.push(chunk)) {
      if (type === FRAME.result) {
        const result = decodeResult(payload);
        const call = calls.get(result.id);
        if (!call) continue;
        calls.delete(result.id);
        emit({ type: 'result', id: result.id, outcomes: mergeOutcomes(call.count, call.items, result) });
      } else if (type === FRAME.ready) {
        const ready = JSON.parse(payload.toString('utf8')) as ScriptInfo & {
          takesMeta: boolean;
          python: { executable: string; version: string };
        };
        const { python: interpreter, takesMeta: wantsMeta, ...info } = ready;
        const broken = info.inputSchema ? schemaProblem(info.inputSchema) : undefined;
        if (broken) {
          emit({ type: 'init-failed', message: `entry script input_schema is not a usable JSON Schema: ${broken}` });
          continue;
        }
        inputSchema = info.inputSchema;
        takesMeta = wantsMeta;
        logger.info(
          { python: interpreter.executable, version: interpreter.version, pythonPid: child.pid },
          'python isolate started',
        );
        emit({ type: 'ready', info });
      } else if (type === FRAME.initFailed) {
        emit({ type: 'init-failed', message: replyText(payload.toString('utf8')) });
      }
    }
  });

  return {
    send(msg: ToRuntime): void {
      if (msg.type === 'init') {
        maxMessageBytes = msg.maxMessageBytes;
        child.stdin!.write(encodeJsonFrame(FRAME.init, { entryScript: msg.entryScript }));
        return;
      }
      const bodies = unpackBodies(msg.bodies);
      const items = readItems(bodies, maxMessageBytes, inputSchema, msg.metas);
      if (items.items.length === 0) {
        // Nothing for Python to do; answered on the next tick, as a reply from the process would be.
        const outcomes = mergeOutcomes(bodies.length, items, undefined);
        setImmediate(() => emit({ type: 'result', id: msg.id, outcomes }));
        return;
      }
      calls.set(msg.id, { count: bodies.length, items });
      const meta = takesMeta && msg.metas ? metaSection(items.indexes.map((i) => msg.metas![i])) : undefined;
      child.stdin!.write(encodeCall(msg.id, msg.method, items.items, meta));
    },
    kill(): void {
      child.kill('SIGKILL');
    },
    onMessage(fn: (msg: FromRuntime) => void): void {
      listeners.push(fn);
    },
    onExit(fn: (reason: string) => void): void {
      child.on('error', (err: NodeJS.ErrnoException) => fn(spawnProblem(python, err)));
      child.on('exit', (code, signal) => fn(`python process exited with ${signal ?? `code ${code}`}`));
    },
  };
}

function spawnProblem(python: string, err: NodeJS.ErrnoException): string {
  if (err.code === 'ENOENT')
    return `PYTHON ${python}: no such interpreter (not on PATH nor a file); set PYTHON to a Python 3 interpreter`;
  if (err.code === 'EACCES') return `PYTHON ${python}: not executable; set PYTHON to a Python 3 interpreter`;
  return `PYTHON ${python}: could not start (${err.message})`;
}

/** A schema ajv cannot compile stops boot here, not at the first message. */
function schemaProblem(schema: object): string | undefined {
  try {
    validateSchema(null, schema);
  } catch (err) {
    if (!(err instanceof ScoringError)) return replyText(err);
  }
  return undefined;
}
