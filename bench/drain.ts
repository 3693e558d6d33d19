/**
 * One row of the table: a consumer process drains a queue filled beforehand with `count` messages,
 * while the reply reader counts replies; optionally a latency phase at a fixed offered rate follows.
 * Filling first keeps the publisher off the two CPUs while throughput is measured; the rate is taken
 * from the first reply to the last, so a consumer's boot is not counted.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import type * as amqp from 'amqplib';
import type { Config } from '../src/config.js';
import { startConsumer, type ConsumerProcess } from '../test/support/consumer-process.js';
import {
  declareQueues,
  deleteQueues,
  LatencyTally,
  Publisher,
  ReplyReader,
  Tally,
  uniqueQueues,
  type ReplySeen,
} from './load.js';
import { ROOT } from './models.js';
import { freeTcpPort } from '../test/support/private-broker.js';

export interface BenchLinks {
  url: string;
  runId: string;
  config: Readonly<Config>;
  /** The load generator's connection (declare, publish, delete). */
  publish: amqp.ChannelModel;
  /** The reply reader's connection. */
  read: amqp.ChannelModel;
}

export interface DrainSpec {
  label: string;
  bodies: readonly Buffer[];
  /** The bodies' contentType; default application/json. */
  contentType?: string;
  /** Messages measured. */
  count: number;
  /**
   * Messages answered before the measured ones, filled into the queue with them: a fresh process's boot,
   * first prefetch window and JIT warm-up are left out of its rate and CPU. Default 10% of `count`.
   */
  warmup?: number;
  /** Script run as the consumer under test, relative to `cwd`; default src/main.ts. */
  script?: string;
  /** The program that runs `script`, when not node (a Python baseline). */
  command?: string;
  /** Where the process runs; default this project (another checkout, to compare versions). */
  cwd?: string;
  env: Record<string, string>;
  nodeArgs?: string[];
  /** Text of the log line that says the process consumes. */
  readyText: string;
  /** After the drain, one phase each: offer messages at a fixed rate (given, or a fraction of the drain's rate) and time each reply. */
  latency?: LatencySpec[];
  /** Keep the process's stdout and stderr in the result (for tuning runs). */
  keepOutput?: boolean;
  /** Stop measuring after this long, by design (a slow baseline): its rate is taken from what it answered. */
  timeLimitMs?: number;
}

export interface LatencySpec {
  ratePerS?: number;
  fractionOfPeak?: number;
  seconds: number;
  /**
   * Offered at the same rate first and not counted (default: the phase's first second is dropped). A
   * consumer drained in batches of a hundred is re-optimised by V8 for batches of one once the load drops,
   * for about ten seconds (README, A message alone): this leaves that out, as the drain leaves out its warm-up.
   */
  warmupSeconds?: number;
  /** Called just before the counted messages are offered, and again once their replies are in (bench/ab.ts --segments captures between the two). */
  onCounted?: (stage: 'start' | 'end') => Promise<void>;
}

export interface LatencyResult {
  offeredPerS: number;
  sent: number;
  received: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The replies' x-scoring-ms (this consumer only): the part of the latency spent scoring, isolate round trip included. */
  scoringP50Ms?: number;
  scoringP99Ms?: number;
  /** CPU of the benchmark's own process (publisher and reply reader) per message, in ms. */
  loadGeneratorCpuMsPerMsg: number;
  /**
   * CPU of the process under test per message over the counted seconds (all threads, and its main thread),
   * in ms: at a low rate each message pays its own wake-ups, so this is what the consumer takes from the
   * cores the broker and the load generator share with it.
   */
  consumerCpuMsPerMsg?: number;
  consumerMainCpuMsPerMsg?: number;
  /** The broker's CPU per message over the same seconds (its beam.smp), when it runs on this machine: an ack or a write saved there is CPU the consumer gets back. */
  brokerCpuMsPerMsg?: number;
  /** Seconds offered at this rate before the counted ones (LatencySpec.warmupSeconds). */
  warmupSeconds?: number;
  /** p99 of each second's replies, the warm-up included, and of their x-scoring-ms. */
  p99PerSecondMs?: number[];
  scoringP99PerSecondMs?: number[];
  /** When the phase was run in several rounds (npm run bench --rounds): each round's p99, this being the median one. */
  p99Rounds?: number[];
}

