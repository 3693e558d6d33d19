/**
 * The `submit` file formats, pure: an input line → the message body, a reply → the result line, and
 * what an existing results file already holds (for --resume).
 */

/** The message body for one input line, or why the line cannot be sent. */
export type Prepared = { body: Buffer } | { error: string };

/**
 * A line that is a JSON object with a `data` key is sent as it is (other keys ride along and are
 * ignored by the consumer); any other JSON value is wrapped as `{"data": <line>}`.
 */
export function prepareLine(text: string): Prepared {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { error: `line is not JSON: ${(err as Error).message}` };
  }
  const isRequest =
    value !== null && typeof value === 'object' && !Array.isArray(value) && Object.hasOwn(value, 'data');
  return { body: Buffer.from(isRequest ? text : `{"data":${text}}`) };
}

export const correlationIdFor = (runId: string, line: number): string => `${runId}:${line}`;

/** The input line number a reply's correlation id names, or undefined when it is not one of this run's. */
export function lineOf(runId: string, correlationId: string | undefined): number | undefined {
  if (!correlationId?.startsWith(`${runId}:`)) return undefined;
  const n = Number(correlationId.slice(runId.length + 1));
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

export interface ResultRecord {
  /** One line of the results file, newline included. */
  text: string;
  ok: boolean;
}

/**
 * `{"line": n, "status": "ok", "result": <reply body>}` or `{"line": n, "status": "error", "error":
 * "<reply text>", "code": "<x-error-code>"}`.
 */
export function resultRecord(
  line: number,
  reply: { headers: Record<string, unknown>; body: Buffer },
  file?: string,
): ResultRecord {
  const status = reply.headers['x-status'];
  const text = reply.body.toString('utf8');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return errorRecord(line, `reply body is not JSON: ${text.slice(0, 200)}`, undefined, file);
  }
  // A folder's results name their file: `{"line": 3, "file": "b/cat.png", ...}`.
  const named = file === undefined ? '' : `"file":${JSON.stringify(file)},`;
  if (status === 'ok') return { text: `{"line":${line},${named}"status":"ok","result":${text}}\n`, ok: true };
  const code = reply.headers['x-error-code'];
  const message =
    typeof body === 'string'
      ? body
      : status === 'error'
        ? text
        : `reply without an x-status header: ${text.slice(0, 200)}`;
  return errorRecord(line, message, typeof code === 'string' ? code : undefined, file);
}

export function errorRecord(line: number, error: string, code?: string, file?: string): ResultRecord {
  return {
    text: `${JSON.stringify({ line, ...(file === undefined ? {} : { file }), status: 'error', error, ...(code ? { code } : {}) })}\n`,
    ok: false,
  };
}

export interface WrittenResults {
  /** The highest input line number with a result (0 when none). */
  lastLine: number;
  ok: number;
  errors: number;
  /** Bytes of complete records: a record cut short by a kill is dropped from here on. */
  validLength: number;
}

/** What a results file from an interrupted run holds. Throws when it is not one of ours. */
export function readWrittenResults(text: string): WrittenResults {
  const written: WrittenResults = { lastLine: 0, ok: 0, errors: 0, validLength: 0 };
  let start = 0;
  let index = 0;
  for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
    index++;
    const record = parseRecord(text.slice(start, end));
    if (!record || record.line <= written.lastLine) {
      throw new Error(
        `line ${index} of the results file is not a result record in input order: is it from another run?`,
      );
    }
    written.lastLine = record.line;
    if (record.status === 'ok') written.ok++;
    else written.errors++;
    start = end + 1;
    written.validLength = start;
  }
  return written;
}

function parseRecord(text: string): { line: number; status: string } | undefined {
  try {
    const r = JSON.parse(text) as { line?: unknown; status?: unknown };
    if (typeof r.line === 'number' && Number.isSafeInteger(r.line) && (r.status === 'ok' || r.status === 'error')) {
      return { line: r.line, status: r.status };
    }
  } catch {
    // not a record
  }
  return undefined;
}
