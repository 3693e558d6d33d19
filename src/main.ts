/**
 * Wires config → entry script → broker → consumer → HTTP → signals, and nothing else.
 * Boot fails with one line on stderr and a non-zero exit before any message is touched.
 */
import type { Server } from 'node:http';
import { loadConfig } from './config.js';
import { Broker } from './broker.js';
import { Consumer } from './consumer.js';
import { startHttp } from './http.js';
import { createLogger } from './logger.js';
import { Metrics } from './metrics.js';
import { Scorer, scorerOptions } from './scorer.js';

async function main(): Promise<void> {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  const options = scorerOptions(config, log);
  log.info({ entryScript: options.entryScript, modelDir: options.context.modelDir }, 'loading entry script');
  const scorer = await Scorer.start(options);
  log.info({ model: scorer.info.modelName, runBatch: scorer.info.hasRunBatch }, 'entry script ready');
  for (const line of scorer.info.bootLog ?? []) log.info(line.fields, line.msg);

  const broker = await Broker.connect(config, log).catch(async (err) => {
    await scorer.stop();
    throw err;
  });
  const metrics = new Metrics();
  const consumer = new Consumer({ broker, scorer, config, logger: log, metrics });
  let http: Server | undefined;
  if (config.httpPort) {
    http = await startHttp(config.httpPort, { ready: () => consumer.ready, state: () => broker.state }, metrics);
    log.info({ port: config.httpPort }, 'http listening');
  }
  await consumer.start();

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal, graceMs: config.shutdownGraceMs }, 'shutting down: finishing in-flight messages');
    setTimeout(() => {
      log.error('shutdown grace period over; exiting with messages still in flight (the broker redelivers them)');
      process.exit(1);
    }, config.shutdownGraceMs).unref();
    await consumer.stop();
    await broker.close();
    await scorer.stop();
    http?.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: Error) => {
  process.stderr.write(`scorer: boot failed: ${err.message.split('\n')[0]}\n`);
  process.exit(1);
});
