/**
 * RUN_GROUP_MS: a script without runBatch gets several messages in one call to its isolate (run once
 * per message inside), as many as its recent runs say take RUN_GROUP_MS. A group that crashes or hangs
 * is run again one message a call, so only the culprit answers for it. No broker: the Scorer is driven
 * directly, and the calls it makes are seen on ScriptHost.call.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import { ScriptHost } from '../../src/isolate/host.js';
import { Scorer, scorerOptions, type ItemResult } from '../../src/scorer.js';

const SCRIPT = `
export function init() {}
export function run(data: string) {
  const value = JSON.parse(data);
  if (value === 'poison') process.exit(1);
  if (value === 'hang') for (;;) {}
  if (value === 'slow') { const until = Date.now() + 20; while (Date.now() < until) {} }
  return { echo: value, pid: process.pid };
}
`;

let dir: string;
const scorers: Scorer[] = [];
/** The number of messages in each call a Scorer made to an isolate, in order. */
let calls: number[] = [];
const realCall = ScriptHost.prototype.call;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'scorer-groups-'));
  writeFileSync(join(dir, 'score.ts'), SCRIPT);
  ScriptHost.prototype.call = function (this: ScriptHost, method, bodies, timeoutMs, metas) {
    if (method === 'run') calls.push(bodies.length);
    return realCall.call(this, method, bodies, timeoutMs, metas);
  };
});
afterEach(() => {
  calls = [];
});
after(async () => {
  ScriptHost.prototype.call = realCall;
  await Promise.all(scorers.map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

async function start(env: Record<string, string>): Promise<Scorer> {
  const config = loadConfig({
    AMQP_URL: 'amqp://localhost',
    ENTRY_SCRIPT: join(dir, 'score.ts'),
    MODEL_DIR: dir,
    CONCURRENCY: '1',
    ...env,
  });
  const scorer = await Scorer.start(scorerOptions(config, pino({ level: 'silent' })));
  scorers.push(scorer);
  return scorer;
}

/** The index in `calls` of the call that carried item `item` of a batch first (before any call ran items again). */
function callOf(item: number): number {
  for (let k = 0, first = 0; k < calls.length; first += calls[k], k++) if (item < first + calls[k]) return k;
  throw new Error(`no call carried item ${item} (${calls.join(', ')})`);
}

const bodies = (values: unknown[]) => values.map((data) => Buffer.from(JSON.stringify({ data })));
const echo = (r: ItemResult) => (r.ok ? (JSON.parse(r.body.toString()) as { echo: unknown; pid: number }) : r.code);

test('a fast script gets many messages a call once a run has been timed, each answered in order, onItem once each', async () => {
  const s = await start({ RUN_GROUP_MS: '50' });
  assert.equal(s.runGroup, 1, 'one message a call until a run has been timed');
  const values = Array.from({ length: 60 }, (_, i) => i);
  const seen: number[] = [];
  const { results } = await s.score(bodies(values), undefined, { onItem: (i) => seen.push(i) });
  assert.deepEqual(
    results.map((r) => (echo(r) as { echo: unknown }).echo),
    values,
  );
  assert.deepEqual(seen, values, 'onItem for every item, in order');
  assert.equal(calls[0], 1, 'the first call carries one message');
  assert.ok(Math.max(...calls) > 1, `later calls carry several (${calls.join(', ')})`);
  assert.equal(
    calls.reduce((a, b) => a + b, 0),
    values.length,
    'every message in exactly one call',
  );
  assert.ok(s.runGroup > 1, `runGroup grew (${s.runGroup})`);
});

test('RUN_GROUP_MS=0: one message a call, as before', async () => {
  const s = await start({ RUN_GROUP_MS: '0' });
  await s.score(bodies([1, 2, 3]));
  const { results } = await s.score(bodies(Array.from({ length: 20 }, (_, i) => i)));
  assert.equal(results.length, 20);
  assert.ok(
    calls.every((n) => n === 1),
    `every call one message (${calls.join(', ')})`,
  );
  assert.equal(s.runGroup, 1);
});

test('a script slower than RUN_GROUP_MS a message stays at one message a call', async () => {
  const s = await start({ RUN_GROUP_MS: '5' });
  await s.score(bodies(['slow', 'slow', 'slow']));
  assert.equal(s.runGroup, 1);
  assert.ok(
    calls.every((n) => n === 1),
    `every call one message (${calls.join(', ')})`,
  );
});

test('a message that kills the process inside a group: only it is CRASHED; its group mates are run again one a call and answered', async () => {
  const s = await start({ RUN_GROUP_MS: '50' });
  await s.score(bodies(Array.from({ length: 20 }, (_, i) => i))); // timed: groups from here on
  calls = [];
  const values: unknown[] = Array.from({ length: 30 }, (_, i) => i);
  values.splice(15, 0, 'poison');
  const { results } = await s.score(bodies(values));
  const crashed = callOf(15);
  assert.ok(calls[crashed] > 1, `the poison message went in a group (${calls.join(', ')})`);
  const after = calls.slice(crashed + 1);
  assert.ok(
    after.every((n) => n === 1),
    `after the crash, one message a call (${after.join(', ')})`,
  );
  results.forEach((r, i) => {
    if (values[i] === 'poison') assert.equal(echo(r), 'CRASHED');
    else assert.equal((echo(r) as { echo: unknown }).echo, values[i], `item ${i} answered`);
  });
});

test('a message that hangs inside a group: only it gets TIMEOUT; its group mates are answered', async () => {
  const s = await start({ RUN_GROUP_MS: '50', RUN_TIMEOUT_MS: '1000' });
  await s.score(bodies(Array.from({ length: 20 }, (_, i) => i)));
  calls = [];
  const values: unknown[] = [0, 1, 2, 'hang', 4, 5, 6];
  const { results } = await s.score(bodies(values));
  const hung = callOf(3);
  assert.ok(calls[hung] > 1, `the hanging message went in a group (${calls.join(', ')})`);
  assert.ok(
    calls.slice(hung + 1).every((n) => n === 1),
    `after the timeout, one message a call (${calls.join(', ')})`,
  );
  results.forEach((r, i) => {
    if (values[i] === 'hang') assert.equal(echo(r), 'TIMEOUT');
    else assert.equal((echo(r) as { echo: unknown }).echo, values[i], `item ${i} answered`);
  });
});