export interface DrainResult {
  label: string;
  msgPerS: number;
  /** Replies received of `count` sent, the first `warmup` of them not measured. */
  received: number;
  count: number;
  warmup: number;
  errors: number;
  duplicates: number;
  seconds: number;
  /** 1-minute load average when the drain started: other work on the machine shows up here. */
  loadAvg: number;
  /** Replies per 100 ms from the first. */
  timeline: number[];
  /** CPU time (user + system, all threads) the process under test spent per message while draining. */
  cpuMsPerMsg: number;
  /** The same for its main thread alone (the broker's side; isolates and runtime threads are the rest). */
  mainCpuMsPerMsg: number;
  /** The kernel's share of cpuMsPerMsg (system time: socket reads and writes, thread wake-ups). */
  systemCpuMsPerMsg: number;
  rss?: { peakMb: number; nowMb: number };
  /** The broker's CPU ms per message over the same stretch (its beam.smp, all schedulers), when it runs on this machine. */
  brokerCpuMsPerMsg?: number;
  /** CPU ms per message of each thread that used any over the measured stretch, busiest first (see threadCpu). */
  threads: ThreadCpu[];
  /** This consumer's mean batch over the measured messages (its scorer_batch_size), when it is ours. */
  meanBatch?: number;
  /** Where this consumer scored, from its boot line (INLINE_SCORING), when it is ours. */
  placement?: 'consumer thread' | 'worker threads';
  latencies: LatencyResult[];
  output?: string;
  /**
   * When the row was drained several times (npm run bench --rounds): each round's figures; the rest is the
   * median round's (medianRound). The broker's CPU a message tells a round the broker slowed from one the consumer did.
   */
  rounds?: Array<{
    msgPerS: number;
    cpuMsPerMsg: number;
    loadAvg: number;
    brokerCpuMsPerMsg?: number;
    meanBatch?: number;
  }>;
}

