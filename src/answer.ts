/**
 * THE one place an input's fate is decided: a scored item → its reply (or none) → ack, requeue,
 * dead-letter or none, with the retries of replies the broker did not take. `fateOf` is the table;
 * `answer` walks each item through it until the item is settled, exactly once.
 *
 * - An input is acked only once its reply is confirmed (or returned from a caller's replyTo: no one
 *   is left to answer), and only on the channel it came on; a confirmed input is acked at once,
 *   whatever its neighbours in the batch do.
 * - A confirm not in by CONFIRM_TIMEOUT_MS is waited for longer, not published again (on a slow link
 *   a copy only adds to the queue ahead of the confirms). A reply whose channel or connection went,
 *   or that could not be sent (publishing blocked), is published again with backoff. Both while the
 *   input is still ours, up to REPLY_GIVE_UP_MS; then the input is requeued for another consumer.
 * - Refusals (nacked: a queue full with reject-publish, or a quorum queue electing a leader;
 *   REPLY_QUEUE returning it) are retried REPLY_ATTEMPTS times in all and for REPLY_REFUSED_MIN_MS,
 *   whichever is later, then the input is dead-lettered. The broker's nack does not say why, and a
 *   leader election outlasts a few quick tries: counting tries alone dead-lettered inputs whose reply
 *   queue was only between leaders. A reply over the broker's
 *   max_message_size is refused for good at once: a short error reply goes in its place, and the
 *   input is dead-lettered.
 */
import type { Logger } from 'pino';
import type { Settlement } from './broker/acks.js';
import type { Delivery } from './broker/delivery.js';
import type { PublishResult } from './broker/publisher.js';
import type { ItemResult, ModelId } from './scorer.js';
import { buildReply, type Outcome, type Reply, type ReplyContext } from './reply.js';
import type { QueueType } from './config.js';
import { packedArray, packedMap } from './packed-array.js';

export type { Settlement };

/** What answer() needs of the broker; the Broker facade is one, a test's fake another. */
export interface AnswerBroker {
  isCurrent(d: Delivery): boolean;
  publishAll(replies: readonly Reply[]): Promise<PublishResult[]>;
  settle(items: ReadonlyArray<{ delivery: Delivery; settlement: Settlement }>): void;
  redeclareReplyQueue(): Promise<void>;
  /** The eventual outcome of a reply reported 'late', if the broker gives it within `waitMs`; else 'late'. */
  awaitLate(reply: Reply, waitMs: number): Promise<PublishResult>;
  forgetLate(reply: Reply): void;
}

export interface ScoredItem {
  delivery: Delivery;
  result: ItemResult;
  scoringMs: number;
  /** The model that scored it (or that was serving, for an input answered unscored): its reply's x-model and x-model-version. */
  model?: ModelId;
  /** What the reply carries beside the outcome: x-queue-wait-ms and the trace headers (reply.ts ReplyContext). */
  carries?: Pick<ReplyContext, 'queueWaitMs' | 'traceHeaders'>;
  /** An earlier copy's reply, in doubt (answered-record.ts): sent again as it was, same body and messageId, not built anew. */
  again?: Reply;
}

/** Why an input left us, for logs and the refused/dead-lettered metrics. */
export type SettleReason =
  | 'confirmed'
  | 'caller gone'
  | 'stale'
  | 'crashed'
  | 'reply too large'
  | 'reply refused'
  | 'reply queue returns'
  | 'gave up'
  /** A redelivery of an input whose reply was confirmed here (answered-record.ts): acked, not answered again. */
  | 'already answered';

export interface Settled {
  delivery: Delivery;
  settlement: Settlement;
  reason: SettleReason;
  /** The reply that went out for it, when one did. */
  reply?: Reply;
}

