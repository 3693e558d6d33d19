/**
 * The lifecycle of the message path, and its wiring only: consume → batch → score → answer
 * (src/answer.ts decides each input's fate). `stop()` stops consuming, finishes what is in flight
 * (replies confirmed, inputs settled) and resolves; it is idempotent.
 */
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import {
  answer,
  answerAgain,
  dropStale,
  settleAnswered,
  type AnswerOptions,
  type ScoredItem,
  type Settled,
} from './answer.js';
import { AnsweredRecord } from './answered-record.js';
import { backoffMs } from './backoff.js';
import { Batcher } from './batcher.js';
import { LoopLoad } from './loop-load.js';
import type { Broker, Delivery } from './broker/broker.js';
import { idMayBeAltered, releaseBody } from './broker/delivery.js';
import { deadQueueOf } from './broker/topology.js';
import type { Config } from './config.js';
import { ScoringError } from './errors.js';
import { deadlineOf, expiredOutcome, isExpired, queueWaitMs, type Deadline } from './deadline.js';
import { checkSize } from './isolate/parse-message.js';
import type { Metrics } from './metrics.js';
import type { BodyMeta } from './isolate/protocol.js';
import { JSON_CONTENT_TYPE } from './isolate/content-types.js';
import type { Reply } from './reply.js';
import type { ItemResult, ModelId, Scorer } from './scorer.js';
import { passTraceHeaders, TRACING_OFF, type InputTrace, type Tracing } from './tracing.js';
import { packedArray, packedMap } from './packed-array.js';

export type ConsumerState = 'created' | 'running' | 'stopping' | 'stopped';

export interface ConsumerDeps {
  broker: Broker;
  /** A Scorer, or the ModelSwitch that holds the current one (src/model-switch.ts). */
  scorer: Pick<Scorer, 'info' | 'model' | 'score' | 'stop' | 'runGroup'>;
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
  /** Spans of the message path (tracing.ts); off when absent. */
  tracing?: Tracing;
}

/** p-queue priority: a redelivered input waits behind no batch. */
const REDELIVERED_FIRST = 1;
/** Deliveries resume once the bytes held fall below this share of MAX_IN_FLIGHT_BYTES: no flapping at the edge. */
const RESUME_AT = 0.75;

interface Received {
  delivery: Delivery;
  /** performance.now() at delivery. */
  receivedAt: number;
  /** Date.now() at delivery: deadlines and x-queue-wait-ms are wall-clock times. */
  receivedAtMs: number;
  deadline: Deadline;
  trace: InputTrace | undefined;
}

export class Consumer {
  private state: ConsumerState = 'created';
  private readonly batcher: Batcher<Received>;
  /** Scoring only, CONCURRENCY batches at once (one per isolate); redelivered inputs jump the line. */
  private readonly scoring: PQueue;
  /** Batches scored or being answered, until their inputs are settled: stop() waits for them. */
  private readonly inProgress = new Set<Promise<void>>();
  private readonly answerOptions: AnswerOptions;
  /** Each input held, until onSettled lets it go: a Map, not a WeakMap, whose entries every GC has to treat as ephemerons. */
  private readonly received = new Map<Delivery, Received>();
  /** Inputs whose reply was confirmed (a redelivery of one is acked, not answered twice), and those in doubt (their reply sent again). */
  private readonly record: AnsweredRecord<Reply>;
  private readonly tracing: Tracing;
  private stopped: Promise<void> | undefined;
  /** Inputs received and not yet settled, and the bytes of their bodies. */
  private held = 0;
  private heldBytes = 0;
  /** Date.now() of the last settlement, or of the first input held since nothing was: see progress. */
  private lastProgressAt = Date.now();
  /** A moving average of body sizes, for the prefetch of a consumer resumed after a pause. */
  private bodyBytesAverage = 0;

