/**
 * `scorer dead-letters list | answer | replay`: the messages parked in `<INPUT_QUEUE>.dead` after the
 * delivery limit, whose callers would otherwise wait for ever.
 *
 * Each command is one pass over the dead queue, from its head, taking one message at a time (basic.get)
 * up to the number parked when the pass began, in chunks of --window unacked messages (default 1):
 * - list: prints each one and puts a copy back at the tail (see parked.ts: never a requeue);
 * - answer: sends each caller not yet answered a POISON error reply, built as the consumer builds its
 *   error replies (reply.ts), then keeps the message (a copy at the tail, marked x-poison-answered) or,
 *   with --drop, drops it;
 * - replay: publishes each one (or the first --limit) to the input queue, in order, and drops it.
 * Per chunk: publish the replies and wait for their confirms; then the copies, and wait; then write the
 * chunk's keys to the state file; then ack. So a kill leaves, at worst, the last chunk to be done again
 * (answered twice, copied twice), and running the same command again resumes the pass where it stopped.
 * A second run after a complete one changes nothing: answered messages carry their mark, replayed ones
 * are gone.
 */
import { type QueueReader, type Taken, CliBroker } from './amqp.js';
import {
  ANSWERED_HEADER,
  PASS_HEADER,
  copyProperties,
  describeParked,
  listLine,
  passOf,
  poisonText,
  requestKey,
  type ParkedInfo,
} from './parked.js';
import { defaultStatePath, openPass, PassJournal, type PassCommand, type PassState } from './pass-state.js';
import { createProgress, type Progress } from './progress.js';
import type { Output } from './submit.js';
import { buildReply } from '../reply.js';
import { passTraceHeaders } from '../tracing.js';
import { deadQueueOf } from '../broker/topology.js';

/**
 * Unacked messages at most, by default. A kill hands the unacked ones back to the queue, and a quorum
 * queue returns several out of order (seen on 3.10.8: 32 came back with 4 of them moved behind the rest);
 * one comes back at the head. So one at a time keeps the order through a kill, and answers at most one
 * caller twice; --window trades that for speed.
 */
export const DEFAULT_WINDOW = 1;
export const MAX_WINDOW = 256;

export interface DeadLettersOptions {
  command: PassCommand;
  url: string;
  /** INPUT_QUEUE: the dead queue is `<queue>.dead`, replay's destination is the queue itself. */
  queue: string;
  replyQueue: string;
  deliveryLimit: number;
  /** The state file; default: defaultStatePath() in the working directory. */
  statePath?: string;
  /** list: JSON Lines instead of a table. */
  json?: boolean;
  /** answer: drop the answered messages instead of keeping them. */
  drop?: boolean;
  /** replay: only the first n. */
  limit?: number;
  /** answer: the x-model header, as the consumer sets it. */
  modelName?: string;
  /** Unacked messages at most (DEFAULT_WINDOW). */
  window?: number;
  progress: boolean;
  signal?: AbortSignal;
}

interface Counts {
  taken: number;
  /** list: parked, by whether they were answered. */
  answeredBefore: number;
  /** answer: POISON replies confirmed. */
  answered: number;
  /** answer: replies returned from a caller's replyTo queue that no longer exists. */
  callersGone: number;
  replayed: number;
  kept: number;
  dropped: number;
  /** Finished by the interrupted run, met again and acked. */
  resumed: number;
  /** A second copy of a request met in the same pass, dropped. */
  duplicates: number;
  reasons: Map<string, number>;
  oldest?: string;
}

