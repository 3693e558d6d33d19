/**
 * `scorer submit input.jsonl --out results.jsonl`: every input line as a message, the replies
 * collected on the run's own durable queue and written in input order, resumable after a kill.
 *
 * What makes resuming safe:
 * - a reply is acked only after its result line is written, so one the CLI had not written yet is
 *   still in the reply queue for the next run;
 * - the state file records how far the input has been sent, updated only after the broker confirmed
 *   those publishes: a resumed run never sends again a line at or below that mark, nor one that has a
 *   result; at most the last unconfirmed chunk is sent twice, and its second reply is dropped.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { CliBroker, type ReplyMessage } from './amqp.js';
import { InOrder } from './in-order.js';
import { openInput, type InputSource } from './inputs.js';
import { createProgress, type Progress } from './progress.js';
import { correlationIdFor, errorRecord, lineOf, resultRecord, type WrittenResults } from './records.js';
import { removeState, startOrResume, statePathFor, writeState, type RunState } from './run-state.js';

export interface SubmitOptions {
  /** A JSON Lines file, or a folder or glob of files (one message each). */
  input: string;
  /** For files: the content type of every file, instead of one from each file's extension. */
  contentType?: string;
  out: string;
  url: string;
  queue: string;
  maxInFlight: number;
  /** Messages per second at most; 0: as fast as the consumers answer. */
  rate: number;
  /** Stop (resumable) when no result arrives for this long with lines outstanding; 0: wait for ever. */
  idleTimeoutS: number;
  resume: boolean;
  progress: boolean;
  signal?: AbortSignal;
}

export interface Output {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
}

/** Publishes between confirm waits; each wait also moves the state file's mark. */
const CONFIRM_CHUNK = 256;
/** Prefetch is the window plus this: duplicates and strays, acked at once, never starve the window. */
const PREFETCH_SLACK = 64;

/** Resolves with the exit code: 0 when every line has a result, 1 when stopped (resumable), 130 on SIGINT. */
export async function submit(o: SubmitOptions, io: Output): Promise<number> {
  const source = await openInput(o.input, o.contentType);
  const statePath = statePathFor(o.out);
  const { state, written } = startOrResume(o, source.id, statePath, io.stderr, source.digest);
  const broker = await CliBroker.connect(o.url, `scorer-submit/${state.runId}`);
  try {
    await broker.requireQueue(o.queue, ', or pass --queue');
    await broker.declareRunQueue(state.replyQueue);
    writeState(statePath, state);
    return await new Run(o, io, broker, state, statePath, written, source).run();
  } finally {
    await broker.close();
  }
}

type Ack = () => void;

class Run {
  private readonly order: InOrder<Ack>;
  private readonly fd: number;
  private readonly progress: Progress | undefined;
  private readonly started = performance.now();
  private ok = 0;
  private errors = 0;
  private sent = 0;
  private duplicates = 0;
  private lastResultAt = performance.now();
  private stopReason: string | undefined;
  private exitCode = 1;
  private wake: (() => void) | undefined;
  private readonly stopped: Promise<undefined>;
  private onStopped!: () => void;
  private writeScheduled = false;
  private fileClosed = false;
  private returned = false;
  /** The last input line handled (sent, answered locally, or blank); the state file's mark follows it after each confirm. */
  private handledThrough: number;
  /** Lines handled since the mark last moved. */
  private unflushed = 0;
  private readonly total: number;

  constructor(
    private readonly o: SubmitOptions,
    private readonly io: Output,
    private readonly broker: CliBroker,
    private readonly state: RunState,
    private readonly statePath: string,
    private readonly written: WrittenResults,
    private readonly source: InputSource,
  ) {
    const total = source.total;
    this.total = total;
    this.order = new InOrder<Ack>(written.lastLine, state.sentThrough);
    this.stopped = new Promise((r) => (this.onStopped = () => r(undefined)));
    this.handledThrough = state.sentThrough;
    this.fd = openSync(o.out, 'a');
    if (o.progress) this.progress = createProgress(total, written.ok + written.errors, io.stderr);
  }

