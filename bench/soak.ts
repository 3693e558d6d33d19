/**
 * `npm run bench -- --soak`: the consumer as shipped scores `messages` inputs (200k by default) fed
 * by a publisher that keeps a bounded backlog, while its VmRSS is sampled. Memory should level off
 * after warm-up: the figure compared is VmRSS around 50k replies (median of the samples from 45k to
 * 55k) against VmRSS at the end (median over the last 10% of the run).
 */
import { startConsumer, type ConsumerProcess } from '../test/support/consumer-process.js';
import { memoryOf, stopProcess, type BenchLinks } from './drain.js';
import { declareQueues, deleteQueues, Publisher, ReplyReader, Tally, uniqueQueues } from './load.js';
import { ROOT, type BenchModel } from './models.js';
import type { SoakResult } from './report.js';

export async function soak(
  links: BenchLinks,
  model: BenchModel,
  messages: number,
  backlog = 5000,
): Promise<SoakResult> {
  const q = uniqueQueues(links.runId, `${model.name}.soak`);
  const publisher = await Publisher.open(links.publish);
  let proc: ConsumerProcess | undefined;
  let reader: ReplyReader | undefined;
  let sampler: NodeJS.Timeout | undefined;
  try {
    await declareQueues(links.publish, q, links.config);
    const tally = new Tally(messages);
    reader = await ReplyReader.open(links.read, q.reply, tally.onReply);
    proc = startConsumer(
      { MODEL_DIR: model.modelDir, AMQP_URL: links.url, INPUT_QUEUE: q.input, REPLY_QUEUE: q.reply },
      { cwd: ROOT },
    );
    await proc.waitFor('"msg":"consuming"', 60_000);
    const pid = proc.child.pid!;
    const samples: SoakResult['samples'] = [];
    const sample = () => {
      const m = memoryOf(pid);
      if (m) samples.push({ replies: tally.received, rssMb: m.nowMb });
    };
    sampler = setInterval(sample, 250);
    let lastReport = 0;
    const gate = async (sent: number) => {
      while (sent - tally.received > backlog) await new Promise((r) => setTimeout(r, 2));
      if (tally.received - lastReport >= 25_000) {
        lastReport = tally.received;
        process.stdout.write(
          `  soak ${model.name}: ${tally.received.toLocaleString('en-US')} replies, VmRSS ${samples.at(-1)?.rssMb.toFixed(0) ?? '?'} MB\n`,
        );
      }
    };
    await publisher.gated(q.input, model.bodies, messages, gate, '');
    await tally.within(120_000);
    sample();
    clearInterval(sampler);
    // Medians over a window, so one sample taken mid-GC does not decide: around 50k, and the last 10% of the run.
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    const mark = Math.min(50_000, messages / 4);
    const rssAt50kMb = median(
      samples.filter((s) => s.replies >= mark * 0.9 && s.replies <= mark * 1.1).map((s) => s.rssMb),
    );
    const rssAtEndMb = median(samples.filter((s) => s.replies >= messages * 0.9).map((s) => s.rssMb));
    return {
      model: model.name,
      messages,
      msgPerS: tally.steadyRatePerS(),
      samples: samples.filter((_, i) => i % 4 === 0),
      rssAt50kMb,
      rssAtEndMb,
      peakMb: memoryOf(pid)?.peakMb ?? NaN,
      changePct: ((rssAtEndMb - rssAt50kMb) / rssAt50kMb) * 100,
    };
  } finally {
    clearInterval(sampler);
    if (proc) await stopProcess(proc);
    await reader?.close();
    await publisher.close();
    await deleteQueues(links.publish, q);
  }
}
