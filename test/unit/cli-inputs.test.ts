import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { contentTypeFor, globFiles, openInput, type InputItem } from '../../src/cli/inputs.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-inputs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function files(names: Record<string, string>): string {
  const root = mkdtempSync(join(dir, 'f-'));
  for (const [name, text] of Object.entries(names)) {
    mkdirSync(join(root, name, '..'), { recursive: true });
    writeFileSync(join(root, name), text);
  }
  return root;
}

async function all(items: AsyncIterable<InputItem>): Promise<InputItem[]> {
  const out: InputItem[] = [];
  for await (const i of items) out.push(i);
  return out;
}

test('a content type comes from --content-type, else from the extension', () => {
  assert.equal(contentTypeFor('a/b.PNG'), 'image/png');
  assert.equal(contentTypeFor('x.jpeg'), 'image/jpeg');
  assert.equal(contentTypeFor('t.npy'), 'application/x-npy');
  assert.equal(contentTypeFor('t.safetensors'), 'application/x-safetensors');
  assert.equal(contentTypeFor('t.bin'), undefined);
  assert.equal(contentTypeFor('t.bin', 'application/x-npy'), 'application/x-npy');
});

test('a folder is every file under it, sorted by name, dot-files left out; each item numbered from 1 and named', async () => {
  const root = files({
    'b.png': 'B',
    'a.png': 'A',
    'sub/c.npy': 'C',
    '.hidden.png': 'H',
    'notes.txt': 'T',
    'req.json': '[[1,2]]',
  });
  const source = await openInput(root);
  assert.equal(source.total, 5);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map((l) => source.nameOf!(l)),
    ['a.png', 'b.png', 'notes.txt', 'req.json', 'sub/c.npy'],
  );
  const items = await all(source.items());
  assert.deepEqual(items[0], { line: 1, body: Buffer.from('A'), contentType: 'image/png' });
  assert.equal(
    (items[2] as { code: string }).code,
    'CONTENT_TYPE',
    'a .txt has no content type: an error result, not a message',
  );
  assert.deepEqual(
    items[3],
    { line: 4, body: Buffer.from('{"data":[[1,2]]}') },
    'a .json file is one request, wrapped as a JSONL line is',
  );
  assert.deepEqual(
    (await all(source.items(2))).slice(0, 2),
    [
      { line: 1, blank: true },
      { line: 2, blank: true },
    ],
    'files with a result are not read again',
  );
  assert.notEqual((await openInput(files({ 'a.png': 'A' }))).digest, source.digest);
});

test('a glob matches * and ? within a name and ** across folders', async () => {
  const root = files({ 'x/1.png': '', 'x/2.jpg': '', 'x/y/3.png': '', 'z.png': '' });
  assert.deepEqual(
    globFiles(join(root, 'x/*.png')).files.map((f) => f.slice(root.length + 1)),
    ['x/1.png'],
  );
  assert.deepEqual(
    globFiles(join(root, '**/*.png')).files.map((f) => f.slice(root.length + 1)),
    ['x/1.png', 'x/y/3.png', 'z.png'],
  );
  assert.deepEqual(
    globFiles(join(root, 'x/?.*')).files.map((f) => f.slice(root.length + 1)),
    ['x/1.png', 'x/2.jpg'],
  );
  await assert.rejects(openInput(join(root, '*.webp')), /no files match/);
  const source = await openInput(join(root, 'x/**/*.png'));
  assert.deepEqual([source.nameOf!(1), source.nameOf!(2)], ['1.png', 'y/3.png']);
});

test('a JSONL file is still read line by line, blank lines kept as blanks', async () => {
  const file = join(dir, 'in.jsonl');
  writeFileSync(file, '[[1]]\n\nnot json\n{"data": 2}\n');
  const source = await openInput(file);
  assert.equal(source.total, 3);
  assert.equal(source.nameOf, undefined);
  const items = await all(source.items());
  assert.deepEqual(
    items.map((i) =>
      'blank' in i && i.blank ? 'blank' : 'error' in i ? i.code : (i as { body: Buffer }).body.toString(),
    ),
    ['{"data":[[1]]}', 'blank', 'BAD_JSON', '{"data": 2}'],
  );
});
