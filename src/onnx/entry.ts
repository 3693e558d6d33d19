/**
 * The built-in entry script, used when ENTRY_SCRIPT is unset: any ONNX model with tensor inputs,
 * no code. `data` is a nested array (single input) or an object keyed by input name; messages of one
 * shape are stacked along the batch axis into one session run when batching.ts says that cannot change
 * an answer.
 */
import type { InitContext, ScriptMeta } from '../isolate/entry-script.js';
import { ScoringError } from '../errors.js';
import { loadModel, type LoadedModel } from './session.js';
import { dataSchema, resultSchema } from './schema.js';
import { readNumericTensor } from '../isolate/numeric-data.js';
import { binaryReply, imagePlanFor, readBinaryInputs, replyTypeOf, type BinaryModel } from './binary.js';
import {
  buildInputs,
  fitsSpec,
  sliceOutputs,
  splitOutputs,
  withZipMaps,
  type Limits,
  type TensorData,
  type TensorSpec,
} from './tensors.js';
import { decideBatching, groupByShape, stack, type BatchingDecision } from './batching.js';
import { ElementProblem, elementInfo, type TypedData } from './element-types.js';
import { AnswerWriter } from './answer-json.js';
import { jsonText } from '../isolate/json-text.js';
import { packedArray, packedMap } from '../packed-array.js';

let model: LoadedModel;
let limits: Limits;
let batching: BatchingDecision = { stack: false, reason: 'not decided' };
/** The model's one input, when it is numeric: bodies are read straight into its typed array. */
let numericInput: TensorSpec | undefined;
/** .npy, safetensors and image bodies, and binary replies (onnx/binary.ts). */
let binaryModel: BinaryModel;
/** JSON answers written from the output tensors when it can (answer-json.ts), else splitOutputs and withZipMaps (tensors.ts). */
let answerWriter: AnswerWriter;
/** Types read as doubles, then checked and stored element by element (int64, uint64 and float16 take the general path). */
const VIA_DOUBLES = new Set(['int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32']);
export let modelName = '';

/** A message's inputs, already tensors (readBody). */
class Prepared {
  constructor(readonly inputs: Record<string, TensorData>) {}
}

export async function init(context: InitContext): Promise<void> {
  model = await loadModel(context);
  limits = { maxTensorElements: context.maxTensorElements };
  modelName = model.name;
  batching = await decideBatching(context.onnx?.batching ?? 'auto', model.inputs, outputNames(), (feeds) =>
    model.run(feeds),
  );
  const [only] = model.inputs;
  numericInput =
    model.inputs.length === 1 && (only.type === 'float32' || only.type === 'float64' || VIA_DOUBLES.has(only.type))
      ? only
      : undefined;
  answerWriter = new AnswerWriter(outputNames(), model.zipMaps);
  binaryModel = {
    inputs: model.inputs,
    outputs: model.outputs,
    limits,
    image: imagePlanFor(model.inputs, context.image),
  };
}

/** The session's native memory freed: a script scored on the consumer's thread (inline-host.ts) is never unloaded with its thread. */
export async function close(): Promise<void> {
  await model?.release();
}

/**
 * Plain numeric data for a float model, read from the bytes into the tensor it becomes: no JSON.parse,
 * no nested arrays. undefined for anything else, which the general path (buildInputs) checks and words.
 */
export function readBody(body: Uint8Array): Prepared | undefined {
  const spec = numericInput;
  if (!spec) return undefined;
  const float = spec.type === 'float32' || spec.type === 'float64';
  const t = readNumericTensor(body, spec.type === 'float32' ? 'float32' : 'float64', limits.maxTensorElements);
  if (!t || !fitsSpec(t.dims, spec)) return undefined;
  const data = float ? t.data : asIntegers(t.data, spec);
  return data && new Prepared({ [spec.name]: { type: spec.type, data, dims: t.dims } });
}

/** Doubles → the input's integer array, or undefined at the first value the table refuses (the general path words it). */
function asIntegers(values: Float32Array | Float64Array, spec: TensorSpec): TypedData | undefined {
  const info = elementInfo(spec.type);
  const out = info.allocate(values.length) as Int32Array;
  try {
    for (let i = 0; i < values.length; i++) out[i] = info.fromJson(values[i]) as number;
  } catch (err) {
    if (err instanceof ElementProblem) return undefined;
    throw err;
  }
  return out;
}

/** For documentation (AsyncAPI) only: the tensor checks below say more than a schema validator would. */
export function apiSchemas(): { inputSchema: object; outputSchema: object } {
  return { inputSchema: dataSchema(model.inputs), outputSchema: resultSchema(model.outputs, model.zipMaps) };
}

