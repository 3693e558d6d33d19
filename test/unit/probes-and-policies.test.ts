import assert from 'node:assert/strict';
import { test } from 'node:test';
import { foreignArgument } from '../../src/broker/reply-queue-policy.js';
import { loadConfig, settingWarnings } from '../../src/config.js';
import { LivenessWatch } from '../../src/http.js';

const TTL = `PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'r' in vhost '/': received none but current is the value '1000' of type 'short'`;

test('a reply queue argument that drops confirmed replies is named, with how it loses them', () => {
  assert.deepEqual(foreignArgument(TTL), {
    argument: 'x-message-ttl',
    value: '1000',
    loss: 'replies not read within the TTL are dropped',
  });
  assert.equal(
    foreignArgument(
      TTL.replace('x-message-ttl', 'x-overflow').replace("'1000' of type 'short'", "'drop-head' of type 'longstr'"),
    )?.loss,
    'drop-head drops the oldest replies when full',
  );
  assert.equal(
    foreignArgument(
      TTL.replace('x-message-ttl', 'x-overflow').replace(
        "'1000' of type 'short'",
        "'reject-publish' of type 'longstr'",
      ),
    )?.loss,
    undefined,
    'reject-publish nacks: not a silent loss',
  );
  assert.equal(foreignArgument(TTL.replace('x-message-ttl', 'x-queue-type'))?.loss, undefined);
  assert.equal(foreignArgument('something else'), undefined);
});

test('liveness fails only once the consumer has been unwell for longer than the timeout, and recovers at once', () => {
  let now = 0;
  let well = true;
  const w = new LivenessWatch(
    () => well,
    1000,
    1_000_000,
    () => now,
  );
  try {
    assert.equal(w.alive, true);
    well = false;
    w.sample();
    now = 1000;
    w.sample();
    assert.equal(w.alive, true, 'at the bound: still alive');
    now = 1001;
    assert.equal(w.alive, false);
    well = true;
    w.sample();
    assert.equal(w.alive, true);
    assert.equal(w.unwellForMs, 0);
  } finally {
    w.stop();
  }
});

test("boot warns when PREFETCH x RUN_TIMEOUT_MS / CONCURRENCY can reach the broker's consumer_timeout", () => {
  // The defaults can: 1024 / 2 runs of up to 30 s is 4.3 h, past the broker's 30 minutes. Said at every boot, on purpose.
  assert.equal(settingWarnings(loadConfig({})).length, 1);
  assert.deepEqual(settingWarnings(loadConfig({ PREFETCH: '64', RUN_TIMEOUT_MS: '1000' })), [], 'clear of it');
  const risky = loadConfig({ PREFETCH: '1024', RUN_TIMEOUT_MS: '3600', CONCURRENCY: '2' });
  const [line] = settingWarnings(risky);
  assert.match(
    line,
    /PREFETCH \(1024\) x RUN_TIMEOUT_MS \(3600\) \/ CONCURRENCY \(2\) = 1843200 ms can reach the broker's consumer_timeout \(BROKER_CONSUMER_TIMEOUT_MS 1800000\)/,
  );
  assert.deepEqual(
    settingWarnings(loadConfig({ PREFETCH: '1024', RUN_TIMEOUT_MS: '3600', BROKER_CONSUMER_TIMEOUT_MS: '0' })),
    [],
    '0: the broker has none',
  );
});
