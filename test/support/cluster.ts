/**
 * A three-node RabbitMQ cluster on this machine, and HAProxy in front of it, for the cluster fault test
 * and `npm run cluster`. Each node is a private node (test/support/private-broker.ts: its own name,
 * ports, data folder and HOME) sharing one Erlang cookie; the second and third join the first with
 * `rabbitmqctl join_cluster`. HAProxy (Debian's package) listens on one port and forwards each new
 * connection to a node that passes its TCP check, so a consumer pointed at it reconnects to a live node.
 *
 * Every process started here is our child in a group of its own and is killed by `stop()`, by an exit
 * hook, and by a watchdog shell should this process die without running either.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, startPrivateBroker, type PrivateBroker } from './private-broker.js';

/** Debian installs it in /usr/sbin, which a non-root PATH may lack. */
export const HAPROXY_BIN =
  process.env.HAPROXY_BIN ?? (existsSync('/usr/sbin/haproxy') ? '/usr/sbin/haproxy' : 'haproxy');

export interface ClusterOptions {
  /** Three unless told (a quorum queue needs a majority: three nodes survive one loss). */
  size?: number;
  /** Start HAProxy in front of the nodes (default true). */
  haproxy?: boolean;
  startTimeoutS?: number;
}

export interface QueueMembers {
  leader: string;
  members: string[];
  online: string[];
}

export interface Cluster {
  nodes: PrivateBroker[];
  /** The HAProxy address, amqp://guest:guest@127.0.0.1:<port> (undefined without HAProxy). */
  url?: string;
  /** Every node's address, comma-separated: AMQP_URL's list form. */
  urls: string;
  /** The node named `name` (`fault-…@localhost`). */
  node(name: string): PrivateBroker;
  /** The quorum queue's leader, members and online members, asked of a running node. */
  members(queue: string): Promise<QueueMembers>;
  /** Resolves once `node` is a running member of the cluster again (after its restart), as every running node sees it. */
  awaitRejoined(node: PrivateBroker, timeoutMs?: number): Promise<void>;
  /** Moves `queue`'s leadership to `node`, as maintenance mode does, and resolves once `node` leads it. */
  moveLeader(queue: string, node: PrivateBroker, timeoutMs?: number): Promise<void>;
  /** Takes `node`'s replica of the quorum queue `queue` away (`rabbitmq-queues delete_member`). */
  removeMember(queue: string, node: PrivateBroker): Promise<void>;
  /** Gives `node` a replica of the quorum queue `queue` again (`rabbitmq-queues add_member`). */
  addMember(queue: string, node: PrivateBroker): Promise<void>;
  /** Resolves once `queue` has `count` online members (its replicas caught up after a restart). */
  awaitOnline(queue: string, count: number, timeoutMs?: number): Promise<QueueMembers>;
  /** Stops HAProxy and every node, removing their folders; safe to call twice, never throws. */
  stop(): Promise<void>;
}

/** Whether HAProxy can be run here (`haproxy -v`). */
export function haproxyAvailable(): boolean {
  return spawnSync(HAPROXY_BIN, ['-v'], { stdio: 'ignore' }).status === 0;
}

export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const size = options.size ?? 3;
  const cookie = randomBytes(20).toString('hex').toUpperCase();
  const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const nodes: PrivateBroker[] = [];
  let proxy: HaproxyProcess | undefined;
  let stopped: Promise<void> | undefined;

  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await proxy?.stop();
      await Promise.all(nodes.map((n) => n.stop()));
    })());

  try {
    // One at a time: on two busy cores, three Erlang VMs booting at once take longer than three in a row.
    for (let i = 0; i < size; i++) {
      nodes.push(
        await startPrivateBroker({
          nodeName: `cluster-${tag}-${i + 1}@localhost`,
          cookie,
          startTimeoutS: options.startTimeoutS ?? 120,
        }),
      );
    }
    for (const n of nodes.slice(1)) {
      await n.ctl('stop_app');
      await n.ctl('join_cluster', nodes[0].nodeName);
      await n.ctl('start_app');
      await n.ctl('await_startup', '--timeout', '120');
    }
    const running = await runningNodes(nodes[0]);
    if (running.length !== size)
      throw new Error(`cluster formed with ${running.length} of ${size} nodes running: ${running.join(', ')}`);
    if (options.haproxy !== false) proxy = await startHaproxy(nodes);
  } catch (err) {
    await stop();
    throw err;
  }

  const anyRunning = (): PrivateBroker => {
    const n = nodes.find((x) => x.running());
    if (!n) throw new Error('no cluster node is running');
    return n;
  };

  const members = async (queue: string): Promise<QueueMembers> => {
    const out = await anyRunning().ctl(
      'list_queues',
      'name',
      'leader',
      'members',
      'online',
      '--formatter',
      'json',
      '--quiet',
    );
    const rows = JSON.parse(out) as Array<{ name: string; leader: string; members: string[]; online: string[] }>;
    const row = rows.find((r) => r.name === queue);
    if (!row) throw new Error(`queue ${queue} not found on the cluster`);
    return { leader: row.leader, members: row.members, online: row.online };
  };

  return {
    nodes,
    url: proxy ? `amqp://guest:guest@127.0.0.1:${proxy.port}` : undefined,
    urls: nodes.map((n) => n.url).join(','),
    node: (name) => {
      const n = nodes.find((x) => x.nodeName === name);
      if (!n) throw new Error(`no node ${name} in the cluster`);
      return n;
    },
    members,
    async awaitRejoined(node, timeoutMs = 60_000) {
      await poll(
        async () => {
          for (const n of nodes.filter((x) => x.running()))
            if (!(await runningNodes(n)).includes(node.nodeName)) return false;
          return true;
        },
        timeoutMs,
        `${node.nodeName} running in the cluster again`,
      );
    },
    async moveLeader(queue, node, timeoutMs = 30_000) {
      await poll(
        async () => {
          if ((await members(queue)).leader === node.nodeName) return true;
          // rabbitmq-queues has no command for one queue's leader; maintenance mode moves leaders with this call.
          await node.ctl(
            'eval',
            `{ok, Q} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>, queue, ${binary(queue)})), rabbit_quorum_queue:transfer_leadership(Q, '${node.nodeName}').`,
          );
          return false;
        },
        timeoutMs,
        `${node.nodeName} leading ${queue}`,
      );
    },
    removeMember: (queue, node) =>
      evalOk(anyRunning(), `rabbit_quorum_queue:delete_member(<<"/">>, ${binary(queue)}, '${node.nodeName}').`),
    addMember: (queue, node) =>
      evalOk(anyRunning(), `rabbit_quorum_queue:add_member(<<"/">>, ${binary(queue)}, '${node.nodeName}', 30000).`),
    async awaitOnline(queue, count, timeoutMs = 60_000) {
      let last: QueueMembers | undefined;
      await poll(
        async () => {
          last = await members(queue);
          return last.online.length >= count && last.leader !== '';
        },
        timeoutMs,
        () => `${queue} with ${count} online members (last: ${JSON.stringify(last)})`,
      );
      return last!;
    },
    stop,
  };
}

