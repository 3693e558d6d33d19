/**
 * The broker URL as a secret file (AMQP_URL_FILE), the password in no log line or error whatever
 * happens, and the entry script taken from configuration only, never from a message.
 *
 * A user of its own on the shared broker, with a password no other text would contain, so finding
 * the password anywhere in the consumer's output means it leaked.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers, bootFailure, type ConsumerProcess } from '../support/consumer-process.js';
import { cutConnections } from '../support/faults.js';

const run = promisify(execFile);
const rabbitmqctl = (...args: string[]) => run('rabbitmqctl', args, { timeout: 30_000 });

const user = `scorer-secret-${process.pid}-${randomBytes(3).toString('hex')}`;
const password = `Pw${randomBytes(12).toString('hex')}Zq`;
const dir = mkdtempSync(join(tmpdir(), 'scorer-secret-'));
const consumers = new TestConsumers();
let client: TestClient;

before(async () => {
  await rabbitmqctl('add_user', user, password);
  await rabbitmqctl('set_permissions', '-p', '/', user, '.*', '.*', '.*');
  client = await TestClient.connect();
});

after(async () => {
  await consumers.close(client, 'SIGKILL');
  await client.close();
  await rabbitmqctl('delete_user', user).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

function secretFile(name: string, content: string): string {
  const path = join(dir, name);
  writeFileSync(path, `${content}\n`, { mode: 0o600 });
  return path;
}

function consumer(env: Record<string, string>): ConsumerProcess {
  // AMQP_URL points nowhere: only the secret file can get the consumer to the broker.
  return consumers.start({ AMQP_URL: 'amqp://nobody:nothing@127.0.0.1:1', LOG_LEVEL: 'debug', ...env });
}

test('with AMQP_URL_FILE the consumer logs in with the secret URL, and the password is in no output through boot, error replies, a connection cut and shutdown at LOG_LEVEL=debug', {
  timeout: 60_000,
}, async (t) => {
  const { input, replies } = consumers.queuesFor('secret');
  const connectionName = uniqueName('secret.conn');
  const c = consumer({
    AMQP_URL_FILE: secretFile('amqp-url', `amqp://${user}:${password}@localhost:5672`),
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    CONNECTION_NAME: connectionName,
  });
  await c.waitFor('"msg":"consuming"');

  const { stdout } = await rabbitmqctl('list_connections', 'user', 'client_properties', '-q');
  const ours = stdout.split('\n').filter((l) => l.includes(`"connection_name","${connectionName}/`));
  assert.equal(ours.length, 2, 'both connections are up');
  for (const line of ours) assert.ok(line.startsWith(`${user}\t`), `logged in as the secret file's user: ${line}`);

  // Good and bad inputs: error replies are logged, and must not drag the URL along.
  await client.publish(input, { data: [[5.1, 3.5, 1.4, 0.2]] }, { correlationId: 'ok-1' });
  await client.publish(input, 'not json', { correlationId: 'bad-json' });
  await client.publish(input, { nodata: true }, { correlationId: 'no-data' });
  await client.publish(input, { data: [[1, 2, 3]] }, { correlationId: 'bad-shape' });
  let got = await client.collect(replies, (rs) => rs.length === 4);
  assert.deepEqual(Object.fromEntries(got.map((r) => [r.correlationId, r.status])), {
    'ok-1': 'ok',
    'bad-json': 'error',
    'no-data': 'error',
    'bad-shape': 'error',
  });

  // Both connections cut by the broker: the reconnects log the broker URL again.
  const cut = await cutConnections(`${connectionName}/`, 'secret test cut');
  assert.equal(cut.length, 2);
  const deadline = Date.now() + 20_000;
  // The consume side's disconnect, whatever fields pino writes between its role and its error.
  while (!/"role":"consume",[^\n]*"msg":"broker disconnected"/.test(c.output()) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  while (c.output().split('"msg":"consuming"').length - 1 < 2 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  await client.publish(input, { data: [[7.0, 3.2, 4.7, 1.4]] }, { correlationId: 'ok-2' });
  got = await client.collect(replies, (rs) => rs.some((r) => r.correlationId === 'ok-2'));
  assert.equal(got.find((r) => r.correlationId === 'ok-2')?.status, 'ok', 'answers after the cut');

  assert.equal(await c.stop(), 0, 'a clean shutdown');
  const out = c.output();
  t.diagnostic(
    `${out.split('\n').length} output lines checked, among them "broker connected" ×${out.split('"msg":"broker connected"').length - 1}, "broker disconnected" ×${out.split('"msg":"broker disconnected"').length - 1}`,
  );
  assert.ok(out.includes(`amqp://${user}:***@localhost:5672`), 'the broker URL is logged, with the password masked');
  assert.ok(!out.includes(password), 'the password appears nowhere in stdout or stderr');
});

test('a wrong password in the secret file fails boot in one line that does not contain it', {
  timeout: 60_000,
}, async (t) => {
  const wrong = `Wrong${randomBytes(10).toString('hex')}Pw`;
  const c = consumer({
    AMQP_URL_FILE: secretFile('amqp-url-wrong', `amqp://${user}:${wrong}@localhost:5672`),
    INPUT_QUEUE: uniqueName('secret.wrong'),
    REPLY_QUEUE: uniqueName('secret.wrong.replies'),
    CONNECT_RETRIES_AT_BOOT: '1',
  });
  const line = await bootFailure(c);
  t.diagnostic(line);
  assert.match(line, /^scorer: boot failed: broker amqp:\/\/scorer-secret-[^:]+:\*\*\*@localhost:5672/);
  assert.match(line, /ACCESS.REFUSED/);
  assert.ok(!c.output().includes(wrong), 'the wrong password is nowhere in the output, retries included');
});

test('a secret file whose URL is not amqp:// is refused at boot with the password masked; a missing secret file names AMQP_URL_FILE', {
  timeout: 30_000,
}, async (t) => {
  const bad = consumer({ AMQP_URL_FILE: secretFile('http-url', `http://${user}:${password}@localhost:5672`) });
  const line = await bootFailure(bad);
  t.diagnostic(line);
  assert.match(line, /^scorer: boot failed: config AMQP_URL: /);
  assert.ok(!bad.output().includes(password), 'the password is masked');

  const missing = join(dir, 'no-such-secret');
  const gone = consumer({ AMQP_URL_FILE: missing });
  const line2 = await bootFailure(gone);
  t.diagnostic(line2);
  assert.equal(line2, `scorer: boot failed: config AMQP_URL_FILE: cannot read ${missing} (ENOENT)`);
});

test('the entry script comes only from configuration: a message naming one in its body or headers is just data, and the demo model answers it', {
  timeout: 60_000,
}, async () => {
  const { input, replies } = consumers.queuesFor('secret.entry');
  // A script that would leave a mark if anything loaded it.
  const marker = join(dir, 'evil-ran');
  const evil = join(dir, 'evil.ts');
  writeFileSync(
    evil,
    `import { writeFileSync } from 'node:fs';\nexport function init() { writeFileSync(${JSON.stringify(marker)}, 'init'); }\nexport function run() { writeFileSync(${JSON.stringify(marker)}, 'run'); return 'pwned'; }\n`,
  );

  const c = consumer({
    AMQP_URL: 'amqp://guest:guest@localhost:5672',
    LOG_LEVEL: 'info',
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
  });
  await c.waitFor('"msg":"consuming"');
  await client.publish(
    input,
    { data: [[5.1, 3.5, 1.4, 0.2]], entryScript: evil, ENTRY_SCRIPT: evil, MODEL_DIR: dir },
    {
      correlationId: 'names-a-script',
      headers: { ENTRY_SCRIPT: evil, 'entry-script': evil, 'x-entry-script': evil, MODEL_DIR: dir },
    },
  );
  const got = await client.collect(replies, (rs) => rs.length === 1);
  const reply = got[0];
  assert.equal(reply?.correlationId, 'names-a-script');
  assert.equal(reply.status, 'ok');
  assert.equal(reply.headers['x-model'], 'iris', 'the configured (built-in) model answered');
  assert.deepEqual((reply.json() as { label: number[] }).label, [0]);
  assert.ok(!existsSync(marker), 'the script named in the message never ran');
  assert.equal(await c.stop(), 0);
});
