/**
 * The built-in entry script, used when ENTRY_SCRIPT is unset: any ONNX model with tensor inputs,
 * no code. `data` is a nested array (single input) or an object keyed by input name; many messages
 * are stacked along the batch axis into one session run.
 */
import type { InitContext, ScriptMeta } from '../entry-script.js';
import { ScoringError } from '../errors.js';
import { loadModel, type LoadedModel } from './session.js';
import { dataSchema, resultSchema } from './schema.js';
import { readNumericTensor } from '../runtime/numeric-data.js';
import { binaryReply, imagePlanFor, readBinaryInputs, replyTypeOf, sliceOutputs, type BinaryModel } from './binary.js';
import { buildInputs, canStack, fitsSpec, splitOutputs, stackInputs, type Limits, type TensorData, type TensorSpec } from './tensors.js';

let model: LoadedModel;
let limits: Limits;
let stackable = false;
/** The model's one input, when it is float: bodies are read straight into its typed array. */
let floatInput: (TensorSpec & { type: 'float32' | 'float64' }) | undefined;
/** .npy, safetensors and image bodies, and binary replies (onnx/binary.ts). */
let binaryModel: BinaryModel;
export let modelName = '';

/** A message's inputs, already tensors (readBody). */
class Prepared {
  constructor(readonly inputs: Record<string, TensorData>) {}
}

export async function init(context: InitContext): Promise<void> {
  model = await loadModel(context);
  limits = { maxTensorElements: context.maxTensorElements };
  stackable = canStack(model.inputs);
  modelName = model.name;
  const [only] = model.inputs;
  floatInput = model.inputs.length === 1 && (only.type === 'float32' || only.type === 'float64') ? { ...only, type: only.type } : undefined;
  binaryModel = { inputs: model.inputs, outputs: model.outputs, limits, image: imagePlanFor(model.inputs, context.image) };
}

/**
 * Plain numeric data for a float model, read from the bytes into the tensor it becomes: no JSON.parse,
 * no nested arrays. undefined for anything else, which the general path (buildInputs) checks and words.
 */
export function readBody(body: Uint8Array): Prepared | undefined {
  if (!floatInput) return undefined;
  const t = readNumericTensor(body, floatInput.type, limits.maxTensorElements);
  if (!t || !fitsSpec(t.dims, floatInput)) return undefined;
  return new Prepared({ [floatInput.name]: { type: floatInput.type, data: t.data, dims: t.dims } });
}

/** For documentation (AsyncAPI) only: the tensor checks below say more than a schema validator would. */
export function apiSchemas(): { inputSchema: object; outputSchema: object } {
  return { inputSchema: dataSchema(model.inputs), outputSchema: resultSchema(model.outputs) };
}

/** A binary body (its bytes) goes as it is, JSON data as its parsed value. */
const valueOf = (data: string | Uint8Array): unknown => (typeof data === 'string' ? JSON.parse(data) : data);

export async function run(data: string | Uint8Array, meta?: ScriptMeta): Promise<unknown> {
  const [result] = await runBatchParsed([valueOf(data)], meta && [meta]);
  if (result instanceof Error) throw result;
  return result;
}

export async function runBatch(items: Array<string | Uint8Array>, metas?: ScriptMeta[]): Promise<unknown[]> {
  return runBatchParsed(items.map(valueOf), metas);
}

/** One result per value, in order; a value that fails its checks gets its own Error and is left out of the run. */
export async function runBatchParsed(values: unknown[], metas?: ScriptMeta[]): Promise<unknown[]> {
  const results: unknown[] = new Array(values.length);
  const good: number[] = [];
  const feeds: Record<string, TensorData>[] = [];
  /** Per good message: the binary reply type it asked for, or undefined for JSON. */
  const replyTypes: Array<string | undefined> = [];
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    try {
      const replyType = replyTypeOf(metas?.[i], model.outputs);
      feeds.push(
        value instanceof Prepared ? value.inputs
        : value instanceof Uint8Array ? await readBinaryInputs(value, metas?.[i]?.contentType ?? '', binaryModel)
        : buildInputs(value, model.inputs, limits),
      );
      replyTypes.push(replyType);
      good.push(i);
    } catch (err) {
      results[i] = err;
    }
  }
  if (good.length === 0) return results;
  if (!stackable) {
    for (let k = 0; k < good.length; k++) results[good[k]] = await runSeparately(feeds[k], replyTypes[k]);
    return results;
  }
  const outputs = await model.run(stackInputs(feeds, model.inputs));
  const rows = feeds.map((f) => f[model.inputs[0].name].dims[0]);
  const perMessage = replyTypes.some((t) => t === undefined) ? splitOutputs(outputs, outputNames(), rows) : [];
  const slices = replyTypes.some((t) => t !== undefined) ? sliceOutputs(outputs, outputNames(), rows) : [];
  good.forEach((i, k) => (results[i] = replyTypes[k] ? binaryReply(replyTypes[k], slices[k], outputNames()) : perMessage[k]));
  return results;
}

const outputNames = (): string[] => model.outputs.map((o) => o.name);

async function runSeparately(feeds: Record<string, TensorData>, replyType: string | undefined): Promise<unknown> {
  try {
    const outputs = await model.run(feeds);
    if (replyType) return binaryReply(replyType, sliceOutputs(outputs, outputNames(), [1])[0], outputNames());
    return splitOutputs(outputs, outputNames(), [1])[0];
  } catch (err) {
    return err instanceof ScoringError ? err : new ScoringError('RUN_FAILED', `model run failed: ${(err as Error).message}`);
  }
}