/** `name` as an Erlang binary literal for `rabbitmqctl eval`: the tests' queue names need no escaping, and others are refused. */
function binary(name: string): string {
  if (!/^[\w.-]+$/.test(name)) throw new Error(`queue name ${name} cannot be quoted for rabbitmqctl eval`);
  return `<<"${name}">>`;
}

/** `rabbitmqctl eval` of an expression that returns `ok` when it worked; anything else is thrown. */
async function evalOk(node: PrivateBroker, expression: string): Promise<void> {
  const out = (await node.ctl('eval', expression)).trim();
  if (out !== 'ok') throw new Error(`rabbitmqctl eval ${expression} gave ${out}`);
}

/** The cluster's running nodes as `node` sees them. */
async function runningNodes(node: PrivateBroker): Promise<string[]> {
  const status = JSON.parse(await node.ctl('cluster_status', '--formatter', 'json')) as { running_nodes: string[] };
  return status.running_nodes;
}

async function poll(check: () => Promise<boolean>, timeoutMs: number, what: string | (() => string)): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

interface HaproxyProcess {
  port: number;
  stop(): Promise<void>;
}

/**
 * HAProxy in TCP mode: round-robin over the nodes that pass a TCP check every 500 ms, a failed
 * connect retried on another node. Idle timeouts longer than any heartbeat interval, so it is the
 * broker and the client, not the proxy, that decide when a silent connection is dead.
 */
async function startHaproxy(nodes: PrivateBroker[]): Promise<HaproxyProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'cluster-haproxy-'));
  const port = await freeTcpPort();
  const config = [
    'global',
    '  maxconn 4096',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 3h',
    '  timeout server 3h',
    '  retries 3',
    '  option redispatch',
    `frontend amqp`,
    `  bind 127.0.0.1:${port}`,
    '  default_backend rabbitmq',
    'backend rabbitmq',
    '  balance roundrobin',
    ...nodes.map(
      (n, i) =>
        `  server node${i + 1} 127.0.0.1:${n.port} check inter 500 fall 1 rise 2 on-marked-down shutdown-sessions`,
    ),
  ];
  const file = join(dir, 'haproxy.cfg');
  writeFileSync(file, `${config.join('\n')}\n`);
  // -db: foreground, no daemon; -W off. Our child in its own group, so the kill reaches it whatever it forked.
  const child: ChildProcess = spawn(HAPROXY_BIN, ['-db', '-f', file], {
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = once(child, 'exit');
  const killGroup = () => {
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  const cleanupOnExit = () => {
    killGroup();
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanupOnExit);
  const watchdog = spawn(
    '/bin/sh',
    [
      '-c',
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 -${child.pid} 2>/dev/null; rm -rf '${dir}'`,
    ],
    {
      detached: true,
      stdio: 'ignore',
    },
  );
  watchdog.unref();
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      process.removeListener('exit', cleanupOnExit);
      watchdog.kill('SIGKILL');
      killGroup();
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      rmSync(dir, { recursive: true, force: true });
    })());

  // Listening once a TCP connect succeeds.
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`haproxy exited while starting: ${stderr.trim().split('\n').slice(-3).join(' ')}`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return { port, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy not listening on 127.0.0.1:${port} after 15 s: ${stderr.trim()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
