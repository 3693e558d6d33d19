/**
 * The lifecycle of the message path: consume → batch → score → reply → ack. `stop()` stops
 * consuming, finishes what is in flight (replies confirmed, inputs acked) and resolves; it is
 * idempotent.
 */
import PQueue from 'p-queue';
import type { Logger } from 'pino';
import { settlementFor, type Settlement } from './acknowledger.js';
import { Batcher } from './batcher.js';
import type { Broker, Delivery, PublishResult } from './broker.js';
import type { Config } from './config.js';
import { ScoringError } from './errors.js';
import { checkSize } from './message.js';
import type { Metrics } from './metrics.js';
import { buildReply, type Reply } from './reply.js';
import type { BodyMeta } from './runtime/protocol.js';
import type { ItemResult, Scorer } from './scorer.js';

export type ConsumerState = 'created' | 'running' | 'stopping' | 'stopped';

export interface ConsumerDeps {
  broker: Broker;
  scorer: Scorer;
  config: Readonly<Config>;
  logger: Logger;
  metrics: Metrics;
}

/** p-queue priority: a redelivered input waits behind no batch. */
const REDELIVERED_FIRST = 1;

interface Received {
  delivery: Delivery;
  receivedAt: number;
}

export class Consumer {
  state: ConsumerState = 'created';
  private readonly batcher: Batcher<Received>;
  /** Scoring only, CONCURRENCY batches at once (one per isolate); redelivered inputs jump the line. */
  private readonly scoring: PQueue;
  /** Batches scored or being answered, until their inputs are settled: stop() waits for them. */
  private readonly inProgress = new Set<Promise<void>>();
  private stopped: Promise<void> | undefined;

  constructor(private readonly deps: ConsumerDeps) {
    const { config } = deps;
    this.scoring = new PQueue({ concurrency: config.concurrency });
    const isolateFree = () => this.scoring.pending + this.scoring.size < config.concurrency;
    this.batcher = new Batcher(config.maxBatchSize, config.maxBatchDelayMs, (batch) => this.schedule(batch), isolateFree);
    // An isolate is free: cut the next batch now, grown while every isolate was busy.
    this.scoring.on('next', () => this.batcher.wake());
    deps.broker.on('returned', ({ routingKey, correlationId }) =>
      deps.logger.warn({ correlationId, routingKey }, 'reply returned unroutable'),
    );
    deps.broker.on('connected', (role) => {
      if (this.state === 'running') deps.metrics.reconnects.inc({ role });
    });
  }

  async start(): Promise<void> {
    if (this.state !== 'created') return;
    this.state = 'running';
    await this.deps.broker.consume((d) => this.onDelivery(d));
  }

  /** Ready: the model is loaded (the scorer exists), both connections are up and the consumer is subscribed. */
  get ready(): boolean {
    const s = this.deps.broker.state;
    return this.state === 'running' && s.consumeConnected && s.publishConnected && s.consuming;
  }

  stop(): Promise<void> {
    this.stopped ??= (async () => {
      this.state = 'stopping';
      await this.deps.broker.stopConsuming();
      this.batcher.flush();
      while (this.inProgress.size > 0) await Promise.all(this.inProgress);
      this.state = 'stopped';
    })();
    return this.stopped;
  }

  private onDelivery(delivery: Delivery): void {
    this.deps.metrics.inFlight.inc();
    const item = { delivery, receivedAt: performance.now() };
    // A redelivered input may be the one that killed the entry script: score it alone, so it can only take itself down.
    if (delivery.redelivered) this.schedule([item], REDELIVERED_FIRST);
    else this.batcher.add(item);
    if (this.state !== 'running') this.batcher.flush();
  }

  /**
   * Only scoring holds an isolate. Replies and their confirms do not: an isolate that sat idle through
   * a broker round trip per batch capped throughput at CONCURRENCY × MAX_BATCH_SIZE per confirm
   * latency. PREFETCH still bounds what is in flight.
   */
  private schedule(batch: Received[], priority = 0): void {
    const work = this.scoring
      .add(() => this.scoreTimed(batch), { priority })
      .then(({ results, scoringMs }) => this.answer(batch, results, scoringMs))
      .catch((err: Error) => {
        // answer() handles every per-item failure; reaching here is a bug, and the inputs stay unacked for redelivery.
        this.deps.logger.error({ err: err.message }, 'batch failed');
      })
      .finally(() => this.inProgress.delete(work));
    this.inProgress.add(work);
  }

  private async scoreTimed(batch: Received[]): Promise<{ results: ItemResult[]; scoringMs: number }> {
    const started = performance.now();
    const results = await this.score(batch);
    const scoringMs = performance.now() - started;
    this.deps.metrics.scoringSeconds.observe(scoringMs / 1000);
    this.deps.metrics.batchSize.observe(batch.length);
    return { results, scoringMs };
  }

