/** The only file that imports onnxruntime-node: model file discovery, session options, metadata. */
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { BootError } from '../errors.js';
import type { InitContext } from '../isolate/entry-script.js';
import { listFolder } from '../model-version.js';
import type { ElementType, TensorData, TensorSpec } from './tensors.js';
import { ELEMENT_TYPES, isElementType } from './element-types.js';
import { rewriteModel, type ZipMapOutput } from './graph-rewrite.js';

export interface LoadedModel {
  name: string;
  inputs: TensorSpec[];
  /** Outputs in the order the model lists them; a ZipMap output as the tensor of its probabilities. */
  outputs: TensorSpec[];
  /** ZipMap outputs, which entry.ts turns into `{label: probability}` lists. */
  zipMaps: ZipMapOutput[];
  /** Non-tensor outputs the runtime cannot return, left out (for the boot log). */
  dropped: string[];
  run(feeds: Record<string, TensorData>): Promise<Record<string, TensorData>>;
  /** Frees the session's native memory; no run after it. */
  release(): Promise<void>;
}

/** The model folder must hold exactly one .onnx file: guessing between several would score with the wrong one. */
export function findModelFile(modelDir: string): string {
  const files = listFolder(modelDir)
    .map((d) => d.name)
    .filter((f) => f.endsWith('.onnx'));
  if (files.length !== 1) {
    throw new BootError(
      `model folder ${modelDir} must hold exactly one .onnx file, found ${files.length}${files.length ? `: ${files.join(', ')}` : ''}`,
    );
  }
  return join(modelDir, files[0]);
}

/** ORT_* as onnxruntime's session options: sequential, one inter-op thread, no spinning unless asked. */
export function sessionOptions(o: InitContext['ort']): ort.InferenceSession.SessionOptions {
  return {
    intraOpNumThreads: o.intraOpNumThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: o.graphOptimizationLevel,
    // A pool thread (ORT_INTRA_OP_THREADS above 1) spins after each run by default, waiting for the next:
    // CPU the broker, on the same cores, needs. ORT_ALLOW_SPINNING=true lets it spin, for a pool with cores of its own.
    ...(o.allowSpinning
      ? {}
      : { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } }),
  };
}

export async function loadModel(context: InitContext): Promise<LoadedModel> {
  const file = findModelFile(context.modelDir);
  const options = sessionOptions(context.ort);

  let session = await ort.InferenceSession.create(file, options);
  const keep = context.onnx?.outputs ?? [];
  const nonTensor = new Set(session.outputMetadata.filter((m) => !m.isTensor).map((m) => m.name));
  let zipMaps: ZipMapOutput[] = [];
  let dropped: string[] = [];
  // Only a model that needs it is decoded and rewritten: a large one loads once, from its file.
  if (nonTensor.size > 0 || keep.length > 0) {
    const rewritten = rewriteModel(readFileSync(file), { nonTensor, keep });
    await session.release();
    session = await ort.InferenceSession.create(rewritten.bytes, options);
    ({ zipMaps, dropped } = rewritten);
  }
  const inputs = session.inputMetadata.map(toSpec);
  const bySource = new Map(zipMaps.map((z) => [z.source, z]));
  // A ZipMap's probabilities are answered under the ZipMap output's name, as Python's onnxruntime names them.
  const outputs = session.outputMetadata
    .map(toSpec)
    .map((s) => (bySource.has(s.name) ? { ...s, name: bySource.get(s.name)!.name } : s));
  return {
    name: basename(file, '.onnx'),
    inputs,
    outputs,
    zipMaps,
    dropped,
    async run(feeds) {
      const tensors: Record<string, ort.Tensor> = {};
      for (const [k, t] of Object.entries(feeds))
        tensors[k] = new ort.Tensor(t.type, t.data as ort.Tensor['data'], t.dims);
      const results = await session.run(tensors);
      const out: Record<string, TensorData> = {};
      for (const [k, t] of Object.entries(results)) {
        out[k] = { type: t.type as ElementType, data: t.data as TensorData['data'], dims: [...t.dims] };
      }
      for (const z of zipMaps) {
        out[z.name] = out[z.source];
        delete out[z.source];
      }
      return out;
    },
    release: () => session.release(),
  };
}

function toSpec(meta: ort.InferenceSession.ValueMetadata): TensorSpec {
  if (!meta.isTensor)
    throw new BootError(`model value '${meta.name}' is not a tensor; the built-in entry script takes tensors only`);
  if (!isElementType(meta.type)) {
    throw new BootError(
      `model value '${meta.name}' has element type ${meta.type}; the built-in entry script takes ${ELEMENT_TYPES.join(', ')}`,
    );
  }
  return { name: meta.name, type: meta.type as ElementType, dims: meta.shape };
}
