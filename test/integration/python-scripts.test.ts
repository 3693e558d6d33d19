/**
 * CONTRACT §1 for Python: `ENTRY_SCRIPT=score.py` through the real broker. The seed's own example
 * (with only `from sklearn.externals import joblib` changed to `import joblib`) scoring a joblib-dumped
 * scikit-learn classifier, checked against the model's own predict in Python; a stdlib-only script's
 * failures; boot failures that leave the queue untouched; the script's schemas in the AsyncAPI file.
 *
 * Interpreters: the scikit-learn case runs under Debian's /usr/bin/python3 with python3-sklearn (what
 * .ci/run installs; PYTHON names it), the stdlib cases under the default, `python3` on PATH.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { topologyFor } from '../../src/broker/topology.js';
import { TestClient, queuesOf, uniqueName, type ReceivedReply } from '../support/broker.js';
import {
  TestConsumers,
  startConsumer,
  type ConsumerProcess,
  type ConsumerQueues as Queues,
} from '../support/consumer-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SKLEARN_PYTHON = '/usr/bin/python3';
const dir = mkdtempSync(join(tmpdir(), 'scorer-python-scripts-'));

// The seed's example, byte for byte but for the joblib import (sklearn.externals.joblib is gone from scikit-learn).
/** The seed's example score.py, as the project ships it (only `from sklearn.externals import joblib` became `import joblib`). */
const SEED_SCRIPT = readFileSync(new URL('../../models/score.py', import.meta.url), 'utf8');

// Trains the classifier the seed's script loads (8x8 digits, MNIST's small cousin that ships with
// scikit-learn), and prints what the model itself answers for the rows the test sends.
const TRAIN = `
import json, sys
import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

X, y = load_digits(return_X_y=True)
model = LogisticRegression(max_iter=2000).fit(X[:1500], y[:1500])
joblib.dump(model, sys.argv[1])
rows = X[1500:1512].tolist()
short = [[1.0, 2.0, 3.0]]
try:
    model.predict(np.array(short))
    short_answer = None
except Exception as e:
    short_answer = str(e)
print(json.dumps({'rows': rows, 'predicted': model.predict(np.array(rows)).tolist(), 'short': short, 'shortAnswer': short_answer}))
`;

const STDLIB_SCRIPT = `
import json

model_name = 'stdlib-test'
input_schema = {'type': 'object', 'required': ['n'], 'properties': {'n': {'type': 'integer'}}}
output_schema = {'type': 'object', 'properties': {'via': {'type': 'string'}, 'n': {'type': 'integer'}}}
batch_throws = 0

def init():
    pass

def run(data):
    item = json.loads(data)
    if item.get('fail'):
        raise ValueError('item %d refused' % item['n'])
    return {'via': 'run', 'n': item['n'], 'batchThrows': batch_throws}

def run_batch(items):
    global batch_throws
    values = [json.loads(i) for i in items]
    if any(v.get('boom') for v in values):
        batch_throws += 1
        raise RuntimeError('run_batch exploded')
    return [ValueError('item %d refused' % v['n']) if v.get('fail') else {'via': 'run_batch', 'n': v['n'], 'batch': [w['n'] for w in values]} for v in values]
`;

interface Trained {
  rows: number[][];
  predicted: number[];
  short: number[][];
  shortAnswer: string;
}

let client: TestClient;
const consumers = new TestConsumers();
let trained: Trained;
let seed: Queues;
let seedConsumer: ConsumerProcess;
let stdlib: Queues;

async function ask(q: Queues, items: Array<{ id: string; data: unknown }>): Promise<Map<string, ReceivedReply>> {
  return client.ask(
    q.input,
    q.replies,
    items.map(({ id, data }) => ({ id, body: { data } })),
    30_000,
  );
}

const okBody = (r: ReceivedReply | undefined): unknown => {
  assert.ok(r, 'a reply');
  assert.equal(r.status, 'ok', r.body);
  return r.json();
};

