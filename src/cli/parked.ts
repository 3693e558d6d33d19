/**
 * A message parked in `<INPUT_QUEUE>.dead`, read from what RabbitMQ wrote on it when it dead-lettered
 * it, and what `scorer dead-letters` writes back. Pure.
 *
 * The CLI never requeues a parked message (nack, or closing the channel with it unacked): on a quorum
 * queue a requeue counts as a delivery (RabbitMQ 4 drops a message past the default delivery limit of 20)
 * and more than 32 requeued at once come back out of order (seen on 3.10.8). A message it keeps goes to
 * the queue's tail as a copy (same body, properties and headers, plus the two below), then the original
 * is acked: one pass over the queue leaves it in the same order.
 */
import { createHash } from 'node:crypto';
import type { ReplyAddress } from '../reply.js';

/** On a copy this CLI made: the pass (run id) that made it, so the pass knows where it began. */
export const PASS_HEADER = 'x-dead-letters-pass';
/** On a kept message whose caller was sent its POISON reply: when (ISO 8601). */
export const ANSWERED_HEADER = 'x-poison-answered';
/** On the dead queue's own deliveries RabbitMQ 3.x writes 0 here; carried into the input queue it would read as deliveries already made. */
const DELIVERY_COUNT_HEADER = 'x-delivery-count';

export interface ParkedProperties extends ReplyAddress {
  contentType?: string;
  contentEncoding?: string;
  timestamp?: number;
  priority?: number;
  type?: string;
  appId?: string;
  userId?: string;
  expiration?: string;
  deliveryMode?: number;
  headers?: Record<string, unknown>;
}

export interface ParkedMessage {
  body: Buffer;
  properties: ParkedProperties;
}

export interface ParkedInfo extends ReplyAddress {
  /** Why it was dead-lettered: delivery_limit (quorum), rejected (classic: the consumer gave up), expired, maxlen. */
  reason: string;
  /** The queue it was dead-lettered from. */
  fromQueue?: string;
  /** Times it was dead-lettered (x-death count, summed over its entries). */
  deaths: number;
  /** Deliveries that led to it, where the reason tells: (DELIVERY_LIMIT + 1) per delivery_limit death. */
  deliveries?: number;
  /** When it was (last) dead-lettered, ISO 8601. */
  deadLetteredAt?: string;
  /** When its caller was sent a POISON reply, if it was. */
  answeredAt?: string;
  bytes: number;
}

interface Death {
  count?: unknown;
  reason?: unknown;
  queue?: unknown;
  time?: unknown;
}

function text(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  return undefined;
}

/** amqplib decodes an AMQP timestamp in a table as `{ '!': 'timestamp', value: seconds }`. */
function seconds(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (v && typeof v === 'object' && 'value' in v && typeof (v as { value: unknown }).value === 'number')
    return (v as { value: number }).value;
  return undefined;
}

export function describeParked(m: ParkedMessage, deliveryLimit: number): ParkedInfo {
  const h = m.properties.headers ?? {};
  const deaths = (Array.isArray(h['x-death']) ? h['x-death'] : []) as Death[];
  const first = deaths[0];
  const reason = text(h['x-first-death-reason']) ?? text(first?.reason) ?? 'unknown';
  const count = deaths.reduce((n, d) => n + (typeof d.count === 'number' ? d.count : 1), 0);
  const limitDeaths = deaths
    .filter((d) => text(d.reason) === 'delivery_limit')
    .reduce((n, d) => n + (typeof d.count === 'number' ? d.count : 1), 0);
  const times = deaths.map((d) => seconds(d.time)).filter((t): t is number => t !== undefined);
  const info: ParkedInfo = {
    reason,
    deaths: count,
    bytes: m.body.byteLength,
  };
  const fromQueue = text(h['x-first-death-queue']) ?? text(first?.queue);
  if (m.properties.correlationId) info.correlationId = m.properties.correlationId;
  if (m.properties.messageId) info.messageId = m.properties.messageId;
  if (m.properties.replyTo) info.replyTo = m.properties.replyTo;
  if (fromQueue) info.fromQueue = fromQueue;
  if (limitDeaths > 0 && limitDeaths === count) info.deliveries = limitDeaths * (deliveryLimit + 1);
  if (times.length > 0) info.deadLetteredAt = new Date(Math.max(...times) * 1000).toISOString();
  const answered = text(h[ANSWERED_HEADER]);
  if (answered) info.answeredAt = answered;
  return info;
}

/**
 * What makes two parked messages the same request: its ids, its caller and its body. The pass's state
 * file records these for the messages it has finished, so a resumed pass skips them, and a pass meets
 * each request once (a second copy, left by a kill between a copy's confirm and its original's ack, is
 * dropped). Not the x-dead-letters-pass header: the copy and its original must match.
 */
export function requestKey(m: ParkedMessage): string {
  const p = m.properties;
  const hash = createHash('sha256');
  for (const part of [p.messageId ?? '', p.correlationId ?? '', p.replyTo ?? '']) hash.update(part).update('\0');
  hash.update(m.body);
  return hash.digest('base64url').slice(0, 32);
}

export function passOf(m: ParkedMessage): string | undefined {
  return text(m.properties.headers?.[PASS_HEADER]);
}

/** The caller's POISON reply text: one line, naming the queue it is parked in. */
export function poisonText(info: ParkedInfo, deadQueue: string): string {
  const why =
    info.reason === 'delivery_limit'
      ? `it was delivered ${info.deliveries ?? 'more than the delivery limit'} times without an answer (each time the entry script's process died)`
      : info.reason === 'rejected'
        ? 'the consumer gave up on it after its entry script died under it twice'
        : `it was dead-lettered (${info.reason})`;
  return `input not scored: ${why}; it is parked in queue '${deadQueue}' for the operators`;
}

/** Properties for a copy of `m`: itself, with `extra` headers, without the dead queue's delivery count. */
export function copyProperties(
  m: ParkedMessage,
  extra: Record<string, string>,
): ParkedProperties & { headers: Record<string, unknown>; persistent: boolean } {
  // userId: RabbitMQ refuses a publish whose user-id is not the publishing connection's user.
  const { deliveryMode, headers, userId: _userId, ...rest } = m.properties as ParkedProperties & { clusterId?: string };
  delete (rest as { clusterId?: string }).clusterId;
  const kept: Record<string, unknown> = { ...(headers ?? {}) };
  delete kept[DELIVERY_COUNT_HEADER];
  const props: ParkedProperties & { headers: Record<string, unknown>; persistent: boolean } = {
    ...withoutUndefined(rest),
    headers: { ...kept, ...extra },
    persistent: deliveryMode !== 1,
  };
  return props;
}

function withoutUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== null)) as T;
}

/** One line for `list`, for a person. */
export function listLine(n: number, info: ParkedInfo): string {
  const id = info.correlationId ?? info.messageId ?? '(no id)';
  const parts = [
    `${String(n).padStart(5)}  ${id}`,
    `reason=${info.reason}${info.fromQueue ? ` from ${info.fromQueue}` : ''}`,
    `deaths=${info.deaths}`,
    ...(info.deliveries !== undefined ? [`deliveries=${info.deliveries}`] : []),
    ...(info.deadLetteredAt ? [`at=${info.deadLetteredAt}`] : []),
    `replyTo=${info.replyTo ?? '(REPLY_QUEUE)'}`,
    `answered=${info.answeredAt ?? 'no'}`,
    `${info.bytes} B`,
  ];
  return parts.join('  ');
}
