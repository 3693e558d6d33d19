/**
 * JSON `data` ⇄ tensors, with no onnxruntime import so it runs in worker threads and unit tests.
 * Shapes come from walking first elements only (bounded by the model's rank), the element count is
 * capped before any allocation, and typed arrays are filled in one pass that also catches ragged rows.
 */
import { clip, ScoringError } from '../errors.js';
import type { ZipMapLabels } from './graph-rewrite.js';
import { jsonKind, jsonType } from '../isolate/parse-message.js';

import {
  ElementProblem,
  elementInfo,
  type Element,
  type ElementInfo,
  type ElementType,
  type TensorData,
  type TypedData,
} from './element-types.js';

export type { ElementType, TensorData, TypedData };
export interface TensorSpec {
  name: string;
  type: ElementType;
  dims: ReadonlyArray<number | string>;
}
export interface Limits {
  maxTensorElements: number;
}

const isDynamic = (d: number | string): boolean => typeof d !== 'number' || d < 0;

/** A dims list as the error messages print it: [-1,4] with dynamic dims as -1. */
export function formatDims(dims: ReadonlyArray<number | string>): string {
  return `[${dims.map((d) => (isDynamic(d) ? -1 : d)).join(',')}]`;
}

/** The product of dims, or Infinity once it passes `cap`: a lying header's 10^12 never reaches an allocation. */
export function elementCount(dims: readonly number[], cap: number): number {
  let n = 1;
  for (const d of dims) {
    n *= d;
    if (n > cap) return Infinity;
  }
  return n;
}

/** Input or output names as the error messages list them: 'a', 'b'. */
export const namesOf = (specs: readonly TensorSpec[]): string => specs.map((s) => `'${s.name}'`).join(', ');

/** Whether a shape read from the bytes (isolate/numeric-data.ts) is one the input takes. */
export function fitsSpec(dims: readonly number[], spec: TensorSpec): boolean {
  return dims.length === spec.dims.length && dims.every((d, i) => isDynamic(spec.dims[i]) || d === spec.dims[i]);
}

/** data (already JSON.parse'd) → one TensorData per model input. */
export function buildInputs(data: unknown, inputs: readonly TensorSpec[], limits: Limits): Record<string, TensorData> {
  const out: Record<string, TensorData> = {};
  if (inputs.length === 1) {
    const spec = inputs[0];
    // `{"<name>": [...]}` is accepted too, so clients can send the same shape to single- and multi-input models.
    const value = isPlainObject(data) ? pickSingle(data, spec) : data;
    out[spec.name] = buildOne(value, spec, limits);
    return out;
  }
  const names = namesOf(inputs);
  if (!isPlainObject(data)) {
    throw new ScoringError(
      'SHAPE',
      `model has ${inputs.length} inputs (${names}): data must be an object keyed by input name, got ${jsonKind(data)}`,
    );
  }
  const known = new Set(inputs.map((s) => s.name));
  for (const key of Object.keys(data)) {
    if (!known.has(key))
      throw new ScoringError('SHAPE', `data has unknown input '${clip(key)}'; the model's inputs are ${names}`);
  }
  for (const spec of inputs) {
    if (!Object.hasOwn(data, spec.name))
      throw new ScoringError('SHAPE', `input '${spec.name}' is missing; the model's inputs are ${names}`);
    out[spec.name] = buildOne(data[spec.name], spec, limits);
  }
  return out;
}

function pickSingle(data: Record<string, unknown>, spec: TensorSpec): unknown {
  const keys = Object.keys(data);
  if (keys.length === 1 && keys[0] === spec.name) return data[spec.name];
  const shown = keys.length === 0 ? 'no keys' : `key '${clip(keys.find((k) => k !== spec.name) ?? keys[0])}'`;
  throw new ScoringError(
    'SHAPE',
    `input '${spec.name}' expects a nested array or {"${spec.name}": [...]}, got an object with ${shown}`,
  );
}

interface Fill {
  spec: TensorSpec;
  info: ElementInfo;
  dims: number[];
  data: TypedData;
  pos: number;
  idx: number[];
}

