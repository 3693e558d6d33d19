/** Prometheus metrics (prom-client), one registry per process, passed to whoever counts. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly messages = new Counter({
    name: 'scorer_messages_total',
    help: 'Inputs answered, by reply status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  readonly scoringSeconds = new Histogram({
    name: 'scorer_scoring_seconds',
    help: 'Time in the entry script per batch',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly endToEndSeconds = new Histogram({
    name: 'scorer_end_to_end_seconds',
    help: 'From delivery to the reply confirmed by the broker, per input',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30],
    registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'scorer_batch_size',
    help: 'Inputs per scored batch',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  });
  /** What the consumer holds, read at each scrape (prom-client's collect) rather than set as each input comes and goes. */
  private held: () => { held: number; heldBytes: number } = () => ({ held: 0, heldBytes: 0 });
  readonly inFlight: Gauge = new Gauge({
    name: 'scorer_in_flight',
    help: 'Inputs received and not yet settled',
    registers: [this.registry],
    collect: (): void => this.inFlight.set(this.held().held),
  });
  readonly inFlightBytes: Gauge = new Gauge({
    name: 'scorer_in_flight_bytes',
    help: 'Bytes of the bodies received and not yet settled (MAX_IN_FLIGHT_BYTES bounds it)',
    registers: [this.registry],
    collect: (): void => this.inFlightBytes.set(this.held().heldBytes),
  });
  readonly replyRetries = new Counter({
    name: 'scorer_reply_retries_total',
    help: 'Replies published again, by what the broker said of the last try (late, lost, nacked, returned)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly repliesRefused = new Counter({
    name: 'scorer_replies_refused_total',
    help: 'Inputs dead-lettered because their reply was refused for good, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly stale = new Counter({
    name: 'scorer_stale_total',
    help: 'Inputs dropped unanswered because their channel closed first (the broker redelivers them)',
    registers: [this.registry],
  });
  readonly reconnects = new Counter({
    name: 'scorer_reconnects_total',
    help: 'Broker reconnections',
    labelNames: ['role'] as const,
    registers: [this.registry],
  });
  readonly deadLettered = new Counter({
    name: 'scorer_dead_lettered_total',
    help: 'Inputs sent to the dead-letter queue after killing the entry script',
    registers: [this.registry],
  });
  readonly requeued = new Counter({
    name: 'scorer_requeued_total',
    help: 'Inputs requeued because the entry script died under them',
    registers: [this.registry],
  });
  readonly returnedReplies = new Counter({
    name: 'scorer_returned_replies_total',
    help: 'Replies the broker could not route (the caller had gone)',
    registers: [this.registry],
  });
  readonly expired = new Counter({
    name: 'scorer_expired_total',
    help: 'Inputs past their deadline when taken from their batch, answered EXPIRED without scoring',
    registers: [this.registry],
  });
  readonly alreadyAnswered = new Counter({
    name: 'scorer_already_answered_total',
    help: 'Redelivered inputs found in the answered record, acked without scoring or a second reply',
    registers: [this.registry],
  });
  readonly resentInDoubt = new Counter({
    name: 'scorer_resent_in_doubt_total',
    help: 'Redelivered inputs whose earlier reply was in doubt (its confirm lost with its channel): that reply sent again unchanged, same messageId, not scored again',
    registers: [this.registry],
  });

  readonly modelInfo = new Gauge({
    name: 'scorer_model_info',
    help: 'The model serving now: 1 for its name and version (x-model-version)',
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'scorer_reloads_total',
    help: 'Model reloads that switched to a new model',
    registers: [this.registry],
  });
  readonly reloadFailures = new Counter({
    name: 'scorer_reload_failures_total',
    help: 'Model reloads that failed: the old model serves on (the log says why)',
    registers: [this.registry],
  });

  /** Only the serving model is shown: a switch removes the old one's series. */
  showModel(model: { name: string; version: string }): void {
    this.modelInfo.reset();
    this.modelInfo.set({ model: model.name, version: model.version }, 1);
  }

  /** scorer_in_flight and scorer_in_flight_bytes report what `source` says at each scrape. */
  reportHeld(source: () => { held: number; heldBytes: number }): void {
    this.held = source;
  }

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }
}
