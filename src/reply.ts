/**
 * An outcome → the reply's destination, body, properties and headers. Pure: the contract (CONTRACT §2)
 * for what a producer reads back lives here and nowhere else.
 */
import { randomBytes } from 'node:crypto';
import type { ErrorCode } from './errors.js';

/**
 * Each reply's own messageId: 96 random bits drawn once per process, then a count. As unique across
 * consumers and restarts as a UUID (a receiver may drop a messageId it has seen), shorter on the wire,
 * and a concatenation per reply where randomUUID builds its string from 20 pieces.
 */
const REPLY_ID_PREFIX = `${randomBytes(12).toString('base64url')}.`;
let repliesMade = 0;
const nextReplyId = (): string => REPLY_ID_PREFIX + (++repliesMade).toString(36);

/** A scored message: its reply body (the result's JSON, UTF-8, or bytes of `contentType`) or what was wrong with it. */
export type Outcome =
  | { ok: true; body: Buffer; contentType?: string }
  | { ok: false; code: ErrorCode; message: string };

export interface ReplyAddress {
  correlationId?: string;
  messageId?: string;
  replyTo?: string;
}

export interface Reply {
  /** A queue name (or a direct reply-to address) on the default exchange. */
  routingKey: string;
  /** True when the reply goes to REPLY_QUEUE, which we own and may re-declare; false for a caller's replyTo. */
  toReplyQueue: boolean;
  /**
   * Ask the broker to return it if unroutable. Not for direct reply-to: RabbitMQ 3.x returns those as
   * unroutable even when it delivers them (rabbitmq-server#6124), and they are at-most-once anyway.
   */
  mandatory: boolean;
  correlationId?: string;
  /** The x-status header: the metrics count replies by it. */
  status: 'ok' | 'error';
  body: Buffer;
  properties: {
    persistent: true;
    /** application/json, or a binary reply's own type (an entry script's, or one asked for by x-reply-content-type). */
    contentType: string;
    messageId: string;
    correlationId?: string;
    timestamp: number;
    headers: Record<string, string | number>;
  };
}

export interface ReplyContext {
  replyQueue: string;
  modelName: string;
  /** x-model-version: the version of the model that scored the batch (model-version.ts). */
  modelVersion?: string;
  scoringMs: number;
  /** x-queue-wait-ms: from the input's timestamp to its delivery (deadline.ts queueWaitMs); omitted when unknown. */
  queueWaitMs?: number;
  /** traceparent / tracestate for the reply (tracing.ts: the reply span's, or the input's passed through). */
  traceHeaders?: Record<string, string>;
}

export function buildReply(address: ReplyAddress, outcome: Outcome, context: ReplyContext): Reply {
  const correlationId = address.correlationId || address.messageId || undefined;
  const status = outcome.ok ? 'ok' : 'error';
  const headers: Record<string, string | number> = {
    'x-status': status,
    'x-model': context.modelName,
    'x-scoring-ms': Math.round(context.scoringMs * 1000) / 1000,
  };
  if (context.modelVersion !== undefined) headers['x-model-version'] = context.modelVersion;
  if (context.queueWaitMs !== undefined) headers['x-queue-wait-ms'] = Math.round(context.queueWaitMs);
  if (!outcome.ok) headers['x-error-code'] = outcome.code;
  if (context.traceHeaders) Object.assign(headers, context.traceHeaders);
  return {
    routingKey: address.replyTo || context.replyQueue,
    toReplyQueue: !address.replyTo,
    status,
    mandatory: !address.replyTo?.startsWith('amq.rabbitmq.reply-to'),
    correlationId,
    body: outcome.ok ? outcome.body : Buffer.from(JSON.stringify(outcome.message)),
    properties: {
      persistent: true,
      // Error replies are always JSON strings, whatever the request asked for.
      contentType: (outcome.ok && outcome.contentType) || 'application/json',
      // Our own id per reply: a returned (unroutable) reply is matched to its publish by it.
      messageId: nextReplyId(),
      ...(correlationId === undefined ? {} : { correlationId }),
      timestamp: Math.floor(Date.now() / 1000),
      headers,
    },
  };
}
