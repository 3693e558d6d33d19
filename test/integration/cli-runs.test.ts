/**
 * `scorer submit` runs that stop before the end and are resumed (Ctrl-C: exit 130; --idle-timeout:
 * exit 1), its --rate and its progress lines while it runs; `send --timeout`; `asyncapi --out`.
 * The CLI is a real process (bin/scorer.js), the consumer too.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AMQP_URL, TestClient } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'scorer-cli-runs-'));
const consumers = new TestConsumers();
let client: TestClient;

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  await consumers.close(client, 'SIGKILL');
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

const ROWS = [
  [5.1, 3.5, 1.4, 0.2],
  [7.0, 3.2, 4.7, 1.4],
  [6.3, 3.3, 6.0, 2.5],
];

/** n lines, line k an iris row of class k % 3. */
function writeInput(name: string, n: number): string {
  const file = join(dir, name);
  writeFileSync(file, `${Array.from({ length: n }, (_, i) => JSON.stringify([ROWS[(i + 1) % 3]])).join('\n')}\n`);
  return file;
}

/** The complete records of a results file. */
function readResults(file: string): Array<{ line: number; status: string; result?: { label: number[] } }> {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

/** Every line 1..n exactly once, in order, scored as its row. */
function assertComplete(file: string, n: number): void {
  const results = readResults(file);
  assert.deepEqual(
    results.map((r) => r.line),
    Array.from({ length: n }, (_, i) => i + 1),
    'one result per line, in input order, none twice',
  );
  for (const r of results) {
    assert.equal(r.status, 'ok', JSON.stringify(r));
    assert.deepEqual(r.result?.label, [r.line % 3], `line ${r.line} scored as its row`);
  }
}

interface CliRun {
  child: ChildProcess;
  stderr(): string;
  done: Promise<{ code: number | string; stdout: string; stderr: string; ms: number }>;
}

function runCli(args: string[]): CliRun {
  const started = Date.now();
  const child = spawn(process.execPath, ['bin/scorer.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, AMQP_URL },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | string; stdout: string; stderr: string; ms: number }>((resolve) =>
    child.on('close', (code, signal) =>
      resolve({ code: code ?? signal ?? -1, stdout, stderr, ms: Date.now() - started }),
    ),
  );
  return { child, stderr: () => stderr, done };
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('submit --rate sends no faster than the rate and prints progress while it runs; Ctrl-C stops it with exit 130, and --resume finishes every line once', {
  timeout: 120_000,
}, async () => {
  const q = consumers.queuesFor('cli-runs.rate');
  const consumer = consumers.startOn(q);
  await consumer.waitFor('"msg":"consuming"', 60_000);
  const N = 300;
  const RATE = 40;
  const file = writeInput('rate.jsonl', N);
  const out = join(dir, 'rate.out.jsonl');

  const startedAt = Date.now();
  const first = runCli(['submit', file, '--out', out, '--queue', q.input, '--rate', String(RATE)]);
  // A progress line before the end: not the one stop() prints when the run ends.
  const midRun = () => [...first.stderr().matchAll(/^submit: (\d+)\/300 lines/gm)].some((m) => Number(m[1]) < N);
  await until(midRun, 60_000, 'a progress line part-way through the run');
  // Scored results can come no faster than lines are sent: at most RATE a second since the CLI started.
  const results = readResults(out).length;
  const elapsedS = (Date.now() - startedAt) / 1000;
  assert.ok(results <= RATE * elapsedS + 1, `--rate ${RATE}: ${results} results within ${elapsedS.toFixed(1)} s`);
  assert.ok(results < N, 'interrupted part-way');

  first.child.kill('SIGINT');
  const stopped = await first.done;
  assert.equal(stopped.code, 130, stopped.stderr);
  assert.match(
    stopped.stderr,
    /submit stopped: interrupted\. \d+ of 300 lines have a result .*run the same command with --resume/,
  );
  assert.ok(existsSync(`${out}.state.json`), 'the state file is kept for --resume');
  const before = readResults(out).length;
  assert.ok(before < N);

  const second = await runCli(['submit', file, '--out', out, '--queue', q.input, '--resume', '--no-progress']).done;
  assert.equal(second.code, 0, second.stderr);
  assert.match(
    second.stdout,
    new RegExp(`submit done: ${N} lines, ${N} ok, 0 errors \\(${before} of them from the interrupted run\\)`),
  );
  assertComplete(out, N);
  assert.equal(existsSync(`${out}.state.json`), false, 'the state file is removed at the end');
});

test('with no consumer running, submit --idle-timeout stops with exit 1 and send --timeout gives up with exit 1; once a consumer runs, --resume finishes the run', {
  timeout: 120_000,
}, async () => {
  const q = consumers.queuesFor('cli-runs.idle');
  // The consumer declares the queue, then leaves: the queue stays, nobody consumes it.
  const declaring = consumers.startOn(q);
  await declaring.waitFor('"msg":"consuming"', 60_000);
  assert.equal(await declaring.stop('SIGTERM'), 0);

  const N = 20;
  const file = writeInput('idle.jsonl', N);
  const out = join(dir, 'idle.out.jsonl');
  const idle = await runCli(['submit', file, '--out', out, '--queue', q.input, '--idle-timeout', '2', '--no-progress'])
    .done;
  assert.equal(idle.code, 1, idle.stderr);
  assert.match(
    idle.stderr,
    /submit stopped: no reply for 2 s with 20 lines outstanding \(are the consumers running\?\)/,
  );
  assert.ok(idle.ms >= 2000, `it waited the idle timeout first (${idle.ms} ms)`);
  assert.ok(existsSync(`${out}.state.json`), 'the state file is kept for --resume');
  assert.equal(readResults(out).length, 0);

  const sent = await runCli(['send', '[[5.1, 3.5, 1.4, 0.2]]', '--queue', q.input, '--timeout', '1']).done;
  assert.equal(sent.code, 1, sent.stderr);
  assert.match(sent.stderr, /status: no reply within 1 s \(are the consumers running\?\)/);
  // 1 s, not the default 30 s: a generous bound that only an ignored --timeout would cross.
  assert.ok(sent.ms >= 1000 && sent.ms < 25_000, `it waited --timeout, 1 s (${sent.ms} ms)`);

  const consumer = consumers.startOn(q);
  await consumer.waitFor('"msg":"consuming"', 60_000);
  const resumed = await runCli(['submit', file, '--out', out, '--queue', q.input, '--resume', '--no-progress']).done;
  assert.equal(resumed.code, 0, resumed.stderr);
  assertComplete(out, N);
});

test('asyncapi --out writes the document to the file, the same as on stdout, and nothing to stdout', {
  timeout: 60_000,
}, async () => {
  const file = join(dir, 'asyncapi.json');
  const written = await runCli(['asyncapi', '--out', file]).done;
  assert.equal(written.code, 0, written.stderr);
  assert.equal(written.stdout, '');
  assert.match(written.stderr, new RegExp(`asyncapi: wrote ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  const printed = await runCli(['asyncapi']).done;
  assert.equal(printed.code, 0, printed.stderr);
  assert.equal(readFileSync(file, 'utf8'), printed.stdout);
  assert.equal((JSON.parse(printed.stdout) as { asyncapi: string }).asyncapi, '3.0.0');
});