  /**
   * Publishes the batch's replies at once and acks the inputs whose replies are confirmed; a reply
   * that is not (returned, nacked, late) is retried on its own, and its input acked once it is.
   */
  private async answer(batch: Received[], results: ItemResult[], scoringMs: number): Promise<void> {
    const { scorer, metrics, config, broker, logger } = this.deps;
    const settled: Array<{ delivery: Delivery; settlement: Settlement }> = [];
    const sending: Received[] = [];
    const replies: Reply[] = [];
    for (let i = 0; i < batch.length; i++) {
      const { delivery } = batch[i];
      const result = results[i];
      if (!result.ok && result.code === 'CRASHED') settled.push(this.unanswered(delivery, result.message));
      // Its channel has closed: the broker redelivers it, and a reply now would only be a duplicate.
      else if (broker.isCurrent(delivery)) {
        const reply = buildReply(delivery, result, { replyQueue: config.replyQueue, modelName: scorer.info.modelName, scoringMs });
        if (!result.ok) logger.info({ correlationId: reply.correlationId, code: result.code, error: result.message }, 'error reply');
        sending.push(batch[i]);
        replies.push(reply);
      }
    }
    const published = replies.length > 0 ? await broker.publishAll(replies) : [];
    const answeredBy = { ok: 0, error: 0 };
    const answered = (k: number) => {
      answeredBy[replies[k].status]++;
      metrics.endToEndSeconds.observe((performance.now() - sending[k].receivedAt) / 1000);
      settled.push({ delivery: sending[k].delivery, settlement: 'ack' });
    };
    const retries: Array<Promise<void>> = [];
    for (let k = 0; k < sending.length; k++) {
      if (published[k] === 'confirmed') answered(k);
      else retries.push(this.retryReply(sending[k].delivery, replies[k], published[k]).then((ok) => (ok ? answered(k) : undefined)));
    }
    if (retries.length > 0) await Promise.all(retries);
    for (const status of ['ok', 'error'] as const) if (answeredBy[status] > 0) metrics.messages.inc({ status }, answeredBy[status]);
    broker.settle(settled);
    metrics.inFlight.dec(batch.length);
  }

  /** Over-size bodies are answered here, before any copy reaches the entry script. */
  private async score(batch: Received[]): Promise<ItemResult[]> {
    const results: ItemResult[] = new Array(batch.length);
    const toScore: number[] = [];
    batch.forEach(({ delivery }, i) => {
      try {
        checkSize(delivery.body.byteLength, this.deps.config.maxMessageBytes);
        toScore.push(i);
      } catch (err) {
        const e = err as ScoringError;
        results[i] = { ok: false, code: e.code, message: e.message };
      }
    });
    if (toScore.length > 0) {
      const scored = await this.deps.scorer.score(toScore.map((i) => batch[i].delivery.body), bodyMetas(toScore.map((i) => batch[i].delivery)));
      toScore.forEach((i, k) => (results[i] = scored[k]));
    }
    return results;
  }

  /** The entry script's isolate died under this input: no reply; the broker counts the delivery. */
  private unanswered(delivery: Delivery, reason: string): { delivery: Delivery; settlement: Settlement } {
    const { config, metrics, logger } = this.deps;
    const settlement = settlementFor(false, delivery.redelivered, config.queueType);
    const deadLettered = settlement === 'dead-letter' || delivery.deliveryCount >= config.deliveryLimit;
    (deadLettered ? metrics.deadLettered : metrics.requeued).inc();
    logger.warn({ correlationId: delivery.correlationId ?? delivery.messageId, deliveryCount: delivery.deliveryCount, reason }, deadLettered ? 'input dead-lettered' : 'input requeued');
    return { delivery, settlement };
  }

  /**
   * Publishes one reply again until it is confirmed. True once it is (or once it came back from a
   * caller's replyTo that has gone: no one is left to answer). False when the input's channel died
   * first: the broker redelivers the input, and a reply now would only be a duplicate.
   */
  private async retryReply(delivery: Delivery, reply: Reply, first: PublishResult | Error): Promise<boolean> {
    const { broker, logger, metrics } = this.deps;
    let result = first;
    for (let attempt = 1; ; attempt++) {
      if (result === 'confirmed') return true;
      if (result === 'returned') {
        metrics.returnedReplies.inc();
        if (!reply.toReplyQueue) return true;
        // Our own reply queue was deleted: an input is never acked on a reply that went nowhere.
        await broker.redeclareReplyQueue();
      } else {
        logger.warn({ correlationId: reply.correlationId, attempt, err: result.message }, 'reply not confirmed; retrying');
        await new Promise((r) => setTimeout(r, Math.min(5000, 50 * 2 ** attempt)));
      }
      if (!broker.isCurrent(delivery)) return false;
      [result] = await broker.publishAll([reply]);
    }
  }
}

/** Binary payloads (issue 14): each body's contentType and headers for the entry script; none when no delivery has either. */
function bodyMetas(deliveries: readonly Delivery[]): Array<BodyMeta | undefined> | undefined {
  if (!deliveries.some((d) => d.contentType || d.headers)) return undefined;
  return deliveries.map((d) => (d.contentType || d.headers ? { contentType: d.contentType, headers: d.headers } : undefined));
}