/** A binary body (its bytes) goes as it is, JSON data as its parsed value. */
const asValue = (data: string | Uint8Array): unknown => (typeof data === 'string' ? JSON.parse(data) : data);

export async function run(data: string | Uint8Array, meta?: ScriptMeta): Promise<unknown> {
  const [result] = await runBatchParsed([asValue(data)], meta && [meta]);
  if (result instanceof Error) throw result;
  return result;
}

export async function runBatch(items: Array<string | Uint8Array>, metas?: ScriptMeta[]): Promise<unknown[]> {
  return runBatchParsed(packedMap(items, asValue), metas);
}

/** One result per value, in order; a value that fails its checks gets its own Error and is left out of the run. */
export async function runBatchParsed(values: unknown[], metas?: ScriptMeta[]): Promise<unknown[]> {
  const results = packedArray<unknown>(values.length, undefined);
  const good: number[] = [];
  const feeds: Record<string, TensorData>[] = [];
  /** Per good message: the binary reply type it asked for, or undefined for JSON. */
  const replyTypes: Array<string | undefined> = [];
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    try {
      const replyType = replyTypeOf(metas?.[i], model.outputs);
      const read =
        value instanceof Prepared
          ? value.inputs
          : value instanceof Uint8Array
            ? readBinaryInputs(value, metas?.[i]?.contentType ?? '', binaryModel)
            : buildInputs(value, model.inputs, limits);
      // Awaited only when it is a promise (an image being decoded): a turn of the event loop per message otherwise.
      feeds.push(read instanceof Promise ? await read : read);
      replyTypes.push(replyType);
      good.push(i);
    } catch (err) {
      results[i] = err;
    }
  }
  if (good.length === 0) return results;
  const groups = batching.stack ? groupByShape(feeds, model.inputs) : packedMap(feeds, (_, k) => [k]);
  for (const group of groups) {
    const answers = await runGroup(
      packedMap(group, (k) => feeds[k]),
      packedMap(group, (k) => replyTypes[k]),
    );
    group.forEach((k, j) => (results[good[k]] = answers[j]));
  }
  return results;
}

/**
 * One session run for messages of one shape, each answered as JSON or as the binary type it asked for;
 * when a stacked run fails, each runs alone so only the culprit gets the error.
 */
async function runGroup(
  feeds: Record<string, TensorData>[],
  replyTypes: Array<string | undefined>,
): Promise<unknown[]> {
  try {
    const outputs = await model.run(stack(feeds, model.inputs));
    // One message alone gets the output whole: one row, whatever its batch axis says.
    const rows = packedMap(feeds, (f) => (feeds.length === 1 ? 1 : f[model.inputs[0].name].dims[0]));
    let json: unknown[] = [];
    if (replyTypes.some((t) => t === undefined)) {
      const written = answerWriter.write(outputs, rows);
      json = written
        ? packedMap(written, jsonText)
        : packedMap(splitOutputs(outputs, outputNames(), rows), (a) => withZipMaps(a, outputNames(), model.zipMaps));
    }
    const slices = replyTypes.some((t) => t !== undefined) ? sliceOutputs(outputs, outputNames(), rows) : [];
    return packedMap(replyTypes, (t, k) => (t ? binaryReply(t, slices[k], outputNames()) : json[k]));
  } catch (err) {
    if (feeds.length > 1) return Promise.all(feeds.map(async (f, k) => (await runGroup([f], [replyTypes[k]]))[0]));
    return [
      err instanceof ScoringError ? err : new ScoringError('RUN_FAILED', `model run failed: ${(err as Error).message}`),
    ];
  }
}

/** What init() decided, for the boot log: stacking, and outputs left out. */
export function bootLog(): Array<{ msg: string; fields: Record<string, unknown> }> {
  const override = batching.stack
    ? 'set BATCHING=off to score one message per run'
    : 'set BATCHING=on to stack messages anyway';
  const lines: Array<{ msg: string; fields: Record<string, unknown> }> = [
    {
      msg: batching.stack ? 'batching on' : 'batching off',
      fields: { batching: batching.stack ? 'on' : 'off', reason: batching.reason, override },
    },
  ];
  if (model.dropped.length > 0) {
    lines.push({
      msg: 'outputs left out',
      fields: {
        outputs: model.dropped,
        reason: 'not tensors, which onnxruntime-node cannot return',
        override: 'export the model with tensor outputs',
      },
    });
  }
  return lines;
}

const outputNames = (): string[] => model.outputs.map((o) => o.name);
