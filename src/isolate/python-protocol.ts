/**
 * The wire between the consumer and a Python isolate (src/isolate/python/scorer_runtime.py has the
 * other end): frames on the child's stdin and stdout, `u32 length | u8 type | payload`, little-endian,
 * `length` counting the type byte and the payload. Pure: building and reading frames, no I/O.
 *
 *   I init         JSON {entryScript}                                   consumer → python, once
 *   R ready        JSON {modelName, hasRunBatch, inputSchema?, outputSchema?, takesMeta, python: {executable, version}}
 *   F init-failed  UTF-8 text, one line
 *   C call         u32 id | u8 method | u32 n | u8 kind[n] | u32 end[n] | u32 metaLength | meta | bodies
 *   O result       u32 id | u32 n | u8 status[n] | u32 end[n] | u32 metaLength | meta | bodies
 *
 * A call's bodies sit side by side, item i ending at `end[i]` (from the start of the bodies): bytes, not
 * one JSON document per batch. `kind` 0 is the JSON text under "data", given to the script as a `str`;
 * kind 1 is a binary message's body (its contentType is not JSON), given as `bytes`. A call's `meta`
 * (empty when no item has any, or the script's run takes none: `takesMeta` false) is a JSON array, one
 * entry per item, `{contentType?, headers?}` or null; header values that are bytes (AMQP byte arrays,
 * Buffers here) travel as `{"!": "bytes", "value": base64}`, in the `{"!": type, value}` shape amqplib
 * gives timestamps and decimals. A result item's status is OK (its body is the reply JSON), BINARY (its
 * body is the reply's bytes as they are), RUN_FAILED or BAD_RESULT (its body is the message); a result's
 * `meta` (empty when no item is BINARY) is a JSON array of the BINARY items' content types, in order.
 */
import type { ErrorCode } from '../errors.js';

export const FRAME = { init: 0x49, call: 0x43, ready: 0x52, initFailed: 0x46, result: 0x4f } as const;
export const METHOD = { run: 0, runBatch: 1 } as const;
export const ITEM_KIND = { dataText: 0, bytes: 1 } as const;
export const STATUS = { ok: 0, runFailed: 1, badResult: 2, binary: 3 } as const;
/** The error code of a failed item's status; undefined for the two that are replies. */
export const STATUS_CODES: readonly (ErrorCode | undefined)[] = [undefined, 'RUN_FAILED', 'BAD_RESULT', undefined];

const HEAD = 5;

export interface Frame {
  type: number;
  payload: Buffer;
}

export interface ResultFrame {
  id: number;
  status: Uint8Array;
  ends: Uint32Array;
  bodies: Buffer;
  /** The content type of each BINARY item, in item order. */
  contentTypes: string[];
}

function frame(type: number, payloadLength: number): { buf: Buffer; at: number } {
  const buf = Buffer.allocUnsafe(HEAD + payloadLength);
  buf.writeUInt32LE(payloadLength + 1, 0);
  buf[4] = type;
  return { buf, at: HEAD };
}

export function encodeJsonFrame(type: number, value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value));
  const { buf, at } = frame(type, json.length);
  json.copy(buf, at);
  return buf;
}

/**
 * One call frame: a data text (a string) is UTF-8 encoded straight into the frame, a binary body
 * (bytes) copied as it is. `meta` is the call's metadata section, already JSON (see metaSection).
 */
export function encodeCall(
  id: number,
  method: keyof typeof METHOD,
  items: ReadonlyArray<string | Uint8Array>,
  meta?: string,
): Buffer {
  const n = items.length;
  const lengths = new Array<number>(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const item = items[i];
    total += lengths[i] = typeof item === 'string' ? Buffer.byteLength(item, 'utf8') : item.byteLength;
  }
  const metaLength = meta ? Buffer.byteLength(meta, 'utf8') : 0;
  const { buf } = frame(FRAME.call, 9 + n * 5 + 4 + metaLength + total);
  let at = HEAD;
  at = buf.writeUInt32LE(id, at);
  at = buf.writeUInt8(METHOD[method], at);
  at = buf.writeUInt32LE(n, at);
  for (let i = 0; i < n; i++) buf[at++] = typeof items[i] === 'string' ? ITEM_KIND.dataText : ITEM_KIND.bytes;
  let end = 0;
  for (let i = 0; i < n; i++) at = buf.writeUInt32LE((end += lengths[i]), at);
  at = buf.writeUInt32LE(metaLength, at);
  if (meta) at += buf.write(meta, at, metaLength, 'utf8');
  for (let i = 0; i < n; i++) {
    const item = items[i];
    if (typeof item === 'string') at += buf.write(item, at, lengths[i], 'utf8');
    else {
      buf.set(item, at);
      at += lengths[i];
    }
  }
  return buf;
}

/** A message's contentType and headers as the call's metadata entry carries them to Python. */
export interface ItemMeta {
  contentType?: string;
  headers?: Record<string, unknown>;
}

/**
 * The metadata section of a call: undefined when no item has any (Python then gives every item the
 * default meta, application/json and no headers). Bytes in headers become `{"!": "bytes", value: base64}`.
 */
export function metaSection(metas: ReadonlyArray<ItemMeta | undefined>): string | undefined {
  if (!metas.some((m) => m && (m.contentType || m.headers))) return undefined;
  return JSON.stringify(
    metas.map((m) => (m && (m.contentType || m.headers) ? { contentType: m.contentType, headers: m.headers } : null)),
    bytesAsTagged,
  );
}

/** JSON.stringify has already turned a Buffer into {type: 'Buffer', data: [...]} by now: the holder still has the original. */
function bytesAsTagged(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  if (raw instanceof Uint8Array)
    return { '!': 'bytes', value: Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64') };
  return value;
}

/** Views on the frame: statuses and bodies are not copied; ends are (they may be unaligned). */
export function decodeResult(payload: Buffer): ResultFrame {
  const id = payload.readUInt32LE(0);
  const n = payload.readUInt32LE(4);
  const status = payload.subarray(8, 8 + n);
  const ends = new Uint32Array(n);
  let at = 8 + n;
  for (let i = 0; i < n; i++, at += 4) ends[i] = payload.readUInt32LE(at);
  const metaLength = payload.readUInt32LE(at);
  at += 4;
  const contentTypes = metaLength > 0 ? (JSON.parse(payload.toString('utf8', at, at + metaLength)) as string[]) : [];
  const bodies = payload.subarray(at + metaLength);
  if (n > 0 && ends[n - 1] !== bodies.length)
    throw new Error(`python result frame: bodies end at ${ends[n - 1]}, frame has ${bodies.length} bytes`);
  let binary = 0;
  for (let i = 0; i < n; i++) if (status[i] === STATUS.binary) binary++;
  if (binary !== contentTypes.length)
    throw new Error(`python result frame: ${binary} binary items, ${contentTypes.length} content types`);
  return { id, status, ends, bodies, contentTypes };
}

/** Reassembles frames from the chunks of a stream. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    while (this.buffered >= HEAD) {
      const head = this.chunks[0].length >= HEAD ? this.chunks[0] : this.join();
      const length = head.readUInt32LE(0);
      if (this.buffered < 4 + length) break;
      const all = this.chunks.length === 1 ? this.chunks[0] : this.join();
      frames.push({ type: all[4], payload: all.subarray(HEAD, 4 + length) });
      const rest = all.subarray(4 + length);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
    }
    return frames;
  }

  private join(): Buffer {
    const joined = Buffer.concat(this.chunks, this.buffered);
    this.chunks = [joined];
    return joined;
  }
}
