/** The AsyncAPI document's structure, with the iris model's own schemas (read from models/iris.onnx). */
import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { buildAsyncApi } from '../../src/cli/asyncapi.js';
import { ERROR_CODES } from '../../src/errors.js';
import { PROJECT_ROOT } from '../../src/config.js';
import { dataSchema, resultSchema } from '../../src/onnx/schema.js';
import { loadModel } from '../../src/onnx/session.js';

// The document's JSON, walked by path.
// biome-ignore lint/suspicious/noExplicitAny: a walked JSON document; the assertions check its shape
type Json = Record<string, any>;
let doc: Json;

before(async () => {
  const model = await loadModel({
    modelDir: `${PROJECT_ROOT}models`,
    maxTensorElements: 1e6,
    ort: { intraOpNumThreads: 1, graphOptimizationLevel: 'all', allowSpinning: false },
  });
  doc = buildAsyncApi({
    url: 'amqp://user:secret@broker.example:5672/scoring',
    inputQueue: 'scoring.requests',
    replyQueue: 'scoring.replies',
    queueType: 'quorum',
    deliveryLimit: 3,
    modelName: model.name,
    inputSchema: dataSchema(model.inputs),
    outputSchema: resultSchema(model.outputs),
    version: '0.1.0',
  }) as Json;
});

test('the document is AsyncAPI 3.0.0 with the broker as its server and no credentials in it', () => {
  assert.equal(doc.asyncapi, '3.0.0');
  assert.equal(doc.info.version, '0.1.0');
  assert.match(doc.info.title, /iris/);
  assert.deepEqual(doc.servers.broker, {
    host: 'broker.example:5672',
    protocol: 'amqp',
    pathname: '/scoring',
    description: doc.servers.broker.description,
  });
  assert.doesNotMatch(JSON.stringify(doc), /secret/);
});

test('the channels are the input, reply and dead-letter queues, each a durable queue binding', () => {
  assert.equal(doc.channels.requests.address, 'scoring.requests');
  assert.equal(doc.channels.replies.address, 'scoring.replies');
  assert.equal(doc.channels.deadLetters.address, 'scoring.requests.dead');
  assert.equal(doc.channels.callerReplyTo.address, null);
  for (const name of ['requests', 'replies', 'deadLetters']) {
    assert.equal(doc.channels[name].bindings.amqp.is, 'queue');
    assert.equal(doc.channels[name].bindings.amqp.queue.durable, true);
    assert.equal(doc.channels[name].bindings.amqp.queue.vhost, 'scoring');
  }
});

test('the score operation receives requests and replies to replyTo, else the replies queue', () => {
  const score = doc.operations.score;
  assert.equal(score.action, 'receive');
  assert.equal(score.channel.$ref, '#/channels/requests');
  assert.equal(score.reply.channel.$ref, '#/channels/replies');
  assert.match(score.reply.address.location, /replyTo/);
  assert.equal(doc.operations.sendReply.action, 'send');
});

test('every $ref in the document points at something that exists', () => {
  const refs: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object')
      for (const [k, x] of Object.entries(v)) k === '$ref' ? refs.push(x as string) : walk(x);
  };
  walk(doc);
  assert.ok(refs.length > 10);
  for (const ref of refs) {
    const target = ref
      .slice(2)
      .split('/')
      .reduce<unknown>((o, key) => (o as Json | undefined)?.[key], doc);
    assert.ok(target !== undefined, `${ref} resolves`);
  }
});

test('an operation only names messages of its own channel', () => {
  for (const [name, op] of Object.entries(doc.operations as Json)) {
    for (const m of op.messages) assert.ok(m.$ref.startsWith(`${op.channel.$ref}/messages/`), `${name}: ${m.$ref}`);
  }
});

test('for iris, the data schema is an array of arrays of 4 numbers, and the result has label and probabilities', () => {
  const data = doc.components.messages.scoreRequest.payload.properties.data;
  assert.equal(data.type, 'array');
  assert.equal(data.minItems, 1);
  assert.deepEqual({ ...data.items }, { type: 'array', items: { type: 'number' }, minItems: 4, maxItems: 4 });
  assert.deepEqual(doc.components.messages.scoreRequest.payload.required, ['data']);
  const result = doc.components.messages.scoreResult.payload;
  assert.deepEqual(result.required, ['label', 'probabilities']);
  assert.deepEqual(
    result.properties.label.items.type,
    ['integer', 'string'],
    'int64: a number while exact, a decimal string beyond 2^53-1',
  );
});

