/**
 * The Python row of `npm run bench`: the seed's score.py (joblib, a scikit-learn LogisticRegression on
 * the 8x8 digits, one row a message) behind this consumer (ENTRY_SCRIPT=score.py, the shipped defaults)
 * against the same script behind a hand-written pika consumer (bench/pika-consumer.py), same broker,
 * same messages. Then, without a broker, the Python isolate's own overhead per message: the seed's
 * run() timed inside Python, against the same calls made through the isolate one message at a time,
 * and a no-op script's round trip, alone and in batches of MAX_BATCH_SIZE.
 *
 * Needs Debian's python3 with python3-sklearn and python3-pika (PYTHON_BENCH, default /usr/bin/python3).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { ScriptHost } from '../src/isolate/host.js';
import { drain, type BenchLinks, type DrainResult } from './drain.js';
import { ROOT } from './models.js';

export interface PythonRowResult {
  python: string;
  ours: DrainResult;
  pika: DrainResult;
  vsPika: number;
  overhead: {
    /** The seed's run() on one bench row, called in a loop inside an isolate's Python process. */
    runInPythonUs: number;
    /** The same run() through the isolate (frame out, run, frame back), one message per call. */
    runThroughIsolateUs: number;
    /** A no-op run() through the isolate, one message per call: the round trip alone. */
    noopPerCallUs: number;
    /** A no-op run_batch through the isolate, per message, batches of `batchSize`. */
    noopBatchedPerMsgUs: number;
    batchSize: number;
  };
}

/** The seed's example score.py, as the project ships it (only `from sklearn.externals import joblib` became `import joblib`). */
export const SEED_SCRIPT = readFileSync(new URL('../models/score.py', import.meta.url), 'utf8');

const TRAIN = `
import json, os, sys
import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

work = sys.argv[1]
X, y = load_digits(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=2000).fit(X[:1500], y[:1500]), os.path.join(work, 'model', 'sklearn_mnist_model.pkl'))
print(json.dumps({'rows': X[1500:1516].tolist()}))
`;

// The seed's run() timed in a loop inside an isolate's process, so it is measured in the same window as the calls.
const TIMED = `
import time
import score

def init():
    score.init()

def run(data):
    n = 200
    started = time.perf_counter()
    for _ in range(n):
        score.run(data)
    return (time.perf_counter() - started) / n * 1e6
`;

const NOOP = `
def init():
    pass

def run(data):
    return data

def run_batch(items):
    return items
`;

export async function pythonRow(
  links: BenchLinks,
  options: { count: number; warmup: number; handSeconds: number; log: (line: string) => void },
): Promise<PythonRowResult> {
  const python = process.env.PYTHON_BENCH ?? '/usr/bin/python3';
  try {
    execFileSync(python, ['-c', 'import sklearn, joblib, numpy, pika'], { stdio: 'ignore' });
  } catch {
    throw new Error(
      `bench python row: ${python} lacks scikit-learn or pika; apt-get install python3-sklearn python3-joblib python3-pika (or set PYTHON_BENCH)`,
    );
  }
  const work = join(ROOT, 'bench', 'work', 'python');
  mkdirSync(join(work, 'model'), { recursive: true });
  writeFileSync(join(work, 'score.py'), SEED_SCRIPT);
  writeFileSync(join(work, 'noop.py'), NOOP);
  writeFileSync(join(work, 'timed.py'), TIMED);
  writeFileSync(join(work, 'train.py'), TRAIN);
  const trained = JSON.parse(execFileSync(python, [join(work, 'train.py'), work], { encoding: 'utf8' })) as {
    rows: number[][];
  };
  const bodies = trained.rows.map((row) => Buffer.from(JSON.stringify({ data: [row] })));
  const modelDir = join(work, 'model');

  options.log(`python: this consumer with the seed's score.py (${options.count} messages)`);
  const ours = await drain(links, {
    label: 'python.ours',
    bodies,
    count: options.count,
    warmup: options.warmup,
    env: { ENTRY_SCRIPT: join(work, 'score.py'), MODEL_DIR: modelDir, PYTHON: python },
    readyText: '"msg":"consuming"',
  });
  options.log(`  ${Math.round(ours.msgPerS)} msg/s`);
  options.log(`python: the same script behind a hand-written pika consumer (at most ${options.handSeconds} s)`);
  const pika = await drain(links, {
    label: 'python.pika',
    bodies,
    count: options.count,
    command: python,
    script: 'bench/pika-consumer.py',
    env: { SCORE_PY: join(work, 'score.py'), AZUREML_MODEL_DIR: modelDir },
    readyText: '"msg":"ready"',
    timeLimitMs: options.handSeconds * 1000,
  });
  options.log(`  ${Math.round(pika.msgPerS)} msg/s`);
  const overhead = await isolateOverhead(work, modelDir, python, bodies, links.config.maxBatchSize);
  return { python, ours, pika, vsPika: ours.msgPerS / pika.msgPerS, overhead };
}

