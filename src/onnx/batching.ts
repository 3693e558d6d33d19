/**
 * When messages may share one session run, and how. Stacking must never change an answer: only
 * messages whose tensors agree in every axis but axis 0 are stacked (a sub-batch per shape), and axis 0
 * being dynamic is not taken as proof that it is a batch axis (a sequence-first RNN's axis 0 is time; a
 * softmax over axis 0 mixes rows). Under BATCHING=auto the model is run at boot on generated inputs,
 * once stacked and once message by message, and batching stays on only if the answers agree.
 */
import type { OnnxOptions } from '../config.js';
import type { TensorData, TensorSpec } from './tensors.js';
import { elementInfo, type NumericData } from './element-types.js';
import { packedMap } from '../packed-array.js';
import { slabArray } from '../isolate/slab.js';

export type BatchingMode = OnnxOptions['batching'];
export interface BatchingDecision {
  stack: boolean;
  /** Why, for the one boot line. */
  reason: string;
}

type Feeds = Record<string, TensorData>;
export type RunFeeds = (feeds: Feeds) => Promise<Feeds>;

const isDynamic = (d: number | string): boolean => typeof d !== 'number' || d < 0;
/** The boot check's inputs stay this small (32 MB of float32): a model with huge fixed axes is not checked, and scored one message per run unless BATCHING=on. */
const MAX_GENERATED_ELEMENTS = 8 << 20;

/** Whether axis 0 of every input is dynamic: the precondition for stacking at all. */
export function canStack(inputs: readonly TensorSpec[]): boolean {
  return inputs.length > 0 && inputs.every((s) => s.dims.length > 0 && isDynamic(s.dims[0]));
}

/**
 * The key two messages must share to be stacked: every input's shape but axis 0. undefined when the
 * message's inputs disagree on axis 0 (rows could not be told apart after stacking): it runs alone.
 */
export function shapeKey(feeds: Feeds, inputs: readonly TensorSpec[]): string | undefined {
  const rows = feeds[inputs[0].name].dims[0];
  const parts: string[] = [];
  for (const { name } of inputs) {
    const dims = feeds[name].dims;
    if (dims[0] !== rows) return undefined;
    parts.push(dims.slice(1).join('x'));
  }
  return parts.join(';');
}

/** Indices of `feeds` in sub-batches of one shape each, in order of first appearance; a message that cannot be stacked is a group of its own. */
export function groupByShape(feeds: readonly Feeds[], inputs: readonly TensorSpec[]): number[][] {
  const groups = new Map<string, number[]>();
  const out: number[][] = [];
  // Most batches are of one shape: a message shaped as the one before it joins its group without a key string.
  let previous: { feeds: Feeds; group: number[] } | undefined;
  feeds.forEach((f, i) => {
    if (previous && sameShapes(f, previous.feeds, inputs)) return void previous.group.push(i);
    const key = shapeKey(f, inputs);
    previous = undefined;
    if (key === undefined) return void out.push([i]);
    let g = groups.get(key);
    if (!g) {
      g = [];
      groups.set(key, g);
      out.push(g);
    }
    g.push(i);
    previous = { feeds: f, group: g };
  });
  return out;
}

/** Whether `a` and `b` give every input the same dims past the batch axis, and `a` has one row count across its inputs (as `b`, which has a key). */
function sameShapes(a: Feeds, b: Feeds, inputs: readonly TensorSpec[]): boolean {
  const rows = a[inputs[0].name].dims[0];
  for (const { name } of inputs) {
    const x = a[name].dims;
    const y = b[name].dims;
    if (x[0] !== rows || x.length !== y.length) return false;
    for (let d = 1; d < x.length; d++) if (x[d] !== y[d]) return false;
  }
  return true;
}

export async function decideBatching(
  mode: BatchingMode,
  inputs: readonly TensorSpec[],
  outputs: readonly string[],
  run: RunFeeds,
): Promise<BatchingDecision> {
  if (mode === 'off') return { stack: false, reason: 'BATCHING=off' };
  if (!canStack(inputs))
    return { stack: false, reason: 'axis 0 of every input is not dynamic, so messages cannot be stacked' };
  if (mode === 'on') return { stack: true, reason: 'BATCHING=on (not verified)' };
  let lastProblem = '';
  // Dynamic axes beyond 0 get a small size; some models (strided convolutions) need a larger one.
  for (const size of [4, 32]) {
    const problem = await verifyRows(inputs, outputs, run, size);
    if (problem === undefined)
      return { stack: true, reason: 'verified: stacked runs on generated inputs answer as runs one by one' };
    if (!problem.startsWith('could not run the check')) return { stack: false, reason: problem };
    lastProblem = problem;
  }
  return { stack: false, reason: lastProblem };
}

