/**
 * A Python entry script in its isolate, driven through ScriptHost as the scorer drives it, no broker:
 * the contract of init/run/run_batch, what a script is refused for at load, timeouts and crashes.
 * The interpreter is PYTHON's default, `python3` on PATH: stdlib-only scripts.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { BootError } from '../../src/errors.js';
import type { Outcome } from '../../src/reply.js';
import { ScriptHost } from '../../src/isolate/host.js';
import type { BodyMeta, CallMethod } from '../../src/isolate/protocol.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-python-isolate-'));
const modelDir = join(dir, 'model');
/** The log lines of every isolate started here, to find their Python processes by pid. */
const logged: Array<{ msg: string; pythonPid?: number; python?: string }> = [];
const logger = pino({ level: 'info' }, { write: (line: string) => void logged.push(JSON.parse(line)) });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const SCRIPTS: Record<string, string> = {
  'echo/score.py': `
import json, os, sys
import helper

model_name = 'echo-model'
input_schema = {'type': 'object'}
output_schema = {'type': 'object', 'required': ['text']}
state = {}

def init():
    print('init prints to stdout, which must not reach the frames')
    with open(os.path.join('.', 'models', 'local.txt')) as f:
        state['local'] = f.read().strip()

def run(data):
    print('run prints too')
    value = json.loads(data)
    if value.get('raise'):
        raise ValueError('row %s refused' % value['raise'])
    if value.get('bare'):
        raise KeyError
    if value.get('nan'):
        return float('nan')
    if value.get('set'):
        return {1, 2}
    return {'type': type(data).__name__, 'text': data, 'helper': helper.twice(2), 'local': state['local'],
            'AZUREML_MODEL_DIR': os.environ['AZUREML_MODEL_DIR'], 'MODEL_DIR': os.environ['MODEL_DIR'], 'unicode': 'ü\\u2028'}
`,
  'echo/helper.py': `
def twice(x):
    return 2 * x
`,
  'echo/models/local.txt': 'from the folder next to the script\n',
  'batch/score.py': `
import json

def init():
    pass

def run(data):
    return {'via': 'run', 'value': json.loads(data)}

def run_batch(items):
    values = [json.loads(i) for i in items]
    if 'boom' in values:
        raise RuntimeError('run_batch exploded')
    if 'short' in values:
        return values[:-1]
    return [ValueError('item %s refused' % v) if v == 'bad' else {'via': 'run_batch', 'value': v, 'batch': len(values)} for v in values]
`,
  'async/score.py': `
import asyncio, json

state = {}

async def init():
    await asyncio.sleep(0.01)
    state['loop'] = asyncio.get_running_loop()
    state['ready'] = 'set by async init'

async def run(data):
    await asyncio.sleep(0)
    value = json.loads(data)
    if value == 'raise':
        raise ValueError('async row refused')
    return {'via': 'run', 'value': value, 'ready': state['ready'], 'init_loop': asyncio.get_running_loop() is state['loop']}

async def run_batch(items):
    await asyncio.sleep(0)
    values = [json.loads(i) for i in items]
    if 'boom' in values:
        raise RuntimeError('run_batch exploded')
    return [{'via': 'run_batch', 'value': v, 'init_loop': asyncio.get_running_loop() is state['loop']} for v in values]
`,
  'sync-init-loop/score.py': `
import asyncio, json

# What a plain script does to open a client at import or in init: takes the loop itself.
at_import = asyncio.get_event_loop()
state = {}

def init():
    loop = asyncio.get_event_loop()
    state['loop'] = loop
    state['opened'] = loop.run_until_complete(asyncio.sleep(0, result='opened in init'))

async def run(data):
    running = asyncio.get_running_loop()
    return {'opened': state['opened'], 'init_loop': running is state['loop'], 'import_loop': running is at_import}
`,
  'faults/score.py': `
import json, os, time

def init():
    pass

def run(data):
    value = json.loads(data)
    if value == 'sleep':
        time.sleep(3600)
    if value == 'exit':
        os._exit(1)
    return value
`,
  'hang-on-restart/score.py': `
import json, os, time

def init():
    # The test leaves this file to make the next start's init hang.
    if os.path.exists('hang-next'):
        os.remove('hang-next')
        time.sleep(3600)

def run(data):
    value = json.loads(data)
    if value == 'exit':
        os._exit(1)
    return value
`,
  'meta/score.py': `
import datetime, decimal

def init():
    pass

def describe(v):
    if isinstance(v, bytes):
        return ['bytes', list(v)]
    if isinstance(v, datetime.datetime):
        return ['datetime', v.isoformat()]
    if isinstance(v, decimal.Decimal):
        return ['Decimal', str(v)]
    if isinstance(v, dict):
        return {k: describe(x) for k, x in v.items()}
    if isinstance(v, list):
        return [describe(x) for x in v]
    return v

def run(data, meta):
    want = meta.headers.get('x-want')
    if want == 'bytes':
        raw = data if isinstance(data, bytes) else data.encode('utf-8')
        return {'content_type': 'application/x-reversed', 'body': bytearray(raw[::-1])}
    if want == 'no-type':
        return {'body': b'x'}
    if want == 'raw':
        return b'x'
    content_type, headers = meta
    return {'via': 'run', 'kind': type(data).__name__, 'bytes': list(data) if isinstance(data, bytes) else None,
            'text': data if isinstance(data, str) else None, 'contentType': content_type, 'headers': describe(headers),
            'meta': type(meta).__name__}

def run_batch(items, metas):
    return [dict(run(i, m), via='run_batch') if m.headers.get('x-want') is None else run(i, m) for i, m in zip(items, metas)]
`,
  'plain/score.py': `
import functools

def init():
    pass

def logged(fn):
    def wrapper(*args):  # no functools.wraps: its signature says nothing of fn's
        return fn(*args)
    return wrapper

@logged
def run(data):
    return {'via': 'run', 'type': type(data).__name__, 'length': len(data)}

def run_batch(items):
    return [{'via': 'run_batch', 'type': type(i).__name__, 'length': len(i)} for i in items]
`,
  'no-run.py': 'def init():\n    pass\n\ndef score(data):\n    return data\n',
  'run-not-callable.py': 'def init():\n    pass\n\nrun = 3\n',
  'bad-batch.py': 'def init():\n    pass\n\ndef run(data):\n    return data\n\nrun_batch = []\n',
  'bad-schema.py': 'def init():\n    pass\n\ndef run(data):\n    return data\n\ninput_schema = [1]\n',
  'unusable-schema.py':
    "def init():\n    pass\n\ndef run(data):\n    return data\n\ninput_schema = {'type': 'no-such-type'}\n",
  'init-raises.py':
    "def init():\n    raise FileNotFoundError('sklearn_mnist_model.pkl is missing')\n\ndef run(data):\n    return data\n",
  'import-fails.py': 'import no_such_package_here\n\ndef init():\n    pass\n\ndef run(data):\n    return data\n',
  'syntax.py': 'def init(:\n',
  'init-hangs.py':
    "import os, time\n\ndef init():\n    with open('init-hangs.pid', 'w') as f:\n        f.write(str(os.getpid()))\n    time.sleep(3600)\n\ndef run(data):\n    return data\n",
};