/** Resolves with the exit code: 0 when the pass is complete, 1 when it stopped (resumable), 130 on SIGINT. */
export async function deadLetters(o: DeadLettersOptions, io: Output): Promise<number> {
  const deadQueue = deadQueueOf(o.queue);
  const statePath = o.statePath ?? defaultStatePath(deadQueue);
  const broker = await CliBroker.connect(o.url, `scorer-dead-letters/${o.command}`);
  try {
    const parked = await broker.queueDepth(deadQueue);
    if (parked === undefined)
      throw new Error(
        `queue '${deadQueue}' does not exist: no consumer has declared '${o.queue}' here (check --queue and --url)`,
      );
    if (o.command === 'replay') await broker.requireQueue(o.queue);
    const state = openPass(statePath, o.command, deadQueue, parked);
    if (state.resumed) {
      io.stderr.write(
        `resuming the interrupted ${o.command} pass ${state.header.runId} over '${deadQueue}' (${state.done.size} of ${state.header.parked} messages done; state in ${statePath})\n`,
      );
    }
    const size =
      o.command === 'replay' && o.limit !== undefined ? Math.min(state.header.parked, o.limit) : state.header.parked;
    const budget = Math.max(0, size - state.done.size);
    const pass = new Pass(o, io, broker, deadQueue, state, new PassJournal(statePath), budget);
    return await pass.run();
  } finally {
    await broker.close();
  }
}

class Pass {
  private readonly counts: Counts = {
    taken: 0,
    answeredBefore: 0,
    answered: 0,
    callersGone: 0,
    replayed: 0,
    kept: 0,
    dropped: 0,
    resumed: 0,
    duplicates: 0,
    reasons: new Map(),
  };
  private stopReason: string | undefined;
  private exitCode = 1;
  private readonly started = performance.now();
  private readonly progress: Progress | undefined;
  /** POISON replies the broker returned (unroutable) since the chunk began, by their message id. */
  private readonly returned = new Set<string>();
  /** Queues a copy was returned from: a copy keeps its original's message id, so the queue is what tells. */
  private readonly returnedCopies = new Set<string>();
  private listed = 0;
  /** Resumed messages in the chunk being taken: they do not count against the budget. */
  private resumedInHand = 0;

  constructor(
    private readonly o: DeadLettersOptions,
    private readonly io: Output,
    private readonly broker: CliBroker,
    private readonly deadQueue: string,
    private readonly state: PassState,
    private readonly journal: PassJournal,
    private readonly budget: number,
  ) {
    if (o.progress)
      this.progress = createProgress(budget, 0, io.stderr, { name: `dead-letters ${o.command}`, unit: 'messages' });
  }

  async run(): Promise<number> {
    const onAbort = () => this.stop('interrupted', 130);
    this.o.signal?.addEventListener('abort', onAbort);
    this.broker.onLost((why) => this.stop(why, 1));
    this.broker.onReturn((_c, routingKey, messageId) => {
      if (messageId?.startsWith('poison:')) this.returned.add(messageId);
      else this.returnedCopies.add(routingKey);
    });
    const reader = await this.broker.reader(this.deadQueue);
    let complete = false;
    try {
      complete = await this.takeAll(reader);
    } catch (err) {
      this.stop((err as Error).message, 1);
    } finally {
      // Closing the channel, not just the connection: its close-ok comes after the broker applied our last acks.
      await reader.close();
      this.o.signal?.removeEventListener('abort', onAbort);
      this.progress?.stop();
      this.journal.close();
    }
    if (!complete || this.stopReason) {
      this.io.stderr.write(
        `dead-letters ${this.o.command} stopped: ${this.stopReason ?? 'the broker went away'}. ${this.counts.taken - this.counts.resumed} of ${this.budget} messages done; ` +
          `run the same command again to finish the pass (the state is in ${this.o.statePath ?? defaultStatePath(this.deadQueue)})\n`,
      );
      return this.exitCode;
    }
    this.journal.remove();
    this.summary();
    return 0;
  }

