/** JSON Schemas of `data` and of the result, from the model's tensor specs: the async counterpart of Azure ML's Swagger. */
import type { TensorSpec } from './tensors.js';
import { elementInfo } from './element-types.js';
import type { ZipMapOutput } from './graph-rewrite.js';

const elementSchema = (type: TensorSpec['type']): object => elementInfo(type).jsonSchema;

/** A ZipMap output as Python's onnxruntime answers it: one {label: probability} object per row. */
function zipMapSchema(z: ZipMapOutput): object {
  return {
    type: 'array',
    items: {
      type: 'object',
      properties: Object.fromEntries(z.labels.map((l) => [l, { type: 'number' }])),
      required: z.labels,
      additionalProperties: false,
    },
    description: `one {label: probability} object per row (scikit-learn ZipMap '${z.name}')`,
  };
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

function objectSchema(specs: readonly TensorSpec[], zipMaps: readonly ZipMapOutput[] = []): object {
  return {
    type: 'object',
    properties: Object.fromEntries(specs.map((s) => [s.name, valueSchema(s, zipMaps)])),
    required: specs.map((s) => s.name),
    additionalProperties: false,
  };
}

export const dataSchema = (inputs: readonly TensorSpec[]): object =>
  inputs.length === 1 ? tensorSchema(inputs[0]) : objectSchema(inputs);

function valueSchema(spec: TensorSpec, zipMaps: readonly ZipMapOutput[]): object {
  const z = zipMaps.find((m) => m.name === spec.name);
  return z ? zipMapSchema(z) : tensorSchema(spec);
}

export const resultSchema = (outputs: readonly TensorSpec[], zipMaps: readonly ZipMapOutput[] = []): object =>
  outputs.length === 1 ? valueSchema(outputs[0], zipMaps) : objectSchema(outputs, zipMaps);