before(() => {
  mkdirSync(modelDir);
  for (const [file, source] of Object.entries(SCRIPTS)) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), source);
  }
});

after(() => rmSync(dir, { recursive: true, force: true }));

function start(script: string, python = 'python3', initTimeoutMs?: number): Promise<ScriptHost> {
  return ScriptHost.start({
    initTimeoutMs,
    entryScript: join(dir, script),
    isolation: 'python',
    context: {
      modelDir,
      maxTensorElements: 1000,
      ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
    },
    maxMessageBytes: 1 << 20,
    logger,
    python,
  });
}

const msg = (data: unknown) => Buffer.from(JSON.stringify({ data }));

async function call(host: ScriptHost, method: CallMethod, data: unknown[], timeoutMs = 20_000): Promise<Outcome[]> {
  const r = await host.call(method, data.map(msg), timeoutMs);
  assert.equal(r.kind, 'done', JSON.stringify(r));
  return (r as { outcomes: Outcome[] }).outcomes;
}

const json = (o: Outcome): unknown => {
  assert.ok(o.ok, JSON.stringify(o));
  return JSON.parse(o.body.toString('utf8'));
};
const failure = (o: Outcome) => (o.ok ? { ok: true, body: o.body.toString() } : { code: o.code, message: o.message });

describe('a Python entry script', () => {
  let echo: ScriptHost;
  before(async () => {
    echo = await start('echo/score.py');
  });
  after(() => echo.close());

  test('run gets the data text as a str, in the folder of the script with its helpers importable and its model folder in the environment', async () => {
    const [rows, object] = await call(echo, 'run', [{ rows: [[1, 2.5]] }, { a: 'ü', b: null }]);
    assert.deepEqual(json(rows), {
      type: 'str',
      text: '{"rows":[[1,2.5]]}',
      helper: 4,
      local: 'from the folder next to the script',
      AZUREML_MODEL_DIR: modelDir,
      MODEL_DIR: modelDir,
      unicode: 'ü\u2028',
    });
    assert.equal((json(object) as { text: string }).text, '{"a":"ü","b":null}');
  });

  test('its model_name, input_schema and output_schema are what the consumer reports; it has no run_batch', () => {
    assert.deepEqual(echo.info, {
      modelName: 'echo-model',
      hasRunBatch: false,
      inputSchema: { type: 'object' },
      outputSchema: { type: 'object', required: ['text'] },
    });
  });

  test("an exception's message is the RUN_FAILED reply; a bare exception is named by its type", async () => {
    const outcomes = await call(echo, 'run', [{ raise: 7 }, { bare: true }]);
    assert.deepEqual(outcomes.map(failure), [
      { code: 'RUN_FAILED', message: 'row 7 refused' },
      { code: 'RUN_FAILED', message: 'KeyError' },
    ]);
  });

  test('a value JSON cannot carry (NaN, a set) is BAD_RESULT, saying why', async () => {
    const outcomes = await call(echo, 'run', [{ nan: true }, { set: true }]);
    assert.deepEqual(outcomes.map(failure), [
      {
        code: 'BAD_RESULT',
        message: 'run returned a value JSON cannot carry: Out of range float values are not JSON compliant',
      },
      {
        code: 'BAD_RESULT',
        message: 'run returned a value JSON cannot carry: Object of type set is not JSON serializable',
      },
    ]);
  });

  test('a message that is not JSON, or fails input_schema, is answered without reaching Python, next to one that does', async () => {
    const r = await echo.call('run', [Buffer.from('{"data": '), msg([1]), msg({})], 20_000);
    assert.equal(r.kind, 'done');
    const [bad, schema, good] = (r as { outcomes: Outcome[] }).outcomes;
    assert.equal(!bad.ok && bad.code, 'BAD_JSON');
    assert.deepEqual(failure(schema), { code: 'SCHEMA', message: 'data must be object' });
    assert.equal((json(good) as { text: string }).text, '{}');
  });
});

