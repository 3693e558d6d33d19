/**
 * The queues this consumer owns and their arguments, and the one line that explains a clash with a
 * queue that already exists. Pure: the broker adapter declares what this returns.
 */
import { BootError } from './errors.js';

export interface Topology {
  inputQueue: string;
  replyQueue: string;
  deadQueue: string;
  inputArguments: Record<string, string | number>;
  queueType: 'quorum' | 'classic';
}

export function topologyFor(c: { inputQueue: string; replyQueue: string; queueType: 'quorum' | 'classic'; deliveryLimit: number }): Topology {
  const deadQueue = `${c.inputQueue}.dead`;
  const deadLetter = { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': deadQueue };
  const inputArguments: Record<string, string | number> =
    c.queueType === 'quorum'
      ? {
          'x-queue-type': 'quorum',
          'x-delivery-limit': c.deliveryLimit,
          ...deadLetter,
          // at-most-once dead-lettering (the default) may drop a poison message; at-least-once needs reject-publish.
          'x-dead-letter-strategy': 'at-least-once',
          'x-overflow': 'reject-publish',
        }
      : deadLetter;
  return { inputQueue: c.inputQueue, replyQueue: c.replyQueue, deadQueue, inputArguments, queueType: c.queueType };
}

const SETTING: Record<string, string> = {
  'x-queue-type': 'QUEUE_TYPE',
  'x-delivery-limit': 'DELIVERY_LIMIT',
};

/**
 * The broker's PRECONDITION_FAILED text names the argument and both values; say it in one line with
 * the way out, instead of a stack trace.
 */
export function explainPreconditionFailed(queue: string, brokerMessage: string): BootError {
  const m = /inequivalent arg '([^']+)'.*?received (?:the value '?([^' ]*)'?|none).*?current (?:value is )?(?:'?([^' ]*)'?|none)/.exec(brokerMessage);
  if (!m) return new BootError(`queue '${queue}' exists with other settings than this consumer declares: ${brokerMessage}`);
  const [, arg, wanted = 'none', existing = 'none'] = m;
  const setting = SETTING[arg];
  const fix = setting ? `set ${setting} to match the queue, or delete the queue so it is declared anew` : 'delete the queue so it is declared anew';
  return new BootError(`queue '${queue}' exists with ${arg} = ${existing}, but this consumer declares ${wanted}: ${fix}`);
}
