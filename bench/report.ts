/** The table printed at the end of `npm run bench`, the targets checked, and bench/results.json. */
import type { BrokerCeiling, ComputeCeiling } from './ceilings.js';
import type { DrainResult, LatencyResult } from './drain.js';
import { stagesTable, type StageCosts } from './stages.js';

export interface ModelResult {
  model: 'iris' | 'mlp';
  count: number;
  compute: ComputeCeiling;
  broker: BrokerCeiling;
  /** The no-op consumer at the same offered rates as ours' latency phases: the broker's own share of the latency. */
  brokerLatencies: LatencyResult[];
  hand: DrainResult;
  ours: DrainResult;
  /** Each stage alone (bench/stages.ts), at this consumer's mean batch in the drain. */
  stages?: StageCosts;
}

/** The stage of bench/stages.ts whose name starts so: the terms of the MLP target. */
export const PARSE_STAGE = 'parse';
export const RUNTIME_STAGE = 'runtime run';
export function stageUs(stages: StageCosts | undefined, prefix: string): number {
  const hit = Object.entries(stages?.us ?? {}).find(([name]) => name.startsWith(prefix));
  return hit ? hit[1] : NaN;
}

export interface SoakResult {
  model: 'iris' | 'mlp';
  messages: number;
  msgPerS: number;
  /** VmRSS (MB) sampled as replies came in. */
  samples: Array<{ replies: number; rssMb: number }>;
  rssAt50kMb: number;
  rssAtEndMb: number;
  peakMb: number;
  changePct: number;
}

export interface Target {
  model: string;
  target: string;
  measured: string;
  met: boolean;
}

export function targetsOf(
  results: readonly ModelResult[],
  maxBatchDelayMs: number,
  soak: readonly SoakResult[],
): Target[] {
  const targets: Target[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  for (const r of results) {
    const ours = r.ours.msgPerS;
    const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
    const cpu = r.ours.cpuMsPerMsg;
    const contract = r.broker.withReplyContract.cpuMsPerMsg;
    if (r.model === 'iris') {
      const ratio = ours / r.broker.best.msgPerS;
      targets.push({
        model: r.model,
        target: '≥ 85% of the bare no-op rate',
        measured: pct(ratio),
        met: ratio >= 0.85,
      });
      targets.push({
        model: r.model,
        target: "CPU per message ≤ the no-op's that sends our replies' properties",
        measured: `${us(cpu)} vs ${us(contract)}`,
        met: cpu <= contract,
      });
    } else {
      const parse = stageUs(r.stages, PARSE_STAGE) / 1000;
      const runtime = stageUs(r.stages, RUNTIME_STAGE) / 1000;
      const budget = 1.2 * (contract + parse + runtime);
      targets.push({
        model: r.model,
        target: 'CPU per message ≤ 1.2 × (no-op with our properties + reading the numbers + onnxruntime per row)',
        measured: `${us(cpu)} vs 1.2 × (${us(contract)} + ${us(parse)} + ${us(runtime)}) = ${us(budget)}`,
        met: cpu <= budget,
      });
    }
    const vsHand = ours / r.hand.msgPerS;
    targets.push({
      model: r.model,
      target: '≥ 10× the hand-written consumer',
      measured: `${vsHand.toFixed(1)}×`,
      met: vsHand >= 10,
    });
    const p99 = r.ours.latencies[1]?.p99Ms ?? NaN;
    const noopP99 = r.brokerLatencies[1]?.p99Ms ?? NaN;
    const bound = noopP99 + maxBatchDelayMs + 3;
    targets.push({
      model: r.model,
      target: `p99 at 1,000 msg/s ≤ the no-op's p99 + MAX_BATCH_DELAY_MS (${maxBatchDelayMs}) + 3 ms`,
      measured: `${p99.toFixed(1)} ms vs ${noopP99.toFixed(1)} + ${maxBatchDelayMs} + 3 = ${bound.toFixed(1)} ms`,
      met: p99 <= bound,
    });
  }
  for (const s of soak) {
    targets.push({
      model: s.model,
      target: `RSS flat (±10%) from 50k to ${s.messages / 1000}k`,
      measured: `${s.changePct >= 0 ? '+' : ''}${s.changePct.toFixed(1)}%`,
      met: Math.abs(s.changePct) <= 10,
    });
  }
  return targets;
}

const rate = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : Math.round(x).toLocaleString('en-US'));
const us = (msPerMsg: number) => `${(msPerMsg * 1000).toFixed(0)} µs`;
/** The p99 of each warm-up second of a latency phase, in ms. */
const firstSeconds = (l: LatencyResult | undefined) =>
  l?.p99PerSecondMs
    ?.slice(0, l.warmupSeconds ?? 0)
    .map((x) => x.toFixed(1))
    .join(', ') ?? '?';