async function isolateOverhead(
  work: string,
  modelDir: string,
  python: string,
  bodies: Buffer[],
  batchSize: number,
): Promise<PythonRowResult['overhead']> {
  const start = (script: string) =>
    ScriptHost.start({
      entryScript: join(work, script),
      isolation: 'python',
      context: {
        modelDir,
        maxTensorElements: 1 << 20,
        ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
      },
      maxMessageBytes: 1 << 22,
      logger: pino({ level: 'warn' }),
      python,
    });
  const perCall = async (
    host: ScriptHost,
    method: 'run' | 'runBatch',
    batch: number,
    calls: number,
  ): Promise<number> => {
    const items = Array.from({ length: batch }, (_, i) => bodies[i % bodies.length]);
    for (let i = 0; i < 100; i++) await host.call(method, items, 30_000); // warm-up
    const t = performance.now();
    for (let i = 0; i < calls; i++) await host.call(method, items, 30_000);
    return ((performance.now() - t) * 1000) / (calls * batch);
  };
  // Three alternating rounds, the fastest of each kind kept: on a shared machine the slower ones measure the neighbours.
  const seed = await start('score.py');
  const noop = await start('noop.py');
  const timed = await start('timed.py');
  const rounds: number[][] = [[], [], [], []];
  for (let round = 0; round < 3; round++) {
    const r = await timed.call('run', [bodies[round % bodies.length]], 60_000);
    rounds[3].push(r.kind === 'done' && r.outcomes[0].ok ? Number(r.outcomes[0].body.toString()) : NaN);
    rounds[0].push(await perCall(seed, 'run', 1, 1000));
    rounds[1].push(await perCall(noop, 'run', 1, 2000));
    rounds[2].push(await perCall(noop, 'runBatch', batchSize, 100));
  }
  await seed.close();
  await noop.close();
  await timed.close();
  const [runThroughIsolateUs, noopPerCallUs, noopBatchedPerMsgUs, runInPythonUs] = rounds.map((r) => Math.min(...r));
  return { runInPythonUs, runThroughIsolateUs, noopPerCallUs, noopBatchedPerMsgUs, batchSize };
}

export function pythonLines(r: PythonRowResult): string {
  const o = r.overhead;
  const us = (x: number) => `${x.toFixed(0)} µs`;
  return [
    `python (seed score.py, ${r.python}): this consumer ${Math.round(r.ours.msgPerS)} msg/s (${r.ours.errors} errors), pika ${Math.round(r.pika.msgPerS)} msg/s: ${r.vsPika.toFixed(1)}×; consumer CPU ${us(r.ours.cpuMsPerMsg * 1000)}/msg (the Python processes not counted), pika CPU ${us(r.pika.cpuMsPerMsg * 1000)}/msg`,
    `python isolate overhead: run() ${us(o.runInPythonUs)} inside Python, ${us(o.runThroughIsolateUs)} through the isolate one message a call (+${us(o.runThroughIsolateUs - o.runInPythonUs)}); no-op round trip ${us(o.noopPerCallUs)} a call, ${o.noopBatchedPerMsgUs.toFixed(1)} µs a message in batches of ${o.batchSize}`,
  ].join('\n');
}