  async run(): Promise<number> {
    const { o, broker, state } = this;
    const onAbort = () => this.stop('interrupted', 130);
    o.signal?.addEventListener('abort', onAbort);
    broker.onLost((why) => this.stop(why, 1));
    broker.onReturn((correlationId) => {
      this.returned = true;
      this.stop(`queue '${o.queue}' is gone: the message ${correlationId ?? ''} came back unroutable`, 1);
    });
    const idle = setInterval(() => this.checkIdle(), 1000);
    try {
      const backlog = Math.max(0, state.sentThrough - this.written.lastLine);
      const prefetch = Math.min(65_535, Math.max(o.maxInFlight, backlog) + PREFETCH_SLACK);
      await broker.consumeReplies(state.replyQueue, prefetch, (reply, ack) => this.onReply(reply, ack));
      await this.sendAll();
      if (!this.stopReason) {
        for (const ack of this.order.takeStrays()) ack();
        while (!this.stopReason && this.order.pending > 0) await this.nextWake();
      }
    } finally {
      clearInterval(idle);
      o.signal?.removeEventListener('abort', onAbort);
    }
    this.writeReady();
    this.progress?.stop();
    closeSync(this.fd);
    this.fileClosed = true;
    if (this.stopReason) return this.interrupted();
    await broker.deleteQueue(state.replyQueue);
    removeState(this.statePath);
    this.summary();
    return 0;
  }

  /** Reads the input and publishes each new line, keeping at most maxInFlight lines without a written result. */
  private async sendAll(): Promise<void> {
    const { o, order, written, state } = this;
    // Lines up to here were sent by an interrupted run: wait for their replies, do not send them again.
    const sentBefore = state.sentThrough;
    // The source's iterator is closed by the loop's exit (break, return or throw).
    for await (const item of this.source.items(written.lastLine)) {
      const { line } = item;
      if (this.stopReason) break;
      if (line <= written.lastLine) continue;
      if (item.blank) {
        this.handled(line);
        continue;
      }
      if (line > sentBefore) {
        while (order.pending >= o.maxInFlight && !this.stopReason) {
          await this.flushConfirms();
          // Results may have come in during the flush: wait only if there is still no room.
          if (order.pending >= o.maxInFlight) await this.nextWake();
        }
        await this.pace();
        if (this.stopReason) break;
      }
      order.expect(line);
      if ('error' in item) {
        // Not sent: the consumer would answer the same, and nothing could be wrapped.
        const record = errorRecord(line, item.error, item.code, this.source.nameOf?.(line));
        order.resolve(line, record.text, false);
        this.scheduleWrite();
      } else if (line > sentBefore) {
        this.sent++;
        const ok = this.broker.publish(o.queue, item.body, {
          correlationId: correlationIdFor(state.runId, line),
          replyTo: state.replyQueue,
          contentType: item.contentType,
        });
        if (!ok) await this.untilStopped(this.broker.drain());
      } else {
        // Sent by the interrupted run: its reply may be here already, waiting for this line to be reached.
        this.scheduleWrite();
      }
      this.handled(line);
      if (this.unflushed >= CONFIRM_CHUNK) await this.flushConfirms();
    }
    await this.flushConfirms(true);
  }

  private handled(line: number): void {
    this.handledThrough = line;
    this.unflushed++;
  }

  /**
   * Waits for the broker's confirms, then records how far the input is sent. Only a confirm moves the
   * mark: a publish still in the client's buffer when the run stops may never reach the broker, so a
   * resumed run must send it again.
   */
  private async flushConfirms(final = false): Promise<void> {
    if (this.unflushed === 0) return;
    const through = this.handledThrough;
    let confirmed: boolean | undefined;
    try {
      confirmed = await this.untilStopped(
        this.broker.waitForConfirms().then(() => true),
        final,
      );
    } catch (err) {
      this.stop(`the broker refused a message: ${(err as Error).message}`, 1);
      return;
    }
    if (!confirmed) return;
    this.unflushed = 0;
    // A returned message was confirmed too, but went nowhere: leave the mark where it was.
    if (this.returned || through <= this.state.sentThrough) return;
    this.state.sentThrough = through;
    writeState(this.statePath, this.state);
  }