describe('run_batch', () => {
  let host: ScriptHost;
  before(async () => {
    host = await start('batch/score.py');
  });
  after(() => host.close());

  test('gets every item of a batch in one call; an item it returns as an Exception gets its own RUN_FAILED reply', async () => {
    assert.equal(host.info.hasRunBatch, true);
    const outcomes = await call(host, 'runBatch', [1, 'bad', 3]);
    assert.deepEqual(json(outcomes[0]), { via: 'run_batch', value: 1, batch: 3 });
    assert.deepEqual(failure(outcomes[1]), { code: 'RUN_FAILED', message: 'item bad refused' });
    assert.deepEqual(json(outcomes[2]), { via: 'run_batch', value: 3, batch: 3 });
  });

  test('that raises, or returns the wrong number of results, is retried item by item with run', async () => {
    for (const culprit of ['boom', 'short']) {
      const outcomes = await call(host, 'runBatch', [1, culprit, 3]);
      assert.deepEqual(
        outcomes.map(json),
        [1, culprit, 3].map((value) => ({ via: 'run', value })),
        culprit,
      );
    }
  });
});

describe('async def init, run and run_batch', () => {
  let host: ScriptHost;
  before(async () => {
    host = await start('async/score.py');
  });
  after(() => host.close());

  test("are awaited, on the loop init ran on; an async run's exception is its RUN_FAILED reply", async () => {
    const [one, failed] = await call(host, 'run', [7, 'raise']);
    assert.deepEqual(json(one), { via: 'run', value: 7, ready: 'set by async init', init_loop: true });
    assert.deepEqual(failure(failed), { code: 'RUN_FAILED', message: 'async row refused' });
    const batch = await call(host, 'runBatch', [1, 2]);
    assert.deepEqual(batch.map(json), [
      { via: 'run_batch', value: 1, init_loop: true },
      { via: 'run_batch', value: 2, init_loop: true },
    ]);
    // A run_batch coroutine that raises: item by item with run, as for a plain one.
    const retried = await call(host, 'runBatch', [1, 'boom']);
    assert.deepEqual(
      retried.map(json),
      [1, 'boom'].map((value) => ({ via: 'run', value, ready: 'set by async init', init_loop: true })),
    );
  });

  test('a plain init, or the module at import, that takes asyncio.get_event_loop() gets the loop run is awaited on', async () => {
    const plain = await start('sync-init-loop/score.py');
    try {
      const [one] = await call(plain, 'run', [1]);
      assert.deepEqual(json(one), { opened: 'opened in init', init_loop: true, import_loop: true });
    } finally {
      await plain.close();
    }
  });
});

