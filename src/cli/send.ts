/**
 * `scorer send '<json>'`: one request over direct reply-to, its reply body on stdout and its status on
 * stderr. Exit 0 on an ok reply, 1 on an error reply or no reply in time.
 */
import { randomUUID } from 'node:crypto';
import { CliBroker } from './amqp.js';
import type { Output } from './submit.js';
import { prepareLine } from './records.js';

export interface SendOptions {
  url: string;
  queue: string;
  timeoutMs: number;
}

export async function send(json: string, o: SendOptions, io: Output): Promise<number> {
  const prepared = prepareLine(json);
  if ('error' in prepared) throw new Error(prepared.error.replace(/^line/, 'the request'));
  const broker = await CliBroker.connect(o.url, 'scorer-send');
  try {
    if ((await broker.queueDepth(o.queue)) === undefined) {
      throw new Error(`queue '${o.queue}' does not exist: start a consumer first (it declares the queue), or pass --queue`);
    }
    const correlationId = randomUUID();
    const reply = await broker.request(o.queue, prepared.body, correlationId, o.timeoutMs);
    if (!reply) {
      io.stderr.write(`status: no reply within ${o.timeoutMs / 1000} s (are the consumers running?)\n`);
      return 1;
    }
    const h = reply.headers;
    const status = typeof h['x-status'] === 'string' ? h['x-status'] : 'unknown';
    const facts = [`status: ${status}`, `model: ${String(h['x-model'] ?? '?')}`, `scoring-ms: ${String(h['x-scoring-ms'] ?? '?')}`];
    if (h['x-error-code']) facts.push(`code: ${String(h['x-error-code'])}`);
    io.stderr.write(`${facts.join(', ')}\n`);
    io.stdout.write(`${reply.body.toString('utf8')}\n`);
    return status === 'ok' ? 0 : 1;
  } finally {
    await broker.close();
  }
}
