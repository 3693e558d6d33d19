/**
 * Every failure that becomes a reply is a ScoringError with a stable code: callers switch on the
 * code, users read the message. `replyText` is the one place an error becomes reply text.
 */
export type ErrorCode =
  | 'TOO_LARGE' // body over MAX_MESSAGE_BYTES
  | 'BAD_UTF8' // body is not valid UTF-8
  | 'BAD_JSON' // body is not JSON
  | 'TOO_DEEP' // JSON nested deeper than we will walk
  | 'NOT_OBJECT' // JSON, but not an object
  | 'NO_DATA' // an object without a "data" key
  | 'SCHEMA' // data fails the entry script's inputSchema
  | 'SHAPE' // wrong rank, dimension or ragged array
  | 'TYPE' // wrong element type
  | 'TOO_MANY_ELEMENTS' // a tensor over the element cap
  | 'BAD_BINARY' // a binary body (.npy, safetensors, image) that is truncated, malformed or lies about its size
  | 'CONTENT_TYPE' // a contentType the entry script does not take
  | 'RUN_FAILED' // the entry script threw
  | 'TIMEOUT' // the entry script did not return within RUN_TIMEOUT_MS
  | 'BAD_RESULT' // the entry script returned something JSON cannot carry
  | 'BAD_DEADLINE' // an x-deadline or x-deadline-ms header that is not a time
  | 'EXPIRED' // past its deadline when taken from the batch: not scored
  | 'POISON' // dead-lettered after the delivery limit, answered by `scorer dead-letters answer` (or ANSWER_POISON)
  | 'REPLY_TOO_LARGE'; // the reply is over the broker's max_message_size: this short one says so

export class ScoringError extends Error {
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