  constructor(private readonly deps: ConsumerDeps) {
    const { config, broker, logger, metrics } = deps;
    this.record = new AnsweredRecord(config.answeredRecord);
    this.tracing = deps.tracing ?? TRACING_OFF;
    this.scoring = new PQueue({ concurrency: config.concurrency });
    const isolateFree = () => this.scoring.pending + this.scoring.size < config.concurrency;
    // A script with run only gets as many messages to a batch as its isolate runs in RUN_GROUP_MS (one per call
    // at 0): a slow script's messages spread over every isolate, a fast one's round trips are shared.
    const batchSize = deps.scorer.info.hasRunBatch
      ? config.maxBatchSize
      : () => Math.min(config.maxBatchSize, deps.scorer.runGroup);
    // What the batcher holds while every isolate is busy is cut by priority (redelivered ones never wait there: see onDelivery).
    const order = {
      maxPriority: config.maxPriority,
      infoOf: (r: Received) => ({ priority: r.delivery.priority, redelivered: r.delivery.redelivered }),
    };
    // Waiting for a batch pays only when the consumer is busy; at light load each turn's deliveries go at once.
    const load = new LoopLoad();
    const waits = () => load.utilization >= config.batchDelayMinLoad;
    this.batcher = new Batcher(
      batchSize,
      config.maxBatchDelayMs,
      (batch) => this.schedule(batch),
      isolateFree,
      order,
      waits,
    );
    // An isolate is free: cut the next batch now, grown while every isolate was busy.
    this.scoring.on('next', () => this.batcher.wake());
    this.answerOptions = {
      broker,
      replyQueue: config.replyQueue,
      modelName: deps.scorer.info.modelName,
      queueType: config.queueType,
      deliveryLimit: config.deliveryLimit,
      replyAttempts: config.replyAttempts,
      refusedMinMs: config.replyRefusedMinMs,
      giveUpMs: config.replyGiveUpMs,
      backoffMs: (attempt) => backoffMs(config.amqp.reconnect, attempt - 1),
      logger,
      onSettled: (items) => this.onSettled(items),
      onRetry: (why) => metrics.replyRetries.inc({ reason: why }),
      record: this.record,
      answerPoison:
        config.answerPoison && config.queueType === 'classic'
          ? { deadLetterQueue: deadQueueOf(config.inputQueue) }
          : undefined,
    };
    metrics.reportHeld(() => this.progress);
    broker.on('returned', ({ routingKey, correlationId, replyText }) => {
      metrics.returnedReplies.inc();
      logger.warn({ correlationId, routingKey, replyText }, 'reply returned unroutable');
    });
    broker.on('connected', (role) => {
      if (this.state === 'running') metrics.reconnects.inc({ role });
    });
  }

  async start(): Promise<void> {
    if (this.state !== 'created') return;
    this.to('running');
    await this.deps.broker.consume((d) => this.onDelivery(d));
  }

  /** Ready: the model is loaded (the scorer exists), both connections are up, the consumer is subscribed and not stalled. */
  get ready(): boolean {
    const s = this.deps.broker.state;
    return (
      this.state === 'running' && s.consumeConnected && s.publishConnected && s.consuming && !this.progress.stalled
    );
  }