before(async () => {
  mkdirSync(join(dir, 'seed', 'model'), { recursive: true });
  mkdirSync(join(dir, 'stdlib'));
  writeFileSync(join(dir, 'seed', 'score.py'), SEED_SCRIPT);
  writeFileSync(join(dir, 'stdlib', 'score.py'), STDLIB_SCRIPT);
  writeFileSync(join(dir, 'train.py'), TRAIN);
  trained = JSON.parse(
    execFileSync(SKLEARN_PYTHON, [join(dir, 'train.py'), join(dir, 'seed', 'model', 'sklearn_mnist_model.pkl')], {
      encoding: 'utf8',
    }),
  ) as Trained;
  client = await TestClient.connect();
  seed = consumers.queuesFor('python.seed');
  seedConsumer = consumers.startOn(seed, {
    ENTRY_SCRIPT: join(dir, 'seed', 'score.py'),
    MODEL_DIR: join(dir, 'seed', 'model'),
    PYTHON: SKLEARN_PYTHON,
  });
  stdlib = consumers.queuesFor('python.stdlib');
  consumers.startOn(stdlib, {
    ENTRY_SCRIPT: join(dir, 'stdlib', 'score.py'),
    CONCURRENCY: '1',
    MAX_BATCH_SIZE: '32',
    MAX_BATCH_DELAY_MS: '300',
    BATCH_DELAY_MIN_LOAD: '0',
  });
  await consumers.allConsuming(60_000);
});

after(async () => {
  await consumers.close(client, 'SIGTERM');
  await client.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the seed's score.py answers known rows with the classes the model itself predicts, through the broker", async () => {
  const { rows, predicted } = trained;
  const replies = await ask(seed, [
    { id: 'all', data: rows },
    ...rows.map((row, i) => ({ id: `row-${i}`, data: [row] })),
  ]);
  assert.deepEqual(okBody(replies.get('all')), predicted);
  rows.forEach((_, i) => assert.deepEqual(okBody(replies.get(`row-${i}`)), [predicted[i]], `row ${i}`));
  assert.ok(new Set(predicted).size > 3, 'the rows are of several classes');
});

test("the seed's own `return str(e)` for a row of the wrong width comes back as the script returned it", async () => {
  assert.ok(trained.shortAnswer, 'the model refuses a row of 3 features');
  const replies = await ask(seed, [{ id: 'short', data: trained.short }]);
  assert.equal(okBody(replies.get('short')), trained.shortAnswer);
});

test('boot logs the interpreter PYTHON named and its version, once per isolate', async () => {
  const version = execFileSync(SKLEARN_PYTHON, ['-c', 'import sys; print(sys.version.split()[0])'], {
    encoding: 'utf8',
  }).trim();
  const lines = seedConsumer
    .output()
    .split('\n')
    .filter((l) => l.includes('"msg":"python isolate started"'))
    .map((l) => JSON.parse(l) as { python: string; version: string });
  assert.equal(lines.length, 2, 'CONCURRENCY 2: two Python processes');
  for (const l of lines) {
    assert.equal(l.python, SKLEARN_PYTHON);
    assert.equal(l.version, version);
  }
});

test('a stdlib script: a run that raises, or a run_batch item returned as an Exception, gets an error reply with its message; its neighbours are answered', async () => {
  // Alone, it goes to run(); with others, to run_batch.
  const alone = await ask(stdlib, [{ id: 'alone', data: { n: 9, fail: true } }]);
  assert.equal(alone.get('alone')!.headers['x-error-code'], 'RUN_FAILED');
  assert.equal(alone.get('alone')!.json(), 'item 9 refused');
  const replies = await ask(stdlib, [
    { id: 'a', data: { n: 1 } },
    { id: 'b', data: { n: 2, fail: true } },
    { id: 'c', data: { n: 3 } },
  ]);
  assert.equal((okBody(replies.get('a')) as { n: number }).n, 1);
  assert.equal((okBody(replies.get('c')) as { n: number }).n, 3);
  const failed = replies.get('b')!;
  assert.equal(failed.status, 'error');
  assert.equal(failed.headers['x-error-code'], 'RUN_FAILED');
  assert.equal(failed.json(), 'item 2 refused');
  assert.equal(replies.get('a')!.headers['x-model'], 'stdlib-test');
});

test('a stdlib script: run_batch gets several messages in one call; one that raises is retried item by item with run', async () => {
  const items = Array.from({ length: 6 }, (_, i) => ({
    id: `boom-${i}`,
    data: i === 2 ? { n: i, boom: true } : { n: i },
  }));
  const replies = await ask(stdlib, items);
  const bodies = items.map(({ id }) => okBody(replies.get(id)) as { via: string; n: number; batchThrows?: number });
  bodies.forEach((b, i) => assert.equal(b.n, i));
  const viaRun = bodies.filter((b) => b.via === 'run');
  assert.ok(
    viaRun.some((b) => b.n === 2),
    'the culprit is answered by run()',
  );
  assert.ok(viaRun.length > 1, 'its batch neighbours are answered by run() too');
  assert.ok(
    viaRun.every((b) => (b.batchThrows ?? 0) >= 1),
    'run() was the fallback after run_batch raised',
  );
  const batched = await ask(
    stdlib,
    Array.from({ length: 8 }, (_, i) => ({ id: `batch-${i}`, data: { n: i } })),
  );
  const sizes = [...batched.values()].map((r) => ((okBody(r) as { batch?: number[] }).batch ?? [0]).length);
  assert.ok(Math.max(...sizes) > 1, `run_batch saw batches of at most ${Math.max(...sizes)}`);
});

