/**
 * The AsyncAPI 3.0.0 document of the scoring service: its queues, the request, reply and error
 * messages with their headers, and the `data` and result schemas of the model or entry script. Pure:
 * the command gathers the facts (config, the script's schemas) and writes the result.
 */
import { ERROR_CODES } from '../errors.js';
import type { QueueType } from '../config.js';
import { deadQueueOf } from '../broker/topology.js';

export interface AsyncApiFacts {
  /** The broker URL; its credentials never reach the document. */
  url: string;
  inputQueue: string;
  replyQueue: string;
  queueType: QueueType;
  deliveryLimit: number;
  /** MAX_PRIORITY: 0 when the consumer orders by arrival only. */
  maxPriority?: number;
  modelName: string;
  /** JSON Schema of `data` (the built-in ONNX script's from the model, or an entry script's export). */
  inputSchema?: object;
  outputSchema?: object;
  version: string;
}

const AMQP_BINDING_VERSION = '0.3.0';

export function buildAsyncApi(f: AsyncApiFacts): Record<string, unknown> {
  const deadQueue = deadQueueOf(f.inputQueue);
  const server = serverOf(f.url);
  const queueBinding = (name: string) => ({
    amqp: {
      is: 'queue',
      queue: { name, durable: true, exclusive: false, autoDelete: false, vhost: server.vhost },
      bindingVersion: AMQP_BINDING_VERSION,
    },
  });
  const ref = (path: string) => ({ $ref: `#/${path}` });

  return {
    asyncapi: '3.0.0',
    info: {
      title: `Scoring service: ${f.modelName}`,
      version: f.version,
      description:
        'A RabbitMQ scoring consumer: publish `{"data": ...}` to the requests queue; every request gets one reply, ' +
        "to its `replyTo` when set, else to the replies queue, with the request's correlationId (else its messageId). " +
        'A request is acknowledged only after its reply is confirmed by the broker.',
    },
    defaultContentType: 'application/json',
    servers: {
      broker: {
        host: server.host,
        protocol: server.protocol,
        pathname: server.pathname,
        description: 'the RabbitMQ broker (AMQP 0-9-1)',
      },
    },
    channels: {
      requests: {
        address: f.inputQueue,
        title: 'Scoring requests',
        description:
          `INPUT_QUEUE, a durable ${f.queueType} queue${f.queueType === 'quorum' ? ` with x-delivery-limit ${f.deliveryLimit}` : ''}; dead-letters to ${deadQueue}. ` +
          priorityText(f.queueType, f.maxPriority ?? 0),
        messages: {
          scoreRequest: ref('components/messages/scoreRequest'),
          scoreRequestNpy: ref('components/messages/scoreRequestNpy'),
          scoreRequestSafetensors: ref('components/messages/scoreRequestSafetensors'),
          scoreRequestImage: ref('components/messages/scoreRequestImage'),
        },
        bindings: queueBinding(f.inputQueue),
      },
      replies: {
        address: f.replyQueue,
        title: 'Replies',
        description: 'REPLY_QUEUE, durable: replies to requests without a replyTo.',
        messages: replyMessages(),
        bindings: queueBinding(f.replyQueue),
      },
      callerReplyTo: {
        address: null,
        title: "The caller's replyTo",
        description:
          "A request's replyTo queue (its own queue, or amq.rabbitmq.reply-to): the same reply messages go there.",
        messages: replyMessages(),
      },
      deadLetters: {
        address: deadQueue,
        title: 'Dead letters',
        description:
          `Requests that killed the entry script past the delivery limit (${f.deliveryLimit}), moved here by the broker (x-death header); the consumer sent no reply. ` +
          '`scorer dead-letters answer` sends each caller one scoreError reply with x-error-code POISON naming this queue (then keeps the message, marked x-poison-answered, or drops it); `scorer dead-letters replay` puts them back on the requests queue in order.',
        messages: { deadLetteredRequest: ref('components/messages/deadLetteredRequest') },
        bindings: queueBinding(deadQueue),
      },
    },
    operations: {
      score: {
        action: 'receive',
        title: 'Score a request',
        summary:
          'Consume a request, score its data, publish one reply (to replyTo, else to the replies queue), then ack.',
        channel: ref('channels/requests'),
        messages: ['scoreRequest', 'scoreRequestNpy', 'scoreRequestSafetensors', 'scoreRequestImage'].map((m) =>
          ref(`channels/requests/messages/${m}`),
        ),
        reply: {
          address: {
            location: '$message.header#/replyTo',
            description: "the request's replyTo property; without one, the replies queue",
          },
          channel: ref('channels/replies'),
          messages: replyNames.map((m) => ref(`channels/replies/messages/${m}`)),
        },
      },
      sendReply: {
        action: 'send',
        title: 'Reply',
        summary: 'Persistent, published with mandatory and confirmed by the broker before the request is acked.',
        channel: ref('channels/replies'),
        messages: replyNames.map((m) => ref(`channels/replies/messages/${m}`)),
      },
      sendReplyToCaller: {
        action: 'send',
        title: "Reply to the caller's replyTo",
        channel: ref('channels/callerReplyTo'),
        messages: replyNames.map((m) => ref(`channels/callerReplyTo/messages/${m}`)),
      },
    },
    components: {
      correlationIds: {
        request: {
          location: '$message.header#/correlationId',
          description: 'the AMQP correlation_id property (else message_id) of the request',
        },
      },
      messages: {
        scoreRequest: {
          name: 'scoreRequest',
          title: 'Scoring request',
          summary: 'A UTF-8 JSON object whose "data" key holds the input; other keys are ignored.',
          description:
            'AMQP properties read: correlationId, messageId, replyTo; priority (0-255: higher is scored first among the inputs the consumer holds; redelivered inputs go first); ' +
            'timestamp (seconds: the publish time, from which x-deadline-ms, expiration and DEADLINE_MS count and x-queue-wait-ms is measured); ' +
            'expiration (a TTL in ms: also the deadline once delivered). A request past its deadline when taken for scoring is answered EXPIRED, not scored; with several deadlines the earliest wins.',
          contentType: 'application/json',
          correlationId: ref('components/correlationIds/request'),
          headers: requestHeaders(),
          payload: {
            type: 'object',
            required: ['data'],
            properties: { data: f.inputSchema ?? { description: 'any JSON value: the entry script decides' } },
          },
        },
        scoreRequestNpy: binaryRequest(
          'NumPy .npy request',
          'One array as numpy.save writes it (little-endian, C order; big-endian and Fortran order are converted), for a single-input model: dtype and shape from its header, checked as JSON data is. A user entry script gets the bytes.',
          'application/x-npy',
        ),
        scoreRequestSafetensors: binaryRequest(
          'safetensors request',
          'Named tensors in the safetensors layout (8-byte header length, JSON header, little-endian data), one per model input, by input name.',
          'application/x-safetensors',
        ),
        scoreRequestImage: binaryRequest(
          'Image request',
          "image/png, image/jpeg or image/webp (the contentType says which): decoded, resized and laid out into the image model's input with the IMAGE_* preprocessing.",
          'image/png',
        ),
        scoreResultBinary: {
          name: 'scoreResultBinary',
          title: 'Binary result',
          summary:
            'Sent when the request asked for it with x-reply-content-type: the single output as .npy, or every output by name as safetensors; the contentType says which. A user entry script may return { contentType, body } for a reply of its own type.',
          contentType: 'application/x-npy',
          correlationId: ref('components/correlationIds/request'),
          headers: replyHeaders('ok'),
          payload: { type: 'string', format: 'binary', contentMediaType: 'application/x-npy' },
        },
        scoreResult: {
          name: 'scoreResult',
          title: 'Result',
          summary: "JSON.stringify of the entry script's result.",
          contentType: 'application/json',
          correlationId: ref('components/correlationIds/request'),
          headers: replyHeaders('ok'),
          payload: f.outputSchema ?? { description: "any JSON value: the entry script's result" },
        },
        scoreError: {
          name: 'scoreError',
          title: 'Error',
          summary: 'A JSON string holding one line that says what was wrong.',
          contentType: 'application/json',
          correlationId: ref('components/correlationIds/request'),
          headers: replyHeaders('error'),
          payload: { type: 'string', examples: ["input 'float_input' expects shape [-1,4], got [1,3]"] },
        },
        deadLetteredRequest: {
          name: 'deadLetteredRequest',
          title: 'Dead-lettered request',
          contentType: 'application/json',
          headers: {
            type: 'object',
            properties: {
              'x-death': { type: 'array', description: 'RabbitMQ dead-lettering history: reason, queue, count, time' },
              'x-first-death-reason': {
                type: 'string',
                description: 'delivery_limit (quorum queue), rejected (classic queue: the consumer gave up on it)',
              },
              'x-delivery-count': {
                type: 'integer',
                description: "the dead queue's own count of deliveries (from 0), not the input queue's",
              },
              'x-poison-answered': {
                type: 'string',
                format: 'date-time',
                description: 'set by `scorer dead-letters answer`: when its caller was sent the POISON reply',
              },
              'x-dead-letters-pass': {
                type: 'string',
                description: 'set by `scorer dead-letters` on the copies it puts back: the pass that made them',
              },
            },
          },
          payload: { description: 'the request as it was published' },
        },
      },
    },
  };
}

