/**
 * Payloads are never logged (README "Logs"): at LOG_LEVEL=trace, through ok replies, error replies of
 * every kind, a returned reply and a shutdown, no part of any message body shows in the output.
 * Each body carries a marker no other text contains, so finding one in the output means it leaked.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { TestClient, uniqueName } from '../support/broker.js';
import { TestConsumers } from '../support/consumer-process.js';

const consumers = new TestConsumers();
let client: TestClient;

before(async () => {
  client = await TestClient.connect();
});

after(async () => {
  await consumers.close(client, 'SIGKILL');
  await client.close();
});

const marker = (n: number) => `Pl${n}${randomBytes(6).toString('hex')}Qz`;
const ROW = [5.1, 3.5, 1.4, 0.2];

/** Bodies whose replies quote no part of them: every kind of outcome except an error that names its input. */
function quietBodies(): Array<{ id: string; marker: string; body: string; status: 'ok' | 'error' }> {
  const m = Array.from({ length: 6 }, (_, i) => marker(i));
  return [
    { id: 'ok-extra-key', marker: m[0], body: JSON.stringify({ data: [ROW], note: m[0] }), status: 'ok' },
    {
      id: 'ok-header-like',
      marker: m[1],
      body: JSON.stringify({ data: { float_input: [ROW] }, [m[1]]: true }),
      status: 'ok',
    },
    { id: 'no-data', marker: m[2], body: JSON.stringify({ dat: m[2] }), status: 'error' },
    { id: 'bad-type', marker: m[3], body: JSON.stringify({ data: [[m[3], 1, 2, 3]] }), status: 'error' },
    { id: 'not-object', marker: m[4], body: JSON.stringify([m[4]]), status: 'error' },
    { id: 'bad-shape', marker: m[5], body: JSON.stringify({ data: [[1, 2, 3]], pad: m[5] }), status: 'error' },
  ];
}

test('at LOG_LEVEL=trace no message body shows in the logs: ok and error replies, a returned reply, the shutdown', {
  timeout: 60_000,
}, async () => {
  const q = consumers.queuesFor('logs');
  const c = consumers.startOn(q, { LOG_LEVEL: 'trace' });
  await c.waitFor('"msg":"consuming"');
  const items = quietBodies();
  const got = await client.ask(
    q.input,
    q.replies,
    items.map(({ id, body }) => ({ id, body })),
  );
  for (const { id, status } of items) assert.equal(got.get(id)?.status, status, id);

  // A reply returned unroutable is logged (with its correlation id): its body must not be.
  const returned = marker(9);
  await client.publish(
    q.input,
    { data: [ROW], note: returned },
    { correlationId: 'returned', replyTo: uniqueName('logs.gone') },
  );
  await c.waitFor('reply returned unroutable', 15_000);
  assert.equal(await c.stop('SIGTERM'), 0);
  await c.closed;

  const out = c.output();
  // The log did speak of these messages (by correlation id), so an absent marker means it was left out.
  for (const { id, status } of items)
    if (status === 'error') assert.ok(out.includes(`"correlationId":"${id}"`), `the error reply to ${id} is logged`);
  for (const m of [...items.map((i) => i.marker), returned])
    assert.ok(!out.includes(m), `marker ${m} from a message body is in the output`);
});

// The error reply's text goes to the log with it, and some texts quote the input: the parser's excerpt
// of a body that is not JSON, an unknown input's name. The reply may quote the sender's own data back to
// the sender; the log line (read by operators, kept for weeks) should carry only the code.
test('an error reply whose text quotes the body (not JSON, an unknown input name) keeps the quote out of the log', async () => {
  const q = consumers.queuesFor('logs.quoted');
  const c = consumers.startOn(q, { LOG_LEVEL: 'info' });
  await c.waitFor('"msg":"consuming"');
  const notJson = marker(20);
  const unknownInput = marker(21);
  const got = await client.ask(q.input, q.replies, [
    { id: 'not-json', body: `${notJson} is not JSON` },
    { id: 'unknown-input', body: JSON.stringify({ data: { [unknownInput]: [ROW] } }) },
  ]);
  assert.equal(got.get('not-json')?.status, 'error');
  assert.equal(got.get('unknown-input')?.status, 'error');
  await c.waitFor('"correlationId":"unknown-input"', 10_000);
  const out = c.output();
  for (const m of [notJson, unknownInput])
    assert.ok(!out.includes(m), `marker ${m} from a message body is in the output`);
});
