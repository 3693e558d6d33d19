/**
 * Where a consumer's time went, from the `--cpu-prof` profiles of all its threads (the main thread and
 * each isolate; the module loader's threads show up idle): each sample's time goes to the stage of the
 * nearest frame on its stack that belongs to one (a built-in such as utf8Write or postMessage is charged
 * to the code that called it), summed over the threads.
 *
 *   node --import tsx bench/profile-breakdown.ts <dir of .cpuprofile files> [--messages N] [--from-ms T] [--threads main|others]
 *
 * `--messages` divides by the messages answered, giving µs per message; `--from-ms` drops each profile's
 * first T ms (boot and module loading). Sampled wall time is what a thread was doing, not CPU time: on a
 * machine with more runnable threads than cores, a preempted thread's wait is charged to whatever it was
 * running, so the shares, not the absolute figures, are what to read here. bench/stages.ts measures the
 * stages' CPU time alone.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Stages in the order a message meets them; the first rule that matches a frame names its stage. */
const STAGES: Array<[stage: string, match: (fn: string, url: string) => boolean]> = [
  ['idle', (fn) => fn === '(idle)'],
  ['GC', (fn) => fn === '(garbage collector)'],
  [
    'socket system calls',
    (fn, url) => url === '' && /^(writev|writeBuffer|writeUtf8String|read|onStreamRead)$/.test(fn),
  ],
  ['boot (module loading)', (_, url) => /node:internal\/modules|tsx\/dist|cjs-module-lexer|bootstrap\/realm/.test(url)],
  ['broker client (amqplib)', (_, url) => url.includes('node_modules/amqplib/')],
  ['broker adapter (src/broker)', (_, url) => url.includes('/src/broker/')],
  [
    'transfer between threads',
    (fn, url) =>
      /\/src\/isolate\/(protocol|host|main)\.ts/.test(url) ||
      url.startsWith('node:internal/worker') ||
      url.includes('messageport') ||
      (url === '' && /^(postMessage|receiveMessageOnPort)$/.test(fn)),
  ],
  ['parse (numbers, JSON)', (_, url) => /\/src\/isolate\/(numeric-data|parse-message|npy|safetensors)\.ts/.test(url)],
  ['runtime run (onnxruntime)', (_, url) => /node_modules\/onnxruntime-(node|common)\//.test(url)],
  [
    'tensor build',
    (fn, url) => /\/src\/onnx\/batching\.ts/.test(url) || (url.includes('/src/onnx/entry.ts') && fn === 'readBody'),
  ],
  [
    'output encoding',
    (fn, url) =>
      /\/src\/onnx\/(tensors|element-types)\.ts/.test(url) ||
      (url.includes('/src/isolate/call-script.ts') && fn === 'toOutcome'),
  ],
  ['entry script calls', (_, url) => /\/src\/(onnx|isolate)\//.test(url)],
  ['metrics and logs', (_, url) => /node_modules\/(prom-client|pino|sonic-boom)\//.test(url)],
  ['tracing', (_, url) => url.includes('/src/tracing.ts') || url.includes('@opentelemetry')],
  ['message path (consume, batch, answer, reply)', (_, url) => url.includes('/src/')],
  ['other node internals', (_, url) => url.startsWith('node:')],
];

const stageOf = (fn: string, url: string): string | undefined => STAGES.find(([, m]) => m(fn, url))?.[0];

/** µs per stage in one profile, from `fromMs` on. */
export function breakdown(profile: Profile, fromMs = 0): Map<string, number> {
  const parent = new Map<number, ProfileNode>();
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n);
  }
  const cache = new Map<number, string>();
  const stageOfNode = (id: number): string => {
    const hit = cache.get(id);
    if (hit) return hit;
    let node: ProfileNode | undefined = byId.get(id);
    let stage: string | undefined;
    while (node && !(stage = stageOf(node.callFrame.functionName, node.callFrame.url.replace(/\?.*$/, ''))))
      node = parent.get(node.id);
    const found = stage ?? 'other native';
    cache.set(id, found);
    return found;
  };
  const out = new Map<string, number>();
  let at = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    at += dt;
    if (at < fromMs * 1000) continue;
    const stage = stageOfNode(profile.samples[i]);
    out.set(stage, (out.get(stage) ?? 0) + dt);
  }
  return out;
}

/** The table for every profile in `dir`: per stage, µs per message (or ms in all) and share of the busy time. */
export function breakdownTable(dir: string, messages: number, fromMs: number, only?: 'main' | 'others'): string {
  const total = new Map<string, number>();
  // Node names a profile CPU.<date>.<time>.<pid>.<thread>.<seq>: thread 0 is the main thread.
  const isMain = (f: string) => /\.0\.\d+\.cpuprofile$/.test(f);
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .filter((f) => only === undefined || (only === 'main') === isMain(f));
  for (const f of files) {
    for (const [stage, us] of breakdown(JSON.parse(readFileSync(join(dir, f), 'utf8')) as Profile, fromMs))
      total.set(stage, (total.get(stage) ?? 0) + us);
  }
  const busy = [...total].filter(([s]) => s !== 'idle').reduce((a, [, us]) => a + us, 0);
  const rows = [...total].filter(([s]) => s !== 'idle').sort((a, b) => b[1] - a[1]);
  const per = (us: number) => (messages > 0 ? `${(us / messages).toFixed(1)} µs/msg` : `${(us / 1000).toFixed(0)} ms`);
  return [
    `${files.length} threads, busy ${per(busy)}`,
    ...rows.map(([stage, us]) => `  ${per(us).padStart(14)}  ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${stage}`),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      messages: { type: 'string', default: '0' },
      'from-ms': { type: 'string', default: '0' },
      /** main: the main thread's profile only; others: every other thread's (the isolates, V8's own threads). */
      threads: { type: 'string' },
    },
  });
  const dir = positionals[0] ?? 'bench/work/prof';
  const only = values.threads === 'main' || values.threads === 'others' ? values.threads : undefined;
  console.log(breakdownTable(dir, Number(values.messages), Number(values['from-ms']), only));
}