  /** True when the pass reached its end: the budget taken, the queue empty, or its own copies reached. */
  private async takeAll(reader: QueueReader): Promise<boolean> {
    while (!this.stopReason) {
      const chunk: Taken[] = [];
      let end = false;
      while (
        chunk.length < (this.o.window ?? DEFAULT_WINDOW) &&
        this.counts.taken - this.counts.resumed + chunk.length - this.resumedInHand < this.budget
      ) {
        const t = await reader.get();
        if (!t) {
          end = true;
          break;
        }
        if (passOf(t) === this.state.header.runId) {
          // Come round to a copy of our own: the queue lost messages under us (purged?). Left unacked, the
          // channel's close puts it back at the head; a requeue (nack) would put it at the tail (quorum, 3.10.8).
          end = true;
          break;
        }
        chunk.push(t);
        // A message this pass finished before its kill, back at the head: not one of those still to take.
        if (t.redelivered && this.state.done.has(requestKey(t))) this.resumedInHand++;
      }
      if (chunk.length > 0 && !(await this.handle(chunk, reader))) return false;
      if (end || this.counts.taken - this.counts.resumed >= this.budget) return true;
    }
    return false;
  }

  /** One chunk: publish, confirm, record, ack. False when the pass must stop (the chunk stays unacked). */
  private async handle(chunk: Taken[], reader: QueueReader): Promise<boolean> {
    const { o, state } = this;
    const answered = new Date().toISOString();
    const replies: Array<{ index: number; messageId: string; toReplyQueue: boolean }> = [];
    const copies: Array<{ routingKey: string; body: Buffer; properties: object }> = [];
    const plan: Array<{ key: string; skip: boolean; copied: boolean; info: ParkedInfo }> = [];
    const keysInChunk = new Set<string>();

    for (let i = 0; i < chunk.length; i++) {
      const t = chunk[i];
      const key = requestKey(t);
      const info = describeParked(t, o.deliveryLimit);
      if (state.done.has(key) || keysInChunk.has(key)) {
        plan.push({ key, skip: true, copied: false, info });
        if (t.redelivered && state.done.has(key)) this.counts.resumed++;
        else this.counts.duplicates++;
        continue;
      }
      keysInChunk.add(key);
      this.tally(info);
      let copied = false;
      const copy = (routingKey: string, extra: Record<string, string>) => {
        copies.push({
          routingKey,
          body: t.body,
          properties: copyProperties(t, { [PASS_HEADER]: state.header.runId, ...extra }),
        });
        copied = routingKey === this.deadQueue;
      };
      if (o.command === 'list') {
        this.print(info);
        copy(this.deadQueue, {});
      } else if (o.command === 'replay') {
        copy(o.queue, {});
      } else {
        const marked = info.answeredAt !== undefined;
        if (marked) this.counts.answeredBefore++;
        else {
          const reply = buildReply(
            t.properties,
            { ok: false, code: 'POISON', message: poisonText(info, this.deadQueue) },
            {
              replyQueue: o.replyQueue,
              modelName: o.modelName ?? 'unknown',
              scoringMs: 0,
              traceHeaders: passTraceHeaders(t.properties.headers),
            },
          );
          // One id per parked request: a caller answered twice (a kill mid-chunk) can tell the second for a repeat.
          reply.properties.messageId = `poison:${key}`;
          reply.properties.headers['x-dead-letter-queue'] = this.deadQueue;
          replies.push({ index: i, messageId: reply.properties.messageId, toReplyQueue: reply.toReplyQueue });
          if (!(await this.publish(reply.routingKey, reply.body, reply.properties, reply.mandatory))) return false;
        }
        if (!o.drop) copy(this.deadQueue, marked ? {} : { [ANSWERED_HEADER]: answered });
      }
      plan.push({ key, skip: false, copied, info });
    }

    // The replies first: a message is marked answered only once its caller's reply is confirmed.
    if (replies.length > 0) {
      if (!(await this.confirmed('a POISON reply'))) return false;
      for (const r of replies) {
        if (!this.returned.has(r.messageId)) continue;
        if (r.toReplyQueue)
          return this.stop(
            `queue '${o.replyQueue}' does not exist: start a consumer first (it declares it), or pass --reply-queue`,
            1,
          );
        this.counts.callersGone++;
      }
      this.counts.answered += replies.length;
    }
    for (const c of copies) if (!(await this.publish(c.routingKey, c.body, c.properties, true))) return false;
    if (copies.length > 0) {
      if (!(await this.confirmed('a copy'))) return false;
      const lost = copies.find((c) => this.returnedCopies.has(c.routingKey));
      if (lost) return this.stop(`queue '${lost.routingKey}' does not exist any more: a copy came back unroutable`, 1);
    }

    this.journal.record(plan.filter((p) => !p.skip).map((p) => p.key));
    for (const p of plan) if (!p.skip) state.done.add(p.key);
    reader.ackThrough(chunk[chunk.length - 1]);
    for (const p of plan) {
      if (p.skip) continue;
      if (o.command === 'replay') this.counts.replayed++;
      else if (p.copied) this.counts.kept++;
      else this.counts.dropped++;
    }
    this.counts.taken += chunk.length;
    this.resumedInHand = 0;
    this.progress?.update(this.counts.taken - this.counts.resumed);
    this.returned.clear();
    this.returnedCopies.clear();
    return !this.stopReason;
  }

