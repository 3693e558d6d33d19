/**
 * Bytes → the value under "data", or a ScoringError saying what is wrong with the message.
 * Pure, and cheap enough for the hot path; it runs next to the entry script, off the broker's thread.
 */
import { isUtf8 } from 'node:buffer';
import { ScoringError } from '../errors.js';

/** Deeper than any tensor or record a model takes; bounds every later walk of the value (stringify, schema, tensors). */
export const MAX_JSON_DEPTH = 64;

const decoder = new TextDecoder('utf-8', { fatal: true });

export function checkSize(byteLength: number, maxMessageBytes: number): void {
  if (byteLength > maxMessageBytes) {
    throw new ScoringError('TOO_LARGE', `message is ${byteLength} bytes, over MAX_MESSAGE_BYTES (${maxMessageBytes})`);
  }
}

/** The parsed value of the body's "data" key. */
export function parseMessage(body: Uint8Array, maxMessageBytes: number): unknown {
  checkSize(body.byteLength, maxMessageBytes);
  if (!isUtf8(body)) throw new ScoringError('BAD_UTF8', 'message body is not valid UTF-8');
  const text = decoder.decode(body);
  checkDepth(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ScoringError('BAD_JSON', `message body is not JSON: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ScoringError('NOT_OBJECT', `message body must be a JSON object {"data": ...}, got ${jsonType(parsed)}`);
  }
  if (!Object.hasOwn(parsed, 'data')) throw new ScoringError('NO_DATA', 'message body has no "data" key');
  const data = (parsed as { data: unknown }).data;
  // JSON.parse reads a literal beyond a double (1e400) as Infinity, which JSON.stringify would pass on as null.
  if (MAYBE_BEYOND_DOUBLE.test(text)) checkFinite(data, 'data');
  return data;
}

/** Only a literal with a 3-digit exponent or 309+ digits can overflow a double: the walk runs only then. */
const MAYBE_BEYOND_DOUBLE = /[eE][+]?\d{3}|\d{309}/;

function checkFinite(value: unknown, at: string): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) {
      throw new ScoringError(
        'BAD_JSON',
        `message body has a number out of range at ${at}: JSON numbers must fit a double (about ±1.8e308)`,
      );
    }
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) checkFinite(v, Array.isArray(value) ? `${at}[${k}]` : `${at}.${k}`);
  }
}

/** The seed's `run(data)` gets the JSON text of the data value. */
export function dataText(value: unknown): string {
  return JSON.stringify(value);
}

/** One pass over the text, skipping strings: rejects hostile nesting before JSON.parse builds it. */
function checkDepth(text: string): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new ScoringError(
          'TOO_DEEP',
          `message JSON is nested deeper than ${MAX_JSON_DEPTH} levels (a fixed limit, not a setting: no tensor is that deep)`,
        );
      }
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}

/** The one JSON-type describer: 'null', 'array', 'object' or the typeof of anything else. */
export function jsonKind(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value === 'object' ? 'object' : typeof value;
}

/** jsonKind as a sentence reads it: 'null', 'an array', 'an object', 'a number'. */
export function jsonType(value: unknown): string {
  const kind = jsonKind(value);
  return kind === 'null' ? kind : kind === 'array' || kind === 'object' ? `an ${kind}` : `a ${kind}`;
}