  private async pace(): Promise<void> {
    if (!this.o.rate) return;
    const due = this.started + (this.sent / this.o.rate) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  }

  private onReply(reply: ReplyMessage, ack: Ack): void {
    const line = lineOf(this.state.runId, reply.correlationId);
    if (line === undefined) {
      ack();
      return;
    }
    const record = resultRecord(line, reply, this.source.nameOf?.(line));
    if (this.order.resolve(line, record.text, record.ok, ack) === 'duplicate') {
      this.duplicates++;
      ack();
      return;
    }
    this.scheduleWrite();
  }

  /** Writes coalesce per event-loop turn: one write call for every result that became writable. */
  private scheduleWrite(): void {
    if (this.writeScheduled) return;
    this.writeScheduled = true;
    setImmediate(() => {
      this.writeScheduled = false;
      this.writeReady();
    });
  }

  private writeReady(): void {
    // After the file is closed, replies stay unacked: closing the connection hands them back to the queue.
    if (this.fileClosed) return;
    const ready = this.order.takeReady();
    if (ready.length === 0) return;
    writeSync(this.fd, ready.map((r) => r.text).join(''));
    // Only now may the broker forget the replies: they are in the file.
    for (const r of ready) {
      r.ack?.();
      if (r.ok) this.ok++;
      else this.errors++;
    }
    this.lastResultAt = performance.now();
    this.progress?.update(this.written.ok + this.written.errors + this.ok + this.errors);
    this.signal();
  }

  private checkIdle(): void {
    const idleS = (performance.now() - this.lastResultAt) / 1000;
    if (this.o.idleTimeoutS > 0 && this.order.pending > 0 && idleS > this.o.idleTimeoutS) {
      this.stop(
        `no reply for ${this.o.idleTimeoutS} s with ${this.order.pending} lines outstanding (are the consumers running?)`,
        1,
      );
    }
  }

  private stop(reason: string, exitCode: number): void {
    if (this.stopReason) return;
    this.stopReason = reason;
    this.exitCode = exitCode;
    this.onStopped();
    this.signal();
  }

  private signal(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private nextWake(): Promise<void> {
    if (this.stopReason) return Promise.resolve();
    return new Promise((r) => (this.wake = r));
  }

  /**
   * Waits for `p`, or gives up when the run stops (a dead connection may never answer). The last
   * flush waits anyway, a few seconds at most, so the state file records what was sent.
   */
  private untilStopped<T>(p: Promise<T>, evenIfStopped = false): Promise<T | undefined> {
    const giveUp = evenIfStopped
      ? new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000).unref())
      : this.stopped;
    // Given up on, `p` may still reject later (the connection closing): that is expected, not unhandled.
    p.catch(() => {});
    return Promise.race([p, giveUp]);
  }

  private interrupted(): number {
    const done = this.written.ok + this.written.errors + this.ok + this.errors;
    this.io.stderr.write(
      `submit stopped: ${this.stopReason}. ${done} of ${this.total} lines have a result in ${this.o.out}; ` +
        `run the same command with --resume to go on (the state is in ${this.statePath})\n`,
    );
    return this.exitCode;
  }

  private summary(): void {
    const seconds = (performance.now() - this.started) / 1000;
    const answered = this.ok + this.errors;
    const previous = this.written.ok + this.written.errors;
    const ok = this.written.ok + this.ok;
    const errors = this.written.errors + this.errors;
    this.io.stdout.write(
      `submit done: ${ok + errors} lines, ${ok} ok, ${errors} errors` +
        (previous ? ` (${previous} of them from the interrupted run)` : '') +
        `; ${answered} answered in ${seconds.toFixed(1)} s, ${Math.round(answered / Math.max(seconds, 0.001))} msg/s` +
        (this.duplicates ? `; ${this.duplicates} duplicate replies dropped` : '') +
        `; results in ${this.o.out}\n`,
    );
  }
}