export async function drain(links: BenchLinks, spec: DrainSpec): Promise<DrainResult> {
  const q = uniqueQueues(links.runId, spec.label);
  const publisher = await Publisher.open(links.publish, spec.contentType);
  let proc: ConsumerProcess | undefined;
  let reader: ReplyReader | undefined;
  try {
    await declareQueues(links.publish, q, links.config);
    const warmup = spec.warmup ?? Math.floor(spec.count / 10);
    const total = warmup + spec.count;
    await publisher.fill(q.input, spec.bodies, total);
    const tally = new Tally(total);
    let onReply: (r: ReplySeen) => void = tally.onReply;
    reader = await ReplyReader.open(links.read, q.reply, (r) => onReply(r));

    const loadAvg = loadavg()[0];
    // This consumer (not a baseline): its /metrics say how large its batches were.
    const httpPort = spec.script === undefined && !spec.command ? await freeTcpPort() : undefined;
    proc = startConsumer(
      {
        ...spec.env,
        AMQP_URL: links.url,
        INPUT_QUEUE: q.input,
        REPLY_QUEUE: q.reply,
        ...(httpPort ? { HTTP_PORT: String(httpPort) } : {}),
      },
      { cwd: spec.cwd ?? ROOT, script: spec.script, nodeArgs: spec.nodeArgs, command: spec.command },
    );
    await proc.waitFor(spec.readyText, 60_000);
    const placement = httpPort
      ? /"msg":"scoring on the consumer thread"/.test(proc.output())
        ? ('consumer thread' as const)
        : ('worker threads' as const)
      : undefined;
    const pid = proc.child.pid!;
    let cpuBefore = cpuSecondsOf(pid);
    let mainBefore = cpuSecondsOf(pid, pid);
    let systemBefore = cpuSecondsOf(pid, undefined, 'system');
    let threadsBefore = threadSeconds(pid);
    const broker = brokerPid();
    let brokerBefore = broker === undefined ? NaN : cpuSecondsOf(broker);
    let batchesBefore: Promise<BatchTally | undefined> = Promise.resolve(undefined);
    tally.onReached(warmup, () => {
      cpuBefore = cpuSecondsOf(pid);
      mainBefore = cpuSecondsOf(pid, pid);
      systemBefore = cpuSecondsOf(pid, undefined, 'system');
      threadsBefore = threadSeconds(pid);
      if (broker !== undefined) brokerBefore = cpuSecondsOf(broker);
      if (httpPort) batchesBefore = batchTally(httpPort);
    });
    const complete = await tally.within(spec.timeLimitMs ?? 120_000);
    const cpuMsPerMsg = ((cpuSecondsOf(pid) - cpuBefore) * 1000) / Math.max(1, tally.received - warmup);
    const mainCpuMsPerMsg = ((cpuSecondsOf(pid, pid) - mainBefore) * 1000) / Math.max(1, tally.received - warmup);
    const systemCpuMsPerMsg =
      ((cpuSecondsOf(pid, undefined, 'system') - systemBefore) * 1000) / Math.max(1, tally.received - warmup);
    const brokerCpuMsPerMsg =
      broker === undefined
        ? undefined
        : ((cpuSecondsOf(broker) - brokerBefore) * 1000) / Math.max(1, tally.received - warmup);
    const threads = threadCpu(pid, threadsBefore, threadSeconds(pid), Math.max(1, tally.received - warmup));
    const [b0, b1] = httpPort ? await Promise.all([batchesBefore, batchTally(httpPort)]) : [];
    const meanBatch = b0 && b1 && b1.count > b0.count ? (b1.sum - b0.sum) / (b1.count - b0.count) : undefined;
    if (!complete && !spec.timeLimitMs)
      process.stderr.write(`bench: ${spec.label}: only ${tally.received} of ${total} replies within the time limit\n`);
    const msgPerS = tally.steadyRatePerS(warmup);

    const latencies: LatencyResult[] = [];
    for (const [k, phase] of (complete ? (spec.latency ?? []) : []).entries()) {
      const ratePerS = Math.round(phase.ratePerS ?? msgPerS * (phase.fractionOfPeak ?? 0.5));
      const sent = Math.max(100, Math.round(ratePerS * phase.seconds));
      const warm = Math.round(ratePerS * (phase.warmupSeconds ?? 0));
      const prefix = `L${k}.`;
      const lt = new LatencyTally(warm + sent, prefix);
      onReply = lt.onReply;
      if (warm > 0) await publisher.atRate(q.input, spec.bodies, warm, ratePerS, lt.markSent, prefix);
      await phase.onCounted?.('start');
      const cpu = process.cpuUsage();
      const consumerBefore = cpuSecondsOf(pid);
      const consumerMainBefore = cpuSecondsOf(pid, pid);
      const brokerPhaseBefore = broker === undefined ? NaN : cpuSecondsOf(broker);
      await publisher.atRate(q.input, spec.bodies, sent, ratePerS, lt.markSent, prefix, warm);
      await lt.within(30_000);
      const { user, system } = process.cpuUsage(cpu);
      const consumerCpuMsPerMsg = ((cpuSecondsOf(pid) - consumerBefore) * 1000) / sent;
      const consumerMainCpuMsPerMsg = ((cpuSecondsOf(pid, pid) - consumerMainBefore) * 1000) / sent;
      const brokerCpuMsPerMsg = broker === undefined ? NaN : ((cpuSecondsOf(broker) - brokerPhaseBefore) * 1000) / sent;
      await phase.onCounted?.('end');
      // The first second is warm-up (JIT, the broker's queue process waking up), or the warm-up asked for.
      const skip = warm > 0 ? warm : Math.min(Math.round(ratePerS), Math.floor(sent / 5));
      latencies.push({
        offeredPerS: ratePerS,
        sent,
        received: lt.received - Math.min(warm, lt.received),
        ...(warm > 0 ? { warmupSeconds: phase.warmupSeconds } : {}),
        p50Ms: lt.percentile(50, skip),
        p99Ms: lt.percentile(99, skip),
        maxMs: lt.percentile(100, skip),
        ...(lt.scoringMs.length > 0
          ? {
              scoringP50Ms: lt.percentile(50, skip, lt.scoringMs),
              scoringP99Ms: lt.percentile(99, skip, lt.scoringMs),
            }
          : {}),
        loadGeneratorCpuMsPerMsg: (user + system) / 1000 / sent,
        consumerCpuMsPerMsg,
        consumerMainCpuMsPerMsg,
        ...(Number.isFinite(brokerCpuMsPerMsg) ? { brokerCpuMsPerMsg } : {}),
        p99PerSecondMs: lt.percentiles(99, ratePerS),
        ...(lt.scoringMs.length > 0 ? { scoringP99PerSecondMs: lt.percentiles(99, ratePerS, lt.scoringMs) } : {}),
      });
    }
    const rss = proc.child.pid ? memoryOf(proc.child.pid) : undefined;
    return {
      label: spec.label,
      msgPerS,
      timeline: tally.timeline(),
      received: tally.received,
      count: total,
      warmup,
      errors: tally.errors,
      duplicates: tally.duplicates,
      seconds: (tally.lastAt - tally.firstAt) / 1000,
      loadAvg,
      cpuMsPerMsg,
      mainCpuMsPerMsg,
      systemCpuMsPerMsg,
      rss,
      threads,
      ...(brokerCpuMsPerMsg !== undefined && Number.isFinite(brokerCpuMsPerMsg) ? { brokerCpuMsPerMsg } : {}),
      meanBatch,
      ...(placement ? { placement } : {}),
      latencies,
      ...(spec.keepOutput ? { output: proc.output() } : {}),
    };
  } finally {
    if (proc) await stopProcess(proc);
    await reader?.close();
    await publisher.close();
    await deleteQueues(links.publish, q);
  }
}

export async function stopProcess(proc: ConsumerProcess): Promise<void> {
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 15_000);
  await proc.stop('SIGTERM');
  clearTimeout(timer);
}

