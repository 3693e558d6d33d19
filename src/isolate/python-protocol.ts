/**
 * The wire between the consumer and a Python isolate (src/isolate/python/scorer_runtime.py has the
 * other end): frames on the child's stdin and stdout, `u32 length | u8 type | payload`, little-endian,
 * `length` counting the type byte and the payload. Pure: building and reading frames, no I/O.
 *
 *   I init         JSON {entryScript}                                   consumer → python, once
 *   R ready        JSON {modelName, hasRunBatch, inputSchema?, outputSchema?, python: {executable, version}}
 *   F init-failed  UTF-8 text, one line
 *   C call         u32 id | u8 method | u32 n | u8 kind[n] | u32 end[n] | u32 metaLength | meta | bodies
 *   O result       u32 id | u32 n | u8 status[n] | u32 end[n] | bodies
 *
 * A call's bodies sit side by side, item i ending at `end[i]` (from the start of the bodies): bytes, not
 * one JSON document per batch. `kind` 0 is the JSON text under "data", given to the script as a `str`;
 * other kinds (a binary payload's raw bytes) and `meta` (per-item content type and headers) are room
 * for binary payloads, which send none yet. A result item's status is OK (its body is the reply JSON),
 * RUN_FAILED or BAD_RESULT (its body is the message).
 */
import type { ErrorCode } from '../errors.js';

export const FRAME = { init: 0x49, call: 0x43, ready: 0x52, initFailed: 0x46, result: 0x4f } as const;
export const METHOD = { run: 0, runBatch: 1 } as const;
export const ITEM_KIND = { dataText: 0 } as const;
export const STATUS_CODES: readonly (ErrorCode | undefined)[] = [undefined, 'RUN_FAILED', 'BAD_RESULT'];

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

/** One call frame holding every item's data text, UTF-8 encoded straight into the frame. */
export function encodeCall(id: number, method: keyof typeof METHOD, texts: readonly string[]): Buffer {
  const n = texts.length;
  const lengths = new Array<number>(n);
  let total = 0;
  for (let i = 0; i < n; i++) total += lengths[i] = Buffer.byteLength(texts[i], 'utf8');
  const { buf } = frame(FRAME.call, 9 + n * 5 + 4 + total);
  let at = HEAD;
  at = buf.writeUInt32LE(id, at);
  at = buf.writeUInt8(METHOD[method], at);
  at = buf.writeUInt32LE(n, at);
  buf.fill(ITEM_KIND.dataText, at, at + n);
  at += n;
  let end = 0;
  for (let i = 0; i < n; i++) at = buf.writeUInt32LE((end += lengths[i]), at);
  at = buf.writeUInt32LE(0, at); // no per-item metadata yet
  for (let i = 0; i < n; i++) at += buf.write(texts[i], at, lengths[i], 'utf8');
  return buf;
}

/** Views on the frame: statuses and bodies are not copied; ends are (they may be unaligned). */
export function decodeResult(payload: Buffer): ResultFrame {
  const id = payload.readUInt32LE(0);
  const n = payload.readUInt32LE(4);
  const status = payload.subarray(8, 8 + n);
  const ends = new Uint32Array(n);
  let at = 8 + n;
  for (let i = 0; i < n; i++, at += 4) ends[i] = payload.readUInt32LE(at);
  const bodies = payload.subarray(at);
  if (n > 0 && ends[n - 1] !== bodies.length) throw new Error(`python result frame: bodies end at ${ends[n - 1]}, frame has ${bodies.length} bytes`);
  return { id, status, ends, bodies };
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