/** undefined when stacking 3 generated messages (1, 2 and 1 rows) answers as running each alone; otherwise what differed. */
export async function verifyRows(
  inputs: readonly TensorSpec[],
  outputs: readonly string[],
  run: RunFeeds,
  dynamicSize = 4,
): Promise<string | undefined> {
  const rows = [1, 2, 1];
  const perRow = inputs.reduce(
    (sum, s) => sum + s.dims.slice(1).reduce<number>((n, d) => n * (isDynamic(d) ? dynamicSize : (d as number)), 1),
    0,
  );
  if (perRow * 4 > MAX_GENERATED_ELEMENTS)
    return `could not run the check: 4 generated rows would hold ${perRow * 4} elements, over ${MAX_GENERATED_ELEMENTS}`;
  const random = mulberry32(0x5eed);
  const messages = rows.map(
    (n) => Object.fromEntries(inputs.map((s) => [s.name, generate(s, n, dynamicSize, random)])) as Feeds,
  );
  let alone: Feeds[];
  let together: Feeds;
  try {
    alone = [];
    for (const m of messages) alone.push(await run(m));
    together = await run(stack(messages, inputs));
  } catch (err) {
    return `could not run the check: the model refused generated inputs (${(err as Error).message.split('\n')[0]})`;
  }
  const total = rows.reduce((a, b) => a + b, 0);
  for (const name of outputs) {
    const t = together[name];
    if (!t || t.dims[0] !== total)
      return `output '${name}' has no batch axis: a stacked run of ${total} rows gave shape [${t?.dims.join(',')}]`;
    let offset = 0;
    for (let m = 0; m < rows.length; m++) {
      const a = alone[m][name];
      if (a.dims[0] !== rows[m] || a.dims.slice(1).join() !== t.dims.slice(1).join()) {
        return `output '${name}' changes shape when messages are stacked ([${a.dims.join(',')}] alone, [${t.dims.join(',')}] stacked)`;
      }
      const at = firstDifference(a, t, offset);
      if (at !== undefined)
        return `output '${name}' changes when messages are stacked along axis 0 (element ${at} of message ${m + 1}): axis 0 is not a batch axis, or the model mixes rows`;
      offset += a.data.length;
    }
  }
  return undefined;
}

/** Concatenation along axis 0; the caller has grouped by shapeKey, so every other axis agrees. */
export function stack(items: readonly Feeds[], inputs: readonly TensorSpec[]): Feeds {
  if (items.length === 1) return items[0];
  const out: Feeds = {};
  for (const { name, type } of inputs) {
    const parts = packedMap(items, (it) => it[name]);
    const total = parts.reduce((sum, p) => sum + p.data.length, 0);
    const dims = [parts.reduce((sum, p) => sum + p.dims[0], 0), ...parts[0].dims.slice(1)];
    // Read one after another onto one slab (isolate/slab.ts), they already lie side by side.
    const adjacent = sideBySide(packedMap(parts, (p) => p.data));
    if (adjacent) {
      out[name] = { type, data: adjacent, dims };
      continue;
    }
    const info = elementInfo(type);
    const data = info.binary ? slabArray(info.binary.array, total) : info.allocate(total);
    let at = 0;
    for (const p of parts) {
      if (Array.isArray(data)) for (let i = 0; i < p.data.length; i++) data[at + i] = (p.data as string[])[i];
      else (data as Float64Array).set(p.data as Float64Array, at); // same element type on both sides; the cast only quiets the union
      at += p.data.length;
    }
    out[name] = { type, data, dims };
  }
  return out;
}

/** One view over typed arrays of one kind that follow each other in one buffer, in order; undefined otherwise. */
function sideBySide(parts: ReadonlyArray<TensorData['data']>): TensorData['data'] | undefined {
  const first = parts[0];
  if (Array.isArray(first)) return undefined;
  let end = first.byteOffset + first.byteLength;
  for (let k = 1; k < parts.length; k++) {
    const p = parts[k];
    if (p.constructor !== first.constructor || (p as NumericData).buffer !== first.buffer) return undefined;
    if ((p as NumericData).byteOffset !== end) return undefined;
    end += (p as NumericData).byteLength;
  }
  const Ctor = first.constructor as new (buffer: ArrayBufferLike, byteOffset: number, length: number) => NumericData;
  return new Ctor(first.buffer, first.byteOffset, (end - first.byteOffset) / first.BYTES_PER_ELEMENT);
}

function firstDifference(alone: TensorData, together: TensorData, offset: number): number | undefined {
  const a = alone.data as ArrayLike<number | bigint | string>;
  const t = together.data as ArrayLike<number | bigint | string>;
  const float = alone.type === 'float32' || alone.type === 'float64' || alone.type === 'float16';
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = t[offset + i];
    if (x === y) continue;
    if (float) {
      const fx = alone.type === 'float16' ? (elementInfo('float16').toJson(x) as number) : (x as number);
      const fy = alone.type === 'float16' ? (elementInfo('float16').toJson(y) as number) : (y as number);
      if (Number.isNaN(fx) && Number.isNaN(fy)) continue;
      // A batched kernel may sum in another order: allow float noise, not a different answer.
      if (Math.abs(fx - fy) <= 1e-4 + 1e-3 * Math.abs(fx)) continue;
    }
    return i;
  }
  return undefined;
}

function generate(spec: TensorSpec, rows: number, dynamicSize: number, random: () => number): TensorData {
  const dims = spec.dims.map((d, i) => (i === 0 ? rows : isDynamic(d) ? dynamicSize : (d as number)));
  const count = dims.reduce((a, b) => a * b, 1);
  const info = elementInfo(spec.type);
  const data = info.allocate(count);
  for (let i = 0; i < count; i++) (data as unknown[])[i] = info.sample(random());
  return { type: spec.type, data, dims };
}

/** A small seeded generator: the boot check must do the same on every start (scripts and tests use it too). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
