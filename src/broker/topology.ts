/**
 * The queues this consumer owns and their arguments, and the one line that explains a clash with a
 * queue that already exists. Pure: the broker adapter declares what this returns.
 */
import type { Config, QueueType } from '../config.js';
import { BootError } from '../errors.js';

export interface Topology {
  inputQueue: string;
  replyQueue: string;
  deadQueue: string;
  inputArguments: Record<string, string | number>;
  /** Per queue, the arguments it is declared with. */
  argumentsOf(queue: string): Record<string, string | number>;
  queueType: QueueType;
}

/** Where an input queue's poison messages are parked: the one spelling of the dead-letter queue's name. */
export function deadQueueOf(inputQueue: string): string {
  return `${inputQueue}.dead`;
}

export function topologyFor(
  c: Pick<Config, 'inputQueue' | 'replyQueue' | 'queueType' | 'deliveryLimit'> & Partial<Pick<Config, 'maxPriority'>>,
): Topology {
  const deadQueue = deadQueueOf(c.inputQueue);
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
      : { ...deadLetter, ...priorityArguments(c.queueType, c.maxPriority ?? 0) };
  // The reply queue is shared with every client that reads it, and the tutorials declare a queue with
  // `durable` alone: a quorum reply queue would refuse them (inequivalent x-queue-type). Plain durable is
  // what they declare; an operator who wants it replicated declares it quorum first, and we use it as is.
  const replyArguments = {};
  const deadArguments = { 'x-queue-type': c.queueType };
  return {
    inputQueue: c.inputQueue,
    replyQueue: c.replyQueue,
    deadQueue,
    inputArguments,
    queueType: c.queueType,
    argumentsOf: (queue) =>
      queue === c.inputQueue ? inputArguments : queue === deadQueue ? deadArguments : replyArguments,
  };
}

/**
 * Priorities (MAX_PRIORITY) as the queue type takes them. A classic queue orders by `priority` only when
 * declared with x-max-priority (1–255; RabbitMQ advises at most 10). A quorum queue takes no such argument:
 * on RabbitMQ 3.x it ignores priorities, and from 4.0 it honours them without one, in two levels (0–4
 * normal, 5 and up high, delivered 2 high : 1 normal); declaring x-max-priority on it would fail on 3.x.
 * Either way the consumer orders the inputs it holds by priority itself (held-inputs.ts).
 */
export function priorityArguments(queueType: QueueType, maxPriority: number): Record<string, number> {
  return queueType === 'classic' && maxPriority > 0 ? { 'x-max-priority': maxPriority } : {};
}

const SETTING: Record<string, string> = {
  'x-queue-type': 'QUEUE_TYPE',
  'x-delivery-limit': 'DELIVERY_LIMIT',
  'x-max-priority': 'MAX_PRIORITY',
};

/**
 * Declared by this consumer on quorum queues only. RabbitMQ names the first argument that differs in its
 * own order, and for a classic queue met by our quorum declaration (or the reverse) that is one of these,
 * never x-queue-type: present on one side only, it tells which QUEUE_TYPE the queue was declared with.
 */
const QUORUM_ONLY = new Set(['x-overflow', 'x-dead-letter-strategy']);

/**
 * RabbitMQ 3.10 (rabbit_misc:assert_args_equivalence) says "received X but current is Y", where each side
 * is `none`, `'5'` (same type, other value) or `the value '5' of type 'byte'` (one side missing or another type).
 */
const ARG_VALUE = `(?:none|(?:the value )?'([^']*)'(?: of type '[^']*')?)`;
const INEQUIVALENT_ARG = new RegExp(
  `inequivalent arg '([^']+)'.*?: received ${ARG_VALUE} but current (?:value )?is ${ARG_VALUE}`,
);

/**
 * The broker's PRECONDITION_FAILED text names the argument and both values; say it in one line with
 * the way out, instead of a stack trace.
 */
export function explainPreconditionFailed(queue: string, brokerMessage: string): BootError {
  const m = INEQUIVALENT_ARG.exec(brokerMessage);
  if (!m)
    return new BootError(`queue '${queue}' exists with other settings than this consumer declares: ${brokerMessage}`);
  const [, arg, wanted, existing] = m;
  const setting = SETTING[arg];
  const typeHint = QUORUM_ONLY.has(arg) && (wanted === undefined) !== (existing === undefined);
  const fix = setting
    ? `set ${setting} to match the queue, or delete the queue so it is declared anew`
    : typeHint
      ? `set QUEUE_TYPE=${existing === undefined ? 'classic' : 'quorum'} to use the queue as it is, or delete the queue so it is declared anew`
      : 'delete the queue so it is declared anew';
  return new BootError(
    `queue '${queue}' exists with ${arg} = ${shown(existing)}, but this consumer declares ${shown(wanted)}: ${fix}`,
  );
}

/** `none` when the argument is absent; an empty string (the default exchange) shown as ''. */
function shown(value: string | undefined): string {
  return value === undefined ? 'none' : value === '' ? "''" : value;
}
