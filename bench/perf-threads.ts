/**
 * Where a consumer's CPU goes by thread and by V8's own work, second by second: records the process
 * with `perf record -e cpu-clock -g` (a software clock, so it works where the machine has no hardware
 * counters) and sorts each sample by its thread (the main thread, or one of V8's and libuv's helpers)
 * and by what its stack shows: the optimising compiler, the young generation's collection, marking,
 * sweeping, or anything else. A JIT's warm-up and a collector's work show up as columns that the
 * process's CPU time alone cannot separate.
 *
 *   node --import tsx bench/perf-threads.ts [--match src/main.ts] [--seconds 20] [--hz 1000]
 *
 * Waits for a process whose command line contains --match (start a drain with bench/ab.ts beside it),
 * records it for --seconds, then prints one row per second: samples at --hz, so 1,000 a second is
 * one core busy. Needs `perf` (Debian's linux-perf) and root or perf_event_paranoid ≤ 1.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    match: { type: 'string', default: 'src/main.ts' },
    seconds: { type: 'string', default: '20' },
    hz: { type: 'string', default: '1000' },
  },
});

/** The first rule whose pattern a sample's stack matches names its kind. */
const KINDS: ReadonlyArray<readonly [string, RegExp]> = [
  ['compile', /compiler::|Compile|Maglev/],
  ['scavenge', /Scaveng/],
  ['mark', /Marking|MarkCompact/],
  ['sweep', /Sweep/],
];
const COLUMNS = [
  'main',
  'main:compile',
  'main:gc',
  'helpers:compile',
  'helpers:scavenge',
  'helpers:mark+sweep',
  'helpers:other',
];

function column(mainThread: boolean, kind: string): string {
  if (mainThread) return kind === 'other' ? 'main' : kind === 'compile' ? 'main:compile' : 'main:gc';
  if (kind === 'mark' || kind === 'sweep') return 'helpers:mark+sweep';
  return `helpers:${kind}`;
}

async function waitForPid(match: string): Promise<number> {
  for (let i = 0; i < 600; i++) {
    // Not this process, whose own command line holds the pattern.
    const found = spawnSync('pgrep', ['-f', match], { encoding: 'utf8' })
      .stdout.split('\n')
      .map(Number)
      .filter((p) => p > 0 && p !== process.pid);
    if (found.length > 0) return Math.min(...found);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no process matching '${match}' within 60 s`);
}

const pid = await waitForPid(opts.match);
const dir = mkdtempSync(join(tmpdir(), 'perf-threads-'));
const data = join(dir, 'perf.data');
try {
  process.stderr.write(`recording pid ${pid} for ${opts.seconds} s\n`);
  const recorded = spawnSync(
    'timeout',
    [opts.seconds, 'perf', 'record', '-q', '-e', 'cpu-clock', '-F', opts.hz, '-g', '-p', String(pid), '-o', data],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  // timeout's 124 is the recording stopped on time; anything else but 0 is perf failing (not installed, not allowed).
  if (recorded.status !== 0 && recorded.status !== 124)
    throw new Error(
      `perf record failed (exit ${recorded.status}): install Debian's linux-perf and run as root, or set kernel.perf_event_paranoid to 1`,
    );
  const script = execFileSync('perf', ['script', '-i', data, '-F', 'tid,time,ip,sym'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const perSecond = new Map<number, Map<string, number>>();
  let start: number | undefined;
  for (const sample of script.split('\n\n')) {
    const lines = sample.trim().split('\n');
    const [tid, time] = lines[0]?.trim().split(/\s+/) ?? [];
    if (!tid || !time) continue;
    const t = Number.parseFloat(time);
    start ??= t;
    const stack = lines.slice(1).join('\n');
    const kind = KINDS.find(([, re]) => re.test(stack))?.[0] ?? 'other';
    const second = Math.floor(t - start);
    const row = perSecond.get(second) ?? new Map<string, number>();
    const key = column(Number(tid) === pid, kind);
    row.set(key, (row.get(key) ?? 0) + 1);
    perSecond.set(second, row);
  }
  const totals = new Map<string, number>();
  console.log(['second', ...COLUMNS].map((c) => c.padStart(20)).join(''));
  for (const [second, row] of [...perSecond].sort((a, b) => a[0] - b[0])) {
    for (const [k, v] of row) totals.set(k, (totals.get(k) ?? 0) + v);
    console.log([second, ...COLUMNS.map((c) => row.get(c) ?? 0)].map((v) => String(v).padStart(20)).join(''));
  }
  console.log(['total', ...COLUMNS.map((c) => totals.get(c) ?? 0)].map((v) => String(v).padStart(20)).join(''));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