describe('binary messages and meta', () => {
  let meta: ScriptHost;
  let plain: ScriptHost;
  before(async () => {
    meta = await start('meta/score.py');
    plain = await start('plain/score.py');
  });
  after(async () => {
    await meta.close();
    await plain.close();
  });

  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255]);
  const bodies = [png, msg([1, 2]), msg('x'), Buffer.from('a,b\n')];
  const metas: Array<BodyMeta | undefined> = [
    {
      contentType: 'image/png',
      headers: {
        'x-camera': 'gate-3',
        raw: Buffer.from([0, 255]),
        n: 7,
        ok: true,
        nested: { list: [Buffer.from([1])] },
        at: { '!': 'timestamp', value: 1700000000 },
        price: { '!': 'decimal', value: { places: 2, digits: 1234 } },
      },
    },
    undefined,
    { contentType: 'application/json' },
    { contentType: 'text/csv' },
  ];

  async function outcomesOf(
    host: ScriptHost,
    method: CallMethod,
    b: Buffer[],
    m?: Array<BodyMeta | undefined>,
  ): Promise<Outcome[]> {
    const r = await host.call(method, b, 20_000, m);
    assert.equal(r.kind, 'done', JSON.stringify(r));
    return (r as { outcomes: Outcome[] }).outcomes;
  }

  for (const method of ['run', 'runBatch'] as const) {
    test(`${method}: a binary message is bytes with its content type and headers (bytes, datetime, Decimal as Python has them), a JSON one a str with application/json`, async () => {
      const via = method === 'run' ? 'run' : 'run_batch';
      const outcomes: Outcome[] = [];
      if (method === 'runBatch') outcomes.push(...(await outcomesOf(meta, 'runBatch', bodies, metas)));
      else
        for (let i = 0; i < bodies.length; i++)
          outcomes.push(...(await outcomesOf(meta, 'run', [bodies[i]], [metas[i]])));
      assert.deepEqual(outcomes.map(json), [
        {
          via,
          kind: 'bytes',
          bytes: [...png],
          text: null,
          contentType: 'image/png',
          headers: {
            'x-camera': 'gate-3',
            raw: ['bytes', [0, 255]],
            n: 7,
            ok: true,
            nested: { list: [['bytes', [1]]] },
            at: ['datetime', '2023-11-14T22:13:20+00:00'],
            price: ['Decimal', '12.34'],
          },
          meta: 'Meta',
        },
        { via, kind: 'str', bytes: null, text: '[1,2]', contentType: 'application/json', headers: {}, meta: 'Meta' },
        { via, kind: 'str', bytes: null, text: '"x"', contentType: 'application/json', headers: {}, meta: 'Meta' },
        {
          via,
          kind: 'bytes',
          bytes: [...Buffer.from('a,b\n')],
          text: null,
          contentType: 'text/csv',
          headers: {},
          meta: 'Meta',
        },
      ]);
    });
  }

  test('with no metadata at all (plain JSON messages) a run that takes meta gets application/json and no headers', async () => {
    const [o] = await outcomesOf(meta, 'run', [msg({ a: 1 })]);
    assert.deepEqual(json(o), {
      via: 'run',
      kind: 'str',
      bytes: null,
      text: '{"a":1}',
      contentType: 'application/json',
      headers: {},
      meta: 'Meta',
    });
  });

  test("a result {'content_type', 'body': bytes} is a binary reply with that content type; without a content type, or bare bytes, BAD_RESULT saying what to return", async () => {
    const want = (w: string, contentType = 'application/octet-stream'): BodyMeta => ({
      contentType,
      headers: { 'x-want': w },
    });
    const outcomes = await outcomesOf(
      meta,
      'runBatch',
      [Buffer.from([1, 2, 250]), msg('ab'), Buffer.from('z'), Buffer.from('z')],
      [want('bytes'), want('bytes', 'application/json'), want('no-type'), want('raw')],
    );
    assert.ok(outcomes[0].ok && outcomes[1].ok);
    assert.deepEqual([...outcomes[0].body], [250, 2, 1]);
    assert.equal(outcomes[0].contentType, 'application/x-reversed');
    assert.equal(outcomes[1].body.toString(), '"ba"', 'the data text, reversed');
    assert.equal(outcomes[1].contentType, 'application/x-reversed');
    assert.deepEqual(outcomes.slice(2).map(failure), [
      { code: 'BAD_RESULT', message: "run returned a binary reply {'body': bytes} without a 'content_type' str" },
      {
        code: 'BAD_RESULT',
        message:
          "run returned a value JSON cannot carry: Object of type bytes is not JSON serializable; return {'content_type': ..., 'body': bytes} for a binary reply",
      },
    ]);
  });

  test('a seed-style run(data) (and run_batch(items)) is called with one argument, bytes for a binary message, even through a bare (*args) wrapper', async () => {
    const one = await outcomesOf(plain, 'run', [png], [metas[0]]);
    const two = await outcomesOf(plain, 'run', [msg([1, 2])], [{ contentType: 'application/json', headers: { a: 1 } }]);
    const batch = await outcomesOf(plain, 'runBatch', bodies, metas);
    assert.deepEqual([...one, ...two].map(json), [
      { via: 'run', type: 'bytes', length: 6 },
      { via: 'run', type: 'str', length: 5 },
    ]);
    assert.deepEqual(batch.map(json), [
      { via: 'run_batch', type: 'bytes', length: 6 },
      { via: 'run_batch', type: 'str', length: 5 },
      { via: 'run_batch', type: 'str', length: 3 },
      { via: 'run_batch', type: 'bytes', length: 4 },
    ]);
  });
});

