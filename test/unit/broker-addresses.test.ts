/** Several broker addresses under one recovering amqplib connection (src/broker/addresses.ts). */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { after, test } from 'node:test';
import * as amqp from 'amqplib';
import { BrokerAddresses, toConnectOptions } from '../../src/broker/addresses.js';

test('an address becomes amqplib object form: host, port, decoded credentials, vhost still escaped, heartbeat', () => {
  assert.deepEqual(toConnectOptions('amqps://bob:p%40ss@rabbit-1:5671/prod%2Fa?heartbeat=5&frameMax=8192', 30), {
    protocol: 'amqps',
    hostname: 'rabbit-1',
    port: 5671,
    username: 'bob',
    password: 'p@ss',
    vhost: 'prod%2Fa',
    heartbeat: 5,
    frameMax: 8192,
  });
});

test('an address without a port, credentials or vhost gets the protocol port, amqplib guest/guest, the default vhost, AMQP_HEARTBEAT_S', () => {
  const o = toConnectOptions('amqp://[::1]', 30);
  assert.deepEqual(o, { protocol: 'amqp', hostname: '::1', port: 5672, vhost: '', heartbeat: 30 });
  assert.equal(toConnectOptions('amqps://h', 30).port, 5671);
});

test('the connect options always show the current address, and next() goes round the list', () => {
  const a = new BrokerAddresses(['amqp://h1:1', 'amqp://u:p@h2:2', 'amqp://h3:3'], 10, 0);
  const live = a.connectOptions();
  const seen: string[] = [];
  for (let i = 0; i < 4; i++) {
    seen.push(`${live.hostname}:${live.port}:${live.username ?? '-'}`);
    a.next();
  }
  assert.deepEqual(seen, ['h1:1:-', 'h2:2:u', 'h3:3:-', 'h1:1:-']);
  assert.equal(a.currentUrl, 'amqp://u:p@h2:2');
});

test('the first address tried is picked by start, random by default within the list', () => {
  assert.equal(new BrokerAddresses(['amqp://h1', 'amqp://h2'], 10, 1).currentUrl, 'amqp://h2');
  for (let i = 0; i < 20; i++)
    assert.ok(['amqp://h1', 'amqp://h2'].includes(new BrokerAddresses(['amqp://h1', 'amqp://h2'], 10).currentUrl));
});

const servers: Server[] = [];
after(() => Promise.all(servers.map((s) => new Promise((r) => s.close(r)))));

/** A TCP endpoint that takes each connection and hangs up at once: an address that fails every attempt. */
async function refusingEndpoint(): Promise<{ port: number; attempts: () => number }> {
  let attempts = 0;
  const server = createServer((s) => {
    attempts++;
    s.destroy();
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, attempts: () => attempts };
}

test("amqplib's recovery reads the connect options again on every attempt, so each retry goes to the next address", {
  timeout: 20_000,
}, async () => {
  const one = await refusingEndpoint();
  const two = await refusingEndpoint();
  const addresses = new BrokerAddresses([`amqp://127.0.0.1:${one.port}`, `amqp://127.0.0.1:${two.port}`], 0, 0);
  const order: number[] = [];
  const conn = await amqp.connect(addresses.connectOptions(), {
    recovery: { initialDelay: 10, maxDelay: 20, jitter: 0, maxRetries: 5, waitForConnect: false },
  });
  conn.on('error', () => {});
  conn.on('connect-failed', () => {
    order.push(addresses.currentUrl.endsWith(`:${one.port}`) ? 1 : 2);
    addresses.next();
  });
  await assert.rejects(conn.waitForConnect());
  assert.deepEqual(order, [1, 2, 1, 2, 1, 2], 'attempts alternate between the two addresses');
  assert.equal(one.attempts(), 3);
  assert.equal(two.attempts(), 3);
});
