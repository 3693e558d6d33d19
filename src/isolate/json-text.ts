/**
 * A result that is already its reply's JSON text: call-script.ts sends the text as it is rather than
 * JSON.stringify the result. The built-in ONNX script writes its answers straight from the output
 * tensors (onnx/answer-json.ts). A symbol from the global registry, not a class: the built-in script is
 * loaded through tsImport, in a module namespace of its own, where a class of this module would be
 * another class and `instanceof` would fail.
 */
const JSON_TEXT: unique symbol = Symbol.for('onnx-rabbitmq-scorer/json-text');

export interface JsonText {
  readonly [JSON_TEXT]: string;
}

export function jsonText(text: string): JsonText {
  return { [JSON_TEXT]: text };
}

/** The text of a JsonText; undefined for any other value. */
export function textOf(result: unknown): string | undefined {
  return typeof result === 'object' && result !== null && JSON_TEXT in result
    ? (result as JsonText)[JSON_TEXT]
    : undefined;
}
