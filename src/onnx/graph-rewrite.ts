/**
 * The model graph changed at load, before a session is made of it (no onnxruntime import here):
 * - a scikit-learn ZipMap output (a sequence of maps, which onnxruntime-node cannot return) is cut off
 *   and its input tensor, the probabilities, fetched in its place; entry.ts rebuilds the
 *   `{label: probability}` list Python's onnxruntime gives, from the ZipMap's class labels;
 * - other non-tensor outputs are dropped (the caller logs their names);
 * - with OUTPUTS, the outputs not asked for are dropped with the nodes only they need, so they are
 *   not computed at all.
 */
import onnxProto from 'onnx-proto';
import { BootError } from '../errors.js';

// onnx-proto is CommonJS and attaches `onnx` after `module.exports = $root`: only the default import works.
const { onnx } = onnxProto;
type ModelProto = onnxProto.onnx.ModelProto;
type NodeProto = onnxProto.onnx.INodeProto;

export interface ZipMapOutput {
  /** The output's name, as the user knows it. */
  name: string;
  /** The tensor fed to the ZipMap, fetched instead. */
  source: string;
  /** classlabels_int64s or classlabels_strings, as JSON object keys. */
  labels: string[];
}

/** What an answer needs of a ZipMap output: its name and labels (tensors.ts withZipMaps, answer-json.ts). */
export type ZipMapLabels = Pick<ZipMapOutput, 'name' | 'labels'>;

export interface Rewritten {
  bytes: Uint8Array;
  zipMaps: ZipMapOutput[];
  /** Non-tensor outputs that are not ZipMaps: dropped. */
  dropped: string[];
}

export interface RewriteOptions {
  /** Outputs the runtime reports as not tensors. */
  nonTensor: ReadonlySet<string>;
  /** OUTPUTS: the outputs to keep, by their user-facing names; empty for all. */
  keep: readonly string[];
}

export function rewriteModel(bytes: Uint8Array, options: RewriteOptions): Rewritten {
  const model = onnx.ModelProto.decode(bytes) as ModelProto;
  const graph = model.graph as onnxProto.onnx.GraphProto;
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output ?? []) producer.set(o, n);

  const names = graph.output.map((o) => o.name ?? '');
  checkKeep(options.keep, names);
  const zipMaps: ZipMapOutput[] = [];
  const dropped: string[] = [];
  const outputs: onnxProto.onnx.IValueInfoProto[] = [];
  for (const out of graph.output) {
    const name = out.name ?? '';
    if (options.keep.length > 0 && !options.keep.includes(name)) continue;
    if (!options.nonTensor.has(name)) {
      outputs.push(out);
      continue;
    }
    const node = producer.get(name);
    if (node?.opType === 'ZipMap' && node.input?.[0]) {
      const source = node.input[0];
      zipMaps.push({ name, source, labels: zipMapLabels(node) });
      if (!outputs.some((o) => o.name === source))
        outputs.push({ name: source, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
    } else dropped.push(name);
  }
  if (outputs.length === 0) {
    throw new BootError(
      `model has no tensor output left to return (non-tensor outputs: ${dropped.join(', ')}); export it with tensor outputs (skl2onnx: options={'zipmap': False})`,
    );
  }
  graph.output = outputs as onnxProto.onnx.ValueInfoProto[];
  prune(
    graph,
    outputs.map((o) => o.name ?? ''),
  );
  return { bytes: onnx.ModelProto.encode(model).finish(), zipMaps, dropped };
}

function checkKeep(keep: readonly string[], names: readonly string[]): void {
  const unknown = keep.filter((k) => !names.includes(k));
  if (unknown.length > 0) {
    throw new BootError(
      `config OUTPUTS: the model has no output ${unknown.map((u) => `'${u}'`).join(', ')}; its outputs are ${names.map((n) => `'${n}'`).join(', ')}`,
    );
  }
}

function zipMapLabels(node: NodeProto): string[] {
  for (const a of node.attribute ?? []) {
    if (a.name === 'classlabels_int64s') return (a.ints ?? []).map((i) => String(i));
    if (a.name === 'classlabels_strings') return (a.strings ?? []).map((s) => new TextDecoder().decode(s));
  }
  throw new BootError(`ZipMap node '${node.name ?? ''}' has neither classlabels_int64s nor classlabels_strings`);
}

/**
 * Keeps only the nodes the outputs need, and the initializers those nodes read. A graph with
 * subgraphs (If, Loop, Scan) is left whole: a subgraph reads outer names without listing them.
 */
function prune(graph: onnxProto.onnx.GraphProto, wanted: string[]): void {
  if (graph.node.some((n) => (n.attribute ?? []).some((a) => a.g || (a.graphs && a.graphs.length > 0)))) return;
  const producer = new Map<string, number>();
  graph.node.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const needed = new Set<string>(wanted);
  const keepNode = new Set<number>();
  const stack = [...wanted];
  while (stack.length > 0) {
    const i = producer.get(stack.pop()!);
    if (i === undefined || keepNode.has(i)) continue;
    keepNode.add(i);
    for (const input of graph.node[i].input ?? []) {
      if (input && !needed.has(input)) {
        needed.add(input);
        stack.push(input);
      }
    }
  }
  graph.node = graph.node.filter((_, i) => keepNode.has(i));
  graph.initializer = graph.initializer.filter((t) => needed.has(t.name ?? ''));
}
