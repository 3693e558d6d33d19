/**
 * A result that is already its reply's JSON, as text or as its UTF-8 bytes: call-script.ts sends it as
 * it is rather than JSON.stringify the result. The built-in ONNX script writes its answers straight from the output
 * tensors (onnx/answer-json.ts). A symbol from the global registry, not a class: the built-in script is
 * loaded through tsImport, in a module namespace of its own, where a class of this module would be
 * another class and `instanceof` would fail.
 */
const JSON_TEXT: unique symbol = Symbol.for('onnx-rabbitmq-scorer/json-text');

export interface JsonText {
  readonly [JSON_TEXT]: string | Uint8Array;
}

export function jsonText(text: string | Uint8Array): JsonText {
  return { [JSON_TEXT]: text };
}

/** The text (or UTF-8 bytes) of a JsonText; undefined for any other value. */
export function textOf(result: unknown): string | Uint8Array | undefined {
  return typeof result === 'object' && result !== null && JSON_TEXT in result
    ? (result as JsonText)[JSON_TEXT]
    : undefined;
}