const replyNames = ['scoreResult', 'scoreResultBinary', 'scoreError'];

function replyMessages(): Record<string, object> {
  return Object.fromEntries(replyNames.map((m) => [m, { $ref: `#/components/messages/${m}` }]));
}

function requestHeaders(): object {
  return {
    type: 'object',
    properties: {
      'x-deadline': {
        description: 'absolute deadline: RFC 3339 with a zone, or epoch milliseconds; anything else gets BAD_DEADLINE',
        oneOf: [
          { type: 'string', format: 'date-time' },
          { type: 'integer', minimum: 100_000_000_000 },
          { type: 'string', pattern: '^[0-9]{12,}$' },
        ],
      },
      'x-deadline-ms': {
        type: 'number',
        minimum: 0,
        description: 'relative deadline: ms after the message timestamp (else its receipt)',
      },
      traceparent: {
        type: 'string',
        pattern: TRACEPARENT_PATTERN,
        description: "W3C Trace Context: the consumer's spans continue this trace",
      },
      tracestate: { type: 'string', description: 'W3C Trace Context vendor state, carried onto the reply' },
      'x-reply-content-type': {
        type: 'string',
        enum: ['application/json', 'application/x-npy', 'application/x-safetensors'],
        description:
          'built-in ONNX script: the reply as .npy (a model with one output) or safetensors (outputs by name) instead of JSON; error replies stay JSON strings',
      },
    },
  };
}