export interface AnswerOptions {
  broker: AnswerBroker;
  replyQueue: string;
  modelName: string;
  queueType: QueueType;
  deliveryLimit: number;
  /** Refusals (nacks, returns from REPLY_QUEUE) before the input is dead-lettered. */
  replyAttempts: number;
  /** … and how long they must have lasted: a reply refused for less is retried, whatever the count. */
  refusedMinMs: number;
  /** How long transient failures are retried before the input is requeued. */
  giveUpMs: number;
  /** The delay before retry `attempt` (1, 2, …). */
  backoffMs(attempt: number): number;
  logger: Logger;
  /** Each settlement, once, as it happens (metrics, in-flight accounting). */
  onSettled(items: readonly Settled[]): void;
  /** A reply published again, and why. */
  onRetry(why: PublishResult): void;
  /**
   * Told of each input acked with its reply confirmed (or returned from a gone caller), just before
   * the ack goes: the ack may be lost with its connection, and the input come back (answered-record.ts).
   */
  record?: {
    remember(ids: Pick<Delivery, 'messageId' | 'correlationId'>, nowMs: number): void;
    /** Told of each input that goes back to the broker with its reply published but not confirmed: the broker may have routed it. */
    rememberInDoubt(ids: Pick<Delivery, 'messageId' | 'correlationId'>, reply: Reply, nowMs: number): void;
    /** Told of each input whose reply is about to be published, and of every input settled: a redelivery waits between the two. */
    replyingFor(input: Delivery): void;
    settled(input: Delivery): void;
  };
  /**
   * ANSWER_POISON: an input this consumer dead-letters because its isolate died under it (a classic
   * queue's second death) gets a POISON reply naming this queue first. Off when absent.
   */
  answerPoison?: { deadLetterQueue: string };
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** Where an item stands: not published yet, or what the broker said of its last publish. */
export type Stage = 'crashed' | 'stale' | PublishResult;

export type Fate =
  | { kind: 'settle'; settlement: Settlement; reason: SettleReason }
  | { kind: 'retry'; refusal: boolean; redeclare: boolean }
  | { kind: 'error-reply'; reason: SettleReason };

/**
 * The table. `refusals` counts the refusals so far, this one included; `elapsedMs` how long this
 * item has been retried.
 */
export function fateOf(
  stage: Stage,
  item: { toReplyQueue: boolean; redelivered: boolean; refusals: number; elapsedMs: number },
  rules: { queueType: QueueType; replyAttempts: number; refusedMinMs: number; giveUpMs: number },
): Fate {
  switch (stage) {
    case 'confirmed':
      return { kind: 'settle', settlement: 'ack', reason: 'confirmed' };
    case 'stale':
      // Its channel has closed: the broker redelivers it, and a reply now would only be a duplicate.
      return { kind: 'settle', settlement: 'none', reason: 'stale' };
    case 'crashed':
      return { kind: 'settle', settlement: unansweredSettlement(item.redelivered, rules.queueType), reason: 'crashed' };
    case 'returned':
      // A caller's replyTo that has gone: no one is left to answer. Our own REPLY_QUEUE gone: declare it again.
      if (!item.toReplyQueue) return { kind: 'settle', settlement: 'ack', reason: 'caller gone' };
      if (refusedForGood(item, rules))
        return { kind: 'settle', settlement: 'dead-letter', reason: 'reply queue returns' };
      return { kind: 'retry', refusal: true, redeclare: true };
    case 'nacked':
      if (refusedForGood(item, rules)) return { kind: 'settle', settlement: 'dead-letter', reason: 'reply refused' };
      return { kind: 'retry', refusal: true, redeclare: false };
    case 'too-large':
      return { kind: 'error-reply', reason: 'reply too large' };
    case 'late':
    case 'lost':
      if (item.elapsedMs >= rules.giveUpMs) return { kind: 'settle', settlement: 'requeue', reason: 'gave up' };
      return { kind: 'retry', refusal: false, redeclare: false };
  }
}

/** REPLY_ATTEMPTS refusals, spanning REPLY_REFUSED_MIN_MS: a quorum queue between leaders refuses for a while. */
function refusedForGood(
  item: { refusals: number; elapsedMs: number },
  rules: { replyAttempts: number; refusedMinMs: number },
): boolean {
  return item.refusals >= rules.replyAttempts && item.elapsedMs >= rules.refusedMinMs;
}

/**
 * An input whose isolate died under it is requeued so the broker counts it: a quorum queue
 * dead-letters it at x-delivery-limit; a classic queue has no count, so its second death sends it
 * to the dead-letter queue.
 */
export function unansweredSettlement(redelivered: boolean, queueType: QueueType): Settlement {
  return queueType === 'classic' && redelivered ? 'dead-letter' : 'requeue';
}

const REFUSALS = new Set<Stage>(['nacked', 'returned']);

/**
 * Retries logged at warn at most once per reason every RETRY_LOG_EVERY_MS, with the count since the
 * last line: a full REPLY_QUEUE once wrote 180 lines a second. The metric counts every one.
 */
const RETRY_LOG_EVERY_MS = 10_000;
class RetryLog {
  private readonly last = new Map<PublishResult, { at: number; since: number }>();

