import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CONFIG_KEYS, DEFAULTS_FILE, loadConfig, readConfigFile, redactUrl, splitAmqpUrls } from '../../src/config.js';
import { BootError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'scorer-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** loadConfig must throw one BootError line that contains every part. */
function refuses(env: Record<string, string>, ...parts: string[]): string {
  let message = '';
  assert.throws(
    () => loadConfig(env),
    (err: unknown) => {
      assert.ok(err instanceof BootError, `expected a BootError, got ${String(err)}`);
      message = err.message;
      assert.ok(!message.includes('\n'), `one line: ${message}`);
      for (const p of parts) assert.ok(message.includes(p), `"${message}" should include ${JSON.stringify(p)}`);
      return true;
    },
  );
  return message;
}

test('config/default.json has a default for every key, and they load as they are', () => {
  const defaults = JSON.parse(readFileSync(DEFAULTS_FILE, 'utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(defaults).sort(), [...CONFIG_KEYS].sort());
  const c = loadConfig({});
  assert.equal(c.amqp.url, defaults.AMQP_URL);
  assert.equal(c.inputQueue, 'scoring.requests');
  assert.equal(c.replyQueue, 'scoring.replies');
  assert.equal(c.queueType, 'quorum');
  assert.equal(c.modelDir, 'models');
  assert.equal(c.entryScript, '');
  assert.equal(c.prefetch, defaults.PREFETCH);
  assert.equal(c.maxBatchSize, defaults.MAX_BATCH_SIZE);
  assert.equal(c.maxMessageBytes, defaults.MAX_MESSAGE_BYTES);
  assert.match(c.amqp.connectionName, /^scorer@.+:\d+$/, 'a connection name even when CONNECTION_NAME is unset');
});

test('environment variables override the defaults, numbers coerced from strings', () => {
  const c = loadConfig({
    AMQP_URL: 'amqps://user:pw@broker.example:5671/vh',
    INPUT_QUEUE: 'in',
    REPLY_QUEUE: 'out',
    QUEUE_TYPE: 'classic',
    PREFETCH: '100',
    CONCURRENCY: '4',
    MAX_BATCH_SIZE: '1',
    MAX_BATCH_DELAY_MS: '0',
    HTTP_PORT: '0',
    LOG_LEVEL: 'debug',
    CONNECTION_NAME: 'scorer-7',
    ORT_GRAPH_OPTIMIZATION: 'basic',
    HEAP_GROWING_PERCENT: '0',
  });
  assert.equal(c.amqp.url, 'amqps://user:pw@broker.example:5671/vh');
  assert.equal(c.inputQueue, 'in');
  assert.equal(c.replyQueue, 'out');
  assert.equal(c.queueType, 'classic');
  assert.equal(c.prefetch, 100);
  assert.equal(c.concurrency, 4);
  assert.equal(c.maxBatchSize, 1);
  assert.equal(c.maxBatchDelayMs, 0);
  assert.equal(c.httpPort, 0);
  assert.equal(c.logLevel, 'debug');
  assert.equal(c.amqp.connectionName, 'scorer-7');
  assert.equal(c.ort.graphOptimizationLevel, 'basic');
  assert.equal(c.heapGrowingPercent, 0);
});

test('variables that are not config keys are ignored', () => {
  assert.equal(loadConfig({ PATH: '/bin', prefetch: '3' }).prefetch, loadConfig({}).prefetch);
});

test('a number out of range names the key, the rule and the value', () => {
  assert.equal(refuses({ PREFETCH: '0' }), 'config PREFETCH: expected an integer from 1 to 65535, got "0"');
  refuses({ CONCURRENCY: '65' }, 'CONCURRENCY', 'from 1 to 64', '"65"');
  refuses({ HTTP_PORT: '70000' }, 'HTTP_PORT', 'from 0 to 65535', '"70000"');
  refuses({ MAX_MESSAGE_BYTES: '10' }, 'MAX_MESSAGE_BYTES', 'from 64', '"10"');
  refuses({ HEAP_GROWING_PERCENT: '-1' }, 'HEAP_GROWING_PERCENT', 'from 0 to 1000', '"-1"');
});

test('a value that is not an integer names the key, the rule and the value', () => {
  refuses({ PREFETCH: 'abc' }, 'config PREFETCH', 'an integer', '"abc"');
  refuses({ MAX_BATCH_SIZE: '1.5' }, 'config MAX_BATCH_SIZE', 'an integer', '"1.5"');
});

test('a value outside a list names the key, the allowed values and the value', () => {
  refuses({ QUEUE_TYPE: 'lazy' }, 'config QUEUE_TYPE', '"quorum", "classic"', '"lazy"');
  refuses({ LOG_LEVEL: 'verbose' }, 'config LOG_LEVEL', '"info"', '"verbose"');
  refuses({ ORT_GRAPH_OPTIMIZATION: 'max' }, 'config ORT_GRAPH_OPTIMIZATION', '"all"', '"max"');
});

test('an empty variable counts as unset, as compose and Kubernetes write optional values', () => {
  const c = loadConfig({ RUN_TIMEOUT_MS: '', INPUT_QUEUE: '', HTTP_PORT: '' });
  assert.equal(c.runTimeoutMs, 30000);
  assert.equal(c.inputQueue, 'scoring.requests');
  assert.equal(c.httpPort, 8080);
});

test('a reconnect ceiling below the first delay is refused', () => {
  refuses(
    { RECONNECT_INITIAL_DELAY_MS: '500', RECONNECT_MAX_DELAY_MS: '100' },
    'RECONNECT_MAX_DELAY_MS',
    'RECONNECT_INITIAL_DELAY_MS (500)',
    '100',
  );
});

test('an isolate restart ceiling below the first delay is refused', () => {
  refuses(
    { ISOLATE_RESTART_INITIAL_DELAY_MS: '500', ISOLATE_RESTART_MAX_DELAY_MS: '100' },
    'ISOLATE_RESTART_MAX_DELAY_MS',
    'ISOLATE_RESTART_INITIAL_DELAY_MS (500)',
    '100',
  );
});

test('INLINE_SCORING and INLINE_MAX_BATCH_MS load as the scorer reads them; on with a user ENTRY_SCRIPT is refused with the way out', () => {
  assert.deepEqual(loadConfig({}).inline, { mode: 'auto', maxBatchMs: 10 });
  assert.deepEqual(loadConfig({ INLINE_SCORING: 'off', INLINE_MAX_BATCH_MS: '0.5' }).inline, {
    mode: 'off',
    maxBatchMs: 0.5,
  });
  refuses({ INLINE_SCORING: 'sometimes' }, 'INLINE_SCORING', 'sometimes');
  refuses({ INLINE_MAX_BATCH_MS: '-1' }, 'INLINE_MAX_BATCH_MS', '-1');
  refuses({ INLINE_SCORING: 'on', ENTRY_SCRIPT: 'score.ts' }, 'INLINE_SCORING', 'ENTRY_SCRIPT', 'auto or off');
  assert.equal(loadConfig({ INLINE_SCORING: 'auto', ENTRY_SCRIPT: 'score.ts' }).inline.mode, 'auto');
});

test('the backoffs are read from RECONNECT_* and ISOLATE_RESTART_*', () => {
  const c = loadConfig({
    RECONNECT_INITIAL_DELAY_MS: '7',
    RECONNECT_MAX_DELAY_MS: '70',
    ISOLATE_RESTART_INITIAL_DELAY_MS: '9',
    ISOLATE_RESTART_MAX_DELAY_MS: '90',
  });
  assert.deepEqual(c.amqp.reconnect, { initialMs: 7, maxMs: 70 });
  assert.deepEqual(c.isolateRestart, { initialMs: 9, maxMs: 90 });
});

test('a bad AMQP_URL is refused without showing its password', () => {
  const m = refuses({ AMQP_URL: 'http://bob:hunter2@broker:5672' }, 'config AMQP_URL', 'amqp://', 'bob:***@broker');
  assert.ok(!m.includes('hunter2'));
  for (const url of ['bob:hunter2@broker:5672', 'amqp:/bob:hunter2@broker', 'amqp://bob:hun ter2@broker']) {
    const message = refuses({ AMQP_URL: url }, 'config AMQP_URL');
    assert.ok(!message.includes('hunter2'), `password shown in: ${message}`);
  }
});

test('redactUrl hides the password and keeps the rest', () => {
  assert.equal(redactUrl('amqp://guest:guest@localhost:5672'), 'amqp://guest:***@localhost:5672');
  assert.equal(redactUrl('amqps://u:p%40ss@h/vh?heartbeat=5'), 'amqps://u:***@h/vh?heartbeat=5');
  assert.equal(redactUrl('amqp://localhost:5672/vh'), 'amqp://localhost:5672/vh');
  assert.equal(redactUrl('amqp://user@localhost'), 'amqp://user@localhost');
  assert.equal(
    redactUrl('amqp://bob:p@hunter2@broker/vh'),
    'amqp://bob:***@broker/vh',
    "an unescaped '@' in the password",
  );
  assert.equal(redactUrl('bob:hunter2@broker'), 'bob:***@broker', 'no scheme');
});

test('AMQP_URL takes several addresses separated by commas: url is the first, urls all of them in order', () => {
  const c = loadConfig({
    AMQP_URL: 'amqp://u:p@rabbit-1:5672/vh, amqp://u:p@rabbit-2:5672/vh,amqps://u:p@rabbit-3:5671/vh',
  });
  assert.deepEqual(c.amqp.urls, [
    'amqp://u:p@rabbit-1:5672/vh',
    'amqp://u:p@rabbit-2:5672/vh',
    'amqps://u:p@rabbit-3:5671/vh',
  ]);
  assert.equal(c.amqp.url, 'amqp://u:p@rabbit-1:5672/vh');
  assert.deepEqual(loadConfig({}).amqp.urls, [loadConfig({}).amqp.url], 'one address is a list of one');
});

test('a comma splits AMQP_URL only before another amqp:// or amqps:// URL, so a comma in a password stays', () => {
  assert.deepEqual(splitAmqpUrls('amqp://bob:a,b@h1,amqp://bob:c,d@h2'), ['amqp://bob:a,b@h1', 'amqp://bob:c,d@h2']);
  assert.deepEqual(splitAmqpUrls('amqp://h1'), ['amqp://h1']);
});

test('a bad address anywhere in the AMQP_URL list is refused, with every password hidden', () => {
  const m = refuses(
    { AMQP_URL: 'amqp://bob:hunter2@h1:5672,amqp://bob:hunter3@h 2:5672' },
    'config AMQP_URL',
    'several separated by commas',
    'bob:***@h1',
    'bob:***@h 2',
  );
  assert.ok(!m.includes('hunter2') && !m.includes('hunter3'), m);
  refuses({ AMQP_URL: 'amqp://h1:5672,http://h2:5672' }, 'config AMQP_URL');
});

test('redactUrl hides the password of every address in a list', () => {
  assert.equal(redactUrl('amqp://a:pw1@h1:5672, amqps://b:pw2@h2/vh'), 'amqp://a:***@h1:5672, amqps://b:***@h2/vh');
  assert.equal(redactUrl('amqp://a:p@w1@h1,amqp://h2'), 'amqp://a:***@h1,amqp://h2');
});

test('AZUREML_MODEL_DIR sets the model folder, so ported Azure ML scripts work unchanged', () => {
  assert.equal(loadConfig({ AZUREML_MODEL_DIR: '/var/azureml-app/model' }).modelDir, '/var/azureml-app/model');
});

test('MODEL_DIR wins over AZUREML_MODEL_DIR when both are set', () => {
  assert.equal(loadConfig({ AZUREML_MODEL_DIR: '/azure', MODEL_DIR: '/ours' }).modelDir, '/ours');
  assert.equal(loadConfig({ MODEL_DIR: '/ours' }).modelDir, '/ours');
});

test('AMQP_URL_FILE supplies the broker URL from a secret file, trailing newline trimmed', () => {
  const file = join(dir, 'amqp-url');
  writeFileSync(file, 'amqp://scorer:from-file@rabbit:5672/prod\n');
  const c = loadConfig({ AMQP_URL_FILE: file, AMQP_URL: 'amqp://ignored:x@elsewhere' });
  assert.equal(c.amqp.url, 'amqp://scorer:from-file@rabbit:5672/prod', 'the file wins over AMQP_URL');
});

test('a missing AMQP_URL_FILE is named in the error', () => {
  const missing = join(dir, 'no-such-secret');
  refuses({ AMQP_URL_FILE: missing }, 'config AMQP_URL_FILE', missing, 'ENOENT');
});

test('a bad URL in AMQP_URL_FILE is refused without showing its password', () => {
  const file = join(dir, 'bad-url');
  writeFileSync(file, 'rabbit://scorer:s3cret@rabbit\n');
  const m = refuses({ AMQP_URL_FILE: file }, 'config AMQP_URL');
  assert.ok(!m.includes('s3cret'), m);
});

test('the config is frozen, nested objects included', () => {
  const c = loadConfig({});
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.amqp));
  assert.ok(Object.isFrozen(c.ort));
  assert.throws(() => ((c as { prefetch: number }).prefetch = 1), TypeError);
  assert.throws(() => ((c.amqp as { url: string }).url = 'amqp://x'), TypeError);
});

test('a defaults file can be given, and is validated like the environment', () => {
  const file = join(dir, 'defaults.json');
  const defaults = JSON.parse(readFileSync(DEFAULTS_FILE, 'utf8')) as Record<string, unknown>;
  writeFileSync(file, JSON.stringify({ ...defaults, PREFETCH: 7 }));
  assert.equal(loadConfig({}, file).prefetch, 7);
  writeFileSync(file, JSON.stringify({ ...defaults, PREFETCH: -1 }));
  assert.throws(() => loadConfig({}, file), /config PREFETCH: expected an integer from 1 to 65535, got -1/);
});

test('IMAGE_* settings load as numbers; a bad one stops boot naming the key, the rule and the value', () => {
  const d = loadConfig({}).image;
  assert.deepEqual(d, {
    resize: 'fill',
    channelOrder: 'rgb',
    layout: 'auto',
    scale: 1 / 255,
    mean: [0],
    std: [1],
    padValue: 0,
    maxInputPixels: 40_000_000,
  });
  const c = loadConfig({
    IMAGE_SIZE: '640x480',
    IMAGE_SCALE: '0.5',
    IMAGE_MEAN: '0.485,0.456,0.406',
    IMAGE_STD: '0.229,0.224,0.225',
    IMAGE_CHANNEL_ORDER: 'bgr',
    IMAGE_RESIZE: 'contain',
    IMAGE_LAYOUT: 'nhwc',
  }).image;
  assert.deepEqual(c.size, { width: 640, height: 480 });
  assert.equal(c.scale, 0.5);
  assert.deepEqual(c.mean, [0.485, 0.456, 0.406]);
  assert.equal(c.channelOrder, 'bgr');
  refuses({ IMAGE_SIZE: '640' }, 'config IMAGE_SIZE: expected WIDTHxHEIGHT', '"640"');
  refuses({ IMAGE_SCALE: '-1' }, 'config IMAGE_SCALE: expected a positive number or fraction', '"-1"');
  refuses({ IMAGE_SCALE: '1/0' }, 'config IMAGE_SCALE', '"1/0"');
  refuses({ IMAGE_MEAN: '0.5;0.5' }, 'config IMAGE_MEAN: expected one number, or one per channel', '"0.5;0.5"');
  refuses({ IMAGE_STD: '1,0,1' }, 'config IMAGE_STD: expected non-zero numbers', '"1,0,1"');
  refuses({ IMAGE_RESIZE: 'stretch' }, 'config IMAGE_RESIZE: expected one of "fill", "cover", "contain"', '"stretch"');
});

test('the issue-17 keys: deadline, answered record, priorities and tracing, defaults off', () => {
  const c = loadConfig({});
  assert.equal(c.deadlineMs, 0);
  assert.deepEqual(c.answeredRecord, { maxEntries: 100_000, maxAgeMs: 600_000 });
  assert.equal(c.maxPriority, 0);
  assert.equal(c.tracing.exporter, 'none');
  const set = loadConfig({
    DEADLINE_MS: '2500',
    ANSWERED_RECORD_MAX: '10',
    ANSWERED_RECORD_MAX_AGE_MS: '0',
    MAX_PRIORITY: '10',
    OTEL_TRACES_EXPORTER: 'console',
  });
  assert.equal(set.deadlineMs, 2500);
  assert.deepEqual(set.answeredRecord, { maxEntries: 10, maxAgeMs: 0 });
  assert.equal(set.maxPriority, 10);
  assert.equal(set.tracing.exporter, 'console');
  refuses({ MAX_PRIORITY: '256' }, 'config MAX_PRIORITY: expected an integer from 0 to 255, got "256"');
  refuses({ DEADLINE_MS: '-1' }, 'config DEADLINE_MS: expected an integer from 0 to 604800000, got "-1"');
  refuses({ OTEL_TRACES_EXPORTER: 'jaeger' }, 'config OTEL_TRACES_EXPORTER: expected one of', '"otlp"', 'got "jaeger"');
});

test('a file a setting names is read whole, or refused with the setting and the errno', () => {
  const dir = mkdtempSync(join(tmpdir(), 'config-file-'));
  try {
    writeFileSync(join(dir, 'ca.pem'), 'PEM\n');
    assert.equal(readConfigFile('AMQP_CA_FILE', join(dir, 'ca.pem')).toString(), 'PEM\n');
    assert.throws(
      () => readConfigFile('AMQP_CA_FILE', join(dir, 'nope.pem')),
      (e: Error) =>
        e instanceof BootError && e.message === `config AMQP_CA_FILE: cannot read ${join(dir, 'nope.pem')} (ENOENT)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
