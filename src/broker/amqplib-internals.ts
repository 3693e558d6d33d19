/**
 * The only reaches below amqplib's public API, each guarded: where the internals it needs are not
 * there (another amqplib), it does nothing special and the public API serves. Both were measured
 * worth it (README, Benchmark); an amqplib upgrade re-runs test/integration/publish-path.test.ts and
 * `npm run bench`. TESTED_WITH names the major version they were written against: another one logs
 * a line at connect, so an operator knows which path is in use.
 */
import type * as amqp from 'amqplib';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Reply } from '../reply.js';
import { encodeReplyPublish } from './reply-frames.js';

export const TESTED_WITH = 2;

/** The installed amqplib's version (its package.json, found beside its main module: `exports` hides it). */
export function amqplibVersion(): string {
  try {
    const main = createRequire(import.meta.url).resolve('amqplib');
    let dir = dirname(main);
    for (let i = 0; i < 3; i++, dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (pkg.name === 'amqplib' && pkg.version) return pkg.version;
      } catch {
        // not here: one folder up
      }
    }
  } catch {
    // not resolvable: say unknown
  }
  return 'unknown';
}

/**
 * amqplib writes every frame to the socket on its own: one system call per reply, which was the
 * largest single cost on the consumer's thread. Corking the socket while amqplib's multiplexer empties
 * its channel buffers (one turn of the event loop) sends the same bytes in the same order in one
 * writev. This reaches into amqplib 2.x internals (`connection.muxer`, `connection.stream`); if they
 * are not there, writes stay as they were.
 */
export function coalesceWrites(model: amqp.ChannelModel): void {
  const connection = (model as unknown as { connection?: { stream?: unknown; muxer?: { _readIncoming?: unknown } } })
    .connection;
  const socket = connection?.stream as { cork?: () => void; uncork?: () => void } | undefined;
  const mux = connection?.muxer;
  if (
    !mux ||
    typeof mux._readIncoming !== 'function' ||
    typeof socket?.cork !== 'function' ||
    typeof socket.uncork !== 'function'
  )
    return;
  const readIncoming = (mux._readIncoming as () => void).bind(mux);
  mux._readIncoming = () => {
    socket.cork!();
    try {
      readIncoming();
    } finally {
      socket.uncork!();
    }
  };
}

/** The two amqplib 2.x channel methods ConfirmChannel.publish() is made of, and where sendMessage writes. */
interface ChannelInternals {
  sendMessage(fields: object, properties: object, content: Buffer): boolean;
  pushConfirmCallback(cb: (err: unknown) => void): void;
  /** The channel's number. */
  ch: number;
  connection: {
    channels: Array<{ channel: unknown; buffer: { write(b: Buffer): boolean } } | null>;
    sentSinceLastCheck: boolean;
  };
}

/**
 * ch.publish() as amqplib does it, less its per-message option handling and encoding: Args.publish
 * copies every option into a new object and wraps the headers in a prototype for CC and BCC, and its
 * encoders allocate a zeroed buffer per frame. Our replies have one shape: reply-frames.ts encodes the
 * same bytes into one pooled buffer, written where Connection.sendMessage writes them (the channel's
 * write buffer, which the muxer empties in order), and the confirm callback is pushed as publish() does.
 * A reply it cannot encode goes to sendMessage with the same fields. A channel or connection that has
 * closed has its sendMessage replaced by one that throws: then sendMessage is called, to throw as it
 * does. This reaches into amqplib 2.x internals: if they are not there, replies go through publish().
 */
export function publishOn(
  ch: amqp.ConfirmChannel,
  reply: Reply,
  cb: (err: unknown) => void,
  viaInternals = hasInternals(ch),
): boolean {
  if (!viaInternals)
    return ch.publish('', reply.routingKey, reply.body, { ...reply.properties, mandatory: reply.mandatory }, cb);
  const internals = ch as unknown as ChannelInternals;
  let ok = writeEncoded(internals, reply);
  if (ok === undefined) {
    const fields = publishFields(reply);
    ok = internals.sendMessage(fields, fields, reply.body);
  }
  internals.pushConfirmCallback(cb);
  return ok;
}

/** The method fields and properties of a reply's basic.publish, as amqplib's publish() builds them (Args.publish). */
export function publishFields(reply: Reply): Record<string, unknown> {
  const p = reply.properties;
  return {
    exchange: '',
    routingKey: reply.routingKey,
    mandatory: reply.mandatory,
    immediate: false,
    ticket: undefined,
    contentType: p.contentType,
    contentEncoding: undefined,
    headers: p.headers,
    deliveryMode: 2, // persistent
    priority: undefined,
    correlationId: p.correlationId,
    replyTo: undefined,
    expiration: undefined,
    messageId: p.messageId,
    timestamp: p.timestamp,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
  };
}

/** The reply's frames written to the channel's buffer; undefined when sendMessage must send it. */
function writeEncoded(internals: ChannelInternals, reply: Reply): boolean | undefined {
  const { connection } = internals;
  if (Object.hasOwn(internals, 'sendMessage') || Object.hasOwn(connection, 'sendMessage')) return undefined;
  const slot = connection.channels[internals.ch];
  // The number is this channel's (numbers are reused once a channel closes).
  if (!slot || slot.channel !== internals) return undefined;
  const frames = encodeReplyPublish(internals.ch, reply);
  if (!frames) return undefined;
  connection.sentSinceLastCheck = true;
  return slot.buffer.write(frames);
}

function hasInternals(ch: amqp.ConfirmChannel): boolean {
  const internals = ch as unknown as Partial<ChannelInternals>;
  return (
    typeof internals.sendMessage === 'function' &&
    typeof internals.pushConfirmCallback === 'function' &&
    typeof internals.ch === 'number' &&
    Array.isArray(internals.connection?.channels)
  );
}