  note(logger: Logger, why: PublishResult, d: Delivery): void {
    const now = Date.now();
    const entry = this.last.get(why);
    if (entry && now - entry.at < RETRY_LOG_EVERY_MS) {
      entry.since++;
      return;
    }
    logger.warn(
      { correlationId: idOf(d), why, retriesSinceLastLine: entry?.since ?? 0 },
      'reply not taken by the broker; retrying',
    );
    this.last.set(why, { at: now, since: 0 });
  }
}
const retryLog = new RetryLog();

/** Settles (as 'none') the deliveries whose channel has closed and returns the rest: stale work is not scored. */
export function dropStale(deliveries: readonly Delivery[], o: AnswerOptions): Delivery[] {
  const current: Delivery[] = [];
  const stale: Settled[] = [];
  for (const delivery of deliveries) {
    if (o.broker.isCurrent(delivery)) current.push(delivery);
    else stale.push({ delivery, settlement: 'none', reason: 'stale' });
  }
  settle(stale, o);
  return current;
}

/** Redeliveries of inputs already answered here: acked without scoring or replying again. */
export function settleAnswered(deliveries: readonly Delivery[], o: AnswerOptions): void {
  settle(
    packedMap(deliveries, (delivery) => ({
      delivery,
      settlement: 'ack' as const,
      reason: 'already answered' as const,
    })),
    o,
  );
}

/**
 * A redelivery of an input in doubt: its earlier reply published once more, unchanged, then walked
 * through the table like any other. A receiver that drops message ids it has seen keeps one copy.
 */
export function answerAgain(delivery: Delivery, reply: Reply, o: AnswerOptions): Promise<void> {
  return answer([{ delivery, result: { ok: true, body: reply.body }, scoringMs: 0, again: reply }], o);
}

/**
 * Publishes the items' replies at once, settles each as soon as its fate is known, and resolves
 * when every item is settled. Never throws: a failure is an outcome in the table.
 */
export async function answer(items: readonly ScoredItem[], o: AnswerOptions): Promise<void> {
  const { broker } = o;
  const settledNow: Settled[] = [];
  const sending: Array<{ item: ScoredItem; reply: Reply }> = [];
  const poisoned: Array<Promise<void>> = [];
  for (const item of items) {
    const { delivery, result } = item;
    if (!broker.isCurrent(delivery) || (!result.ok && result.code === 'SKIPPED'))
      settledNow.push(final(item, 'stale', o));
    else if (!result.ok && result.code === 'CRASHED') {
      o.logger.warn(
        { correlationId: idOf(delivery), deliveryCount: delivery.deliveryCount, reason: result.message },
        'entry script died under an input',
      );
      const fate = final(item, 'crashed', o);
      if (fate.settlement === 'dead-letter' && o.answerPoison)
        poisoned.push(answerPoison(item, o.answerPoison.deadLetterQueue, o));
      else settledNow.push(fate);
    } else {
      const reply = item.again ?? buildReply(delivery, result as Outcome, replyContext(item, o));
      // The code, not the text: an error's text may quote the input (a key name, a JSON excerpt), and payloads stay out of logs.
      if (!result.ok) o.logger.info({ correlationId: reply.correlationId, code: result.code }, 'error reply');
      sending.push({ item, reply });
    }
  }
  settle(settledNow, o);
  if (sending.length === 0) return void (await Promise.all(poisoned));
  if (o.record) for (const { item } of sending) o.record.replyingFor(item.delivery);
  const results = await safePublish(
    o,
    packedMap(sending, (s) => s.reply),
  );
  const confirmed: Settled[] = [];
  const followUps: Array<Promise<void>> = [];
  for (let k = 0; k < sending.length; k++) {
    const { item, reply } = sending[k];
    if (results[k] === 'confirmed') confirmed.push(final(item, 'confirmed', o, reply));
    else followUps.push(followUp(item, reply, results[k], o));
  }
  // Acked at once, together (one multiple ack), whatever becomes of the neighbours still retried.
  settle(confirmed, o);
  await Promise.all([...followUps, ...poisoned]);
}

/** One reply the broker did not confirm, walked through the table until its input is settled. */
async function followUp(item: ScoredItem, reply: Reply, first: PublishResult, o: AnswerOptions): Promise<void> {
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const started = now();
  let stage: Stage = first;
  let refusals = 0;
  for (let attempt = 1; ; attempt++) {
    if (REFUSALS.has(stage)) refusals++;
    const fate = fateOf(stage, { ...facts(item, reply), refusals, elapsedMs: now() - started }, o);
    if (fate.kind === 'settle') {
      if (stage === 'late') o.broker.forgetLate(reply);
      return settle([settled(item, fate, reply)], o);
    }
    if (fate.kind === 'error-reply') return errorReply(item, reply, fate.reason, o);
    // Its channel went with the publish connection's (a broker restart closes both): the broker has it back,
    // and a copy now would only be a duplicate; nor is there a backoff to wait first, while the redelivery nears.
    if (stage !== 'late' && !o.broker.isCurrent(item.delivery)) {
      inDoubt(item, reply, o);
      return settle([final(item, 'stale', o)], o);
    }
    o.onRetry(stage as PublishResult);
    retryLog.note(o.logger, stage as PublishResult, item.delivery);
    if (stage === 'late') {
      // Not published again: its confirm is still to come (or its channel's close), and a copy would be a duplicate.
      stage = await o.broker.awaitLate(reply, o.backoffMs(attempt)).catch((): PublishResult => 'lost');
      // Confirmed after all: settled as such (and remembered), even if its channel has gone meanwhile.
      if (stage !== 'confirmed' && !o.broker.isCurrent(item.delivery)) {
        o.broker.forgetLate(reply);
        inDoubt(item, reply, o);
        return settle([final(item, 'stale', o)], o);
      }
      continue;
    }
    if (fate.redeclare) await o.broker.redeclareReplyQueue().catch(() => {});
    await sleep(o.backoffMs(attempt));
    if (!o.broker.isCurrent(item.delivery)) {
      inDoubt(item, reply, o);
      return settle([final(item, 'stale', o)], o);
    }
    [stage] = await safePublish(o, [reply]);
  }
}

/**
 * Refused for good: the caller gets a short error reply where one can still go (one try), and the
 * input is dead-lettered, so its body is kept for whoever looks into it.
 */
async function errorReply(item: ScoredItem, tooBig: Reply, reason: SettleReason, o: AnswerOptions): Promise<void> {
  const { delivery } = item;
  const message = `the reply (${tooBig.body.byteLength} bytes) is over the broker's max_message_size; the input is dead-lettered to the input queue's dead-letter queue`;
  const reply = buildReply(delivery, { ok: false, code: 'REPLY_TOO_LARGE', message }, replyContext(item, o));
  const sent = await tryErrorReply(delivery, reply, o);
  o.logger.warn(
    { correlationId: idOf(delivery), replyBytes: tooBig.body.byteLength, errorReply: sent ? 'sent' : 'not sent' },
    'reply refused for good; input dead-lettered',
  );
  settle([settled(item, { kind: 'settle', settlement: 'dead-letter', reason }, sent ? reply : undefined)], o);
}

/** ANSWER_POISON: the caller of an input about to be dead-lettered is told so, and where it is parked. */
async function answerPoison(item: ScoredItem, deadLetterQueue: string, o: AnswerOptions): Promise<void> {
  const { delivery } = item;
  const message = `input not scored: the entry script's process died under it twice; it is dead-lettered to queue '${deadLetterQueue}' for the operators`;
  const reply = buildReply(delivery, { ok: false, code: 'POISON', message }, replyContext(item, o, 0));
  reply.properties.headers['x-dead-letter-queue'] = deadLetterQueue;
  const sent = await tryErrorReply(delivery, reply, o);
  o.logger.warn(
    { correlationId: idOf(delivery), poisonReply: sent ? 'sent' : 'not sent' },
    'poison input answered POISON and dead-lettered',
  );
  settle(
    [settled(item, { kind: 'settle', settlement: 'dead-letter', reason: 'crashed' }, sent ? reply : undefined)],
    o,
  );
}

/** What a reply of this item carries beside its outcome: the model that scored it, its timings and trace. */
function replyContext(item: ScoredItem, o: AnswerOptions, scoringMs = item.scoringMs): ReplyContext {
  return {
    replyQueue: o.replyQueue,
    modelName: item.model?.name ?? o.modelName,
    modelVersion: item.model?.version,
    scoringMs,
    ...item.carries,
  };
}

/** A short error reply, a few tries with backoff while the input is ours: true once it is confirmed (or returned from a gone caller). */
async function tryErrorReply(delivery: Delivery, reply: Reply, o: AnswerOptions): Promise<boolean> {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  // A few tries, with backoff: the big reply has just closed the publish channel, and the first try often meets it closing.
  let [result] = await safePublish(o, [reply]);
  for (
    let attempt = 1;
    attempt < o.replyAttempts && result !== 'confirmed' && result !== 'returned' && o.broker.isCurrent(delivery);
    attempt++
  ) {
    if (result === 'late')
      result = await o.broker.awaitLate(reply, o.backoffMs(attempt)).catch((): PublishResult => 'lost');
    else {
      await sleep(o.backoffMs(attempt));
      [result] = await safePublish(o, [reply]);
    }
  }
  if (result === 'late') o.broker.forgetLate(reply);
  return result === 'confirmed' || result === 'returned';
}

/** The item's reply went out and its input went back before a confirm: the broker may have routed it. */
function inDoubt(item: ScoredItem, reply: Reply, o: AnswerOptions): void {
  o.record?.rememberInDoubt(item.delivery, reply, Date.now());
}

/** The fate of a stage that always settles (stale, crashed, confirmed). */
function final(item: ScoredItem, stage: 'stale' | 'crashed' | 'confirmed', o: AnswerOptions, reply?: Reply): Settled {
  const fate = fateOf(stage, facts(item, reply), o);
  if (fate.kind !== 'settle') throw new Error(`fateOf(${stage}) must settle`);
  return settled(item, fate, reply);
}

function settled(item: ScoredItem, fate: Extract<Fate, { kind: 'settle' }>, reply?: Reply): Settled {
  return {
    delivery: item.delivery,
    settlement: fate.settlement,
    reason: fate.reason,
    reply: fate.settlement === 'ack' || fate.settlement === 'dead-letter' ? reply : undefined,
  };
}

/** Settles on the delivery's own channel only: one whose channel has gone becomes 'none' (the broker has it back). */
function settle(items: Settled[], o: AnswerOptions): void {
  if (items.length === 0) return;
  for (const s of items) {
    // Remembered even when its channel has gone and the ack cannot go: the caller has its reply, and the input comes back.
    if (o.record && s.settlement === 'ack' && s.reply) o.record.remember(s.delivery, Date.now());
    if (s.settlement !== 'none' && !o.broker.isCurrent(s.delivery)) {
      s.settlement = 'none';
      s.reason = 'stale';
      s.reply = undefined;
    }
    if (s.settlement === 'dead-letter' || s.reason === 'gave up') {
      o.logger.warn(
        { correlationId: idOf(s.delivery), settlement: s.settlement, reason: s.reason },
        'input not answered normally',
      );
    }
  }
  if (o.record) for (const s of items) o.record.settled(s.delivery);
  o.broker.settle(items);
  o.onSettled(items);
}

/** publishAll never throws by contract; should it, every reply counts as lost and is retried. */
async function safePublish(o: AnswerOptions, replies: Reply[]): Promise<PublishResult[]> {
  try {
    return await o.broker.publishAll(replies);
  } catch (err) {
    o.logger.error({ err: (err as Error).message }, 'publish failed');
    return packedArray<PublishResult>(replies.length, 'lost');
  }
}

function facts(
  item: ScoredItem,
  reply?: Reply,
): { toReplyQueue: boolean; redelivered: boolean; refusals: number; elapsedMs: number } {
  return {
    toReplyQueue: reply?.toReplyQueue ?? !item.delivery.replyTo,
    redelivered: item.delivery.redelivered,
    refusals: 0,
    elapsedMs: 0,
  };
}

function idOf(d: Delivery): string | undefined {
  return d.correlationId ?? d.messageId;
}
