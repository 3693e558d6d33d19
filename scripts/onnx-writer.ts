// Minimal ONNX model builder on top of onnx-proto's protobufjs classes.
// onnx-proto is CommonJS and attaches `onnx` as a property after
// `module.exports = $root`, so Node's ESM named-export detection misses it:
// only the default import works at runtime.
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;

export const FLOAT = onnx.TensorProto.DataType.FLOAT;
export const INT64 = onnx.TensorProto.DataType.INT64;

export type Dim = number | string;
export type AttrValue = number | number[] | string;

/** An int attribute value, distinguished from float because ONNX types attributes. */
export class Int {
  constructor(readonly value: number) {}
}

/** Float32 tensor stored as little-endian raw_data: far smaller and faster to parse than float_data. */
export function floatTensor(name: string, dims: number[], values: ArrayLike<number>): onnxProto.onnx.ITensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (values.length !== count) throw new Error(`${name}: ${values.length} values for dims [${dims}]`);
  const bytes = new Uint8Array(count * 4);
  const view = new DataView(bytes.buffer);
  // DataView pins the byte order; a Float32Array view would follow host endianness.
  for (let i = 0; i < count; i++) view.setFloat32(i * 4, values[i], true);
  return { name, dims, dataType: FLOAT, rawData: bytes };
}

export function valueInfo(name: string, elemType: number, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  };
}

export function node(
  opType: string,
  inputs: string[],
  outputs: string[],
  attrs: Record<string, AttrValue | Int> = {},
  name = `${opType}_${outputs[0]}`,
): onnxProto.onnx.INodeProto {
  const AT = onnx.AttributeProto.AttributeType;
  const attribute = Object.entries(attrs).map(([key, v]): onnxProto.onnx.IAttributeProto => {
    if (v instanceof Int) return { name: key, type: AT.INT, i: v.value };
    if (typeof v === 'number') return { name: key, type: AT.FLOAT, f: v };
    if (typeof v === 'string') return { name: key, type: AT.STRING, s: new TextEncoder().encode(v) };
    return { name: key, type: AT.INTS, ints: v };
  });
  return { name, opType, input: inputs, output: outputs, attribute };
}

export interface GraphSpec {
  name: string;
  nodes: onnxProto.onnx.INodeProto[];
  initializers: onnxProto.onnx.ITensorProto[];
  inputs: onnxProto.onnx.IValueInfoProto[];
  outputs: onnxProto.onnx.IValueInfoProto[];
  docString?: string;
}

export interface ModelOptions {
  producerName?: string;
  producerVersion?: string;
  /** IR 8 / opset 13: old enough for any recent runtime, new enough for Softmax over a single axis. */
  irVersion?: number;
  opset?: number;
}

export function buildModel(graph: GraphSpec, opts: ModelOptions = {}): onnxProto.onnx.ModelProto {
  const model = onnx.ModelProto.create({
    irVersion: opts.irVersion ?? 8,
    opsetImport: [{ domain: '', version: opts.opset ?? 13 }],
    producerName: opts.producerName ?? 'onnx-rabbitmq-scorer',
    producerVersion: opts.producerVersion ?? '0.1.0',
    graph: {
      name: graph.name,
      node: graph.nodes,
      initializer: graph.initializers,
      input: graph.inputs,
      output: graph.outputs,
      docString: graph.docString ?? '',
    },
  });
  const problem = onnx.ModelProto.verify(model);
  if (problem) throw new Error(`invalid ModelProto: ${problem}`);
  return model;
}

export function encodeModel(model: onnxProto.onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
