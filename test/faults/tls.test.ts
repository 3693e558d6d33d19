/**
 * amqps:// with a CA, a client certificate and its key read from files. The shared broker has no
 * TLS listener, so this runs on a node of its own whose listener requires a client certificate
 * (verify_peer, fail_if_no_peer_cert). The certificates are made here with openssl.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers, bootFailure, type ConsumerProcess } from '../support/consumer-process.js';
import { startPrivateBroker, type PrivateBroker } from '../support/private-broker.js';

const run = promisify(execFile);
const certs = mkdtempSync(join(tmpdir(), 'scorer-tls-'));
const file = (name: string) => join(certs, name);
let broker: PrivateBroker;
let client: TestClient;
const consumers = new TestConsumers();

/** A CA, and a server and a client certificate it signed (EC P-256: quick to make). */
async function makeCertificates(): Promise<void> {
  const openssl = (...args: string[]) => run('openssl', args, { cwd: certs });
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=scorer test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  const sign = async (name: string, subject: string, extensions: string) => {
    writeFileSync(file(`${name}.ext`), extensions);
    await openssl('req', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
    await openssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  await sign('server', '/CN=localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await sign('client', '/CN=scorer', 'extendedKeyUsage=clientAuth\n');
  // A CA that signed nothing here: trusting only it, the consumer must refuse the broker's certificate.
  await openssl(
    'req',
    '-x509',
    ...newKey,
    '-keyout',
    'other-ca.key',
    '-out',
    'other-ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=another CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
}

before(async () => {
  await makeCertificates();
  broker = await startPrivateBroker({
    tls: { caFile: file('ca.pem'), certFile: file('server.pem'), keyFile: file('server.key') },
  });
  // The test's own side uses the plain listener: what is under test is the consumer's TLS.
  client = await TestClient.connect(broker.url);
});

after(async () => {
  await consumers.stopAll('SIGKILL');
  await client?.close();
  await broker?.stop();
  rmSync(certs, { recursive: true, force: true });
});

function consumerWith(env: Record<string, string>): ConsumerProcess {
  return consumers.start({ AMQP_URL: broker.tlsUrl!, CONNECT_RETRIES_AT_BOOT: '0', ...env });
}

test('over amqps:// with the CA, client certificate and key from AMQP_CA_FILE, AMQP_CERT_FILE, AMQP_KEY_FILE, the consumer answers', {
  timeout: 60_000,
}, async () => {
  const input = uniqueName('tls');
  const replies = uniqueName('tls.replies');
  const connectionName = uniqueName('tls.conn');
  const c = consumerWith({
    INPUT_QUEUE: input,
    REPLY_QUEUE: replies,
    CONNECTION_NAME: connectionName,
    AMQP_CA_FILE: file('ca.pem'),
    AMQP_CERT_FILE: file('client.pem'),
    AMQP_KEY_FILE: file('client.key'),
  });
  await c.waitFor('"msg":"consuming"');
  await client.publish(input, { data: [[6.3, 3.3, 6.0, 2.5]] }, { correlationId: 'over-tls' });
  const got = await client.collect(replies, (rs) => rs.length === 1);
  assert.equal(got[0]?.correlationId, 'over-tls');
  assert.equal(got[0].status, 'ok');
  assert.deepEqual((got[0].json() as { label: number[] }).label, [2]);

  // Both of its connections came in over TLS, with the client certificate.
  const listing = await broker.ctl('list_connections', 'client_properties', 'ssl', 'peer_cert_subject', '-q');
  const ours = listing.split('\n').filter((l) => l.includes(`"connection_name","${connectionName}/`));
  assert.equal(ours.length, 2, 'the consume and publish connections');
  for (const line of ours) {
    assert.match(line, /\ttrue\t/, 'over TLS');
    assert.match(line, /CN=scorer/, 'with the client certificate');
  }
  assert.equal(await c.stop(), 0);
});

test('without a client certificate the broker refuses the connection and boot fails in one line', {
  timeout: 60_000,
}, async (t) => {
  const c = consumerWith({
    INPUT_QUEUE: uniqueName('tls.nocert'),
    REPLY_QUEUE: uniqueName('tls.nocert.replies'),
    AMQP_CA_FILE: file('ca.pem'),
  });
  const line = await bootFailure(c);
  t.diagnostic(line);
  // Refused by the broker's TLS listener for want of a certificate, not a port that did not answer.
  assert.match(
    line,
    /^scorer: boot failed: broker amqps:\/\/guest:\*\*\*@localhost:\d+ unreachable: .*alert certificate required/,
  );
});

test('a broker certificate that AMQP_CA_FILE does not vouch for is refused: boot fails in one line naming the verification failure', {
  timeout: 60_000,
}, async (t) => {
  const c = consumerWith({
    INPUT_QUEUE: uniqueName('tls.otherca'),
    REPLY_QUEUE: uniqueName('tls.otherca.replies'),
    AMQP_CA_FILE: file('other-ca.pem'),
    AMQP_CERT_FILE: file('client.pem'),
    AMQP_KEY_FILE: file('client.key'),
  });
  const line = await bootFailure(c);
  t.diagnostic(line);
  assert.match(
    line,
    /^scorer: boot failed: broker amqps:\/\/guest:\*\*\*@localhost:\d+ unreachable: .*(unable to get local issuer certificate|unable to verify|self[- ]signed)/,
  );
});

test('a certificate file that does not exist stops boot with one line naming AMQP_CERT_FILE and the path', {
  timeout: 60_000,
}, async (t) => {
  const missing = file('no-such-client.pem');
  const c = consumerWith({
    INPUT_QUEUE: uniqueName('tls.missing'),
    REPLY_QUEUE: uniqueName('tls.missing.replies'),
    AMQP_CA_FILE: file('ca.pem'),
    AMQP_CERT_FILE: missing,
    AMQP_KEY_FILE: file('client.key'),
  });
  const line = await bootFailure(c);
  t.diagnostic(line);
  assert.match(line, /^scorer: boot failed: config AMQP_CERT_FILE: /, 'names the key, not an unreachable broker');
  assert.ok(line.includes(missing), line);
  assert.ok(line.includes('ENOENT'), line);
});
