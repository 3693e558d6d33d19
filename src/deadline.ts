/**
 * When an input stops being worth scoring, from what it carries (pure). The answer path asks
 * `isExpired` as it takes an input from its batch, and answers EXPIRED instead of scoring it.
 *
 * An input may say it three ways; each is a caller saying "useless after", so the earliest wins:
 * - `x-deadline` header: an absolute time, RFC 3339 text (`2026-12-01T10:00:00.250Z`, an offset or `Z`
 *   required) or a number of epoch **milliseconds** (JavaScript's `Date.now()`);
 * - `x-deadline-ms` header: milliseconds after the message's AMQP `timestamp` (when it was published);
 * - AMQP `expiration` (per-message TTL, ms): RabbitMQ drops or dead-letters a message that expires while
 *   it waits in the queue, but once delivered the consumer holds it and the broker never looks again. The
 *   same TTL counted from the `timestamp` carries that meaning on into the consumer's own queue.
 * Relative ones count from `timestamp` when the message has one, else from when the consumer received it.
 * An input that says none gets DEADLINE_MS (0: no deadline) counted the same way.
 *
 * AMQP's `timestamp` is in seconds, so a relative deadline is good to a second; producers that need
 * better send `x-deadline`. Some clients put milliseconds in `timestamp`: a value too large to be seconds
 * (after the year 5000) is read as milliseconds.
 */
import type { Outcome } from './reply.js';

export type DeadlineOrigin = 'x-deadline' | 'x-deadline-ms' | 'expiration' | 'DEADLINE_MS';

export type Deadline =
  | { atMs: number; origin: DeadlineOrigin }
  /** No deadline: never expires. */
  | { atMs: typeof Number.POSITIVE_INFINITY; origin: 'none' }
  /** A deadline header that is not a time: the answer path replies BAD_DEADLINE, naming it. */
  | { invalid: string };

/** What of a delivery this reads: its headers and two AMQP properties. */
export interface DeadlineSource {
  headers?: Record<string, unknown>;
  /** AMQP `timestamp`: seconds since the epoch (see above for milliseconds). */
  timestamp?: number;
  /** AMQP `expiration`: a string of milliseconds, as the protocol carries it. */
  expiration?: string | number;
}

const NEVER: Deadline = { atMs: Number.POSITIVE_INFINITY, origin: 'none' };
/** Epoch seconds stay below this until the year 5138; epoch milliseconds passed it in 1973. */
const SECONDS_BELOW = 1e11;
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/** The AMQP timestamp as epoch ms, or undefined when absent or nonsense. */
export function publishedAtMs(timestamp: number | undefined): number | undefined {
  if (typeof timestamp !== 'number' || !Number.isFinite(timestamp) || timestamp <= 0) return undefined;
  return timestamp < SECONDS_BELOW ? timestamp * 1000 : timestamp;
}

/** How long the input waited between its publish (`timestamp`) and its delivery; undefined without a timestamp. Never negative: clocks differ. */
export function queueWaitMs(timestamp: number | undefined, receivedAtMs: number): number | undefined {
  const published = publishedAtMs(timestamp);
  return published === undefined ? undefined : Math.max(0, receivedAtMs - published);
}

/**
 * @param receivedAtMs epoch ms when the consumer received the delivery
 * @param defaultDeadlineMs DEADLINE_MS; 0 for none
 */
export function deadlineOf(m: DeadlineSource, receivedAtMs: number, defaultDeadlineMs: number): Deadline {
  const from = publishedAtMs(m.timestamp) ?? receivedAtMs;
  const found: Array<{ atMs: number; origin: DeadlineOrigin }> = [];

  const absolute = m.headers?.['x-deadline'];
  if (absolute !== undefined && absolute !== null) {
    const atMs = absoluteMs(absolute);
    if (atMs === undefined) {
      return {
        invalid: `header x-deadline ${shown(absolute)} is not a time: give RFC 3339 (2026-12-01T10:00:00Z) or epoch milliseconds`,
      };
    }
    found.push({ atMs, origin: 'x-deadline' });
  }
  const relative = m.headers?.['x-deadline-ms'];
  if (relative !== undefined && relative !== null) {
    const ms = milliseconds(relative);
    if (ms === undefined) return { invalid: `header x-deadline-ms ${shown(relative)} is not a number of milliseconds` };
    found.push({ atMs: from + ms, origin: 'x-deadline-ms' });
  }
  if (m.expiration !== undefined && m.expiration !== '') {
    // The broker checked it at publish: a bad one never reaches us. Ignore rather than refuse what it let through.
    const ms = milliseconds(m.expiration);
    if (ms !== undefined) found.push({ atMs: from + ms, origin: 'expiration' });
  }
  if (found.length === 0)
    return defaultDeadlineMs > 0 ? { atMs: from + defaultDeadlineMs, origin: 'DEADLINE_MS' } : NEVER;
  return found.reduce((a, b) => (b.atMs < a.atMs ? b : a));
}

/** Past its deadline at `nowMs`. An invalid deadline is not "expired": it gets its own error. */
export function isExpired(deadline: Deadline, nowMs: number): boolean {
  return 'atMs' in deadline && nowMs > deadline.atMs;
}

/** The EXPIRED reply an input gets instead of being scored. */
export function expiredOutcome(deadline: { atMs: number; origin: DeadlineOrigin | 'none' }, nowMs: number): Outcome {
  const late = Math.round(nowMs - deadline.atMs);
  return {
    ok: false,
    code: 'EXPIRED',
    message: `input expired at ${new Date(deadline.atMs).toISOString()} (${deadline.origin}), ${late} ms before it could be scored: not scored`,
  };
}

function absoluteMs(value: unknown): number | undefined {
  if (Buffer.isBuffer(value)) return absoluteMs(value.toString('utf8'));
  if (typeof value === 'number') return Number.isFinite(value) && value >= SECONDS_BELOW ? value : undefined;
  if (typeof value === 'bigint') return absoluteMs(Number(value));
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return absoluteMs(Number(text));
  if (!RFC3339.test(text)) return undefined;
  const ms = Date.parse(text.replace(' ', 'T'));
  return Number.isFinite(ms) ? ms : undefined;
}

function milliseconds(value: unknown): number | undefined {
  if (Buffer.isBuffer(value)) return milliseconds(value.toString('utf8'));
  if (typeof value === 'bigint') return milliseconds(Number(value));
  const n =
    typeof value === 'number'
      ? value
      : typeof value === 'string' && /^\s*\d+(?:\.\d+)?\s*$/.test(value)
        ? Number(value)
        : Number.NaN;
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

function shown(value: unknown): string {
  const text = Buffer.isBuffer(value) ? value.toString('utf8') : typeof value === 'string' ? value : String(value);
  return JSON.stringify(text.length > 60 ? `${text.slice(0, 57)}...` : text);
}
