/**
 * A reply's basic.publish as the bytes amqplib 2.x would write for it (method frame, content header,
 * one body frame), encoded into one buffer from Node's pool. amqplib's own encoders allocate a fresh
 * zeroed buffer per frame, a BigInt per 64-bit field and a closure per header value; with them a
 * reply cost more CPU than the whole scoring of an iris input (README, Benchmark). Pure; the bytes are
 * checked against amqplib's encoders in test/unit/reply-frames.test.ts, value types included
 * (amqplib's rules: a string header is a long string, a number a double unless it is an integer, then
 * the smallest signed integer that holds it).
 */
import type { Reply } from '../reply.js';

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_END = 0xce;
/** class 60 (basic), method 40 (publish) / weight 0. */
const BASIC_PUBLISH = 0x003c0028;
const BASIC_HEADER = 0x003c0000;
const FLAG_CONTENT_TYPE = 0x8000;
const FLAG_HEADERS = 0x2000;
const FLAG_DELIVERY_MODE = 0x1000;
const FLAG_CORRELATION_ID = 0x0400;
const FLAG_MESSAGE_ID = 0x0080;
const FLAG_TIMESTAMP = 0x0040;

/** Bigger than this goes through amqplib, which splits a body over frames of the negotiated frame_max. */
export const MAX_ENCODED_BYTES = 4096;

/**
 * A string's UTF-8 length, and its bytes written, in JS for the short ASCII strings replies are made of
 * (ids, names, header keys): each call into Buffer's C++ costs more than the loop.
 */
function byteLength(s: string): number {
  if (s.length > 64) return Buffer.byteLength(s);
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return Buffer.byteLength(s);
  return s.length;
}

function writeString(b: Buffer, s: string, at: number, bytes: number): void {
  if (bytes !== s.length || bytes > 64) b.write(s, at, 'utf8');
  else for (let i = 0; i < bytes; i++) b[at + i] = s.charCodeAt(i);
}

/** amqplib's isFloatingPoint: above 2^63 - 1 it must be a double. */
const isFloatingPoint = (n: number): boolean => n >= 2 ** 63 || (Math.abs(n) < 2 ** 50 && Math.floor(n) !== n);

/** One header value's size, tag included, as amqplib encodes it; undefined for a type it would encode otherwise. */
function valueSize(v: unknown): number | undefined {
  if (typeof v === 'string') return 5 + byteLength(v);
  if (typeof v !== 'number') return undefined;
  if (isFloatingPoint(v)) return 9;
  if (v < 128 && v >= -128) return 2;
  if (v >= -0x8000 && v < 0x8000) return 3;
  if (v >= -0x80000000 && v < 0x80000000) return 5;
  // amqplib writes a long through BigInt, which throws for a fraction (2^50 + 0.5): it keeps that case.
  return Number.isSafeInteger(v) ? 9 : undefined;
}

function writeValue(b: Buffer, v: string | number, at: number): number {
  if (typeof v === 'string') {
    b[at] = 0x53; // 'S'
    const n = byteLength(v);
    b.writeUInt32BE(n, at + 1);
    writeString(b, v, at + 5, n);
    return at + 5 + n;
  }
  if (isFloatingPoint(v)) {
    b[at] = 0x64; // 'd'
    return b.writeDoubleBE(v, at + 1);
  }
  if (v < 128 && v >= -128) {
    b[at] = 0x62; // 'b'
    return b.writeInt8(v, at + 1);
  }
  if (v >= -0x8000 && v < 0x8000) {
    b[at] = 0x73; // 's'
    return b.writeInt16BE(v, at + 1);
  }
  if (v >= -0x80000000 && v < 0x80000000) {
    b[at] = 0x49; // 'I'
    return b.writeInt32BE(v, at + 1);
  }
  b[at] = 0x6c; // 'l'
  return writeUint64(b, v, at + 1, true);
}

/** A safe integer as 8 bytes big-endian, without a BigInt. */
function writeUint64(b: Buffer, v: number, at: number, signed = false): number {
  const high = Math.floor(v / 2 ** 32);
  if (signed) b.writeInt32BE(high, at);
  else b.writeUInt32BE(high, at);
  b.writeUInt32BE(v - high * 2 ** 32, at + 4);
  return at + 8;
}

function shortString(b: Buffer, s: string, at: number): number {
  const n = byteLength(s);
  b[at] = n;
  writeString(b, s, at + 1, n);
  return at + 1 + n;
}

/**
 * The last header table encoded, by its entries: the replies of a batch carry the same headers (status,
 * model, version, the batch's scoring time) unless a message adds its own (x-queue-wait-ms, a trace), so
 * most replies copy these bytes instead of encoding every key and value again.
 */
const lastTable: { keys: string[]; values: Array<string | number>; bytes: Uint8Array | undefined } = {
  keys: [],
  values: [],
  bytes: undefined,
};