function buildOne(value: unknown, spec: TensorSpec, limits: Limits): TensorData {
  const rank = spec.dims.length;
  // Iterative and bounded: a 100,000-deep array costs rank + 1 steps, not a stack overflow.
  const dims: number[] = [];
  let node = value;
  while (Array.isArray(node) && dims.length <= rank) {
    if (node.length === 0)
      throw new ScoringError(
        'SHAPE',
        `input '${spec.name}' got an empty array at ${path(dims.map(() => 0))} (expects shape ${formatDims(spec.dims)})`,
      );
    dims.push(node.length);
    node = node[0];
  }
  if (dims.length !== rank) {
    const deeper = dims.length > rank && Array.isArray(node);
    const got = deeper
      ? `rank ${dims.length + 1} or more (shape ${formatDims(dims).slice(0, -1)},...])`
      : `rank ${dims.length} (shape ${formatDims(dims)})`;
    throw new ScoringError(
      'SHAPE',
      `input '${spec.name}' expects rank ${rank} (shape ${formatDims(spec.dims)}), got ${got}`,
    );
  }
  if (!fitsSpec(dims, spec))
    throw new ScoringError(
      'SHAPE',
      `input '${spec.name}' expects shape ${formatDims(spec.dims)}, got ${formatDims(dims)}`,
    );
  let count = 1;
  for (const d of dims) count *= d; // each d ≤ body size, so the product stays exact long enough to compare
  if (count > limits.maxTensorElements) {
    throw new ScoringError(
      'TOO_MANY_ELEMENTS',
      `input '${spec.name}' has ${count} elements (shape ${formatDims(dims)}), over MAX_TENSOR_ELEMENTS (${limits.maxTensorElements})`,
    );
  }
  const info = elementInfo(spec.type);
  const f: Fill = { spec, info, dims, data: info.allocate(count), pos: 0, idx: new Array<number>(rank).fill(0) };
  if (rank === 0) fillLeaf([value], f);
  else fillLevel(value as unknown[], 0, f);
  return { type: spec.type, data: f.data, dims };
}

function fillLevel(node: unknown[], level: number, f: Fill): void {
  if (node.length !== f.dims[level]) {
    const here = f.idx.slice(0, level);
    const got =
      node.length === 0
        ? `got an empty array at ${path(here)}`
        : `is ragged: ${path(here)} has length ${node.length} but ${path(here.map(() => 0))} has length ${f.dims[level]}`;
    throw new ScoringError('SHAPE', `input '${f.spec.name}' ${got} (expects shape ${formatDims(f.spec.dims)})`);
  }
  if (level === f.dims.length - 1) {
    fillLeaf(node, f);
    return;
  }
  for (let i = 0; i < node.length; i++) {
    const child = node[i];
    f.idx[level] = i;
    if (!Array.isArray(child)) {
      throw new ScoringError(
        'SHAPE',
        `input '${f.spec.name}' is ragged: ${path(f.idx.slice(0, level + 1))} is ${jsonType(child)}, expected an array (expects shape ${formatDims(f.spec.dims)})`,
      );
    }
    fillLevel(child, level + 1, f);
  }
}

// One loop for every type: the table's fromJson is the per-element check and conversion.
function fillLeaf(row: unknown[], f: Fill): void {
  const at = f.pos;
  const n = row.length;
  const out = f.data as unknown as Element[];
  const read = f.info.fromJson;
  let i = 0;
  try {
    for (; i < n; i++) out[at + i] = read(row[i]);
  } catch (err) {
    if (err instanceof ElementProblem) throw typeError(f, row[i], i, err.why);
    throw err;
  }
  f.pos = at + n;
}

function typeError(f: Fill, v: unknown, i: number, why?: string): ScoringError {
  const at = f.dims.length === 0 ? [] : [...f.idx.slice(0, f.dims.length - 1), i];
  if (Array.isArray(v)) {
    // deeper than the rank in a row after the first: a shape problem, not a type one
    return new ScoringError(
      'SHAPE',
      `input '${f.spec.name}' is ragged: ${path(at)} is an array, expected a ${f.spec.type} element (expects shape ${formatDims(f.spec.dims)})`,
    );
  }
  const got =
    typeof v === 'number' ? `number ${v}${why ? ` (${why})` : ''}` : why ? `${jsonKind(v)} (${why})` : jsonKind(v);
  return new ScoringError(
    'TYPE',
    `input '${f.spec.name}' expects ${f.spec.type} elements, got ${got}${at.length ? ` at ${path(at)}` : ''}`,
  );
}

