/**
 * Every failure that becomes a reply is a ScoringError with a stable code: callers switch on the
 * code, users read the message. `replyText` is the one place an error becomes reply text.
 */

/**
 * Every code a reply's x-error-code can carry, with what it means: the AsyncAPI document prints this
 * table, and ErrorCode is its keys, so a new code cannot miss its description.
 */
export const ERROR_CODES = {
  TOO_LARGE: 'body over MAX_MESSAGE_BYTES',
  BAD_UTF8: 'body is not valid UTF-8',
  BAD_JSON: 'body is not JSON',
  TOO_DEEP: 'JSON nested deeper than 64 levels',
  NOT_OBJECT: 'JSON, but not an object',
  NO_DATA: 'an object without a "data" key',
  SCHEMA: "data fails the entry script's inputSchema",
  SHAPE: 'wrong rank, dimension, raggedness or an empty array',
  TYPE: 'wrong element type or a value out of range',
  TOO_MANY_ELEMENTS: 'a tensor over MAX_TENSOR_ELEMENTS',
  BAD_BINARY: 'a .npy, safetensors or image body that is truncated, malformed or lies about its size',
  CONTENT_TYPE: 'a contentType the entry script does not take',
  RUN_FAILED: 'the entry script threw; the reply is its message',
  TIMEOUT: 'run did not return within RUN_TIMEOUT_MS',
  BAD_RESULT: 'run returned something JSON cannot carry',
  BAD_DEADLINE: 'an x-deadline or x-deadline-ms header that is not a time',
  EXPIRED:
    'past its deadline (x-deadline, x-deadline-ms, expiration or DEADLINE_MS) when taken for scoring: not scored',
  POISON:
    'dead-lettered after the delivery limit (it kept killing the entry script); answered by `scorer dead-letters answer`, or by the consumer as it dead-letters on a classic queue with ANSWER_POISON=true; the reply names the queue it is parked in (x-dead-letter-queue)',
  REPLY_TOO_LARGE: "the reply is over the broker's max_message_size; the input is dead-lettered",
} as const satisfies Record<string, string>;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * ScoringError's brand, from the global symbol registry: the built-in script scored on the consumer's
 * thread is loaded in a module namespace of its own (tsImport), where this module, and so the class,
 * is another copy; `instanceof ScoringError` checks the brand, so it holds across copies.
 */
const SCORING_ERROR: unique symbol = Symbol.for('onnx-rabbitmq-scorer/scoring-error');

export class ScoringError extends Error {
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && SCORING_ERROR in value;
  }
  readonly [SCORING_ERROR] = true;
  override readonly name = 'ScoringError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Errors that stop boot: a bad config value, an entry script that cannot load, a broker that says no. */
export class BootError extends Error {
  override readonly name = 'BootError';
}

/** One line, whatever was thrown: reply bodies and log lines must not carry stack traces or newlines. */
export function replyText(err: unknown): string {
  const text = err instanceof Error ? err.message : typeof err === 'string' ? err : safeString(err);
  const line = text.replace(/\s*[\r\n]+\s*/g, ' ').trim() || 'run failed without a message';
  return clip(line, 1000);
}

/** A sender's text quoted in an error, cut to `max` characters so one hostile name cannot fill the line. */
export function clip(s: string, max = 64): string {
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return 'run failed with an unprintable value';
  }
}