  /** Whether inputs are held and none has been settled for longer than READY_STALL_MS. */
  get progress(): { held: number; heldBytes: number; sinceProgressMs: number; stalled: boolean } {
    const sinceProgressMs = this.held > 0 ? Date.now() - this.lastProgressAt : 0;
    return {
      held: this.held,
      heldBytes: this.heldBytes,
      sinceProgressMs,
      stalled: sinceProgressMs > this.deps.config.readyStallMs,
    };
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.to('stopping');
      await this.deps.broker.stopConsuming();
      this.batcher.flush();
      while (this.inProgress.size > 0) await Promise.all(this.inProgress);
      this.to('stopped');
    })();
    return this.stopped;
  }

  private to(state: ConsumerState): void {
    this.deps.logger.debug({ from: this.state, to: state }, 'consumer state');
    this.state = state;
  }

  private onDelivery(delivery: Delivery): void {
    const { config, logger, broker } = this.deps;
    if (this.held === 0) this.lastProgressAt = Date.now();
    this.held++;
    this.heldBytes += delivery.bytes;
    this.bodyBytesAverage =
      this.bodyBytesAverage === 0 ? delivery.bytes : 0.9 * this.bodyBytesAverage + 0.1 * delivery.bytes;
    if (this.heldBytes >= config.maxInFlightBytes && !broker.state.paused) {
      logger.info(
        { heldBytes: this.heldBytes, maxInFlightBytes: config.maxInFlightBytes },
        'byte budget spent: taking no new deliveries until some are settled',
      );
      void broker.pause();
    }
    if (idMayBeAltered(delivery)) {
      logger.warn(
        { correlationId: delivery.correlationId, messageId: delivery.messageId },
        'correlation or message id is not valid UTF-8; the reply carries it as the broker client decoded it',
      );
    }
    this.whenFirstCopySettled(delivery, Date.now());
  }

  /** An earlier copy's reply is on its way: what became of it decides this one's fate, so it waits (stop() too). */
  private whenFirstCopySettled(delivery: Delivery, receivedAtMs: number): void {
    const first = this.record.firstCopySettled(delivery);
    if (first === undefined) {
      this.take(delivery, receivedAtMs);
      return;
    }
    const work = first
      .then(() => this.whenFirstCopySettled(delivery, Date.now()))
      .finally(() => this.inProgress.delete(work));
    this.inProgress.add(work);
  }

  /** A delivery counted in: acked when already answered, its reply sent again when in doubt, else scored. */
  private take(delivery: Delivery, receivedAtMs: number): void {
    const { metrics, config } = this.deps;
    // Its reply was confirmed here and only the ack was lost: the caller has its answer.
    if (this.record.wasAnswered(delivery, receivedAtMs)) {
      metrics.alreadyAnswered.inc();
      settleAnswered([delivery], this.answerOptions);
      return;
    }
    const again = this.record.inDoubt(delivery, receivedAtMs);
    if (again) {
      this.sendAgain([{ delivery, reply: again }]);
      return;
    }
    const item: Received = {
      delivery,
      receivedAt: performance.now(),
      receivedAtMs,
      deadline: deadlineOf(delivery, receivedAtMs, config.deadlineMs),
      // Off (the default), no facts object is built for each input.
      trace: this.tracing.enabled
        ? this.tracing.begin({
            headers: delivery.headers,
            queue: config.inputQueue,
            messageId: delivery.messageId,
            correlationId: delivery.correlationId,
            redelivered: delivery.redelivered,
            deliveryCount: delivery.deliveryCount,
            bodyBytes: delivery.body.byteLength,
            receivedAtMs,
          })
        : undefined,
    };
    this.received.set(delivery, item);
    // A redelivered input may be the one that killed the entry script: score it alone, so it can only take itself down.
    if (delivery.redelivered) this.schedule([item], REDELIVERED_FIRST);
    else this.batcher.add(item);
    if (this.state !== 'running') this.batcher.flush();
  }

  /** Redeliveries of inputs in doubt: their earlier reply goes again, unscored; stop() waits for it like a batch. */
  private sendAgain(items: ReadonlyArray<{ delivery: Delivery; reply: Reply }>): void {
    this.deps.metrics.resentInDoubt.inc(items.length);
    this.deps.logger.info(
      { correlationIds: items.map(({ delivery }) => delivery.correlationId ?? delivery.messageId) },
      'redelivered input in doubt: its reply sent again, same messageId',
    );
    for (const { delivery, reply } of items) {
      const work = answerAgain(delivery, reply, this.answerOptions).finally(() => this.inProgress.delete(work));
      this.inProgress.add(work);
    }
  }

  /** Every input passes here once, whatever its fate (answer.ts guarantees it). */
  private onSettled(items: readonly Settled[]): void {
    const { metrics, config, broker } = this.deps;
    const now = performance.now();
    let ok = 0;
    let error = 0;
    for (const { delivery, settlement, reason, reply } of items) {
      this.held--;
      this.heldBytes -= delivery.bytes;
      const received = this.received.get(delivery);
      this.received.delete(delivery);
      if (settlement === 'ack' && reply) {
        if (reply.status === 'ok') ok++;
        else error++;
        if (received) metrics.endToEndSeconds.observe((now - received.receivedAt) / 1000);
        received?.trace?.confirmed();
        received?.trace?.acked();
      } else received?.trace?.abandoned(reason, settlement);
      if (reason === 'crashed') {
        const deadLettered = settlement === 'dead-letter' || delivery.deliveryCount >= config.deliveryLimit;
        (deadLettered ? metrics.deadLettered : metrics.requeued).inc();
        // One line per death, with the delivery count: an operator follows a poison message to its dead-letter queue.
        this.deps.logger.warn(
          { correlationId: delivery.correlationId ?? delivery.messageId, deliveryCount: delivery.deliveryCount },
          deadLettered ? 'input dead-lettered' : 'input requeued',
        );
      } else if (settlement === 'dead-letter') metrics.repliesRefused.inc({ reason });
      else if (reason === 'gave up') metrics.requeued.inc();
      else if (reason === 'stale') metrics.stale.inc();
    }
    if (ok > 0) metrics.messages.inc({ status: 'ok' }, ok);
    if (error > 0) metrics.messages.inc({ status: 'error' }, error);
    this.lastProgressAt = Date.now();
    if (this.heldBytes < config.maxInFlightBytes * RESUME_AT && this.state === 'running' && broker.state.paused) {
      // The new consumer may take what fits in the budget at the bodies' recent size, no more.
      void broker.resume((config.maxInFlightBytes - this.heldBytes) / Math.max(1, this.bodyBytesAverage));
    } else if (broker.prefetch < config.prefetch && this.state === 'running' && !broker.state.paused) {
      const affordable = (config.maxInFlightBytes - this.heldBytes) / Math.max(1, this.bodyBytesAverage);
      if (affordable >= 2 * broker.prefetch) void broker.raisePrefetch(affordable);
    }
  }

  /**
   * Only scoring holds an isolate. Replies and their confirms do not: an isolate that sat idle through
   * a broker round trip per batch capped throughput at CONCURRENCY × MAX_BATCH_SIZE per confirm
   * latency. PREFETCH still bounds what is in flight.
   */
  private schedule(batch: Received[], priority = 0): void {
    for (const r of batch) r.trace?.batched(batch.length);
    const work = this.scoring
      .add(() => this.scoreAndAnswer(batch), { priority })
      // The isolate is free once scoring is done; the answers (confirms, retries) go on outside the queue.
      .then(async (answering) => void (await Promise.all(answering ?? [])))
      .catch((err: Error) => {
        // answer() settles every item whatever happens; reaching here is a bug in scoring: the inputs stay unacked for redelivery.
        this.deps.logger.error({ err: err.message }, 'batch failed');
      })
      .finally(() => this.inProgress.delete(work));
    this.inProgress.add(work);
  }

  /**
   * Stale inputs (their channel has closed: the broker has them back) are dropped before scoring.
   * Over-size bodies are answered here, before any copy reaches the entry script. Items the script
   * answers one at a time are answered as each is done; a runBatch batch once it returns. Resolves
   * when scoring is done, with the answers still under way.
   */
  private async scoreAndAnswer(received: Received[]): Promise<Array<Promise<void>>> {
    const { metrics, scorer, config } = this.deps;
    const current = dropStale(
      packedMap(received, (r) => r.delivery),
      this.answerOptions,
    );
    // A redelivery held while the first copy's reply was being confirmed: answered by now.
    const answered = current.filter((d) => this.record.wasAnswered(d, Date.now()));
    if (answered.length > 0) {
      metrics.alreadyAnswered.inc(answered.length);
      settleAnswered(answered, this.answerOptions);
    }
    // Likewise a redelivery held while the first copy's reply went in doubt.
    const doubts = current.flatMap((d) => {
      const reply = answered.includes(d) ? undefined : this.record.inDoubt(d, Date.now());
      return reply ? [{ delivery: d, reply }] : [];
    });
    if (doubts.length > 0) this.sendAgain(doubts);
    const batch =
      answered.length + doubts.length === 0
        ? current
        : current.filter((d) => !answered.includes(d) && !doubts.some((x) => x.delivery === d));
    if (batch.length === 0) return [];
    const answering: Array<Promise<void>> = [];
    const started = performance.now();
    const answerNow = (items: ScoredItem[]) => answering.push(answer(items, this.answerOptions));
    const scored = (delivery: Delivery, result: ItemResult, scoringMs: number, model: ModelId) =>
      this.scoredItem(delivery, result, scoringMs, model);
    const toScore: Delivery[] = [];
    const early: ScoredItem[] = [];
    const now = Date.now();
    for (const delivery of batch) {
      const { deadline } = this.received.get(delivery) as Received;
      try {
        checkSize(delivery.body.byteLength, config.maxMessageBytes);
        if ('invalid' in deadline) throw new ScoringError('BAD_DEADLINE', deadline.invalid);
        if (isExpired(deadline, now)) {
          // Taken from its batch too late: answered, not scored (its neighbours still are).
          metrics.expired.inc();
          early.push(scored(delivery, expiredOutcome(deadline, now), 0, scorer.model));
          continue;
        }
        toScore.push(delivery);
      } catch (err) {
        const e = err as ScoringError;
        early.push(scored(delivery, { ok: false, code: e.code, message: e.message }, 0, scorer.model));
      }
    }
    if (early.length > 0) answerNow(early);
    if (toScore.length > 0) {
      const results = packedArray<ItemResult | undefined>(toScore.length, undefined);
      const { results: done, model } = await scorer.score(
        packedMap(toScore, (d) => d.body),
        bodyMetas(toScore),
        {
          // One at a time: each item answered as soon as it is scored.
          onItem: (i, result, model) => {
            results[i] = result;
            answerNow([scored(toScore[i], result, performance.now() - started, model)]);
          },
          // Its channel closed while earlier items ran: not worth an isolate's time.
          skip: (i) => !this.deps.broker.isCurrent(toScore[i]),
        },
      );
      const scoringMs = performance.now() - started;
      const rest: ScoredItem[] = [];
      done.forEach((result, i) => {
        if (results[i] === undefined) rest.push(scored(toScore[i], result, scoringMs, model));
      });
      if (rest.length > 0) answerNow(rest);
      metrics.scoringSeconds.observe(scoringMs / 1000);
      metrics.batchSize.observe(toScore.length);
    }
    // Scored or answered unscored: nothing reads these bodies again, however long their replies take.
    for (const d of current) releaseBody(d);
    return answering;
  }

  /** A scored (or refused) input, with what its reply carries beside the outcome; its trace moves on to the reply. */
  private scoredItem(delivery: Delivery, result: ItemResult, scoringMs: number, model: ModelId): ScoredItem {
    const received = this.received.get(delivery);
    const trace = received?.trace;
    trace?.scored(result);
    trace?.published(delivery.replyTo || this.deps.config.replyQueue);
    return {
      delivery,
      result,
      scoringMs,
      model,
      carries: {
        queueWaitMs: received ? queueWaitMs(delivery.timestamp, received.receivedAtMs) : undefined,
        traceHeaders: trace?.replyHeaders() ?? passTraceHeaders(delivery.headers),
      },
    };
  }
}

/**
 * Binary payloads (issue 14): each body's contentType and headers for the entry script; none when no
 * delivery has either. `application/json` alone is what the isolate assumes of a body without a meta
 * (binary-calls.ts scriptMeta), so a JSON message crosses to the isolate with nothing beside its body.
 */
function bodyMetas(deliveries: readonly Delivery[]): Array<BodyMeta | undefined> | undefined {
  const meta = (d: Delivery) => d.headers !== undefined || (d.contentType && d.contentType !== JSON_CONTENT_TYPE);
  if (!deliveries.some(meta)) return undefined;
  return packedMap(deliveries, (d) => (meta(d) ? { contentType: d.contentType, headers: d.headers } : undefined));
}