  private async publish(routingKey: string, body: Buffer, properties: object, mandatory: boolean): Promise<boolean> {
    if (this.stopReason) return false;
    if (!this.broker.publishMessage(routingKey, body, properties, mandatory)) await this.broker.drain();
    return !this.stopReason;
  }

  private async confirmed(what: string): Promise<boolean> {
    try {
      await this.broker.waitForConfirms();
      return !this.stopReason;
    } catch (err) {
      return this.stop(`the broker refused ${what}: ${(err as Error).message}`, 1);
    }
  }

  private tally(info: ParkedInfo): void {
    this.counts.reasons.set(info.reason, (this.counts.reasons.get(info.reason) ?? 0) + 1);
    if (info.deadLetteredAt && (!this.counts.oldest || info.deadLetteredAt < this.counts.oldest))
      this.counts.oldest = info.deadLetteredAt;
    if (this.o.command === 'list' && info.answeredAt) this.counts.answeredBefore++;
  }

  private print(info: ParkedInfo): void {
    this.listed++;
    this.io.stdout.write(
      this.o.json ? `${JSON.stringify({ n: this.listed, ...info })}\n` : `${listLine(this.listed, info)}\n`,
    );
  }

  private stop(reason: string, exitCode: number): false {
    if (!this.stopReason) {
      this.stopReason = reason;
      this.exitCode = exitCode;
    }
    return false;
  }

  private summary(): void {
    const c = this.counts;
    const seconds = ((performance.now() - this.started) / 1000).toFixed(1);
    const handled = c.taken - c.resumed - c.duplicates;
    const reasons = [...c.reasons].map(([r, n]) => `${r} ${n}`).join(', ') || 'none';
    const extra = [
      ...(c.resumed ? [`${c.resumed} finished by the interrupted run`] : []),
      ...(c.duplicates ? [`${c.duplicates} duplicate copies dropped`] : []),
    ];
    let line: string;
    if (this.o.command === 'list') {
      line = `dead-letters list: ${handled} parked in '${this.deadQueue}' (${c.answeredBefore} answered, ${handled - c.answeredBefore} not); reasons: ${reasons}${c.oldest ? `; oldest dead-lettered ${c.oldest}` : ''}`;
    } else if (this.o.command === 'answer') {
      line =
        `dead-letters answer: ${handled} parked in '${this.deadQueue}'; ${c.answered} callers sent a POISON reply` +
        (c.callersGone ? ` (${c.callersGone} of them gone: their replyTo queue no longer exists)` : '') +
        `, ${c.answeredBefore} answered before; ${this.o.drop ? `${c.dropped} dropped` : `${c.kept} kept (marked ${ANSWERED_HEADER})`}`;
    } else {
      line = `dead-letters replay: ${c.replayed} put back on '${this.o.queue}' in order`;
    }
    this.io.stdout.write(`${line}${extra.length ? `; ${extra.join(', ')}` : ''}; ${seconds} s\n`);
  }
}
