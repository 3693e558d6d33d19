/**
 * One recovering amqplib connection, as both sides of the broker adapter open it: amqplib's opt-in
 * recovery (capped exponential backoff with jitter, `setup` after every connect), heartbeats, TLS
 * from files, the queue declarations, and a channel that dies under a live connection recycled.
 */
import * as amqp from 'amqplib';
import type { Logger } from 'pino';
import { readConfigFile, redactUrl, type Config } from '../config.js';
import { BrokerAddresses } from './addresses.js';
import { amqplibVersion, coalesceWrites, TESTED_WITH } from './amqplib-internals.js';
import { explainPreconditionFailed, type Topology } from './topology.js';
import { foreignArgument } from './reply-queue-policy.js';

export type Role = 'consume' | 'publish';

export interface ConnectionEvents {
  connected(): void;
  disconnected(err: Error): void;
  /** A setup failure that retrying cannot mend (a clashing queue): give up the connection. */
  isFatal(): boolean;
  /** A memory or disk alarm holds (or releases) this connection's publishes. */
  blocked?(reason: string): void;
  unblocked?(): void;
}

export async function openConnection(
  a: Config['amqp'],
  role: Role,
  log: Logger,
  setup: (model: amqp.ChannelModel) => Promise<void>,
  events: ConnectionEvents,
): Promise<amqp.RecoveringChannelModel> {
  const version = amqplibVersion();
  if (role === 'consume' && !version.startsWith(`${TESTED_WITH}.`)) {
    log.warn(
      { amqplib: version, testedWith: `${TESTED_WITH}.x` },
      'amqplib version not the one its internals were checked against; the guarded fast paths may fall back to the public API',
    );
  }
  // Every address AMQP_URL lists, tried in turn by amqplib's own recovery (see addresses.ts).
  const addresses = new BrokerAddresses(a.urls, a.heartbeatS);
  const conn = await amqp.connect(addresses.connectOptions(), {
    clientProperties: { connection_name: `${a.connectionName}/${role}` },
    // Nagle off: frames are coalesced per event-loop turn instead (coalesceWrites), and a lone reply or
    // ack must not wait for the broker's delayed TCP ack.
    noDelay: true,
    // A deadline on every attempt, reconnects included: amqplib's socket timeout runs from the TCP
    // connect to the end of the AMQP handshake (then it is cleared), so a peer that accepts and never
    // answers fails the attempt, and recovery tries the next. (It is an idle timeout: each byte the
    // peer sends restarts it.)
    timeout: a.connectTimeoutMs,
    ...tlsOptions(a),
    recovery: {
      initialDelay: a.reconnect.initialMs,
      maxDelay: a.reconnect.maxMs,
      factor: 2,
      jitter: 0.2,
      maxRetries: Infinity,
      initialMaxRetries: a.connectRetriesAtBoot,
      waitForConnect: false,
      setup: async (model: amqp.ChannelModel) => {
        coalesceWrites(model);
        await setup(model);
      },
    },
  });
  conn.on('error', (err: Error) => log.warn({ role, err: err.message }, 'broker connection error'));
  conn.on('handler-error', (err: Error, event: string) =>
    log.error({ role, event, err: err.message }, 'broker event handler threw'),
  );
  conn.on('connect-failed', (err: Error) => {
    log.warn({ role, broker: redactUrl(addresses.currentUrl), err: err.message }, 'broker connect failed');
    addresses.next();
    if (events.isFatal()) void conn.close();
  });
  conn.on('reconnect-scheduled', ({ attempt, delay }: { attempt: number; delay: number }) =>
    log.info({ role, attempt, delayMs: delay }, 'reconnect scheduled'),
  );
  conn.on('connect', () => {
    log.info({ role, broker: redactUrl(addresses.currentUrl) }, 'broker connected');
    events.connected();
  });
  conn.on('disconnect', (err: Error) => {
    log.warn({ role, broker: redactUrl(addresses.currentUrl), err: err.message }, 'broker disconnected');
    addresses.next();
    events.disconnected(err);
  });
  if (events.blocked) conn.on('blocked', (reason: string) => events.blocked!(reason));
  if (events.unblocked) conn.on('unblocked', () => events.unblocked!());
  await conn.waitForConnect();
  return conn;
}

/**
 * Each on a throwaway channel, since a clash closes the channel it happens on. The input queue must
 * have our arguments (delivery limit, dead-letter route): a clash there is a BootError saying which
 * argument and how to fix it. The reply and dead-letter queues may be someone else's, declared their
 * way: we use them as they are.
 */
export async function declareQueues(
  model: amqp.ChannelModel,
  topology: Topology,
  queues: string[],
  log: Logger,
): Promise<void> {
  for (const queue of queues) {
    const ch = await model.createChannel();
    ch.on('error', () => {});
    try {
      await ch.assertQueue(queue, { durable: true, arguments: topology.argumentsOf(queue) });
      await ch.close();
    } catch (err) {
      const message = (err as Error).message;
      if (!/PRECONDITION_FAILED/.test(message)) throw err;
      if (queue === topology.inputQueue) throw explainPreconditionFailed(queue, message);
      const foreign = foreignArgument(message);
      if (foreign?.loss)
        log.warn(
          { queue, argument: foreign.argument, value: foreign.value, loss: foreign.loss },
          'reply queue has an argument that can drop confirmed replies',
        );
      else log.info({ queue, argument: foreign?.argument }, 'queue exists with its own arguments; using it as it is');
    }
  }
}

/** A channel that dies under a live connection would leave us deaf or mute: recycle the connection. */
export function watchChannel(
  ch: amqp.Channel,
  model: amqp.ChannelModel,
  role: Role,
  log: Logger,
  stillWanted: () => boolean,
): void {
  ch.on('error', (err: Error) => log.warn({ role, err: err.message }, 'channel error'));
  ch.on('handler-error', (err: Error, event: string) =>
    log.error({ role, event, err: err.message }, 'channel handler threw'),
  );
  ch.on('close', () => {
    if (stillWanted()) void model.close().catch(() => {});
  });
}

function tlsOptions(a: Config['amqp']): Record<string, unknown> {
  return {
    ...(a.caFile ? { ca: [readConfigFile('AMQP_CA_FILE', a.caFile)] } : {}),
    ...(a.certFile ? { cert: readConfigFile('AMQP_CERT_FILE', a.certFile) } : {}),
    ...(a.keyFile ? { key: readConfigFile('AMQP_KEY_FILE', a.keyFile) } : {}),
  };
}