function binaryRequest(title: string, summary: string, contentType: string): object {
  return {
    name: title.split(' ')[0].toLowerCase(),
    title,
    summary: `${summary} Counted against MAX_MESSAGE_BYTES, and each tensor against MAX_TENSOR_ELEMENTS, from its header before anything is allocated.`,
    contentType,
    correlationId: { $ref: '#/components/correlationIds/request' },
    headers: requestHeaders(),
    payload: { type: 'string', format: 'binary', contentMediaType: contentType },
  };
}

function replyHeaders(status: 'ok' | 'error'): object {
  const headers: Record<string, object> = {
    'x-status': { type: 'string', const: status },
    'x-model': { type: 'string', description: "the model's name (the ONNX file's, or the entry script's modelName)" },
    'x-scoring-ms': {
      type: 'number',
      description: 'time in the entry script for the batch this request was scored in, ms (0 when not scored)',
    },
  };
  // Not on every reply, so not required.
  const optional: Record<string, object> = {
    'x-queue-wait-ms': {
      type: 'number',
      minimum: 0,
      description:
        'time the request waited in the queue: from its timestamp to its delivery, ms; absent when it has no timestamp',
    },
    traceparent: {
      type: 'string',
      pattern: TRACEPARENT_PATTERN,
      description:
        "W3C Trace Context of the reply's publish, in the request's trace (with tracing off: the request's own traceparent)",
    },
    tracestate: { type: 'string', description: "the request's tracestate" },
  };
  if (status === 'error') {
    headers['x-error-code'] = {
      type: 'string',
      enum: Object.keys(ERROR_CODES),
      description: Object.entries(ERROR_CODES)
        .map(([code, why]) => `${code}: ${why}`)
        .join('; '),
    };
  }
  if (status === 'error')
    optional['x-dead-letter-queue'] = {
      type: 'string',
      description: 'POISON replies: the queue the request is parked in',
    };
  return { type: 'object', required: Object.keys(headers), properties: { ...headers, ...optional } };
}

const TRACEPARENT_PATTERN = '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$';

function priorityText(queueType: QueueType, maxPriority: number): string {
  if (maxPriority === 0)
    return 'Priorities: none (MAX_PRIORITY 0): requests are scored in arrival order, redelivered ones first.';
  const broker =
    queueType === 'classic'
      ? `declared with x-max-priority ${maxPriority}, so the broker delivers higher priorities first too`
      : 'a quorum queue takes no x-max-priority; RabbitMQ 4 delivers priority 5 and above before normal ones (2:1), RabbitMQ 3 ignores them';
  return `Priorities 0-${maxPriority} (higher first; above ${maxPriority} counts as ${maxPriority}): the consumer scores the requests it holds by priority, redelivered ones first; the queue is ${broker}.`;
}

function serverOf(url: string): { host: string; protocol: string; pathname: string; vhost: string } {
  const u = new URL(url);
  const protocol = u.protocol.replace(/:$/, '');
  const port = u.port || (protocol === 'amqps' ? '5671' : '5672');
  const vhost = decodeURIComponent(u.pathname.replace(/^\//, '')) || '/';
  return { host: `${u.hostname}:${port}`, protocol, pathname: u.pathname || '/', vhost };
}
