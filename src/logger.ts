/** pino, with the broker URL's password redacted wherever a field might carry it. */
import { pino, type Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: ['url', 'amqpUrl', '*.url', 'password', '*.password'], censor: '***' },
  });
}
