/**
 * The binary side of the entry-script contract (CONTRACT §5): what a script is told about a message
 * besides its body, and the shape of a binary reply, `{ contentType: string, body: Uint8Array }`.
 */
import type { ScriptMeta } from './entry-script.js';
import type { BodyMeta, Scored } from './protocol.js';
import { JSON_CONTENT_TYPE } from './content-types.js';

const NO_HEADERS: Record<string, unknown> = Object.freeze({}) as Record<string, unknown>;

export function scriptMeta(meta: BodyMeta | undefined): ScriptMeta {
  return { contentType: meta?.contentType || JSON_CONTENT_TYPE, headers: meta?.headers ?? NO_HEADERS };
}

/** A script's result that is a binary reply, as the reply it becomes; undefined for any other value (replied as JSON). */
export function binaryResult(result: unknown): Scored | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const { contentType, body } = result as { contentType?: unknown; body?: unknown };
  // A Buffer is a Uint8Array; a typed array of a script's other realm is caught by isView.
  if (
    !(body instanceof Uint8Array) &&
    !(ArrayBuffer.isView(body) && Object.prototype.toString.call(body) === '[object Uint8Array]')
  )
    return undefined;
  if (typeof contentType !== 'string' || contentType.trim() === '') {
    return {
      ok: false,
      code: 'BAD_RESULT',
      message: 'run returned a binary reply { body: Uint8Array } without a contentType string',
    };
  }
  return { ok: true, bytes: body as Uint8Array, contentType };
}