describe('timeouts and crashes', () => {
  let host: ScriptHost;
  before(async () => {
    host = await start('faults/score.py');
  });
  after(() => host.close());

  test('a run stuck in time.sleep is cut off at its deadline, its process killed, and the next call is answered by a fresh process', async () => {
    const started = logged.filter((l) => l.msg === 'python isolate started').length;
    assert.deepEqual(await host.call('run', [msg('sleep')], 500), { kind: 'timeout' });
    const hung = logged.filter((l) => l.msg === 'python isolate started')[started - 1].pythonPid!;
    for (let i = 0; i < 100 && alive(hung); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(hung), false, 'the hung process is gone');
    assert.deepEqual((await call(host, 'run', ['after'])).map(json), ['after']);
  });

  test('a process that dies under a message is a crash, and the next call is answered by a fresh process', async () => {
    const r = await host.call('run', [msg('exit')], 20_000);
    assert.equal(r.kind, 'crash');
    assert.match((r as { reason: string }).reason, /python process exited with code 1/);
    assert.deepEqual((await call(host, 'run', ['again'])).map(json), ['again']);
  });

  test('a replacement whose init() hangs is killed at INIT_TIMEOUT_MS and started again, and the one after it serves', {
    timeout: 60_000,
  }, async () => {
    const restarting = await start('hang-on-restart/score.py', 'python3', 1500);
    try {
      writeFileSync(join(dir, 'hang-on-restart', 'hang-next'), '');
      assert.equal((await restarting.call('run', [msg('exit')], 20_000)).kind, 'crash');
      assert.deepEqual((await call(restarting, 'run', [5])).map(json), [5]);
      assert.ok(
        logged.some(
          (l) =>
            l.msg === 'entry script restart failed' &&
            /INIT_TIMEOUT_MS \(1500 ms\)/.test(String((l as { err?: unknown }).err)),
        ),
        'the hung replacement was given up at the timeout',
      );
    } finally {
      await restarting.close();
    }
  });
});

