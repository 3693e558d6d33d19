/** Which model folder is served and the version its replies carry (src/model-version.ts). */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { BootError } from '../../src/errors.js';
import { rankVersions, resolveModelVersion } from '../../src/model-version.js';

const root = mkdtempSync(join(tmpdir(), 'model-version-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A folder tree from paths: `iris/3/model.onnx` gets a file holding its own path. */
function tree(name: string, files: string[], folders: string[] = []): string {
  const dir = join(root, name);
  for (const f of folders) mkdirSync(join(dir, f), { recursive: true });
  for (const f of files) {
    mkdirSync(join(dir, f, '..'), { recursive: true });
    writeFileSync(join(dir, f), `bytes of ${f}`);
  }
  return dir;
}

function recorder() {
  const lines: Array<{ fields: Record<string, unknown>; message: string }> = [];
  return { lines, warn: (fields: Record<string, unknown>, message: string) => void lines.push({ fields, message }) };
}

test('versions rank by number, highest first: 10 above 9, exact beyond 2^53, names that are not numbers set apart', () => {
  assert.deepEqual(rankVersions(['1', '10', '9', '2']).versions, ['10', '9', '2', '1']);
  assert.deepEqual(rankVersions(['9007199254740993', '9007199254740992']).versions, [
    '9007199254740993',
    '9007199254740992',
  ]);
  assert.deepEqual(rankVersions(['3', 'latest', '3-new', '-1', '2.5']), {
    versions: ['3'],
    ignored: ['latest', '3-new', '-1', '2.5'],
  });
  assert.deepEqual(rankVersions([]), { versions: [], ignored: [] });
});

test("Triton's layout: MODEL_DIR models/iris with versions 1, 2 and 10 serves 10, as version iris/10", () => {
  const dir = tree('triton', ['iris/1/model.onnx', 'iris/2/model.onnx', 'iris/10/model.onnx']);
  const log = recorder();
  assert.deepEqual(resolveModelVersion(join(dir, 'iris'), log), { dir: join(dir, 'iris', '10'), version: 'iris/10' });
  assert.deepEqual(log.lines, [], 'nothing to say');
});

test('a version folder whose name is not a number is ignored, with a log line naming it', () => {
  const dir = tree('odd', ['iris/2/model.onnx', 'iris/3-new/model.onnx', 'iris/latest/model.onnx']);
  const log = recorder();
  assert.deepEqual(resolveModelVersion(join(dir, 'iris'), log), { dir: join(dir, 'iris', '2'), version: 'iris/2' });
  assert.deepEqual(log.lines.map((l) => l.fields.folder).sort(), ['3-new', 'latest']);
  assert.ok(log.lines.every((l) => /not a number/.test(l.message)));
});

test('a repository folder holding one versioned model (MODEL_DIR=models) serves that model', () => {
  const dir = tree('repo', ['iris/1/model.onnx', 'iris/4/model.onnx']);
  assert.deepEqual(resolveModelVersion(dir, recorder()), { dir: join(dir, 'iris', '4'), version: 'iris/4' });
});

test('a repository with several versioned models is refused with one line naming them and MODEL_DIR', () => {
  const dir = tree('repo2', ['iris/1/model.onnx', 'mnist/1/model.onnx']);
  assert.throws(
    () => resolveModelVersion(dir, recorder()),
    (e: unknown) => e instanceof BootError && /several versioned models \(iris, mnist\).*MODEL_DIR/.test(e.message),
  );
});

test('a pinned version is served instead of the highest; a missing one is refused naming the versions there', () => {
  const dir = join(tree('pinned', ['iris/1/model.onnx', 'iris/2/model.onnx']), 'iris');
  assert.deepEqual(resolveModelVersion(dir, recorder(), '1'), { dir: join(dir, '1'), version: 'iris/1' });
  assert.throws(
    () => resolveModelVersion(dir, recorder(), '7'),
    (e: unknown) => e instanceof BootError && /no version 7 \(versions: 2, 1\)/.test(e.message),
  );
});

test("a flat folder is served as it is, its version the .onnx file's short hash: a retrained file gives a new version", () => {
  const dir = tree('flat', ['iris.onnx', 'iris.json', 'score.ts'], ['__pycache__']);
  const expected = createHash('sha256')
    .update(readFileSync(join(dir, 'iris.onnx')))
    .digest('hex')
    .slice(0, 12);
  const log = recorder();
  assert.deepEqual(resolveModelVersion(dir, log), { dir, version: expected });
  assert.deepEqual(log.lines, [], 'a subfolder of a flat folder is not a version folder');
  writeFileSync(join(dir, 'iris.onnx'), 'retrained');
  assert.notEqual(resolveModelVersion(dir, log).version, expected);
  writeFileSync(join(dir, 'iris.json'), 'other metadata');
  assert.equal(
    resolveModelVersion(dir, log).version,
    createHash('sha256').update('retrained').digest('hex').slice(0, 12),
    'only the model file counts',
  );
});

test('a flat folder without one .onnx file (an entry script with its own model files) is versioned by all its files', () => {
  const dir = tree('script', ['model.pkl', 'vocab.txt']);
  const v1 = resolveModelVersion(dir, recorder()).version;
  assert.match(v1, /^[0-9a-f]{12}$/);
  writeFileSync(join(dir, 'vocab.txt'), 'new words');
  assert.notEqual(resolveModelVersion(dir, recorder()).version, v1);
});

test('a model folder that cannot be read is refused with one line naming it and MODEL_DIR', () => {
  assert.throws(
    () => resolveModelVersion(join(root, 'nope'), recorder()),
    (e: unknown) =>
      e instanceof BootError && /model folder .*nope cannot be read \(ENOENT\): check MODEL_DIR/.test(e.message),
  );
});

test("the project's own models/ folder is flat", () => {
  const v = resolveModelVersion('models', recorder());
  assert.equal(v.dir, 'models');
  assert.match(v.version, /^[0-9a-f]{12}$/);
});
