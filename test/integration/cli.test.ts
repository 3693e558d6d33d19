/**
 * The `scorer` command as users run it (bin/scorer.js, a real process) against a real consumer. The
 * broker's firehose tracer, on a vhost of this test's own, counts what the CLI really published.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';
import { createTracedVhost, type TracedVhost } from '../support/traced-vhost.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'scorer-cli-'));
const consumers = new TestConsumers();
const { input, replies } = consumers.queuesFor('cli');
let vhost: TracedVhost;
let client: TestClient;

before(async () => {
  vhost = await createTracedVhost('cli');
  client = await TestClient.connect(vhost.url);
  consumers.startOn({ input, replies }, { AMQP_URL: vhost.url });
  await consumers.allConsuming(60_000);
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client?.close();
  await vhost?.remove();
  rmSync(dir, { recursive: true, force: true });
});

const ROWS = [
  [5.1, 3.5, 1.4, 0.2],
  [7.0, 3.2, 4.7, 1.4],
  [6.3, 3.3, 6.0, 2.5],
];

interface Expected {
  status: 'ok' | 'error';
  sent: boolean;
}

/** n input lines, mostly iris rows, some in request form, a few bad ones and a blank line. */
function writeInput(name: string, n: number): { file: string; expected: Map<number, Expected> } {
  const lines: string[] = [];
  const expected = new Map<number, Expected>();
  for (let line = 1; line <= n; line++) {
    const row = ROWS[line % 3];
    let text = JSON.stringify([row]);
    let e: Expected | undefined = { status: 'ok', sent: true };
    if (line === n / 2) [text, e] = ['', undefined];
    else if (line % 499 === 0) [text, e] = ['oops, not json', { status: 'error', sent: false }];
    else if (line % 397 === 0) [text, e] = ['[[1, 2, 3]]', { status: 'error', sent: true }];
    else if (line % 601 === 0) [text, e] = ['{"data": "text"}', { status: 'error', sent: true }];
    else if (line % 151 === 0) text = JSON.stringify({ data: [row], id: line });
    lines.push(text);
    if (e) expected.set(line, e);
  }
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return { file, expected };
}

interface Result {
  line: number;
  status: string;
  result?: { label: number[] };
  error?: string;
  code?: string;
}

/** The complete records of a results file (a record cut short by a kill is left out). */
function readResults(file: string): Result[] {
  const text = readFileSync(file, 'utf8');
  return text
    .slice(0, text.lastIndexOf('\n') + 1)
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Result);
}

function assertResults(results: Result[], expected: Map<number, Expected>): void {
  assert.deepEqual(
    results.map((r) => r.line),
    [...expected.keys()],
    'one result per non-blank line, in input order',
  );
  for (const r of results) {
    assert.equal(r.status, expected.get(r.line)!.status, `line ${r.line}: ${JSON.stringify(r)}`);
    if (r.status === 'ok') assert.deepEqual(r.result!.label, [r.line % 3], `line ${r.line} scored as its row`);
    else assert.ok(r.error && r.code, `line ${r.line} says why`);
  }
}

