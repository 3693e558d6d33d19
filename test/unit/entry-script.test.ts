import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { loadConfig } from '../../src/config.js';
import {
  BUILT_IN_ENTRY_SCRIPT,
  loadEntryScript,
  resolveEntryScript,
  resolveModelDir,
} from '../../src/isolate/entry-script.js';
import { scorerOptions } from '../../src/scorer.js';
import { BootError } from '../../src/errors.js';

// Outside the repository, as a user's script would be: no package.json, no tsconfig, no node_modules.
const dir = mkdtempSync(join(tmpdir(), 'scorer-entry-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function script(name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

async function refusesToLoad(path: string, ...parts: string[]): Promise<void> {
  await assert.rejects(loadEntryScript(path), (err: unknown) => {
    assert.ok(err instanceof BootError, `expected a BootError, got ${String(err)}`);
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should include ${JSON.stringify(p)}`);
    return true;
  });
}

test('no ENTRY_SCRIPT means the built-in ONNX entry script', () => {
  assert.equal(resolveEntryScript(''), BUILT_IN_ENTRY_SCRIPT);
  assert.match(BUILT_IN_ENTRY_SCRIPT, /src[/\\]onnx[/\\]entry\.ts$/);
});

test('a relative ENTRY_SCRIPT is resolved against the working directory', () => {
  const path = script('relative.ts', 'export function init() {}\nexport function run(d: string) { return d; }\n');
  assert.equal(resolveEntryScript('relative.ts', dir), path);
  assert.equal(resolveEntryScript(path, '/somewhere/else'), path, 'an absolute path is kept');
});

test('a missing ENTRY_SCRIPT file is refused, naming the path', () => {
  const missing = join(dir, 'no-such-score.ts');
  assert.throws(
    () => resolveEntryScript(missing),
    (err: unknown) => err instanceof BootError && err.message === `ENTRY_SCRIPT ${missing}: no such file`,
  );
});

test('an ENTRY_SCRIPT that is not a JavaScript or TypeScript module, nor a Python script, is refused', () => {
  const rb = script('score.rb', 'def run(data) end\n');
  assert.throws(
    () => resolveEntryScript(rb),
    (err: unknown) =>
      err instanceof BootError &&
      err.message.includes(rb) &&
      err.message.includes('.ts, .mts, .js or .mjs module, or a .py script'),
  );
  for (const ok of ['a.ts', 'a.mts', 'a.js', 'a.mjs', 'a.py']) {
    const path = script(ok, '');
    assert.equal(resolveEntryScript(path), path);
  }
});

test('the model folder is resolved against the working directory unless absolute', () => {
  assert.equal(resolveModelDir('models', '/srv/app'), '/srv/app/models');
  assert.equal(resolveModelDir('/var/model', '/srv/app'), '/var/model');
});

test('a TypeScript script from a folder outside src/ loads, types and all', async () => {
  const path = script(
    'score.ts',
    `interface Context { modelDir: string }
let folder: string | undefined;
export function init(context: Context): void { folder = context.modelDir; }
export async function run(data: string): Promise<{ rows: number; folder?: string }> {
  const rows = JSON.parse(data) as number[][];
  return { rows: rows.length, folder };
}
export function runBatch(items: string[]): number[] { return items.map((i) => i.length); }
export const modelName = 'custom';
`,
  );
  const s = await loadEntryScript(path);
  s.init({
    modelDir: '/m',
    maxTensorElements: 1,
    ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
  });
  assert.deepEqual(await s.run('[[1],[2]]'), { rows: 2, folder: '/m' });
  assert.deepEqual(s.runBatch?.(['[]', '[1]']), [2, 3]);
  assert.equal(s.modelName, 'custom');
});

test('a plain JavaScript module and a CommonJS one load too', async () => {
  const mjs = await loadEntryScript(
    script('score.mjs', 'export function init() {}\nexport function run(d) { return "mjs:" + d; }\n'),
  );
  assert.equal(mjs.run('1'), 'mjs:1');
  const cjs = await loadEntryScript(
    script('score.cjs', 'exports.init = () => {};\nexports.run = (d) => "cjs:" + d;\n'),
  );
  assert.equal(cjs.run('2'), 'cjs:2');
});

test('a script without run() is refused at load, naming run', async () => {
  const path = script('no-run.ts', 'export function init() {}\nexport function score(d: string) { return d; }\n');
  await refusesToLoad(path, path, 'must export a function run()', 'found undefined');
});

test('a script without init() is refused at load, naming init', async () => {
  const path = script('no-init.ts', 'export const init = 42;\nexport function run(d: string) { return d; }\n');
  await refusesToLoad(path, path, 'must export a function init()', 'found number');
});

test('a runBatch that is not a function is refused', async () => {
  const path = script(
    'bad-batch.ts',
    'export function init() {}\nexport function run(d: string) { return d; }\nexport const runBatch = [];\n',
  );
  await refusesToLoad(path, 'runBatch must be a function', 'found object');
});

test('a script that does not compile or throws while loading is refused with one line', async () => {
  await refusesToLoad(script('syntax.ts', 'export function init( {\n'), 'failed to load');
  await refusesToLoad(
    script(
      'throws.ts',
      'throw new Error("no licence file\\nsecond line");\nexport function init() {}\nexport function run() {}\n',
    ),
    'failed to load',
    'no licence file',
  );
  await refusesToLoad(
    script(
      'missing-import.ts',
      'import { x } from "./not-here.js";\nexport function init() {}\nexport function run() { return x; }\n',
    ),
    'failed to load',
  );
});

test('a .py ENTRY_SCRIPT runs in Python processes with the PYTHON interpreter; a TypeScript one in node processes, the built-in one in threads', () => {
  const logger = pino({ level: 'silent' });
  const options = (env: Record<string, string>) =>
    scorerOptions(loadConfig({ AMQP_URL: 'amqp://localhost', ...env }), logger);
  const py = script('iso.py', '');
  assert.deepEqual(
    [options({ ENTRY_SCRIPT: py }).isolation, options({ ENTRY_SCRIPT: py }).python],
    ['python', 'python3'],
  );
  assert.equal(options({ ENTRY_SCRIPT: py, PYTHON: '/opt/venv/bin/python' }).python, '/opt/venv/bin/python');
  assert.equal(options({ ENTRY_SCRIPT: script('iso.ts', '') }).isolation, 'process');
  assert.equal(options({}).isolation, 'thread');
});
