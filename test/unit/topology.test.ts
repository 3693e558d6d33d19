import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BootError } from '../../src/errors.js';
import { explainPreconditionFailed, topologyFor } from '../../src/broker/topology.js';

const base = { inputQueue: 'scoring.requests', replyQueue: 'scoring.replies', deliveryLimit: 3 };

test('a quorum input queue gets a delivery limit and an at-least-once dead-letter route to <input>.dead', () => {
  const t = topologyFor({ ...base, queueType: 'quorum' });
  assert.equal(t.inputQueue, 'scoring.requests');
  assert.equal(t.replyQueue, 'scoring.replies');
  assert.equal(t.deadQueue, 'scoring.requests.dead');
  assert.equal(t.queueType, 'quorum');
  assert.deepEqual(t.inputArguments, {
    'x-queue-type': 'quorum',
    'x-delivery-limit': 3,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': 'scoring.requests.dead',
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  });
});

test('a classic input queue gets only the dead-letter route: no queue type, no delivery limit', () => {
  const t = topologyFor({ ...base, queueType: 'classic', deliveryLimit: 9 });
  assert.equal(t.queueType, 'classic');
  assert.deepEqual(t.inputArguments, {
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': 'scoring.requests.dead',
  });
});

test('DELIVERY_LIMIT reaches x-delivery-limit', () => {
  assert.equal(topologyFor({ ...base, queueType: 'quorum', deliveryLimit: 10 }).inputArguments['x-delivery-limit'], 10);
});

/** As amqplib reports a channel closed by RabbitMQ 3.10.8, the broker's text inside. */
const amqplibError = (brokerText: string) =>
  `Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "PRECONDITION_FAILED - ${brokerText}"`;

function explains(brokerText: string, ...parts: string[]): string {
  const err = explainPreconditionFailed('q', amqplibError(brokerText));
  assert.ok(err instanceof BootError);
  assert.ok(!err.message.includes('\n'), 'one line');
  for (const p of parts) assert.ok(err.message.includes(p), `"${err.message}" should include ${JSON.stringify(p)}`);
  return err.message;
}

// The texts below were read from RabbitMQ 3.10.8 by declaring a queue twice with different arguments.
test('a classic queue where a quorum one is declared: names x-queue-type, both values and QUEUE_TYPE', () => {
  const m = explains(
    "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current is none",
  );
  assert.equal(
    m,
    "queue 'q' exists with x-queue-type = none, but this consumer declares quorum: set QUEUE_TYPE to match the queue, or delete the queue so it is declared anew",
  );
});

test('a quorum queue where a classic one is declared', () => {
  explains(
    "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received 'classic' but current is 'quorum'",
    'x-queue-type = quorum',
    'declares classic',
    'QUEUE_TYPE',
  );
  explains(
    "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received none but current is the value 'quorum' of type 'longstr'",
    'x-queue-type = quorum',
    'declares none',
    'QUEUE_TYPE',
  );
});

test('another delivery limit: names x-delivery-limit, both values and DELIVERY_LIMIT', () => {
  explains(
    "inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received '5' but current is '3'",
    'x-delivery-limit = 3',
    'declares 5',
    'set DELIVERY_LIMIT',
  );
  explains(
    "inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received the value '5' of type 'byte' but current is none",
    'x-delivery-limit = none',
    'declares 5',
  );
  explains(
    "inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received none but current is the value '3' of type 'byte'",
    'x-delivery-limit = 3',
    'declares none',
  );
});

test('the "current value is" wording, with types, is read too', () => {
  explains(
    "inequivalent arg 'x-queue-type' for queue 'q' in vhost '/': received the value 'quorum' of type 'longstr' but current value is none",
    'x-queue-type = none',
    'declares quorum',
  );
  explains(
    "inequivalent arg 'x-delivery-limit' for queue 'q' in vhost '/': received the value '5' of type 'signedint' but current value is '3' of type 'signedint'",
    'x-delivery-limit = 3',
    'declares 5',
    'DELIVERY_LIMIT',
  );
});

test('an argument with no setting of ours says to delete the queue', () => {
  const m = explains(
    "inequivalent arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': received 'q.dead' but current is 'other.dead'",
    'x-dead-letter-routing-key = other.dead',
    'declares q.dead',
  );
  assert.ok(m.endsWith(': delete the queue so it is declared anew'));
});

test('a classic queue declared without arguments: the dead-letter exchange is named, the empty default exchange shown as quotes', () => {
  // What 3.10.8 reports first when a plain classic queue meets this consumer's quorum declaration.
  const m = explains(
    "inequivalent arg 'x-dead-letter-exchange' for queue 'q' in vhost '/': received the value '' of type 'longstr' but current is none",
  );
  assert.equal(
    m,
    "queue 'q' exists with x-dead-letter-exchange = none, but this consumer declares '': delete the queue so it is declared anew",
  );
});

test('a vhost or queue name with odd characters does not confuse the reading', () => {
  const err = explainPreconditionFailed(
    'a.b-c',
    amqplibError(
      "inequivalent arg 'x-queue-type' for queue 'a.b-c' in vhost 'prod:eu': received 'classic' but current is 'quorum'",
    ),
  );
  assert.match(err.message, /^queue 'a\.b-c' exists with x-queue-type = quorum, but this consumer declares classic/);
});

test('broker text it cannot read is passed on whole, on one line', () => {
  const text = amqplibError(
    "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined",
  );
  const err = explainPreconditionFailed('q', text);
  assert.equal(err.message, `queue 'q' exists with other settings than this consumer declares: ${text}`);
});

test('the reply queue is declared plain durable, as clients following the tutorials declare it; the dead-letter queue takes the input queue type', () => {
  const t = topologyFor({ inputQueue: 'in', replyQueue: 'out', queueType: 'quorum', deliveryLimit: 3 });
  assert.deepEqual(t.argumentsOf('out'), {});
  assert.deepEqual(t.argumentsOf('in.dead'), { 'x-queue-type': 'quorum' });
  assert.equal(t.argumentsOf('in'), t.inputArguments);
});

test('MAX_PRIORITY makes a classic input queue a priority queue (x-max-priority)', () => {
  const t = topologyFor({ ...base, queueType: 'classic', maxPriority: 5 });
  assert.equal(t.inputArguments['x-max-priority'], 5);
  assert.equal(t.argumentsOf(t.deadQueue)['x-max-priority'], undefined, 'the dead queue is not a priority queue');
});

test('a quorum input queue gets no x-max-priority, whatever MAX_PRIORITY says (RabbitMQ 4 quorum queues take priorities without it; 3.x refuses it)', () => {
  assert.equal(
    topologyFor({ ...base, queueType: 'quorum', maxPriority: 5 }).inputArguments['x-max-priority'],
    undefined,
  );
});

test('MAX_PRIORITY 0 (the default) declares no priorities', () => {
  assert.equal(
    topologyFor({ ...base, queueType: 'classic', maxPriority: 0 }).inputArguments['x-max-priority'],
    undefined,
  );
  assert.equal(topologyFor({ ...base, queueType: 'classic' }).inputArguments['x-max-priority'], undefined);
});

test('another x-max-priority: names MAX_PRIORITY', () => {
  explains(
    "inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received the value '5' of type 'byte' but current is none",
    'x-max-priority = none',
    'declares 5',
    'set MAX_PRIORITY',
  );
});