function runCli(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<{ code: number | string; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, ['bin/scorer.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, AMQP_URL: vhost.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | string; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout, stderr })),
  );
  return { child, done };
}

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Publishes of one run, per input line. */
function publishesOf(trace: Map<string, number>, runId: string): Map<number, number> {
  const perLine = new Map<number, number>();
  for (const [id, n] of trace) if (id.startsWith(`${runId}:`)) perLine.set(Number(id.slice(runId.length + 1)), n);
  return perLine;
}

const sendable = (expected: Map<number, Expected>) => [...expected].filter(([, e]) => e.sent).map(([line]) => line);

test('submit writes one result per line, in input order, with the right statuses, then removes its reply queue and state', async () => {
  const { file, expected } = writeInput('full.jsonl', 2000);
  const out = join(dir, 'full.out.jsonl');
  const trace = await vhost.tracePublishes(client, input);
  const { code, stdout, stderr } = await runCli([
    'submit',
    file,
    '--out',
    out,
    '--queue',
    input,
    '--max-in-flight',
    '200',
  ]).done;
  assert.equal(code, 0, stderr);

  const results = readResults(out);
  assertResults(results, expected);
  const errors = [...expected.values()].filter((e) => e.status === 'error').length;
  assert.match(
    stdout,
    new RegExp(`submit done: ${expected.size} lines, ${expected.size - errors} ok, ${errors} errors; .* msg/s`),
  );
  // The line stop() prints at the end, with every line counted; the lines printed while a run goes on are
  // checked in cli-runs.test.ts (a paced run, long enough to print them).
  assert.match(
    stderr,
    /^submit: 1999\/1999 lines \(100%\), \d+ msg\/s, ETA 0s$/m,
    'a plain progress line when stderr is not a terminal',
  );
  assert.equal(results.find((r) => r.code === 'BAD_JSON')?.error?.startsWith('line is not JSON'), true);

  const runId = [...trace.keys()].find((id) => id.includes(':'))!.split(':')[0];
  await until(() => publishesOf(trace, runId).size >= sendable(expected).length, 5000, 'the trace');
  const published = publishesOf(trace, runId);
  assert.deepEqual(
    [...published.keys()].sort((a, b) => a - b),
    sendable(expected),
    'every JSON line sent, the others not',
  );
  assert.ok(
    [...published.values()].every((n) => n === 1),
    'each sent once',
  );
  assert.equal(existsSync(`${out}.state.json`), false);
  await assert.rejects(client.messageCount(`scorer.submit.${runId}`), /NOT_FOUND/);
});

test('a run killed part-way and resumed with --resume ends with every line exactly once, and sends no line again that already had a result', async (t) => {
  const { file, expected } = writeInput('resume.jsonl', 2000);
  const out = join(dir, 'resume.out.jsonl');
  const trace = await vhost.tracePublishes(client, input);
  const args = ['submit', file, '--out', out, '--queue', input, '--max-in-flight', '100', '--no-progress'];

  // Paced, so the kill lands part-way through.
  const first = runCli([...args, '--rate', '800']);
  await until(() => existsSync(out) && readFileSync(out, 'utf8').split('\n').length > 500, 30_000, '500 results');
  first.child.kill('SIGKILL');
  assert.equal((await first.done).code, 'SIGKILL');
  const before = readResults(out);
  const state = JSON.parse(readFileSync(`${out}.state.json`, 'utf8')) as {
    runId: string;
    sentThrough: number;
    replyQueue: string;
  };
  const lastWritten = before.at(-1)!.line;
  assert.ok(before.length < expected.size, 'killed before the end');

  const second = await runCli([...args, '--resume']).done;
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, new RegExp(`resuming run ${state.runId}: ${before.length} lines already in`));
  assert.match(
    second.stdout,
    new RegExp(`submit done: ${expected.size} lines, .*\\(${before.length} of them from the interrupted run\\)`),
  );
  assertResults(readResults(out), expected);

  await until(() => sendable(expected).every((line) => publishesOf(trace, state.runId).has(line)), 5000, 'the trace');
  const published = publishesOf(trace, state.runId);
  const twice = [...published].filter(([, n]) => n > 1).map(([line]) => line);
  t.diagnostic(
    `killed with ${before.length} results written and lines up to ${state.sentThrough} confirmed sent; sent twice: ${twice.length}`,
  );
  for (const line of twice) {
    assert.ok(line > lastWritten, `line ${line}, sent twice, had no result when the run was killed`);
    assert.ok(line > state.sentThrough, `line ${line}, sent twice, was not recorded as sent`);
  }
  assert.ok([...published.values()].every((n) => n <= 2));
  assert.equal(existsSync(`${out}.state.json`), false);
  await assert.rejects(client.messageCount(state.replyQueue), /NOT_FOUND/);
});

test('submit refuses to start over an interrupted run without --resume, and --resume without one', async () => {
  const { file } = writeInput('refuse.jsonl', 10);
  const out = join(dir, 'refuse.out.jsonl');
  const nothing = await runCli(['submit', file, '--out', out, '--queue', input, '--resume']).done;
  assert.equal(nothing.code, 1);
  assert.match(nothing.stderr, /nothing to resume/);
  const state = {
    version: 1,
    runId: 'r1',
    input: file,
    queue: input,
    replyQueue: 'scorer.submit.r1',
    sentThrough: 3,
    startedAt: new Date().toISOString(),
  };
  writeFileSync(`${out}.state.json`, JSON.stringify(state));
  const clash = await runCli(['submit', file, '--out', out, '--queue', input]).done;
  assert.equal(clash.code, 1);
  assert.match(
    clash.stderr,
    /an interrupted run's state is in .*: add --resume to finish it, or delete that file to start over/,
  );
});

test('send prints the reply body on stdout and its status on stderr; an error reply exits 1', async () => {
  const ok = await runCli(['send', '[[6.3, 3.3, 6.0, 2.5]]', '--url', vhost.url, '--queue', input], {
    AMQP_URL: 'amqp://nobody:wrong@localhost:1',
  }).done;
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual((JSON.parse(ok.stdout) as { label: number[] }).label, [2]);
  assert.match(ok.stderr, /^status: ok, model: iris, scoring-ms: [\d.]+$/m);

  const bad = await runCli(['send', '{"data": [[1, 2]]}', '--queue', input]).done;
  assert.equal(bad.code, 1);
  assert.equal(JSON.parse(bad.stdout), "input 'float_input' expects shape [-1,4], got [1,2]");
  assert.match(bad.stderr, /status: error, .*code: SHAPE/);
});

test('send to a queue that does not exist says so and exits 1', async () => {
  const r = await runCli(['send', '[[1, 2, 3, 4]]', '--queue', uniqueName('cli.nowhere'), '--timeout', '2']).done;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /does not exist: start a consumer first/);
});
