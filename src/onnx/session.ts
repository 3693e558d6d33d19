/** The only file that imports onnxruntime-node: model file discovery, session options, metadata. */
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BootError } from '../errors.js';
import type { InitContext } from '../entry-script.js';
import type { ElementType, TensorData, TensorSpec } from './tensors.js';

const SUPPORTED = new Set<string>(['float32', 'float64', 'int32', 'int64', 'bool']);

export interface LoadedModel {
  name: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  run(feeds: Record<string, TensorData>): Promise<Record<string, TensorData>>;
}

/** The model folder must hold exactly one .onnx file: guessing between several would score with the wrong one. */
export function findModelFile(modelDir: string): string {
  let files: string[];
  try {
    files = readdirSync(modelDir).filter((f) => f.endsWith('.onnx'));
  } catch (err) {
    throw new BootError(`model folder ${modelDir} cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  if (files.length !== 1) {
    throw new BootError(`model folder ${modelDir} must hold exactly one .onnx file, found ${files.length}${files.length ? `: ${files.join(', ')}` : ''}`);
  }
  return join(modelDir, files[0]);
}

export async function loadModel(context: InitContext): Promise<LoadedModel> {
  const file = findModelFile(context.modelDir);
  const session = await ort.InferenceSession.create(file, {
    intraOpNumThreads: context.ort.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: context.ort.graphOptimizationLevel,
  });
  const inputs = session.inputMetadata.map(toSpec);
  const outputs = session.outputMetadata.map(toSpec);
  return {
    name: basename(file, '.onnx'),
    inputs,
    outputs,
    async run(feeds) {
      const tensors: Record<string, ort.Tensor> = {};
      for (const [k, t] of Object.entries(feeds)) tensors[k] = new ort.Tensor(t.type, t.data, t.dims);
      const results = await session.run(tensors);
      const out: Record<string, TensorData> = {};
      for (const [k, t] of Object.entries(results)) {
        out[k] = { type: t.type as ElementType, data: t.data as TensorData['data'], dims: [...t.dims] };
      }
      return out;
    },
  };
}

function toSpec(meta: ort.InferenceSession.ValueMetadata): TensorSpec {
  if (!meta.isTensor) throw new BootError(`model value '${meta.name}' is not a tensor; the built-in entry script takes tensors only`);
  if (!SUPPORTED.has(meta.type)) {
    throw new BootError(`model value '${meta.name}' has element type ${meta.type}; the built-in entry script takes float32, float64, int32, int64 and bool`);
  }
  return { name: meta.name, type: meta.type as ElementType, dims: meta.shape };
}
