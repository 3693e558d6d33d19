/**
 * A RabbitMQ node of the test's own, for faults that must not touch the shared broker others test
 * against at the same time: restart it, raise its memory alarm, give it a TLS listener.
 *
 * The node runs in the foreground as our child (its own process group, its own temp dir for mnesia,
 * logs, pid file, config, an empty plugin list and a HOME holding a fresh Erlang cookie), so
 * `stop()` can always kill it, even when `rabbitmqctl stop` cannot reach it. rabbitmqctl is the
 * release's own script run with the same HOME: it reads that cookie, not the shared node's.
 *
 * For a cluster (test/support/cluster.ts) the nodes share one cookie and take names of their own, and a
 * node can be killed (`kill()`, SIGKILL to its Erlang VM) or halted (`halt()`) and booted again on the
 * same name, ports and data (`restart()`).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The release's own scripts: /usr/sbin/rabbitmqctl would `su rabbitmq` and use that user's cookie. */
const RABBITMQ_BIN = process.env.RABBITMQ_BIN ?? '/usr/lib/rabbitmq/bin';

export interface PrivateBrokerOptions {
  /** Extra rabbitmq.conf lines. */
  config?: string[];
  /** The rabbit application's settings rabbitmq.conf has no key for (e.g. `channel_tick_interval`), as Erlang terms: `{channel_tick_interval, 1000}`. */
  advanced?: string[];
  /** Adds an amqps listener that requires a client certificate signed by `caFile`. */
  tls?: { caFile: string; certFile: string; keyFile: string };
  startTimeoutS?: number;
  /** The Erlang node name; default `fault-<pid>-<random>@localhost`. */
  nodeName?: string;
  /** The Erlang cookie: the same one for every node of a cluster. Default: a fresh random one. */
  cookie?: string;
}

export interface PrivateBroker {
  /** amqp://guest:guest@127.0.0.1:<port> */
  url: string;
  port: number;
  /** Set when `tls` was asked for: amqps://guest:guest@localhost:<tlsPort> (the name the server certificate carries). */
  tlsUrl?: string;
  tlsPort?: number;
  nodeName: string;
  dir: string;
  /** How long the node took from spawn to "rabbit started" (ms). */
  startMs: number;
  /** `rabbitmqctl -n <node> ...args`; resolves with stdout, rejects with its stderr. */
  ctl(...args: string[]): Promise<string>;
  stopApp(): Promise<void>;
  startApp(): Promise<void>;
  /** SIGKILL to the node's Erlang VM (the pid in its pid file), as a crash would; its data stays for `restart()`. */
  kill(): Promise<void>;
  /** A clean `rabbitmqctl stop` (the whole VM halts); its data stays for `restart()`. */
  halt(): Promise<void>;
  /** Boots the node again on the same name, ports and data, after `kill()` or `halt()`; resolves once rabbit runs. */
  restart(): Promise<void>;
  /** Whether the node's OS process is running. */
  running(): boolean;
  /** Kills the node and removes its temp dir; safe to call twice, never throws. */
  stop(): Promise<void>;
}

/** A port below Linux's ephemeral range (32768+): no outgoing connection can be sitting on it in TIME_WAIT. */
async function freePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    if (taken.has(port) || port === 25_672) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
    });
    if (ok) {
      taken.add(port);
      return port;
    }
  }
}

/** A free TCP port for a test's own listener (e.g. the consumer's HTTP_PORT). */
export function freeTcpPort(): Promise<number> {
  return freePort(new Set());
}