test('the reply headers are x-status, x-model, x-scoring-ms, and on errors x-error-code with every code', () => {
  const ok = doc.components.messages.scoreResult.headers;
  assert.deepEqual(ok.required, ['x-status', 'x-model', 'x-scoring-ms']);
  assert.equal(ok.properties['x-status'].const, 'ok');
  const error = doc.components.messages.scoreError.headers;
  assert.equal(error.properties['x-status'].const, 'error');
  assert.deepEqual(error.properties['x-error-code'].enum, Object.keys(ERROR_CODES));
  assert.ok(error.properties['x-error-code'].enum.includes('SHAPE'));
  assert.equal(doc.components.messages.scoreError.payload.type, 'string');
  assert.equal(doc.components.messages.scoreRequest.correlationId.$ref, '#/components/correlationIds/request');
});

test('without a schema from the entry script, data and result are documented as any JSON', () => {
  const bare = buildAsyncApi({
    url: 'amqps://h',
    inputQueue: 'in',
    replyQueue: 'out',
    queueType: 'classic',
    deliveryLimit: 3,
    modelName: 'x',
    version: '1',
  }) as Json;
  assert.equal(bare.servers.broker.host, 'h:5671');
  assert.equal(bare.components.messages.scoreRequest.payload.properties.data.type, undefined);
  assert.ok(bare.components.messages.scoreResult.payload.description);
});

test('binary requests (.npy, safetensors, images) and binary results are documented with their content types and x-reply-content-type', () => {
  const m = doc.components.messages;
  assert.equal(m.scoreRequestNpy.contentType, 'application/x-npy');
  assert.equal(m.scoreRequestSafetensors.contentType, 'application/x-safetensors');
  assert.match(m.scoreRequestImage.summary, /image\/png, image\/jpeg or image\/webp/);
  assert.match(m.scoreRequestNpy.summary, /MAX_MESSAGE_BYTES.*MAX_TENSOR_ELEMENTS/);
  assert.equal(m.scoreRequestNpy.payload.format, 'binary');
  assert.deepEqual(m.scoreRequest.headers.properties['x-reply-content-type'].enum, [
    'application/json',
    'application/x-npy',
    'application/x-safetensors',
  ]);
  assert.ok(doc.channels.replies.messages.scoreResultBinary);
  assert.ok(doc.operations.score.messages.some((r: { $ref: string }) => r.$ref.endsWith('/scoreRequestImage')));
});

test('a request documents its deadline and trace headers, and the properties it reads: priority, timestamp, expiration', () => {
  const req = doc.components.messages.scoreRequest;
  for (const h of ['x-deadline', 'x-deadline-ms', 'traceparent', 'tracestate']) assert.ok(req.headers.properties[h], h);
  assert.match(req.description, /priority.*timestamp.*expiration/s);
  assert.match(req.description, /EXPIRED/);
});

test('replies may carry x-queue-wait-ms and the trace; error codes include EXPIRED and POISON, and POISON replies name the dead queue', () => {
  for (const m of ['scoreResult', 'scoreError']) {
    const h = doc.components.messages[m].headers;
    for (const name of ['x-queue-wait-ms', 'traceparent', 'tracestate']) {
      assert.ok(h.properties[name], `${m}: ${name}`);
      assert.ok(!h.required.includes(name), `${m}: ${name} is optional`);
    }
  }
  const error = doc.components.messages.scoreError.headers;
  for (const code of ['EXPIRED', 'POISON', 'BAD_DEADLINE'])
    assert.ok(error.properties['x-error-code'].enum.includes(code), code);
  assert.ok(error.properties['x-dead-letter-queue']);
  assert.match(doc.channels.deadLetters.description, /scorer dead-letters answer.*POISON/);
  assert.ok(doc.components.messages.deadLetteredRequest.headers.properties['x-poison-answered']);
});

test('the requests channel says how priorities work for its queue type', () => {
  assert.match(doc.channels.requests.description, /Priorities: none/);
  const classic = buildAsyncApi({
    url: 'amqp://h',
    inputQueue: 'in',
    replyQueue: 'out',
    queueType: 'classic',
    deliveryLimit: 3,
    maxPriority: 5,
    modelName: 'x',
    version: '1',
  }) as Json;
  assert.match(classic.channels.requests.description, /x-max-priority 5/);
  const quorum = buildAsyncApi({
    url: 'amqp://h',
    inputQueue: 'in',
    replyQueue: 'out',
    queueType: 'quorum',
    deliveryLimit: 3,
    maxPriority: 5,
    modelName: 'x',
    version: '1',
  }) as Json;
  assert.match(quorum.channels.requests.description, /quorum queue takes no x-max-priority/);
});
