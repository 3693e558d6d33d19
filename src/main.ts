/**
 * Wires config → entry script → broker → consumer → HTTP → signals, and nothing else.
 * Boot fails with one line on stderr and a non-zero exit before any message is touched. A signal
 * during boot lets the step under way finish, starts nothing more, and exits 0.
 */
import type { Server } from 'node:http';
import { loadConfig, settingWarnings } from './config.js';
import { Broker } from './broker/broker.js';
import { BUILT_IN_ENTRY_SCRIPT, resolveModelDir } from './isolate/entry-script.js';
import { Consumer } from './consumer.js';
import { startHttp } from './http.js';
import { boundHeapGrowth } from './heap-growth.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { ModelSwitch } from './model-switch.js';
import { watchModel, type ModelWatch } from './model-watch.js';
import { scorerOptions } from './scorer.js';
import { startTracing, type Tracing } from './tracing.js';

interface Parts {
  scorer?: ModelSwitch;
  watch?: ModelWatch;
  broker?: Broker;
  consumer?: Consumer;
  http?: Server;
  tracing?: Tracing;
}

let signalled: string | undefined;
let onSignal: ((signal: string) => void) | undefined;
// Before anything else: a SIGTERM while the model loads must not kill the process mid-step (exit 143).
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    signalled ??= signal;
    onSignal?.(signal);
  });
}
// SIGHUP loads the model again (its default would end the process). During boot there is nothing to
// reload: boot is loading what the folder holds now.
let onReload: ((trigger: string) => void) | undefined;
process.on('SIGHUP', () => onReload?.('SIGHUP'));

async function main(): Promise<void> {
  const config = loadConfig();
  boundHeapGrowth(config.heapGrowingPercent);
  const log = createLogger(config.logLevel);
  for (const warning of settingWarnings(config)) log.warn({ warning }, 'risky settings');
  const parts: Parts = {};
  let stopping = false;
  const shutdown = async (signal: string, booting: Promise<unknown>) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: finishing in-flight messages');
    setTimeout(() => {
      log.error('shutdown grace period over; exiting with messages still in flight (the broker redelivers them)');
      process.exit(1);
    }, config.shutdownGraceMs).unref();
    await booting.catch(() => {});
    parts.watch?.stop();
    await parts.consumer?.stop();
    await parts.broker?.close();
    await parts.scorer?.stop();
    // After the consumer: its last spans are exported before the process exits.
    await parts.tracing?.shutdown();
    parts.http?.close();
    log.info('stopped');
    process.exit(0);
  };

  const boot = (async () => {
    const options = scorerOptions(config, log);
    log.info(
      { entryScript: options.entryScript, modelDir: options.context.modelDir, version: options.modelVersion },
      'loading entry script',
    );
    const metrics = new Metrics();
    parts.scorer = await ModelSwitch.start(options, {
      resolve: () => scorerOptions(config, log),
      reloadTimeoutMs: config.reloadTimeoutMs,
      logger: log,
      onReload: (r) => (r.ok ? (metrics.reloads.inc(), metrics.showModel(r.to)) : metrics.reloadFailures.inc()),
    });
    const scorer = parts.scorer;
    metrics.showModel(scorer.model);
    log.info(
      { model: scorer.info.modelName, version: scorer.model.version, runBatch: scorer.info.hasRunBatch },
      'entry script ready',
    );
    for (const line of scorer.info.bootLog ?? []) log.info(line.fields, line.msg);
    onReload = (trigger) => void scorer.reload(trigger);
    if (config.modelWatchMs > 0) {
      const script = options.entryScript === BUILT_IN_ENTRY_SCRIPT ? undefined : options.entryScript;
      parts.watch = watchModel(
        resolveModelDir(config.modelDir),
        script,
        config.modelWatchMs,
        (changed) => onReload?.(`file changed: ${changed}`),
        log,
      );
    }
    if (stopping) return;
    parts.broker = await Broker.connect(config, log).catch(async (err) => {
      await scorer.stop();
      throw err;
    });
    if (stopping) return;
    const broker = parts.broker;
    // No OTEL_* saying so: TRACING_OFF, and no SDK module is even loaded.
    parts.tracing = await startTracing(config.tracing);
    if (parts.tracing.enabled)
      log.info(
        { exporter: config.tracing.exporter, url: config.tracing.otlpTracesUrl, service: config.tracing.serviceName },
        'tracing on',
      );
    const consumer = new Consumer({ broker, scorer, config, logger: log, metrics, tracing: parts.tracing });
    parts.consumer = consumer;
    if (config.httpPort) {
      const probes = {
        ready: () => consumer.ready,
        well: () => {
          const s = broker.state;
          return s.consumeConnected && s.publishConnected && !consumer.progress.stalled;
        },
        state: () => ({ ...broker.state, ...consumer.progress }),
      };
      parts.http = await startHttp(config.httpPort, probes, metrics, config.livenessTimeoutMs, (trigger) =>
        scorer.reload(trigger),
      );
      log.info({ port: config.httpPort }, 'http listening');
    }
    if (stopping) return;
    await consumer.start();
  })();
  onSignal = (signal) => void shutdown(signal, boot);
  if (signalled) onSignal(signalled);
  await boot;
}

main().catch((err: Error) => {
  process.stderr.write(`scorer: boot failed: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