export async function startPrivateBroker(options: PrivateBrokerOptions = {}): Promise<PrivateBroker> {
  let lastError: unknown;
  // A port grabbed between our check and the node's bind makes the node exit at once: try fresh ports.
  for (let attempt = 1; attempt <= 3; attempt++) {
    try {
      return await startOnce(options);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** The brief's name for it. */
export const start = startPrivateBroker;

async function startOnce(options: PrivateBrokerOptions): Promise<PrivateBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'private-rabbit-'));
  const home = join(dir, 'home');
  const taken = new Set<number>();
  const port = await freePort(taken);
  const distPort = await freePort(taken);
  const tlsPort = options.tls ? await freePort(taken) : undefined;
  const nodeName = options.nodeName ?? `fault-${process.pid}-${randomBytes(3).toString('hex')}@localhost`;

  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  mkdirSync(home);
  // A cookie of its own (or its cluster's): only CLI calls made with this HOME can reach the node.
  writeFileSync(join(home, '.erlang.cookie'), options.cookie ?? randomBytes(20).toString('hex').toUpperCase(), {
    mode: 0o400,
  });
  const conf = [
    `listeners.tcp.default = 127.0.0.1:${port}`,
    // A small node: no disk alarm from a nearly full tmp, and quick to stop.
    'disk_free_limit.absolute = 1MB',
    ...(options.tls && tlsPort
      ? [
          `listeners.ssl.default = 127.0.0.1:${tlsPort}`,
          `ssl_options.cacertfile = ${options.tls.caFile}`,
          `ssl_options.certfile = ${options.tls.certFile}`,
          `ssl_options.keyfile = ${options.tls.keyFile}`,
          'ssl_options.verify = verify_peer',
          'ssl_options.fail_if_no_peer_cert = true',
        ]
      : []),
    ...(options.config ?? []),
  ];
  writeFileSync(join(dir, 'rabbitmq.conf'), `${conf.join('\n')}\n`);
  if (options.advanced?.length)
    writeFileSync(join(dir, 'advanced.config'), `[{rabbit, [${options.advanced.join(', ')}]}].\n`);

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: home,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_PID_FILE: join(dir, 'rabbit.pid'),
    // An Erlang VM that dies (a rabbitmqctl call after stop() removed this folder) writes its dump here, not in the work tree.
    ERL_CRASH_DUMP: join(dir, 'erl_crash.dump'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
  };
  // Without the shared node's env file, say here what it said: epmd and distribution on loopback only.
  writeFileSync(join(dir, 'rabbitmq-env.conf'), 'ERL_EPMD_ADDRESS=127.0.0.1\n');
  // The process group of the node's current incarnation, for the watchdog below (a restart makes a new one).
  const pgidFile = join(dir, 'pgid');

  let child: ChildProcess | undefined;
  let exited: Promise<string> = Promise.resolve('not started');
  let stopped: Promise<void> | undefined;

  const killGroup = () => {
    try {
      if (child?.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  };
  const cleanupOnExit = () => {
    killGroup();
    rmSync(dir, { recursive: true, force: true });
  };
  // When the test process exits without running its `after` hooks...
  process.once('exit', cleanupOnExit);
  // ...or is killed outright (a runner's timeout, SIGKILL): a watchdog outside it takes the node down.
  const watchdog = spawn(
    '/bin/sh',
    [
      '-c',
      `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 -$(cat '${pgidFile}' 2>/dev/null) 2>/dev/null; rm -rf '${dir}'`,
    ],
    { detached: true, stdio: 'ignore' },
  );
  watchdog.unref();

  const ctl = async (...args: string[]): Promise<string> => {
    try {
      const { stdout } = await run(join(RABBITMQ_BIN, 'rabbitmqctl'), ['-n', nodeName, ...args], {
        env,
        timeout: 120_000,
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(
        `rabbitmqctl ${args.join(' ')} failed: ${(e.stderr || e.message).trim().split('\n').slice(0, 3).join(' ')}`,
      );
    }
  };
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const within = (ms: number) => new Promise((r) => setTimeout(r, ms));

  /** Spawns the node and resolves once rabbit runs; on failure leaves nothing running and throws with the log's tail. */
  const boot = async (): Promise<number> => {
    const outFd = openSync(join(dir, 'server.out'), 'a');
    const started = performance.now();
    // Foreground, in a process group of its own (the script stays as a shell waiting on erl): killing the group kills the node.
    const node: ChildProcess = spawn(join(RABBITMQ_BIN, 'rabbitmq-server'), [], {
      env,
      detached: true,
      stdio: ['ignore', outFd, outFd],
    });
    closeSync(outFd);
    child = node;
    writeFileSync(pgidFile, String(node.pid));
    exited = once(node, 'exit').then(([code, signal]) => `exited (${String(code ?? signal)})`);
    try {
      const timeout = String(options.startTimeoutS ?? 60);
      // `await_startup` alone fails at once while the node is not yet known to epmd; `wait <pidfile>`
      // waits for the pid file, then distribution, then the rabbit app, and fails as soon as the OS process dies.
      const waited = ctl('wait', '--timeout', timeout, env.RABBITMQ_PID_FILE!).then(() =>
        ctl('await_startup', '--timeout', timeout),
      );
      const outcome = await Promise.race([waited.then(() => 'up'), exited]);
      if (outcome !== 'up') throw new Error(`private RabbitMQ node ${nodeName} ${outcome} while starting`);
    } catch (err) {
      const log = (() => {
        try {
          return readFileSync(join(dir, 'server.out'), 'utf8').slice(-1500);
        } catch {
          return '';
        }
      })();
      killGroup();
      await Promise.race([exited, within(3000)]);
      throw new Error(`${(err as Error).message}\n${log}`);
    }
    return performance.now() - started;
  };

  const kill = async (): Promise<void> => {
    if (!running()) return;
    // The Erlang VM itself (beam.smp), as a crash or the OOM killer would; the shell around it then exits.
    try {
      process.kill(Number(readFileSync(env.RABBITMQ_PID_FILE!, 'utf8').trim()), 'SIGKILL');
    } catch {
      // No pid file yet, or already gone: the group kill below takes whatever is there.
    }
    await Promise.race([exited, within(5000)]);
    // epmd helpers and anything else left of the group.
    killGroup();
    await Promise.race([exited, within(3000)]);
  };

  const halt = async (): Promise<void> => {
    if (!running()) return;
    // A clean halt takes ~1 s; anything slower (or a node that cannot be reached) is killed.
    await Promise.race([ctl('stop').catch(() => {}), within(15_000)]);
    await Promise.race([exited, within(5000)]);
    killGroup();
    await Promise.race([exited, within(3000)]);
  };

  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      process.removeListener('exit', cleanupOnExit);
      watchdog.kill('SIGKILL');
      if (running()) {
        await Promise.race([ctl('stop').catch(() => {}), within(5000)]);
        await Promise.race([exited, within(3000)]);
      }
      // Whatever is left of the group (the node, erl_child_setup, inet_gethost), even when the shell has gone.
      killGroup();
      await Promise.race([exited, within(3000)]);
      rmSync(dir, { recursive: true, force: true });
    })());

  let startMs: number;
  try {
    startMs = await boot();
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    port,
    tlsUrl: tlsPort ? `amqps://guest:guest@localhost:${tlsPort}` : undefined,
    tlsPort,
    nodeName,
    dir,
    startMs,
    ctl,
    stopApp: async () => void (await ctl('stop_app')),
    startApp: async () => {
      await ctl('start_app');
      await ctl('await_startup', '--timeout', '60');
    },
    kill,
    halt,
    restart: async () => {
      if (stopped) throw new Error(`private RabbitMQ node ${nodeName} was stopped for good`);
      if (running()) throw new Error(`private RabbitMQ node ${nodeName} is still running`);
      await boot();
    },
    running,
    stop,
  };
}