/** The headers as an AMQP field table's bytes (without its length), or undefined for a value amqplib must encode. */
function headerTable(headers: Record<string, string | number | undefined>): Uint8Array | undefined {
  const { keys, values } = lastTable;
  let n = 0;
  let same = lastTable.bytes !== undefined;
  for (const key in headers) {
    const v = headers[key];
    if (v === undefined) continue;
    if (same && (keys[n] !== key || values[n] !== v)) same = false;
    n++;
  }
  if (same && n === keys.length) return lastTable.bytes;
  let size = 0;
  for (const key in headers) {
    const v = headers[key];
    if (v === undefined) continue;
    const valueBytes = valueSize(v);
    const k = byteLength(key);
    if (valueBytes === undefined || k > 255) return undefined;
    size += 1 + k + valueBytes;
  }
  const bytes = Buffer.allocUnsafeSlow(size);
  keys.length = 0;
  values.length = 0;
  let at = 0;
  for (const key in headers) {
    const v = headers[key];
    if (v === undefined) continue;
    keys.push(key);
    values.push(v);
    at = shortString(bytes, key, at);
    at = writeValue(bytes, v, at);
  }
  lastTable.bytes = bytes;
  return bytes;
}

/**
 * The publish's bytes on `channel`, or undefined when amqplib must encode it: a header of another type,
 * a number amqplib cannot write as a long, a short string over 255 bytes, a timestamp that is not a safe integer, or a reply over
 * MAX_ENCODED_BYTES.
 */
export function encodeReplyPublish(channel: number, reply: Reply): Buffer | undefined {
  const p = reply.properties;
  const rk = byteLength(reply.routingKey);
  const ct = byteLength(p.contentType);
  const cid = p.correlationId === undefined ? -1 : byteLength(p.correlationId);
  const mid = byteLength(p.messageId);
  if (rk > 255 || ct > 255 || cid > 255 || mid > 255 || !Number.isSafeInteger(p.timestamp) || p.timestamp < 0)
    return undefined;
  const headers = headerTable(p.headers);
  if (headers === undefined) return undefined;
  const table = headers.byteLength;
  // Each frame: type, channel, size (7 bytes), its payload, the end byte.
  const methodPayload = 4 + 2 + 1 + 1 + rk + 1; // class and method, ticket, exchange '', routing key, bits
  const props = 1 + ct + 4 + table + 1 + (cid >= 0 ? 1 + cid : 0) + 1 + mid + 8;
  const headerPayload = 14 + props; // class, weight, body size, flags
  const bodySize = reply.body.byteLength;
  // amqplib sends no body frame for an empty body.
  const total = 8 + methodPayload + 8 + headerPayload + (bodySize > 0 ? 8 + bodySize : 0);
  if (total > MAX_ENCODED_BYTES) return undefined;

  const b = Buffer.allocUnsafe(total);
  // Method frame.
  b[0] = FRAME_METHOD;
  b.writeUInt16BE(channel, 1);
  b.writeUInt32BE(methodPayload, 3);
  b.writeUInt32BE(BASIC_PUBLISH, 7);
  b.writeUInt16BE(0, 11); // ticket
  b[13] = 0; // exchange: the default one
  let at = shortString(b, reply.routingKey, 14);
  b[at++] = reply.mandatory ? 1 : 0;
  b[at++] = FRAME_END;
  // Content header.
  const header = at;
  b[at] = FRAME_HEADER;
  b.writeUInt16BE(channel, at + 1);
  b.writeUInt32BE(BASIC_HEADER, at + 7);
  writeUint64(b, bodySize, at + 11);
  b.writeUInt16BE(
    FLAG_CONTENT_TYPE |
      FLAG_HEADERS |
      FLAG_DELIVERY_MODE |
      (cid >= 0 ? FLAG_CORRELATION_ID : 0) |
      FLAG_MESSAGE_ID |
      FLAG_TIMESTAMP,
    at + 19,
  );
  at = shortString(b, p.contentType, at + 21);
  b.writeUInt32BE(table, at);
  b.set(headers, at + 4);
  at += 4 + table;
  b[at++] = 2; // deliveryMode: persistent
  if (p.correlationId !== undefined) at = shortString(b, p.correlationId, at);
  at = shortString(b, p.messageId, at);
  at = writeUint64(b, p.timestamp, at);
  b.writeUInt32BE(at - header - 7, header + 3);
  b[at++] = FRAME_END;
  if (bodySize > 0) {
    b[at] = FRAME_BODY;
    b.writeUInt16BE(channel, at + 1);
    b.writeUInt32BE(bodySize, at + 3);
    at += 7 + reply.body.copy(b, at + 7);
    b[at++] = FRAME_END;
  }
  return at === total ? b : undefined;
}