interface BatchTally {
  sum: number;
  count: number;
}

/** scorer_batch_size's sum and count from a consumer's /metrics, or undefined when it does not answer. */
async function batchTally(port: number): Promise<BatchTally | undefined> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
    const read = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)?.[1]);
    const sum = read('scorer_batch_size_sum');
    const count = read('scorer_batch_size_count');
    return Number.isFinite(sum) && Number.isFinite(count) ? { sum, count } : undefined;
  } catch {
    return undefined;
  }
}

/** utime + stime of a live process, all its threads (or its thread `tid`), in seconds (clock ticks are 1/100 s on Linux). */
export function cpuSecondsOf(pid: number, tid?: number, which: 'all' | 'system' = 'all'): number {
  try {
    const fields = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
      .split(') ')[1]
      .split(' ');
    return ((which === 'all' ? Number(fields[11]) : 0) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/**
 * The local broker's Erlang VM: the oldest beam.smp on this machine (private test brokers start later), or
 * BENCH_BROKER_PID; undefined when the broker runs elsewhere.
 */
function brokerPid(): number | undefined {
  if (process.env.BENCH_BROKER_PID) return Number(process.env.BENCH_BROKER_PID);
  let oldest: { pid: number; start: number } | undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'beam.smp') continue;
      const start = Number(readFileSync(`/proc/${entry}/stat`, 'utf8').split(') ')[1].split(' ')[19]);
      if (!oldest || start < oldest.start) oldest = { pid: Number(entry), start };
    } catch {
      // gone meanwhile
    }
  }
  return oldest?.pid;
}

export interface ThreadCpu {
  tid: number;
  /** 'main', or how long after the process the thread started: V8's and libuv's threads start with it, isolates once it has booted. */
  kind: string;
  cpuMsPerMsg: number;
}

/** Every thread's utime + stime (s) and start time (s after boot), by thread id. */
function threadSeconds(pid: number): Map<number, { cpu: number; start: number }> {
  const out = new Map<number, { cpu: number; start: number }>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tids) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(') ')[1].split(' ');
      out.set(Number(t), { cpu: (Number(f[11]) + Number(f[12])) / 100, start: Number(f[19]) / 100 });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

function threadCpu(
  pid: number,
  before: Map<number, { cpu: number; start: number }>,
  after: Map<number, { cpu: number; start: number }>,
  messages: number,
): ThreadCpu[] {
  const born = after.get(pid)?.start ?? 0;
  return [...after]
    .map(([tid, a]) => ({
      tid,
      kind: tid === pid ? 'main' : `+${(a.start - born).toFixed(2)} s`,
      cpuMsPerMsg: ((a.cpu - (before.get(tid)?.cpu ?? 0)) * 1000) / messages,
    }))
    .filter((t) => t.cpuMsPerMsg > 0)
    .sort((x, y) => y.cpuMsPerMsg - x.cpuMsPerMsg);
}

/** VmHWM (the peak resident set) and VmRSS of a live process, in MB. */
export function memoryOf(pid: number): { peakMb: number; nowMb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { peakMb: kb('VmHWM') / 1024, nowMb: kb('VmRSS') / 1024 };
  } catch {
    return undefined;
  }
}

/** `--set KEY=VALUE` options as the environment they give the process under test (a value may hold '='). */
export function settingsEnv(pairs: readonly string[]): Record<string, string> {
  return Object.fromEntries(pairs.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/**
 * The order of a round's drains: each round starts one row later than the one before, so that over as
 * many rounds as rows every row drains first, second, ... once. A drain runs on the broker as the one
 * before it left it (its queues just deleted, its memory and message store still settling), and a row
 * always drained in the same place would carry that in every round.
 */
export function rotated<T>(rows: readonly T[], round: number): T[] {
  const k = ((round % rows.length) + rows.length) % rows.length;
  return [...rows.slice(k), ...rows.slice(0, k)];
}

/** Several drains of one row: its median round by CPU per message, with the median of their rates, every round's figures kept. */
export function medianRound(rounds: DrainResult[]): DrainResult {
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
  const byCpu = [...rounds].sort((a, b) => a.cpuMsPerMsg - b.cpuMsPerMsg);
  return {
    ...byCpu[Math.floor((byCpu.length - 1) / 2)],
    msgPerS: median(rounds.map((r) => r.msgPerS)),
    rounds: rounds.map((r) => ({
      msgPerS: r.msgPerS,
      cpuMsPerMsg: r.cpuMsPerMsg,
      loadAvg: r.loadAvg,
      brokerCpuMsPerMsg: r.brokerCpuMsPerMsg,
      meanBatch: r.meanBatch,
    })),
  };
}