/** Batched outputs → each message's rows along axis 0, as views (copies for strings); an unbatched run's outputs whole. */
export function sliceOutputs(
  outputs: Record<string, TensorData>,
  outputNames: readonly string[],
  rowCounts: readonly number[],
): Array<Record<string, TensorData>> {
  const perMessage: [string, TensorData][][] = rowCounts.map(() => []);
  const total = rowCounts.reduce((a, b) => a + b, 0);
  for (const name of outputNames) {
    const t = Object.hasOwn(outputs, name) ? outputs[name] : undefined;
    if (!t) throw new ScoringError('RUN_FAILED', `model returned no output '${name}'`);
    if (rowCounts.length === 1) {
      // an unbatched run returns the output whole, even one without a batch axis
      perMessage[0].push([name, t]);
      continue;
    }
    if (t.dims.length === 0 || t.dims[0] !== total) {
      throw new ScoringError(
        'RUN_FAILED',
        `output '${name}' has shape ${formatDims(t.dims)}, which cannot be split into ${rowCounts.length} messages of ${total} rows in all`,
      );
    }
    const rest = t.dims.slice(1);
    const rowSize = rest.reduce((a, b) => a * b, 1);
    let row = 0;
    rowCounts.forEach((n, m) => {
      const [from, to] = [row * rowSize, (row + n) * rowSize];
      const data = Array.isArray(t.data) ? t.data.slice(from, to) : t.data.subarray(from, to);
      perMessage[m].push([name, { type: t.type, data, dims: [n, ...rest] }]);
      row += n;
    });
  }
  // fromEntries defines own properties, so an output named "__proto__" cannot touch a prototype.
  return perMessage.map((entries) => Object.fromEntries(entries));
}

/** Split batched outputs back per message as JSON: one output as its nested array, several as an object keyed by name. */
export function splitOutputs(
  outputs: Record<string, TensorData>,
  outputNames: readonly string[],
  rowCounts: readonly number[],
): unknown[] {
  return sliceOutputs(outputs, outputNames, rowCounts).map((tensors) => {
    const entries = outputNames.map((name) => [name, toJson(tensors[name], 0, tensors[name].dims)] as const);
    return outputNames.length === 1 ? entries[0][1] : Object.fromEntries(entries);
  });
}

/**
 * A message's answer (splitOutputs) with its ZipMap outputs' rows of probabilities as one
 * `{label: probability}` object per row, as Python's onnxruntime answers: a model of one output gets the
 * first ZipMap's labels.
 */
export function withZipMaps(
  answer: unknown,
  outputNames: readonly string[],
  zipMaps: readonly ZipMapLabels[],
): unknown {
  if (zipMaps.length === 0) return answer;
  if (outputNames.length === 1) return zipMapRows(answer, zipMaps[0].labels);
  const out = answer as Record<string, unknown>;
  for (const z of zipMaps) out[z.name] = zipMapRows(out[z.name], z.labels);
  return out;
}

function zipMapRows(rows: unknown, labels: readonly string[]): unknown {
  // fromEntries defines own properties: a label "__proto__" stays a label.
  return (rows as number[][]).map((row) => Object.fromEntries(labels.map((label, i) => [label, row[i]])));
}

function toJson(t: TensorData, offset: number, dims: number[]): unknown {
  const info = elementInfo(t.type);
  const numeric =
    t.type === 'float32' ||
    t.type === 'float64' ||
    t.type === 'int32' ||
    t.type === 'int16' ||
    t.type === 'int8' ||
    t.type === 'uint8' ||
    t.type === 'uint16' ||
    t.type === 'uint32';
  const conv = numeric ? undefined : info.toJson;
  const data = t.data as ArrayLike<Element>;
  if (dims.length === 0) return conv ? conv(data[offset]) : data[offset];
  const strides = new Array<number>(dims.length);
  for (let i = dims.length - 1, s = 1; i >= 0; s *= dims[i--]) strides[i] = s;
  return walk({ data, dims, strides, conv }, 0, offset);
}

interface Walk {
  data: ArrayLike<Element>;
  dims: number[];
  strides: number[];
  conv: ((v: Element) => unknown) | undefined;
}

// A function of its own, not a closure made per call: run through tsx, every named closure costs a
// defineProperty of its name each time it is made, and this one was made for every output of every message.
function walk(w: Walk, level: number, at: number): unknown[] {
  const n = w.dims[level];
  const out = new Array<unknown>(n);
  if (level === w.dims.length - 1) {
    const { data, conv } = w;
    if (conv) for (let i = 0; i < n; i++) out[i] = conv(data[at + i]);
    else for (let i = 0; i < n; i++) out[i] = data[at + i];
  } else for (let i = 0; i < n; i++) out[i] = walk(w, level + 1, at + i * w.strides[level]);
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const path = (idx: readonly number[]): string =>
  idx.length === 0 ? 'the top level' : idx.map((i) => `[${i}]`).join('');
