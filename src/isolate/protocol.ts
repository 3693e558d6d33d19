/** Messages between the consumer and the isolate (worker thread or child process) that runs the entry script. */
import type { InitContext } from './entry-script.js';
import type { ErrorCode } from '../errors.js';
import type { Outcome } from '../reply.js';
import { packedMap } from '../packed-array.js';

export type CallMethod = 'run' | 'runBatch';

export interface ScriptInfo {
  modelName: string;
  hasRunBatch: boolean;
  inputSchema?: object;
  outputSchema?: object;
  /** Lines the script wants in the boot log (the built-in ONNX script: whether batching is on, and why). */
  bootLog?: Array<{ msg: string; fields: Record<string, unknown> }>;
  /** What a full batch of a generated input costs in the isolate (batch-cost.ts), when asked for. */
  batchCost?: BatchCost;
}

/** A full batch's cost in ms (timed, or estimated from a batch of one when clearly over the limit), or why it was not timed. */
export type BatchCost = { ms: number; estimated?: true } | { untimed: string };

export type ToRuntime =
  | {
      type: 'init';
      entryScript: string;
      context: InitContext;
      maxMessageBytes: number;
      /** Time a batch of `rows` generated inputs after init() (ScriptInfo.batchCost); `limitMs` is the bound it is held to. */
      costProbe?: { rows: number; limitMs: number };
    }
  | { type: 'call'; id: number; method: CallMethod; bodies: PackedBodies; metas?: Array<BodyMeta | undefined> };

export type FromRuntime =
  | { type: 'ready'; info: ScriptInfo }
  | { type: 'init-failed'; message: string }
  | { type: 'result'; id: number; outcomes: PackedOutcomes };

/**
 * A message's contentType and headers, as its entry script sees them (the second argument of run).
 * Sent only for messages that have either, so a plain JSON message costs nothing more.
 */
export interface BodyMeta {
  contentType?: string;
  headers?: Record<string, unknown>;
}

/** What the entry script made of one message, inside the isolate: reply JSON (text, or its UTF-8 bytes), reply bytes of a content type, or what was wrong. */
export type Scored =
  | { ok: true; json: string | Uint8Array }
  | { ok: true; bytes: Uint8Array; contentType: string }
  | { ok: false; code: ErrorCode; message: string };

/**
 * Message bodies side by side in one buffer, each ending at `ends[i]`: one object to send, and a thread
 * can take it without a copy. With `align`, each body starts at the next multiple of it, so a binary
 * tensor inside a body can be viewed as a typed array in place.
 */
export interface PackedBodies {
  bytes: Uint8Array;
  ends: Uint32Array;
  align?: number;
}

/** Room for any element type's typed-array view. */
const BODY_ALIGN = 8;
/** Below this a body is a slice of a shared pool (and cheap to copy); above it, it may own its buffer. */
const OWN_BUFFER_MIN_BYTES = 64 * 1024;
const alignUp = (n: number, align: number | undefined): number => (align ? Math.ceil(n / align) * align : n);

/**
 * Copies the bodies into one fresh buffer. Sent as they are, each body (a slice of amqplib's socket
 * read buffer) would be cloned with the whole buffer behind it, up to 64 kB per body: postMessage was
 * 15% of the consumer's thread in the benchmark's first profile.
 */
export function packBodies(bodies: readonly Uint8Array[]): PackedBodies {
  // One large body that owns its whole buffer (amqplib assembles a multi-frame body into a fresh one):
  // sent as it is, so a 5 MB tensor is copied once between the socket and the model (by amqplib), not twice.
  // The thread takes the buffer over: the caller must not read that body again.
  const [only] = bodies;
  if (
    bodies.length === 1 &&
    only.byteLength >= OWN_BUFFER_MIN_BYTES &&
    only.byteOffset === 0 &&
    only.buffer instanceof ArrayBuffer &&
    only.buffer.byteLength === only.byteLength
  ) {
    return { bytes: only, ends: Uint32Array.of(only.byteLength), align: BODY_ALIGN };
  }
  let total = 0;
  for (const b of bodies) total = alignUp(total, BODY_ALIGN) + b.byteLength;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(bodies.length);
  let at = 0;
  for (let i = 0; i < bodies.length; i++) {
    at = alignUp(at, BODY_ALIGN);
    bytes.set(bodies[i], at);
    at += bodies[i].byteLength;
    ends[i] = at;
  }
  return { bytes, ends, align: BODY_ALIGN };
}

/** Views on the packed buffer, no copies. */
export function unpackBodies({ bytes, ends, align }: PackedBodies): Uint8Array[] {
  // Pushed, so packed in every tier (src/packed-array.ts), as are the arrays below.
  const bodies: Uint8Array[] = [];
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    start = alignUp(start, align);
    bodies.push(bytes.subarray(start, ends[i]));
    start = ends[i];
  }
  return bodies;
}

