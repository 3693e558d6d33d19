/**
 * `scorer send '<json>'` or `scorer send --file image.png`: one request over direct reply-to, its reply
 * body on stdout (or in --out) and its status on stderr. Exit 0 on an ok reply, 1 on an error reply or
 * no reply in time.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { isJsonContentType } from '../isolate/content-types.js';
import { CliBroker, type Published } from './amqp.js';
import { contentTypeFor } from './inputs.js';
import type { Output } from './submit.js';
import { prepareLine } from './records.js';

export interface SendOptions {
  url: string;
  queue: string;
  timeoutMs: number;
  /** Send this file's bytes, with the content type of its extension unless contentType says otherwise. */
  file?: string;
  contentType?: string;
  /** Ask for a binary reply (x-reply-content-type), e.g. application/x-npy. */
  replyContentType?: string;
  /** Write the reply body here instead of stdout. */
  out?: string;
}

/** The body and its properties: a JSON text, or a file (JSON or binary). */
function requestOf(
  json: string | undefined,
  o: SendOptions,
): { body: Buffer } & Pick<Published, 'contentType' | 'headers'> {
  const headers = o.replyContentType ? { headers: { 'x-reply-content-type': o.replyContentType } } : {};
  if (o.file === undefined) {
    if (json === undefined) throw new Error('give the request as an argument, or --file');
    const prepared = prepareLine(json);
    if ('error' in prepared) throw new Error(prepared.error.replace(/^line/, 'the request'));
    return { body: prepared.body, ...headers };
  }
  if (json !== undefined) throw new Error('give the request as an argument or as --file, not both');
  const contentType = contentTypeFor(o.file, o.contentType);
  if (!contentType) throw new Error(`--file ${o.file}: no content type for its extension; pass --content-type`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(o.file);
  } catch (err) {
    throw new Error(
      `--file ${o.file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
    );
  }
  if (!isJsonContentType(contentType)) return { body: bytes, contentType, ...headers };
  const prepared = prepareLine(bytes.toString('utf8'));
  if ('error' in prepared) throw new Error(`--file ${o.file}: ${prepared.error.replace(/^line /, '')}`);
  return { body: prepared.body, ...headers };
}

export async function send(json: string | undefined, o: SendOptions, io: Output): Promise<number> {
  const { body, ...extra } = requestOf(json, o);
  const broker = await CliBroker.connect(o.url, 'scorer-send');
  try {
    await broker.requireQueue(o.queue, ', or pass --queue');
    const correlationId = randomUUID();
    const reply = await broker.request(o.queue, body, correlationId, o.timeoutMs, extra);
    if (!reply) {
      io.stderr.write(`status: no reply within ${o.timeoutMs / 1000} s (are the consumers running?)\n`);
      return 1;
    }
    const h = reply.headers;
    const status = typeof h['x-status'] === 'string' ? h['x-status'] : 'unknown';
    const facts = [
      `status: ${status}`,
      `model: ${String(h['x-model'] ?? '?')}`,
      `scoring-ms: ${String(h['x-scoring-ms'] ?? '?')}`,
    ];
    if (h['x-error-code']) facts.push(`code: ${String(h['x-error-code'])}`);
    const binary = !isJsonContentType(reply.contentType);
    if (binary) facts.push(`content-type: ${reply.contentType}`);
    io.stderr.write(`${facts.join(', ')}\n`);
    if (o.out) writeFileSync(o.out, reply.body);
    // A binary reply goes out as its bytes (to a pipe or a file); JSON as a line.
    else if (binary) io.stdout.write(reply.body);
    else io.stdout.write(`${reply.body.toString('utf8')}\n`);
    return status === 'ok' ? 0 : 1;
  } finally {
    await broker.close();
  }
}
