/**
 * Instructions per message of the whole consumer (every thread), counted by valgrind's callgrind: a
 * figure the machine's load cannot move, for A/B decisions that wall-clock and even CPU time (±10–15%
 * here, run to run) would hide. The queue is filled first; the consumer runs under callgrind; its
 * counters are zeroed once the warm-up's replies are in (`callgrind_control --zero`) and dumped once the
 * last is (`--dump`), so boot and JIT warm-up are left out. Under valgrind the consumer is ~50× slower,
 * so every batch is full (MAX_BATCH_SIZE): the count is of full batches, the same for both sides of an A/B.
 *
 *   node --import tsx bench/instructions.ts [--models iris,mlp] [--messages 20000] [--warmup 5000] [--rate R]
 *                                           [--cwd ../other-checkout] [--noop] [--set KEY=VALUE]... [--node-arg=--flag]...
 *
 * `--rate R` counts a light load instead: after the warm-up's drain the counters are zeroed and the
 * measured messages are offered at R a second. At 20 a second under valgrind each message arrives alone,
 * as at 1,000 a second without it, so the count is of what a message costs when it pays its own wake-ups
 * (the idle time between them included: timers and heartbeats are part of that cost).
 *
 * The consumer's placement is decided by timing at boot (INLINE_SCORING=auto), which valgrind slows
 * past INLINE_MAX_BATCH_MS: pass --set INLINE_SCORING=on (or off) to count the placement you mean.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { startConsumer } from '../test/support/consumer-process.js';
import { settingsEnv } from './drain.js';
import { connect, declareQueues, deleteQueues, Publisher, ReplyReader, Tally, uniqueQueues } from './load.js';
import { benchModels, ROOT } from './models.js';

const { values: opts } = parseArgs({
  options: {
    models: { type: 'string', default: 'iris,mlp' },
    messages: { type: 'string', default: '20000' },
    warmup: { type: 'string', default: '5000' },
    rate: { type: 'string' },
    /** Keep the callgrind dumps here (for callgrind_annotate) instead of deleting them. */
    keep: { type: 'string' },
    cwd: { type: 'string' },
    noop: { type: 'boolean', default: false },
    set: { type: 'string', multiple: true, default: [] },
    /** Node flags for the consumer, e.g. --node-arg=--single-threaded for fewer threads to vary. */
    'node-arg': { type: 'string', multiple: true, default: [] },
  },
});

/** Ir in a callgrind dump: its `totals:` (or `summary:`) line. */
function instructionsIn(file: string): number {
  const line = /^(?:totals|summary): (\d+)/m.exec(readFileSync(file, 'utf8'));
  if (!line) throw new Error(`no totals in ${file}`);
  return Number(line[1]);
}

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const config = loadConfig({ AMQP_URL: url });
const env = settingsEnv(opts.set);
const messages = Number(opts.messages);
const warmup = Number(opts.warmup);
const runId = `${Date.now().toString(36)}.${randomBytes(2).toString('hex')}`;
const publish = await connect(url, 'bench/instructions-load');
const read = await connect(url, 'bench/instructions-replies');
const outDir = opts.keep ?? join(ROOT, 'bench', 'work', `callgrind.${runId}`);
mkdirSync(outDir, { recursive: true });

try {
  for (const m of (await benchModels()).filter((x) => opts.models.split(',').includes(x.name))) {
    const q = uniqueQueues(runId, `ir.${m.name}`);
    const publisher = await Publisher.open(publish);
    await declareQueues(publish, q, config);
    const rate = opts.rate === undefined ? undefined : Number(opts.rate);
    await publisher.fill(q.input, m.bodies, rate === undefined ? warmup + messages : warmup);
    const tally = new Tally(rate === undefined ? warmup + messages : warmup);
    const offered = new Tally(rate === undefined ? 0 : messages, 'R.');
    const reader = await ReplyReader.open(read, q.reply, (r) => {
      tally.onReply(r);
      if (rate !== undefined) offered.onReply(r);
    });
    const proc = startConsumer(
      {
        ...(opts.noop ? { PREFETCH: '1024', CONNECTIONS: '2', MODEL_NAME: m.name } : { MODEL_DIR: m.modelDir }),
        ...env,
        INPUT_QUEUE: q.input,
        REPLY_QUEUE: q.reply,
      },
      {
        cwd: opts.cwd ?? ROOT,
        nodeArgs: opts['node-arg'],
        ...(opts.noop ? { script: 'bench/noop-consumer.ts' } : {}),
        wrapper: ['valgrind', '--tool=callgrind', `--callgrind-out-file=${outDir}/${m.name}.%p`, '--dump-instr=no'],
      },
    );
    try {
      const pid = proc.child.pid!;
      let counted: number;
      if (rate === undefined) {
        // The counters are zeroed some time after the call (callgrind takes the request at its next poll):
        // the messages counted are those whose replies came after it returned, not after it was asked.
        let zeroedAt: number | undefined;
        tally.onReached(warmup, () =>
          execFile('callgrind_control', ['--zero', String(pid)], (err) => {
            if (!err) zeroedAt = tally.received;
          }),
        );
        if (!(await tally.within(1_800_000)) || zeroedAt === undefined)
          throw new Error(`${m.name}: ${tally.received} of ${warmup + messages} replies under valgrind`);
        counted = warmup + messages - zeroedAt;
      } else {
        if (!(await tally.within(1_800_000)))
          throw new Error(`${m.name}: ${tally.received} of ${warmup} warm-up replies under valgrind`);
        // The queue is empty: nothing is answered while callgrind takes the request, which the second allows for.
        execFileSync('callgrind_control', ['--zero', String(pid)], { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 1000));
        await publisher.atRate(q.input, m.bodies, messages, rate, () => {}, 'R.');
        if (!(await offered.within(1_800_000)))
          throw new Error(`${m.name}: ${offered.received} of ${messages} replies at ${rate} a second under valgrind`);
        counted = messages;
      }
      execFileSync('callgrind_control', ['--dump', String(pid)], { stdio: 'ignore' });
      // The dump after the zeroing is the newest file of this process: <name>.<pid>.<n>.
      const dumps = readdirSync(outDir)
        .filter((f) => f.startsWith(`${m.name}.${pid}.`))
        .sort((a, b) => Number(a.split('.').pop()) - Number(b.split('.').pop()));
      const ir = instructionsIn(join(outDir, dumps[dumps.length - 1]));
      console.log(
        `${m.name}\t${opts.noop ? 'no-op' : 'this consumer'}${opts.cwd ? ` (${opts.cwd})` : ''}\t${Math.round(ir / counted).toLocaleString('en-US')} instructions a message (the last ${counted} of ${warmup + messages}${rate === undefined ? '' : `, offered at ${rate} a second`}; errors ${tally.errors + offered.errors}, duplicates ${tally.duplicates + offered.duplicates})`,
      );
    } finally {
      proc.child.kill('SIGKILL');
      await proc.exited;
      await reader.close();
      await publisher.close();
      await deleteQueues(publish, q);
    }
  }
} finally {
  if (opts.keep === undefined) rmSync(outDir, { recursive: true, force: true });
  await publish.close().catch(() => {});
  await read.close().catch(() => {});
}
