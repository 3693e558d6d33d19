/**
 * The `scorer` command with files (issue 14): `send --file` an image or an .npy, and `submit` a folder
 * of 100 images, killed part-way and resumed: one result per file, in name order, each the model's
 * answer for that file's pixels.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { FLOAT, Int, buildModel, encodeModel, node, valueInfo } from '../../scripts/onnx-writer.js';
import { readNpy } from '../../src/isolate/npy.js';
import { AMQP_URL, TestClient } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';
import { npySave } from '../support/numpy.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'scorer-cli-files-'));
const consumers = new TestConsumers();
const { input, replies } = consumers.queuesFor('cli-files');
let client: TestClient;

/** The mean of each channel of a 1x3x4x4 image: a small answer that depends on every pixel. */
function writeModel(): string {
  const d = join(dir, 'model');
  mkdirSync(d);
  const graph = {
    name: 'means',
    nodes: [node('ReduceMean', ['image'], ['means'], { axes: [2, 3], keepdims: new Int(0) })],
    initializers: [],
    inputs: [valueInfo('image', FLOAT, [1, 3, 4, 4])],
    outputs: [valueInfo('means', FLOAT, [1, 3])],
  };
  writeFileSync(join(d, 'means.onnx'), encodeModel(buildModel(graph)));
  return d;
}

before(async () => {
  client = await TestClient.connect();
  consumers.startOn({ input, replies }, { MODEL_DIR: writeModel(), IMAGE_SCALE: '1' });
  await consumers.allConsuming(120_000);
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

function runCli(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | string; stdout: Buffer; stderr: string }>;
} {
  const child = spawn(process.execPath, ['bin/scorer.js', ...args], {
    cwd: ROOT,
    env: { ...process.env, AMQP_URL },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => stdout.push(c));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<{ code: number | string; stdout: Buffer; stderr: string }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code: code ?? signal ?? -1, stdout: Buffer.concat(stdout), stderr })),
  );
  return { child, done };
}

/** Image n: 4x4 RGB, channel c of every pixel = (n * 3 + c) % 256, so its means are exactly those. */
async function image(n: number, format: 'png' | 'jpeg' = 'png'): Promise<Buffer> {
  const raw = Buffer.alloc(4 * 4 * 3);
  for (let p = 0; p < 16; p++) for (let c = 0; c < 3; c++) raw[p * 3 + c] = (n * 3 + c) % 256;
  return sharp(raw, { raw: { width: 4, height: 4, channels: 3 } })
    .toFormat(format)
    .toBuffer();
}
const meansOf = (n: number) => [[0, 1, 2].map((c) => (n * 3 + c) % 256)];

async function until(check: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('send --file sends an image or an .npy with the content type of its extension; --reply-content-type gets an .npy back', async () => {
  const png = join(dir, 'one.png');
  writeFileSync(png, await image(7));
  const r = await runCli(['send', '--file', png, '--queue', input]).done;
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout.toString()), meansOf(7));
  assert.match(r.stderr, /^status: ok, model: means/m);

  const npy = join(dir, 'image.npy');
  writeFileSync(npy, npySave('np.full((1, 3, 4, 4), 2.5, dtype=np.float32)'));
  const out = join(dir, 'reply.npy');
  const n = await runCli([
    'send',
    '--file',
    npy,
    '--queue',
    input,
    '--reply-content-type',
    'application/x-npy',
    '--out',
    out,
  ]).done;
  assert.equal(n.code, 0, n.stderr);
  assert.match(n.stderr, /content-type: application\/x-npy/);
  const t = readNpy(new Uint8Array(readFileSync(out)), { maxTensorElements: 10 });
  assert.deepEqual(
    [t.dims, [...t.data]],
    [
      [1, 3],
      [2.5, 2.5, 2.5],
    ],
  );

  const raw = join(dir, 'image.raw');
  writeFileSync(raw, await image(1));
  const typed = await runCli(['send', '--file', raw, '--content-type', 'image/png', '--queue', input]).done;
  assert.deepEqual(JSON.parse(typed.stdout.toString()), meansOf(1), typed.stderr);
  const untyped = await runCli(['send', '--file', raw, '--queue', input]).done;
  assert.equal(untyped.code, 1);
  assert.match(untyped.stderr, /no content type for its extension; pass --content-type/);
});

test('submit of a folder of 100 images, killed part-way and resumed, ends with one result per file in name order', async () => {
  const folder = join(dir, 'images');
  mkdirSync(folder);
  for (let n = 0; n < 100; n++)
    writeFileSync(
      join(folder, `img-${String(n).padStart(3, '0')}.${n % 10 === 3 ? 'jpg' : 'png'}`),
      await image(n, n % 10 === 3 ? 'jpeg' : 'png'),
    );
  const out = join(dir, 'images.jsonl');
  const args = ['submit', folder, '--out', out, '--queue', input, '--max-in-flight', '10', '--no-progress'];
  const lines = () => (existsSync(out) ? readFileSync(out, 'utf8').split('\n').filter(Boolean).length : 0);

  const first = runCli([...args, '--rate', '25']);
  await until(() => lines() >= 20, 60_000, '20 results');
  first.child.kill('SIGKILL');
  await first.done;
  const before = lines();
  assert.ok(before < 100, 'killed before the end');

  const second = await runCli([...args, '--resume']).done;
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stderr, /resuming run .*: \d+ lines already in/);
  assert.match(
    second.stdout.toString(),
    /submit done: 100 lines, 100 ok, 0 errors \(\d+ of them from the interrupted run\)/,
  );
  const results = readFileSync(out, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { line: number; file: string; status: string; result: number[][] });
  assert.deepEqual(
    results.map((r) => r.line),
    Array.from({ length: 100 }, (_, i) => i + 1),
    'one result per file, in order',
  );
  for (const [i, r] of results.entries()) {
    assert.equal(r.file, `img-${String(i).padStart(3, '0')}.${i % 10 === 3 ? 'jpg' : 'png'}`);
    assert.equal(r.status, 'ok', JSON.stringify(r));
    // JPEG is lossy, PNG exact: a JPEG of flat colour decodes within a step or two of it.
    const tolerance = i % 10 === 3 ? 2.5 : 1e-4;
    r.result[0].forEach((v, c) =>
      assert.ok(Math.abs(v - meansOf(i)[0][c]) <= tolerance, `${r.file} channel ${c}: ${v} vs ${meansOf(i)[0][c]}`),
    );
  }
  assert.equal(existsSync(`${out}.state.json`), false);
});

test('a resumed folder run refuses files that changed since it started', async () => {
  const folder = join(dir, 'changing');
  mkdirSync(folder);
  writeFileSync(join(folder, 'a.png'), await image(1));
  const out = join(dir, 'changing.jsonl');
  const state = {
    version: 1,
    runId: 'r2',
    input: folder,
    queue: input,
    replyQueue: 'scorer.submit.r2',
    sentThrough: 0,
    startedAt: new Date().toISOString(),
    digest: 'not-these-files',
  };
  writeFileSync(`${out}.state.json`, JSON.stringify(state));
  const r = await runCli(['submit', folder, '--out', out, '--queue', input, '--resume']).done;
  assert.equal(r.code, 1);
  assert.match(r.stderr, /the files of .* are not the ones the run in .* started with/);
});
