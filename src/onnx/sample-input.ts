/**
 * A `data` value of the model's input shape, made from the input schema the built-in script
 * documents (onnx/schema.ts): zeros (false for booleans), one row where an axis is free. A reload
 * scores it on the new model before any input goes there, so a model that loads but cannot run
 * (an op the runtime lacks, a shape its graph contradicts) is caught while the old one still serves.
 */
export function sampleInput(schema: object, leaf: (type: string | undefined) => unknown = zeros): unknown {
  const s = schema as { type?: string; items?: object; minItems?: number; properties?: Record<string, object> };
  if (s.type === 'array')
    return Array.from({ length: Math.max(1, s.minItems ?? 1) }, () => sampleInput(s.items ?? {}, leaf));
  if (s.type === 'object')
    return Object.fromEntries(Object.entries(s.properties ?? {}).map(([name, p]) => [name, sampleInput(p, leaf)]));
  return leaf(s.type);
}

const zeros = (type: string | undefined): unknown => (type === 'boolean' ? false : 0);

/**
 * Values as real requests carry them, for timing: a float as JSON writes a float32 (nine digits), which
 * takes the reader longer than a zero.
 */
export const typicalValues = (type: string | undefined): unknown =>
  type === 'boolean' ? false : type === 'integer' ? 1 : type === 'string' ? 'a' : 0.123456789;
