import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allocationsOf, placeOf, type ProfileNode } from '../../bench/allocations.js';

const node = (functionName: string, url: string, selfSize: number, children: ProfileNode[] = []): ProfileNode => ({
  callFrame: { functionName, url, lineNumber: 0 },
  selfSize,
  children,
});

test('placeOf names this project’s files by their path under src/ (tsx’s query dropped) and a package by its name', () => {
  assert.equal(placeOf('file:///work/main/src/onnx/entry.ts?tsx-namespace=abc'), 'src/onnx/entry.ts');
  assert.equal(placeOf('file:///work/main/src/answer.ts'), 'src/answer.ts');
  assert.equal(placeOf('/work/main/node_modules/amqplib/lib/frame.js'), 'amqplib');
  assert.equal(placeOf('/work/main/node_modules/@opentelemetry/api/build/src/index.js'), '@opentelemetry/api');
  assert.equal(placeOf('node:buffer'), undefined);
  assert.equal(placeOf(''), undefined);
});

test('allocationsOf charges each sample to the innermost frame of the project or a package on its stack, per message', () => {
  const head = node('(root)', '', 0, [
    node('onData', 'node:internal/streams/readable', 10, [
      node('parseFrame', '/x/node_modules/amqplib/lib/frame.js', 400, [node('subarray', 'node:buffer', 200)]),
    ]),
    node('answer', 'file:///x/src/answer.ts', 300, [
      node('push', '', 100),
      node('encode', '/x/node_modules/amqplib/lib/codec.js', 50),
    ]),
  ]);
  const a = allocationsOf(head, 10);
  assert.equal(a.perMessage, 106);
  assert.deepEqual(a.byPlace, [
    { place: 'amqplib', perMessage: 65 },
    { place: 'src/answer.ts', perMessage: 40 },
    { place: 'Node.js and V8 (no frame of this project or a package)', perMessage: 1 },
  ]);
  assert.deepEqual(a.byFunction.slice(0, 3), [
    { fn: 'parseFrame (amqplib)', perMessage: 40 },
    { fn: 'answer (src/answer.ts)', perMessage: 30 },
    { fn: 'subarray (node:buffer)', perMessage: 20 },
  ]);
});