test("a stdlib script: input_schema is checked before run (SCHEMA), as a TypeScript script's inputSchema", async () => {
  const replies = await ask(stdlib, [{ id: 'schema', data: { n: 'one' } }]);
  assert.equal(replies.get('schema')!.headers['x-error-code'], 'SCHEMA');
  assert.equal(replies.get('schema')!.json(), 'data/n must be integer');
});

test("scorer asyncapi documents a Python script's input_schema and output_schema", async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/scorer.js', 'asyncapi'], {
    cwd: ROOT,
    env: { ...process.env, ENTRY_SCRIPT: join(dir, 'stdlib', 'score.py'), INPUT_QUEUE: stdlib.input },
  });
  const doc = JSON.parse(stdout) as {
    info: { title: string };
    components: { messages: Record<string, { payload: { properties?: { data?: unknown } } }> };
  };
  assert.match(doc.info.title, /stdlib-test/);
  assert.deepEqual(doc.components.messages.scoreRequest.payload.properties?.data, {
    type: 'object',
    required: ['n'],
    properties: { n: { type: 'integer' } },
  });
  assert.deepEqual(doc.components.messages.scoreResult.payload, {
    type: 'object',
    properties: { via: { type: 'string' }, n: { type: 'integer' } },
  });
});

describe('a Python boot that cannot succeed stops with one line, and the queue keeps its messages', {
  concurrency: true,
}, () => {
  async function bootFails(env: Record<string, string>, line: RegExp): Promise<void> {
    const input = uniqueName('python.boot');
    const replies = uniqueName('python.boot.replies');
    try {
      const { inputArguments } = topologyFor({
        inputQueue: input,
        replyQueue: replies,
        queueType: 'quorum',
        deliveryLimit: 3,
      });
      const ch = await client.connection.createChannel();
      await ch.assertQueue(input, { durable: true, arguments: inputArguments });
      await ch.close();
      await client.publish(input, { data: { n: 1 } }, { correlationId: 'waiting' });
      const consumer = startConsumer({ INPUT_QUEUE: input, REPLY_QUEUE: replies, ...env });
      const code = await Promise.race([
        consumer.closed,
        new Promise((r) => setTimeout(() => r('still running after 40 s'), 40_000).unref()),
      ]);
      if (code === 'still running after 40 s') await consumer.stop('SIGKILL');
      assert.equal(code, 1, `exit code; output:\n${consumer.output()}`);
      const lines = consumer
        .stderr()
        .split('\n')
        .filter((l) => l.trim() !== '');
      assert.equal(lines.length, 1, `one line on stderr, got:\n${consumer.stderr()}`);
      assert.match(lines[0], line);
      assert.equal(
        await client.messageCount(input),
        1,
        'the message published before boot is still in the input queue',
      );
    } finally {
      await client.deleteQueues(...queuesOf(input, replies));
    }
  }

  test('an init() that raises: the exception type and message', async () => {
    const path = join(dir, 'init-raises.py');
    writeFileSync(
      path,
      "import os\n\ndef init():\n    raise FileNotFoundError('no model at ' + os.environ['MODEL_DIR'])\n\ndef run(data):\n    return data\n",
    );
    await bootFails(
      { ENTRY_SCRIPT: path, MODEL_DIR: '/nowhere' },
      /^scorer: boot failed: entry script init\(\) failed: FileNotFoundError: no model at \/nowhere$/,
    );
  });

  test('a script without run', async () => {
    const path = join(dir, 'no-run.py');
    writeFileSync(path, 'def init():\n    pass\n');
    await bootFails(
      { ENTRY_SCRIPT: path },
      /^scorer: boot failed: entry script \S+no-run\.py must define a function run\(\), found nothing$/,
    );
  });

  test('a PYTHON that does not exist is named', async () => {
    await bootFails(
      { ENTRY_SCRIPT: join(dir, 'stdlib', 'score.py'), PYTHON: join(dir, 'venv', 'bin', 'python') },
      /^scorer: boot failed: entry script could not start: PYTHON \S+venv\/bin\/python: no such interpreter .*; set PYTHON to a Python 3 interpreter$/,
    );
  });
});
