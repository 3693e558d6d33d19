/**
 * Several broker addresses under one recovering connection. amqplib 2.x's recovery takes one URL and
 * has no list or resolver option, but each attempt reads the URL afresh: `connect(url)` hands `url` to
 * every attempt's socket connect, and an object URL's fields (protocol, hostname, port, credentials,
 * vhost, heartbeat) are read at that moment (channel_api.js `openModel`, lib/connect.js). So the
 * connection is given one object whose fields are those of the current address, and the current
 * address moves to the next whenever an attempt fails or a connection drops: amqplib's own backoff
 * loop, trying each address in turn, and no second reconnect loop of ours.
 *
 * If a later amqplib copied the URL once, the failure would be quiet (every attempt on one address),
 * so test/unit/broker-addresses.test.ts pins the fields amqplib reads and test/faults/cluster.test.ts
 * runs a consumer on the list form against a cluster whose first node is killed.
 */
import type { Options } from 'amqplib';

/** One address as amqplib's object form of a URL (the same keys its string form takes in the query). */
export function toConnectOptions(url: string, heartbeatS: number): Options.Connect {
  const u = new URL(url);
  const protocol = u.protocol.replace(/:$/, '');
  const query = Object.fromEntries(u.searchParams);
  const int = (v: string | undefined) => (v === undefined ? undefined : Number.parseInt(v, 10));
  return {
    protocol,
    // `new URL` keeps an IPv6 host's brackets; the socket wants the bare address.
    hostname: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : protocol === 'amqps' ? 5671 : 5672,
    // Both absent means amqplib's guest/guest, as in its string form.
    ...(u.username !== '' || u.password !== ''
      ? { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) }
      : {}),
    // Still escaped: amqplib unescapes the vhost itself, for both forms.
    vhost: u.pathname.slice(1),
    heartbeat: int(query.heartbeat) ?? heartbeatS,
    ...(query.frameMax !== undefined ? { frameMax: int(query.frameMax) } : {}),
    ...(query.channelMax !== undefined ? { channelMax: int(query.channelMax) } : {}),
    ...(query.maxFrameSize !== undefined ? { maxFrameSize: int(query.maxFrameSize) } : {}),
    ...(query.locale !== undefined ? { locale: query.locale } : {}),
  };
}

export class BrokerAddresses {
  private index: number;
  private readonly options: Options.Connect[];

  /**
   * `start` picks the first address tried: random by default, so that consumers sharing one list spread
   * their connections over the nodes rather than all landing on the first.
   */
  constructor(
    readonly urls: readonly string[],
    heartbeatS: number,
    start = Math.floor(Math.random() * urls.length),
  ) {
    if (urls.length === 0) throw new Error('BrokerAddresses: no broker address');
    this.options = urls.map((u) => toConnectOptions(u, heartbeatS));
    this.index = start % urls.length;
  }

  /** The address the next attempt uses (as given, password and all: redact before logging). */
  get currentUrl(): string {
    return this.urls[this.index];
  }

  /** Moves to the next address, after the last back to the first. */
  next(): void {
    this.index = (this.index + 1) % this.urls.length;
  }

  /**
   * The object to give `amqp.connect`: its fields are always the current address's. Getters, not a
   * copy, since amqplib keeps this object and reads it again on every reconnect attempt.
   */
  connectOptions(): Options.Connect {
    const live = {} as Options.Connect;
    const keys = new Set(this.options.flatMap((o) => Object.keys(o)));
    for (const key of keys) {
      Object.defineProperty(live, key, {
        enumerable: true,
        get: () => (this.options[this.index] as Record<string, unknown>)[key],
      });
    }
    return live;
  }
}
