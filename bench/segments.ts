/**
 * Where a reply's latency is spent, from the wire: a capture of the broker's port on loopback during a
 * fixed-rate phase (`bench/ab.ts --segments`), each message followed by its correlation id through its
 * four frames — published by the load generator, delivered to the consumer, the reply published by the
 * consumer, the reply delivered to the reader — so each latency splits into the broker's part before the
 * consumer, the consumer's own part, and the broker's part after it. Stamped by the kernel as the bytes
 * cross loopback: a pause in any one process moves only its own part. The load generator's and reader's
 * own parts (before the first frame, after the last) are what the total measured in the benchmark's
 * process adds to the wire's.
 *
 * Needs `dumpcap` and `tshark` (Debian's tshark) and root, or capture rights on `lo`.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { percentileOf } from './load.js';

/** The four frames of one message's trip, by when they crossed loopback (seconds). */
interface Trip {
  published?: number;
  delivered?: number;
  replied?: number;
  replyDelivered?: number;
}

export const SEGMENTS = [
  'broker before the consumer',
  'the consumer',
  'broker after the consumer',
  'on the wire, all',
] as const;
export type Segment = (typeof SEGMENTS)[number];

/** Milliseconds of each segment, one entry per message seen in all four frames, in the order published. */
export type Segments = Record<Segment, number[]>;

/**
 * Reads tshark's lines (`time|src port|dst port|routing keys|correlation ids`, one packet each; a packet
 * may carry several frames, their fields joined by commas) into each message's segments. `brokerPort`
 * tells the two directions apart; a routing key ending in `replySuffix` is a reply's.
 */
export function segmentsOf(lines: readonly string[], brokerPort: number, replySuffix = '.replies'): Segments {
  const packets = lines
    .map((line) => line.split('|'))
    .filter(([, src, dst, , ids]) => ids && (Number(src) === brokerPort || Number(dst) === brokerPort));
  // Each direction of a connection carries one kind of frame (requests, or replies): a header frame that
  // TCP put in a packet of its own, without its method frame's routing key, is known by its connection.
  const replyLinks = new Set(
    packets
      .filter(([, , , keys]) => keys.split(',').some((k) => k.endsWith(replySuffix)))
      .map(([, s, d]) => `${s}>${d}`),
  );
  const trips = new Map<string, Trip>();
  for (const [time, src, dst, , ids] of packets) {
    const reply = replyLinks.has(`${src}>${dst}`);
    const field: keyof Trip =
      Number(dst) === brokerPort ? (reply ? 'replied' : 'published') : reply ? 'replyDelivered' : 'delivered';
    for (const id of ids.split(',')) {
      if (!id) continue;
      let trip = trips.get(id);
      if (!trip) trips.set(id, (trip = {}));
      trip[field] ??= Number(time);
    }
  }
  const out: Segments = Object.fromEntries(SEGMENTS.map((s) => [s, [] as number[]])) as unknown as Segments;
  const whole = [...trips.values()].filter(
    (t): t is Required<Trip> =>
      t.published !== undefined &&
      t.delivered !== undefined &&
      t.replied !== undefined &&
      t.replyDelivered !== undefined,
  );
  whole.sort((a, b) => a.published - b.published);
  for (const t of whole) {
    out['broker before the consumer'].push((t.delivered - t.published) * 1000);
    out['the consumer'].push((t.replied - t.delivered) * 1000);
    out['broker after the consumer'].push((t.replyDelivered - t.replied) * 1000);
    out['on the wire, all'].push((t.replyDelivered - t.published) * 1000);
  }
  return out;
}

/** One line per segment: p50, p90, p99, max; then each segment's mean over the slowest 1% of messages by the whole. */
export function segmentTable(s: Segments): string {
  const n = s['on the wire, all'].length;
  if (n === 0) return 'segments: no message was seen in all four frames (was the capture on the broker port?)';
  const rows = SEGMENTS.map((name) => {
    // percentileOf sorts in place: one copy, sorted once, serves the four.
    const sorted = [...s[name]];
    const cells = [50, 90, 99, 100].map((p) => percentileOf(sorted, p).toFixed(2).padStart(7));
    return `  ${name.padEnd(28)}${cells.join('')}`;
  });
  const slowest = s['on the wire, all']
    .map((ms, i) => [ms, i] as const)
    .sort((a, b) => b[0] - a[0])
    .slice(0, Math.max(1, Math.round(n / 100)))
    .map(([, i]) => i);
  const share = SEGMENTS.slice(0, 3)
    .map((name) => `${name} ${(slowest.reduce((sum, i) => sum + s[name][i], 0) / slowest.length).toFixed(2)}`)
    .join(', ');
  return [
    `segments of ${n} messages (ms)${' '.repeat(7)}    p50    p90    p99    max`,
    ...rows,
    `  the slowest 1% (${slowest.length}), mean ms: ${share}`,
  ].join('\n');
}

/** A capture of the broker's port on loopback, running until stop(). */
export class Capture {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly file: string,
    private readonly port: number,
    private errors: string,
  ) {}

  static async start(port: number): Promise<Capture> {
    const missing = ['dumpcap', 'tshark'].filter((c) => spawnSync('which', [c]).status !== 0);
    if (missing.length > 0)
      throw new Error(`segments: ${missing.join(' and ')} not found; install Debian's tshark (apt-get install tshark)`);
    const dir = mkdtempSync(join(tmpdir(), 'segments-'));
    const file = join(dir, 'capture.pcapng');
    const child = spawn('dumpcap', ['-q', '-i', 'lo', '-f', `tcp port ${port}`, '-w', file], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const capture = new Capture(child, dir, file, port, '');
    child.stderr!.on('data', (d: Buffer) => (capture.errors += d.toString()));
    // dumpcap opens the interface before its first packet: give it that long, and fail now if it could not.
    await new Promise((r) => setTimeout(r, 500));
    if (child.exitCode !== null) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(
        `segments: dumpcap could not capture on lo (run as root): ${capture.errors.trim().split('\n')[0]}`,
      );
    }
    return capture;
  }

  /** Stops the capture and reads each message's segments out of it. */
  async stop(): Promise<Segments> {
    await this.end();
    try {
      const out = spawnSync(
        'tshark',
        ['-r', this.file, '-Y', 'amqp.method.properties.correlation_id', '-T', 'fields', '-E', 'separator=|']
          .concat(['-e', 'frame.time_epoch', '-e', 'tcp.srcport', '-e', 'tcp.dstport'])
          .concat(['-e', 'amqp.method.arguments.routing_key', '-e', 'amqp.method.properties.correlation_id']),
        { encoding: 'utf8', maxBuffer: 1 << 30 },
      );
      if (out.status !== 0)
        throw new Error(`segments: tshark could not read the capture: ${out.stderr.trim().split('\n')[0]}`);
      return segmentsOf(out.stdout.split('\n'), this.port);
    } finally {
      this.discard();
    }
  }

  /** Stops the capture, if it still runs, and deletes it unread: a phase that failed leaves no dumpcap behind. */
  async close(): Promise<void> {
    await this.end();
    this.discard();
  }

  private async end(): Promise<void> {
    // A dumpcap that already died sends no second 'exit'.
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await exited;
  }

  private discard(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
