/**
 * The built-in script's answers as the reply carries them: an answer it wrote as JSON text
 * (onnx/answer-json.ts) parsed back, every other value (an error, an object of the general path) as it is.
 */
import { textOf } from '../../src/isolate/json-text.js';

const utf8 = new TextDecoder();

export async function answersOf(results: unknown): Promise<unknown[]> {
  return ((await results) as unknown[]).map((r) => {
    const text = textOf(r);
    return text === undefined ? r : JSON.parse(typeof text === 'string' ? text : utf8.decode(text));
  });
}
