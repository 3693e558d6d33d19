/**
 * A throwaway virtual host with RabbitMQ's firehose tracer on: every message published into it is
 * copied to `amq.rabbitmq.trace`, so a test can count what a process really published, per
 * correlation id, without touching that process. Only this vhost is traced; the shared broker's
 * other vhosts are left alone. `remove()` deletes the vhost and every queue in it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type * as amqp from 'amqplib';
import { AMQP_URL, type TestClient, uniqueName } from './broker.js';

const rabbitmqctl = (...args: string[]) => promisify(execFile)('rabbitmqctl', args, { timeout: 30_000 });

export interface TracedVhost {
  name: string;
  /** AMQP_URL with this vhost. */
  url: string;
  /** Starts counting publishes routed to `queue`, by correlation id. */
  tracePublishes(client: TestClient, queue: string): Promise<Map<string, number>>;
  remove(): Promise<void>;
}

export async function createTracedVhost(prefix: string): Promise<TracedVhost> {
  const name = uniqueName(prefix);
  await rabbitmqctl('add_vhost', name);
  await rabbitmqctl('set_permissions', '-p', name, new URL(AMQP_URL).username || 'guest', '.*', '.*', '.*');
  await rabbitmqctl('trace_on', '-p', name);
  const url = new URL(AMQP_URL);
  url.pathname = `/${encodeURIComponent(name)}`;
  return {
    name,
    url: url.toString(),
    async tracePublishes(client, queue) {
      const counts = new Map<string, number>();
      const ch = await client.connection.createChannel();
      ch.on('error', () => {});
      const { queue: trace } = await ch.assertQueue('', { exclusive: true });
      // Publishes to the default exchange (named "") are traced with the routing key "publish.".
      await ch.bindQueue(trace, 'amq.rabbitmq.trace', 'publish.');
      await ch.consume(
        trace,
        (m: amqp.ConsumeMessage | null) => {
          const h = m?.properties.headers as
            | { routing_keys?: string[]; properties?: { correlation_id?: string } }
            | undefined;
          const id = h?.properties?.correlation_id;
          if (id && h?.routing_keys?.includes(queue)) counts.set(id, (counts.get(id) ?? 0) + 1);
        },
        { noAck: true },
      );
      return counts;
    },
    async remove() {
      await rabbitmqctl('delete_vhost', name).catch(() => {});
    },
  };
}
