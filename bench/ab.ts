/**
 * A/B tuning runs, outside the benchmark's table: drains this consumer (or another checkout of it) as
 * `npm run bench` does, then offers a fixed rate, and prints msg/s, CPU per message (all threads,
 * after the warm-up), p50/p99 at that rate and peak RSS. Each change in bench/HISTORY.md's "What
 * was changed for speed" was measured this way, alternating the two checkouts.
 *
 *   node --import tsx bench/ab.ts [--models iris,mlp] [--runs 2] [--rate 10000] [--rate-seconds 4] [--rate-warmup-seconds 0] [--messages N] [--warmup N] [--cwd ../other-checkout]
 *                                 [--noop] [--npy] [--set KEY=VALUE]... [--node-arg=--flag]... [--log FILE] [--segments]
 *
 * --segments captures the broker's port over the counted seconds of the fixed-rate phase and splits each
 * reply's latency into the broker's part before the consumer, the consumer's, and the broker's after it
 * (bench/segments.ts; needs Debian's tshark, and root).
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { drain, settingsEnv } from './drain.js';
import { connect } from './load.js';
import { benchModels, npyBodies, replyContractEnv } from './models.js';
import { Capture, type Segments, segmentTable } from './segments.js';

const { values: opts } = parseArgs({
  options: {
    models: { type: 'string', default: 'iris,mlp' },
    runs: { type: 'string', default: '2' },
    rate: { type: 'string', default: '10000' },
    /** How long the fixed-rate phase offers messages (its first second, or fifth, is not counted). */
    'rate-seconds': { type: 'string', default: '4' },
    /** Offered at the same rate before the counted seconds, not counted (npm run bench uses 12 at 1,000 msg/s). */
    'rate-warmup-seconds': { type: 'string', default: '0' },
    messages: { type: 'string', default: '50000' },
    /** Answered first and not measured; default a tenth of --messages. */
    warmup: { type: 'string' },
    cwd: { type: 'string' },
    /** Drain the benchmark's no-op consumer instead (bench/noop-consumer.ts; --set REPLY_PROPS=full for our replies' properties). */
    noop: { type: 'boolean', default: false },
    /** Send each model's rows as float32 `.npy` bodies ([1, width]) instead of JSON. */
    npy: { type: 'boolean', default: false },
    set: { type: 'string', multiple: true, default: [] },
    'node-arg': { type: 'string', multiple: true, default: [] },
    /** Write each run's consumer output (its logs, or --trace-gc lines given with --node-arg) to this file, appended. */
    log: { type: 'string' },
    /** Split the counted latencies by where they were spent, from a capture of the broker's port (bench/segments.ts). */
    segments: { type: 'boolean', default: false },
  },
});

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const models = (await benchModels()).filter((m) => opts.models.split(',').includes(m.name));
const publish = await connect(url, 'bench/ab-load');
const read = await connect(url, 'bench/ab-replies');
const links = {
  url,
  runId: `${Date.now().toString(36)}.${randomBytes(2).toString('hex')}`,
  config: loadConfig({ AMQP_URL: url }),
  publish,
  read,
};
const env = settingsEnv(opts.set);
const rate = Number(opts.rate);
try {
  for (let run = 0; run < Number(opts.runs); run++) {
    for (const m of models) {
      let capture: Capture | undefined;
      let segments: Segments | undefined;
      const onCounted = async (stage: 'start' | 'end') => {
        if (stage === 'start') capture = await Capture.start(Number(new URL(url).port || 5672));
        else segments = await capture?.stop();
      };
      let r: Awaited<ReturnType<typeof drain>>;
      try {
        r = await drain(links, {
          label: `ab.${m.name}`,
          bodies: opts.npy ? npyBodies(m) : m.bodies,
          ...(opts.npy ? { contentType: 'application/x-npy' } : {}),
          count: Number(opts.messages),
          ...(opts.warmup ? { warmup: Number(opts.warmup) } : {}),
          env: opts.noop
            ? { PREFETCH: '1024', CONNECTIONS: '2', ...replyContractEnv(m), REPLY_PROPS: '', ...env }
            : { MODEL_DIR: m.modelDir, ...env },
          ...(opts.noop ? { script: 'bench/noop-consumer.ts' } : {}),
          cwd: opts.cwd,
          nodeArgs: opts['node-arg'],
          readyText: opts.noop ? '"msg":"ready"' : '"msg":"consuming"',
          latency: [
            {
              ratePerS: rate,
              seconds: Number(opts['rate-seconds']),
              warmupSeconds: Number(opts['rate-warmup-seconds']),
              ...(opts.segments ? { onCounted } : {}),
            },
          ],
          keepOutput: opts.log !== undefined,
        });
      } finally {
        // Read already when the phase ended; otherwise (the drain failed) its dumpcap is stopped here.
        if (capture && !segments) await capture.close();
      }
      if (opts.log) appendFileSync(opts.log, `--- ${m.name} run ${run}\n${r.output ?? ''}`);
      const l = r.latencies[0];
      const ms = (x: number | undefined) => x?.toFixed(1) ?? '?';
      const us = (x: number | undefined) => (x === undefined ? '?' : (x * 1000).toFixed(0));
      const threads = r.threads.map((t) => `${t.kind} ${(t.cpuMsPerMsg * 1000).toFixed(1)}`).join(', ');
      console.log(
        `${m.name}\t${Math.round(r.msgPerS)} msg/s\tCPU ${(r.cpuMsPerMsg * 1000).toFixed(1)} µs/msg (main thread ${(r.mainCpuMsPerMsg * 1000).toFixed(1)}), mean batch ${r.meanBatch?.toFixed(1) ?? '?'}${r.placement ? `, scored on the ${r.placement}` : ''}\tat ${rate} msg/s p50 ${ms(l?.p50Ms)} p99 ${ms(l?.p99Ms)} ms (scoring p50 ${ms(l?.scoringP50Ms)} p99 ${ms(l?.scoringP99Ms)}; CPU ${us(l?.consumerCpuMsPerMsg)} µs/msg, main thread ${us(l?.consumerMainCpuMsPerMsg)}; the broker ${us(l?.brokerCpuMsPerMsg)} µs/msg)\tpeak RSS ${r.rss?.peakMb.toFixed(0)} MB, broker ${r.brokerCpuMsPerMsg === undefined ? '?' : (r.brokerCpuMsPerMsg * 1000).toFixed(1)} µs/msg\n\tthreads (µs/msg): ${threads}\n\tp99 each second: ${l?.p99PerSecondMs?.map((x) => x.toFixed(1)).join(' ') ?? '?'} ms; x-scoring-ms: ${l?.scoringP99PerSecondMs?.map((x) => x.toFixed(1)).join(' ') ?? '-'}`,
      );
      if (segments) console.log(segmentTable(segments));
    }
  }
} finally {
  await publish.close().catch(() => {});
  await read.close().catch(() => {});
}
