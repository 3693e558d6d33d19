/** JSON Schemas of `data` and of the result, from the model's tensor specs: the async counterpart of Azure ML's Swagger. */
import type { TensorSpec } from './tensors.js';

function elementSchema(type: TensorSpec['type']): object {
  if (type === 'bool') return { type: 'boolean' };
  if (type === 'int32' || type === 'int64') return { type: 'integer' };
  return { type: 'number' };
}

export function tensorSchema(spec: TensorSpec): object {
  let schema: object = elementSchema(spec.type);
  for (let axis = spec.dims.length - 1; axis >= 0; axis--) {
    const d = spec.dims[axis];
    const fixed = typeof d === 'number' && d >= 0;
    schema = { type: 'array', items: schema, minItems: fixed ? d : 1, ...(fixed ? { maxItems: d } : {}) };
  }
  return { ...schema, description: `${spec.type} tensor '${spec.name}', shape [${spec.dims.join(',')}]` };
}

function objectSchema(specs: readonly TensorSpec[]): object {
  return {
    type: 'object',
    properties: Object.fromEntries(specs.map((s) => [s.name, tensorSchema(s)])),
    required: specs.map((s) => s.name),
    additionalProperties: false,
  };
}

export const dataSchema = (inputs: readonly TensorSpec[]): object =>
  inputs.length === 1 ? tensorSchema(inputs[0]) : objectSchema(inputs);

export const resultSchema = (outputs: readonly TensorSpec[]): object =>
  outputs.length === 1 ? tensorSchema(outputs[0]) : objectSchema(outputs);
