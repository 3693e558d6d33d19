/**
 * Bytes allocated per message on the consumer's main JavaScript heap, by where in the code they were
 * asked for: the garbage each stage of the message path makes, which the young generation's scavenges
 * pay for, and whose survivors (inputs still in flight at two scavenges) are promoted and make the old
 * generation's full collections. A drain of a filled queue, as `npm run bench` does, with V8's sampling
 * heap profiler on in the consumer's own process (bench/heap-sampler.ts) from the warm-up's last reply to
 * the measured messages' last, every allocation sampled, freed or not.
 *
 *   node --import tsx bench/allocations.ts [--models iris,mlp] [--messages 50000] [--warmup 20000] [--top 25] [--set KEY=VALUE]...
 *
 * Bytes, not time: the figure does not move with the machine's load, only with the code (and the JIT's
 * choices, which inline and escape-analyse some allocations away), so an A/B of two versions needs one run
 * each. The window's ends are replies counted by the reader, so in-flight inputs (PREFETCH of them) at
 * either end shift the count by up to PREFETCH / messages.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { startConsumer } from '../test/support/consumer-process.js';
import { settingsEnv, stopProcess } from './drain.js';
import { connect, declareQueues, deleteQueues, Publisher, ReplyReader, Tally, uniqueQueues } from './load.js';
import { benchModels, ROOT } from './models.js';

/** A node of V8's sampling heap profile (HeapProfiler.SamplingHeapProfile). */
export interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export interface Allocations {
  /** Bytes sampled in all, per message. */
  perMessage: number;
  /** Per message, by the innermost frame of the allocating stack that is this project's (`src/…`) or a package's. */
  byPlace: Array<{ place: string; perMessage: number }>;
  /** Per message, by the allocating function itself. */
  byFunction: Array<{ fn: string; perMessage: number }>;
}

/** `src/answer.ts` for this project's files (tsx's query dropped), the package's name under node_modules, else undefined. */
export function placeOf(url: string): string | undefined {
  const path = url.replace(/\?.*$/, '');
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path);
  if (pkg) return pkg[1];
  const src = /\/(src\/.+)$/.exec(path);
  return src ? src[1] : undefined;
}

/** A profile's samples per message, summed by place and by function, largest first. Pure. */
export function allocationsOf(head: ProfileNode, messages: number): Allocations {
  const places = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
  const walk = (node: ProfileNode, place: string) => {
    const here = placeOf(node.callFrame.url) ?? place;
    if (node.selfSize > 0) {
      total += node.selfSize;
      add(places, here, node.selfSize);
      const { functionName, url } = node.callFrame;
      add(functions, `${functionName || '(anonymous)'} (${placeOf(url) ?? (url || 'built-in')})`, node.selfSize);
    }
    for (const child of node.children) walk(child, here);
  };
  walk(head, 'Node.js and V8 (no frame of this project or a package)');
  const sorted = <K extends string>(m: Map<string, number>, key: K) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => ({ [key]: k, perMessage: v / messages }) as { [P in K]: string } & { perMessage: number });
  return { perMessage: total / messages, byPlace: sorted(places, 'place'), byFunction: sorted(functions, 'fn') };
}

async function measure(
  modelName: string,
  messages: number,
  warmup: number,
  env: Record<string, string>,
): Promise<Allocations> {
  const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
  const config = loadConfig({});
  const model = (await benchModels()).find((m) => m.name === modelName);
  if (!model) throw new Error(`no benchmark model '${modelName}' (iris, mlp)`);
  const publish = await connect(url, 'bench/allocations/load');
  const read = await connect(url, 'bench/allocations/replies');
  const q = uniqueQueues(`alloc${Date.now().toString(36)}`, model.name);
  const out = join(tmpdir(), `scorer-allocations-${process.pid}.heapprofile`);
  let proc: ReturnType<typeof startConsumer> | undefined;
  let reader: ReplyReader | undefined;
  try {
    await declareQueues(publish, q, config);
    const publisher = await Publisher.open(publish);
    await publisher.fill(q.input, model.bodies, warmup + messages);
    await publisher.close();
    const tally = new Tally(warmup + messages);
    const toggle = () => proc?.child.kill('SIGUSR2');
    tally.onReached(warmup, () => {
      toggle();
      tally.onReached(warmup + messages, toggle);
    });
    reader = await ReplyReader.open(read, q.reply, tally.onReply);
    proc = startConsumer(
      {
        MODEL_DIR: model.modelDir,
        AMQP_URL: url,
        INPUT_QUEUE: q.input,
        REPLY_QUEUE: q.reply,
        HEAP_PROFILE_OUT: out,
        ...env,
      },
      { cwd: ROOT, script: 'bench/heap-sampler.ts' },
    );
    await proc.waitFor('"msg":"consuming"', 60_000);
    if (!(await tally.within(300_000)))
      throw new Error(`${tally.received} of ${warmup + messages} replies in 5 minutes`);
    await proc.waitFor('"msg":"heap profile written"', 60_000);
    const profile = JSON.parse(readFileSync(out, 'utf8')) as { head: ProfileNode };
    return allocationsOf(profile.head, messages);
  } finally {
    if (proc) await stopProcess(proc);
    await reader?.close();
    await deleteQueues(publish, q);
    await publish.close();
    await read.close();
    rmSync(out, { force: true });
  }
}

async function main(): Promise<void> {
  const { values: opts } = parseArgs({
    options: {
      models: { type: 'string', default: 'iris,mlp' },
      messages: { type: 'string', default: '50000' },
      warmup: { type: 'string', default: '20000' },
      top: { type: 'string', default: '25' },
      set: { type: 'string', multiple: true, default: [] },
    },
  });
  const env = settingsEnv(opts.set);
  const top = Number(opts.top);
  for (const model of opts.models.split(',')) {
    const a = await measure(model, Number(opts.messages), Number(opts.warmup), env);
    console.log(`\n${model}: ${a.perMessage.toFixed(0)} bytes allocated per message on the main heap`);
    console.log('  by place (the innermost frame of this project or a package):');
    for (const p of a.byPlace.slice(0, top)) console.log(`  ${p.perMessage.toFixed(0).padStart(7)}  ${p.place}`);
    console.log('  by function:');
    for (const f of a.byFunction.slice(0, top)) console.log(`  ${f.perMessage.toFixed(0).padStart(7)}  ${f.fn}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
