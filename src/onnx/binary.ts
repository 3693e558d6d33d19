/**
 * The built-in script's binary bodies and replies (issue 14): an .npy, safetensors or image body →
 * the model's input tensors, checked against the model with the JSON path's codes and wording; and
 * the outputs → an .npy or safetensors reply when the request's x-reply-content-type asks for one.
 * No onnxruntime import: it runs in worker threads and unit tests.
 */
import type { ScriptMeta } from '../isolate/entry-script.js';
import { clip, ScoringError } from '../errors.js';
import { isJsonContentType, mediaType, IMAGE_CONTENT_TYPES, JSON_CONTENT_TYPE } from '../isolate/content-types.js';
import { decodeImage, planImage, type ImagePlan, type ImagePreprocessing } from '../isolate/image.js';
import { NPY_CONTENT_TYPE, readNpy, writeNpy } from '../isolate/npy.js';
import { SAFETENSORS_CONTENT_TYPE, readSafetensors, writeSafetensors } from '../isolate/safetensors.js';
import { convertTensor, convertsExactly, typesConvertingTo } from './element-types.js';
import { fitsSpec, formatDims, namesOf, type Limits, type TensorData, type TensorSpec } from './tensors.js';

/** The header a request names its reply's format with. */
export const REPLY_CONTENT_TYPE_HEADER = 'x-reply-content-type';
const REPLY_TYPES = [JSON_CONTENT_TYPE, NPY_CONTENT_TYPE, SAFETENSORS_CONTENT_TYPE];

export interface BinaryModel {
  inputs: readonly TensorSpec[];
  outputs: readonly TensorSpec[];
  limits: Limits;
  /** How images become the one input, or why they cannot (planImage). */
  image: ImagePlan | string;
}

/** At init: settings that contradict the model stop the boot (planImage throws a BootError). */
export function imagePlanFor(inputs: readonly TensorSpec[], prep: ImagePreprocessing | undefined): ImagePlan | string {
  if (inputs.length !== 1) return `the model has ${inputs.length} inputs (${namesOf(inputs)}); an image is one`;
  if (!prep) return 'no image settings were given to the entry script';
  return planImage(inputs[0], prep);
}

const accepted = `application/json, ${NPY_CONTENT_TYPE}, ${SAFETENSORS_CONTENT_TYPE}, ${IMAGE_CONTENT_TYPES.join(', ')}`;

/** A binary body → one tensor per model input, of the input's own element type. */
export function readBinaryInputs(
  body: Uint8Array,
  contentType: string,
  model: BinaryModel,
): Record<string, TensorData> | Promise<Record<string, TensorData>> {
  const type = mediaType(contentType);
  const { inputs, limits } = model;
  if (type === NPY_CONTENT_TYPE) {
    if (inputs.length !== 1) {
      throw new ScoringError(
        'SHAPE',
        `model has ${inputs.length} inputs (${namesOf(inputs)}): an .npy body carries one array; send ${SAFETENSORS_CONTENT_TYPE} with one tensor per input`,
      );
    }
    return { [inputs[0].name]: fit(readNpy(body, limits), inputs[0], 'a .npy') };
  }
  if (type === SAFETENSORS_CONTENT_TYPE) {
    const tensors = readSafetensors(body, limits);
    const known = new Set(inputs.map((s) => s.name));
    for (const name of tensors.keys()) {
      if (!known.has(name))
        throw new ScoringError(
          'SHAPE',
          `safetensors body has unknown input '${clip(name)}'; the model's inputs are ${namesOf(inputs)}`,
        );
    }
    const out: Record<string, TensorData> = {};
    for (const spec of inputs) {
      const t = tensors.get(spec.name);
      if (!t)
        throw new ScoringError(
          'SHAPE',
          `input '${spec.name}' is missing from the safetensors body; the model's inputs are ${namesOf(inputs)}`,
        );
      out[spec.name] = fit(t, spec, 'a safetensors tensor');
    }
    return out;
  }
  if ((IMAGE_CONTENT_TYPES as readonly string[]).includes(type)) {
    if (typeof model.image === 'string') throw new ScoringError('CONTENT_TYPE', `${type} body refused: ${model.image}`);
    const { name } = model.image;
    // Only an image is decoded asynchronously (sharp): a tensor body is read without a turn of the event loop.
    return decodeImage(body, model.image).then((tensor) => ({ [name]: tensor }));
  }
  throw new ScoringError(
    'CONTENT_TYPE',
    `contentType '${clip(contentType)}' is not taken by the built-in ONNX script; send one of ${accepted}`,
  );
}

/** A tensor read from a body, checked against its input as the JSON path checks it, converted where that loses nothing. */
function fit(t: TensorData, spec: TensorSpec, what: string): TensorData {
  // .npy and safetensors carry no strings: a string input takes JSON.
  if (spec.type === 'string')
    throw new ScoringError(
      'TYPE',
      `input '${spec.name}' expects string elements, which ${what} body cannot carry; send JSON`,
    );
  if (t.dims.length !== spec.dims.length) {
    throw new ScoringError(
      'SHAPE',
      `input '${spec.name}' expects rank ${spec.dims.length} (shape ${formatDims(spec.dims)}), got rank ${t.dims.length} (shape ${formatDims(t.dims)})`,
    );
  }
  if (!fitsSpec(t.dims, spec))
    throw new ScoringError(
      'SHAPE',
      `input '${spec.name}' expects shape ${formatDims(spec.dims)}, got ${formatDims(t.dims)}`,
    );
  if (!convertsExactly(t.type, spec.type)) {
    const others = typesConvertingTo(spec.type).slice(1);
    throw new ScoringError(
      'TYPE',
      `input '${spec.name}' expects ${spec.type} elements, got ${what} of ${t.type}; send ${spec.type}${others.length ? ` (or ${others.join(', ')}, converted exactly)` : ''}`,
    );
  }
  return convertTensor(t, spec.type);
}

/** The reply format a request asks for (x-reply-content-type), checked before its run; undefined for JSON. */
export function replyTypeOf(meta: ScriptMeta | undefined, outputs: readonly TensorSpec[]): string | undefined {
  const asked = meta?.headers[REPLY_CONTENT_TYPE_HEADER];
  if (asked === undefined) return undefined;
  const text = Buffer.isBuffer(asked) ? asked.toString() : String(asked);
  const type = mediaType(text);
  if (isJsonContentType(type)) return undefined;
  if (!REPLY_TYPES.includes(type)) {
    throw new ScoringError(
      'CONTENT_TYPE',
      `${REPLY_CONTENT_TYPE_HEADER} '${clip(text)}' is not offered; ask for ${REPLY_TYPES.join(', ')}`,
    );
  }
  if (type === NPY_CONTENT_TYPE && outputs.length !== 1) {
    throw new ScoringError(
      'CONTENT_TYPE',
      `${REPLY_CONTENT_TYPE_HEADER} ${NPY_CONTENT_TYPE} carries one array, and the model has ${outputs.length} outputs (${namesOf(outputs)}); ask for ${SAFETENSORS_CONTENT_TYPE}`,
    );
  }
  return type;
}

/** One message's outputs as the binary reply it asked for. */
export function binaryReply(
  type: string,
  outputs: Record<string, TensorData>,
  outputNames: readonly string[],
): { contentType: string; body: Uint8Array } {
  if (type === NPY_CONTENT_TYPE)
    return { contentType: type, body: writeNpy(outputs[outputNames[0]], `output '${outputNames[0]}'`) };
  const named = new Map(outputNames.map((n) => [n, outputs[n]]));
  return { contentType: type, body: writeSafetensors(named) };
}