describe('the lifetime of a Python process', () => {
  test('Ctrl-C (SIGINT to the process group) leaves a Python process serving: the consumer decides when it stops', async () => {
    const host = await start('faults/score.py');
    try {
      const pid = logged.filter((l) => l.msg === 'python isolate started').at(-1)!.pythonPid!;
      process.kill(pid, 'SIGINT');
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual((await call(host, 'run', ['still here'])).map(json), ['still here']);
      assert.ok(alive(pid), 'the same process answered');
    } finally {
      await host.close();
    }
  });

  test('a Python process whose consumer is killed (SIGKILL) while its run hangs is killed too, not left an orphan', async () => {
    const harness = join(dir, 'orphan-harness.mts'); // .mts: an ES module outside any package.json, for its top-level await
    writeFileSync(
      harness,
      `import { ScriptHost } from ${JSON.stringify(new URL('../../src/isolate/host.ts', import.meta.url).pathname)};
const host = await ScriptHost.start({ entryScript: ${JSON.stringify(join(dir, 'faults/score.py'))}, isolation: 'python', python: 'python3',
  context: { modelDir: ${JSON.stringify(modelDir)}, maxTensorElements: 1, ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false } },
  maxMessageBytes: 1 << 20, logger: { info: (o: object) => console.log(JSON.stringify(o)), warn() {}, error() {} } as never });
void host.call('run', [Buffer.from('{"data":"sleep"}')], 3_600_000);
`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', harness], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    const pid = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        const m = /"pythonPid":(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.on('exit', () => reject(new Error(`harness exited: ${out}`)));
    });
    await new Promise((r) => setTimeout(r, 300)); // the run is under way
    child.kill('SIGKILL');
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(pid), false, 'the Python process died with its consumer');
  });
});

describe('a script that cannot start stops boot with one line', { concurrency: true }, () => {
  const cases: Array<[string, RegExp]> = [
    ['no-run.py', /^entry script \S+no-run\.py must define a function run\(\), found nothing$/],
    ['run-not-callable.py', /^entry script \S+ must define a function run\(\), found int$/],
    ['bad-batch.py', /^entry script \S+: run_batch must be a function, found list$/],
    ['bad-schema.py', /^entry script \S+: input_schema must be a dict \(a JSON Schema\), found list$/],
    [
      'unusable-schema.py',
      /^entry script input_schema is not a usable JSON Schema: schema is invalid: data\/type must be equal to one of the allowed values/,
    ],
    ['init-raises.py', /^entry script init\(\) failed: FileNotFoundError: sklearn_mnist_model\.pkl is missing$/],
    [
      'import-fails.py',
      /^entry script \S+ failed to load: ModuleNotFoundError: No module named 'no_such_package_here'$/,
    ],
    ['syntax.py', /^entry script \S+ failed to load: SyntaxError: .*syntax\.py, line 1\)$/],
  ];
  for (const [script, line] of cases) {
    test(script, async () => {
      await assert.rejects(start(script), (err: unknown) => {
        assert.ok(err instanceof BootError);
        assert.match(err.message, line);
        return true;
      });
    });
  }

  test('an init() that has not returned within INIT_TIMEOUT_MS: its process is killed and boot stops, naming the setting', {
    timeout: 30_000,
  }, async () => {
    const t0 = Date.now();
    await assert.rejects(start('init-hangs.py', 'python3', 1500), (err: unknown) => {
      assert.ok(err instanceof BootError);
      assert.equal(
        err.message,
        'entry script init() did not return within INIT_TIMEOUT_MS (1500 ms); its process was killed. Raise INIT_TIMEOUT_MS if loading the model takes longer',
      );
      return true;
    });
    assert.ok(Date.now() - t0 < 15_000, 'given up at the timeout, not at the sleep');
    // init() wrote it (its working directory is the script's folder) before it hung.
    const pid = Number(readFileSync(join(dir, 'init-hangs.pid'), 'utf8'));
    assert.ok(pid > 0, 'the Python process had started');
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(pid), false, 'the Python process is killed');
  });

  test('an interpreter that does not exist is named, with the setting to change', async () => {
    await assert.rejects(start('faults/score.py', 'python3.missing-here'), (err: unknown) => {
      assert.ok(err instanceof BootError);
      assert.equal(
        err.message,
        'entry script could not start: PYTHON python3.missing-here: no such interpreter (not on PATH nor a file); set PYTHON to a Python 3 interpreter',
      );
      return true;
    });
  });
});
