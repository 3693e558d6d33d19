/**
 * One input message in the project's words, and the generation of the consume channel it came on:
 * an ack is only valid on that channel, so "is this delivery still current" is a question about its
 * generation, answered by that channel's Acks (broker/acks.ts) and nowhere else.
 */
import type * as amqp from 'amqplib';
import type { ReplyAddress } from '../reply.js';

export interface Delivery extends ReplyAddress {
  /** Empty once scored (releaseBody), or once handed to an isolate without a copy. */
  body: Buffer;
  /** The body's size as delivered, whatever became of `body`: the byte budget counts it until the input is settled. */
  readonly bytes: number;
  /** The message's contentType reaches the entry script (binary payloads). */
  contentType?: string;
  redelivered: boolean;
  /** x-delivery-count on quorum queues: how many times it was delivered before. */
  deliveryCount: number;
  /** AMQP headers, undefined when there are none: the entry script gets them; x-deadline, x-deadline-ms, traceparent, tracestate are read from them. */
  headers?: Record<string, unknown>;
  /** AMQP timestamp (seconds, as the protocol has it): the deadline and x-queue-wait-ms count from it. */
  timestamp?: number;
  /** AMQP expiration (per-message TTL, ms as a string): a deadline once delivered (deadline.ts). */
  expiration?: string;
  /** AMQP priority (0–255): the order the consumer scores what it holds (held-inputs.ts). */
  priority?: number;
  readonly tag: number;
  /** The generation of the consume channel it came on: acks are only valid on that one. */
  readonly channel: number;
}

const RELEASED = Buffer.alloc(0);

/**
 * Lets go of a body nothing will read again (it has been scored, or answered unscored), without waiting
 * for its input to be settled. amqplib hands each body over as a view on the socket read it came in, so
 * one input held until its reply is confirmed keeps that whole read alive, its neighbours' bytes too;
 * buffers held that long outlive a young-generation collection or two, are promoted, and only a full
 * collection frees them, which their growing external memory then brings on every few hundred
 * milliseconds under load (bench/HISTORY.md, What was changed for speed).
 */
export function releaseBody(d: Delivery): void {
  d.body = RELEASED;
}

/** U+FFFD in a decoded short string: amqplib turned bytes that were not UTF-8 into it, and the original is gone. */
const REPLACEMENT = '\uFFFD';

export function toDelivery(msg: amqp.ConsumeMessage, generation: number): Delivery {
  const p = msg.properties;
  const count = p.headers?.['x-delivery-count'];
  return {
    body: msg.content,
    bytes: msg.content.byteLength,
    correlationId: p.correlationId || undefined,
    messageId: p.messageId || undefined,
    replyTo: p.replyTo || undefined,
    contentType: p.contentType || undefined,
    headers: p.headers && Object.keys(p.headers).length > 0 ? p.headers : undefined,
    redelivered: msg.fields.redelivered,
    deliveryCount: typeof count === 'number' ? count : msg.fields.redelivered ? 1 : 0,
    timestamp: typeof p.timestamp === 'number' ? p.timestamp : undefined,
    expiration:
      p.expiration === undefined || p.expiration === null || p.expiration === '' ? undefined : String(p.expiration),
    priority: typeof p.priority === 'number' ? p.priority : undefined,
    tag: msg.fields.deliveryTag,
    channel: generation,
  };
}

/**
 * amqplib decodes every short string (correlation-id, message-id) as UTF-8 before we see it, so an id
 * that is not valid UTF-8 reaches us already altered and cannot be passed back byte for byte. We can
 * only tell that it may have been: the replacement character is where its bytes were.
 */
export function idMayBeAltered(d: Pick<Delivery, 'correlationId' | 'messageId'>): boolean {
  return (d.correlationId?.includes(REPLACEMENT) ?? false) || (d.messageId?.includes(REPLACEMENT) ?? false);
}