/** To a tenth of a µs, or '?' when not measured (a broker on another machine). */
const us1 = (msPerMsg: number | undefined) => (msPerMsg === undefined ? '?' : `${(msPerMsg * 1000).toFixed(1)} µs`);
const ms = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '' : x.toFixed(1));
/** The p99 of each round, when the phase ran in several: the one shown is their median. */
const p99s = (l: LatencyResult | undefined) =>
  l?.p99Rounds && l.p99Rounds.length > 1 ? ` (median of ${l.p99Rounds.map((x) => x.toFixed(1)).join(', ')})` : '';

export function table(results: readonly ModelResult[]): string {
  const rows: string[][] = [['model', 'row', 'msg/s', 'ours ÷ row', 'p50 ms', 'p99 ms', 'peak RSS MB']];
  for (const r of results) {
    const ours = r.ours.msgPerS;
    const ratio = (x: number) => (ours / x >= 2 ? `${(ours / x).toFixed(1)}×` : `${((ours / x) * 100).toFixed(1)}%`);
    const bl = r.brokerLatencies[0];
    rows.push([
      r.model,
      `broker ceiling: no-op consumer, prefetch ${r.broker.best.prefetch}`,
      rate(r.broker.best.msgPerS),
      ratio(r.broker.best.msgPerS),
      ms(bl?.p50Ms),
      ms(bl?.p99Ms),
      '',
    ]);
    rows.push([
      r.model,
      '  the same, replies with our headers and properties',
      rate(r.broker.withReplyContract.msgPerS),
      ratio(r.broker.withReplyContract.msgPerS),
      '',
      '',
      '',
    ]);
    rows.push([
      r.model,
      `compute ceiling: session.run, batch ${r.compute.batchSize}, ${r.compute.intraOpThreads} thread${r.compute.intraOpThreads > 1 ? 's' : ''}`,
      rate(r.compute.rowsPerS),
      ratio(r.compute.rowsPerS),
      '',
      '',
      '',
    ]);
    rows.push([
      r.model,
      'hand-written: prefetch 1, run + ack per message',
      rate(r.hand.msgPerS),
      ratio(r.hand.msgPerS),
      '',
      '',
      '',
    ]);
    const l = r.ours.latencies[0];
    rows.push([
      r.model,
      'this consumer, defaults',
      rate(ours),
      '',
      ms(l?.p50Ms),
      ms(l?.p99Ms),
      r.ours.rss ? r.ours.rss.peakMb.toFixed(0) : '',
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const numeric = new Set([2, 3, 4, 5, 6]);
  const line = (row: string[]) =>
    `| ${row.map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c]))).join(' | ')} |`;
  const rule = `|${widths.map((w, c) => (numeric.has(c) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(rows[0]), rule, ...rows.slice(1).map(line)].join('\n');
}

export function notes(results: readonly ModelResult[]): string {
  return results
    .map((r) => {
      const [l, low] = r.ours.latencies;
      const [bl, blow] = r.brokerLatencies;
      return [
        `${r.model}: ${r.count.toLocaleString('en-US')} messages measured per row, after ${(r.ours.warmup ?? 0).toLocaleString('en-US')} answered first; latency offered at ${l ? rate(l.offeredPerS) : '?'} msg/s (half of ours), ${l?.received ?? 0}/${l?.sent ?? 0} replies, max ${ms(l?.maxMs)} ms` +
          (bl ? `; the no-op consumer at the same rate: p50 ${ms(bl.p50Ms)} ms, p99 ${ms(bl.p99Ms)} ms` : ''),
        `  at ${low ? rate(low.offeredPerS) : '?'} msg/s${low?.warmupSeconds ? ` (after ${low.warmupSeconds} s at that rate, not counted; p99 of each of those seconds, this consumer: ${firstSeconds(low)}, the no-op: ${firstSeconds(blow)} ms)` : ''}: this consumer p50 ${ms(low?.p50Ms)} ms, p99 ${ms(low?.p99Ms)} ms${p99s(low)}; the no-op consumer p50 ${ms(blow?.p50Ms)} ms, p99 ${ms(blow?.p99Ms)} ms${p99s(blow)}; the load generator's own CPU ${l ? us(l.loadGeneratorCpuMsPerMsg) : '?'} per message; CPU per message in this phase (each message alone pays its wake-ups): this consumer ${us1(low?.consumerCpuMsPerMsg)} (main thread ${us1(low?.consumerMainCpuMsPerMsg)}), the no-op ${us1(blow?.consumerCpuMsPerMsg)} (main thread ${us1(blow?.consumerMainCpuMsPerMsg)}); the broker's in the same seconds, with this consumer ${us1(low?.brokerCpuMsPerMsg)}, with the no-op ${us1(blow?.brokerCpuMsPerMsg)}`,
        `  broker ceiling by prefetch: ${r.broker.tried.map((t) => `${t.prefetch}: ${rate(t.msgPerS)}`).join(', ')}; compute by intra-op threads: ${r.compute.tried.map((t) => `${t.intraOpThreads}: ${rate(t.rowsPerS)}`).join(', ')}`,
        `  CPU per message of the process under test (all threads): no-op ${us(r.broker.best.cpuMsPerMsg)}, no-op with our reply properties ${us(r.broker.withReplyContract.cpuMsPerMsg)}, this consumer ${us(r.ours.cpuMsPerMsg)} (its main thread ${us(r.ours.mainCpuMsPerMsg)}, the kernel's share ${us(r.ours.systemCpuMsPerMsg)}; mean batch ${r.ours.meanBatch?.toFixed(1) ?? '?'}; scored on the ${r.ours.placement ?? '?'}), hand-written ${us(r.hand.cpuMsPerMsg)}`,
        ...(r.ours.rounds && r.ours.rounds.length > 1
          ? [
              `  each round (msg/s, CPU per message, the broker's CPU per message; each row is its median round): ${(
                [
                  ['this consumer', r.ours],
                  ['no-op', r.broker.best],
                  ['no-op with our reply properties', r.broker.withReplyContract],
                ] as const
              )
                .map(
                  ([name, row]) =>
                    `${name} ${(row.rounds ?? []).map((x) => `${rate(x.msgPerS)} ${us1(x.cpuMsPerMsg)} (broker ${us1(x.brokerCpuMsPerMsg)})`).join(', ')}`,
                )
                .join('; ')}`,
            ]
          : []),
        `  its threads (CPU per message, each named by when it started after the process: V8's and libuv's at once, the isolates once the model has loaded): ${(
          r.ours.threads ?? []
        )
          .slice(0, 8)
          .map((t) => `${t.kind} ${us1(t.cpuMsPerMsg)}`)
          .join(', ')}`,
        `  the broker's CPU per message (its beam.smp, the same stretch): no-op ${us1(r.broker.best.brokerCpuMsPerMsg)}, no-op with our reply properties ${us1(r.broker.withReplyContract.brokerCpuMsPerMsg)}, this consumer ${us1(r.ours.brokerCpuMsPerMsg)}`,
        ...(r.stages ? [breakdownLines(r)] : []),
        `  load average when each drain started (ours, no-op by prefetch, hand-written): ${[r.ours.loadAvg, ...r.broker.tried.map((t) => t.loadAvg), r.hand.loadAvg].map((x) => x.toFixed(2)).join(', ')}; this consumer's replies: ${r.ours.received} of ${r.ours.count}, errors ${r.ours.errors}, duplicates ${r.ours.duplicates}`,
      ].join('\n');
    })
    .join('\n');
}

/** The stages alone beside the whole: what the consumer's CPU per message is made of, and what no stage explains. */
function breakdownLines(r: ModelResult): string {
  const stages = r.stages!;
  const sum = Object.values(stages.us).reduce((a, b) => a + b, 0);
  const whole = r.ours.cpuMsPerMsg * 1000;
  return `${stagesTable([stages])
    .split('\n')
    .map((l) => `  ${l}`)
    .join(
      '\n',
    )}\n    ${(whole - sum).toFixed(1).padStart(7)} µs  the rest of the ${whole.toFixed(1)} µs measured: the event loop, timers, promises, socket reads and writes, acks, GC`;
}

export function targetLines(targets: readonly Target[]): string {
  return targets
    .map((t) => `${t.met ? 'met   ' : 'MISSED'}  ${t.model.padEnd(4)}  ${t.target}: ${t.measured}`)
    .join('\n');
}

export function soakTable(soak: readonly SoakResult[]): string {
  return soak
    .map(
      (s) =>
        `${s.model}: ${s.messages.toLocaleString('en-US')} messages at ${rate(s.msgPerS)} msg/s; VmRSS ${s.rssAt50kMb.toFixed(0)} MB at 50k → ${s.rssAtEndMb.toFixed(0)} MB at the end (${s.changePct >= 0 ? '+' : ''}${s.changePct.toFixed(1)}%), peak ${s.peakMb.toFixed(0)} MB`,
    )
    .join('\n');
}