/**
 * A call's outcomes as one buffer of reply bodies (UTF-8, encoded in the isolate, off the consumer's
 * thread) plus the few failures: one object to send instead of a string and an object per message,
 * and the consumer publishes views of the buffer as they are.
 */
export interface PackedOutcomes {
  bodies: PackedBodies;
  failures: Array<{ index: number; code: ErrorCode; message: string }>;
  /** The few replies that are not JSON: their content types, by index. */
  binary?: Array<{ index: number; contentType: string }>;
}

const encoder = new TextEncoder();

export function packOutcomes(scored: readonly Scored[]): PackedOutcomes {
  if (scored.some((s) => s.ok && 'bytes' in s)) return packMixedOutcomes(scored);
  if (scored.some((s) => s.ok && typeof (s as { json: unknown }).json !== 'string')) return packJsonBytes(scored);
  const failures: PackedOutcomes['failures'] = [];
  const texts: string[] = [];
  for (let i = 0; i < scored.length; i++) {
    const s = scored[i];
    if (s.ok) texts.push((s as { json: string }).json);
    else {
      texts.push('');
      failures.push({ index: i, code: s.code, message: s.message });
    }
  }
  const joined = texts.join('');
  // A buffer of its own (not a slice of Node's shared pool), so a thread can take it over.
  const bytes = encoder.encode(joined);
  const ends = new Uint32Array(texts.length);
  // Model output is ASCII (numbers and names): then a body's byte length is its string length.
  const ascii = bytes.byteLength === joined.length;
  let at = 0;
  for (let i = 0; i < texts.length; i++) {
    at += ascii ? texts[i].length : Buffer.byteLength(texts[i], 'utf8');
    ends[i] = at;
  }
  return { bodies: { bytes, ends }, failures };
}

/**
 * JSON answers some of which are already bytes (the built-in script writes its answers so, views on
 * one buffer per batch): copied side by side into one buffer, or, when they already lie side by side
 * from its start with nothing else between (a batch answered whole), that buffer as it is.
 */
function packJsonBytes(scored: readonly Scored[]): PackedOutcomes {
  const failures: PackedOutcomes['failures'] = [];
  const parts: Uint8Array[] = [];
  const ends = new Uint32Array(scored.length);
  let total = 0;
  for (let i = 0; i < scored.length; i++) {
    const s = scored[i];
    if (!s.ok) failures.push({ index: i, code: s.code, message: s.message });
    const json = s.ok ? (s as { json: string | Uint8Array }).json : EMPTY;
    const part = typeof json === 'string' ? encoder.encode(json) : json;
    parts.push(part);
    total += part.byteLength;
    ends[i] = total;
  }
  const { buffer } = parts[0];
  const whole = parts.every((p, i) => p.buffer === buffer && p.byteOffset === (i === 0 ? 0 : ends[i - 1]));
  if (whole) return { bodies: { bytes: new Uint8Array(buffer, 0, total), ends }, failures };
  const bytes = new Uint8Array(total);
  for (let i = 0; i < parts.length; i++) bytes.set(parts[i], ends[i] - parts[i].byteLength);
  return { bodies: { bytes, ends }, failures };
}

const EMPTY = new Uint8Array(0);

/** Some replies are bytes (binary replies): each body encoded on its own, then packed like input bodies. */
function packMixedOutcomes(scored: readonly Scored[]): PackedOutcomes {
  const failures: PackedOutcomes['failures'] = [];
  const binary: NonNullable<PackedOutcomes['binary']> = [];
  const parts = packedMap(scored, (s, index) => {
    if (!s.ok) {
      failures.push({ index, code: s.code, message: s.message });
      return new Uint8Array(0);
    }
    if ('bytes' in s) {
      binary.push({ index, contentType: s.contentType });
      return s.bytes;
    }
    return typeof s.json === 'string' ? encoder.encode(s.json) : s.json;
  });
  return { bodies: packBodies(parts), failures, binary };
}

/** Outcomes whose bodies are views on the one buffer, no copies. */
export function unpackOutcomes({ bodies, failures, binary }: PackedOutcomes): Outcome[] {
  const outcomes: Outcome[] = packedMap(unpackBodies(bodies), (b) => ({
    ok: true,
    body: Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  }));
  for (const { index, code, message } of failures) outcomes[index] = { ok: false, code, message };
  for (const { index, contentType } of binary ?? [])
    (outcomes[index] as { contentType?: string }).contentType = contentType;
  return outcomes;
}
