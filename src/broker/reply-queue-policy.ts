/**
 * A reply queue declared by someone else, with arguments that drop messages after the broker has
 * confirmed them: a reply lost there is lost without a trace on our side, so say so at warn, naming
 * the argument. RabbitMQ's PRECONDITION_FAILED text names the first argument that differs from our
 * declaration (which has none); policies set with `rabbitmqctl set_policy` are not visible over AMQP.
 */

/** "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received none but current is the value '60000' of type 'long'" */
const ARG = /inequivalent arg '([^']+)'.*?current (?:value )?is (?:none|(?:the value )?'([^']*)')/;

/** Arguments under which a confirmed reply can still be dropped, and how. */
const LOSSY: Record<string, string> = {
  'x-message-ttl': 'replies not read within the TTL are dropped',
  'x-expires': 'the queue is deleted when unused, with its replies',
  'x-max-length': 'past the length the oldest replies are dropped (drop-head, the default overflow)',
  'x-max-length-bytes': 'past the size the oldest replies are dropped (drop-head, the default overflow)',
  'x-overflow': 'drop-head drops the oldest replies when full',
};

export interface ForeignArgument {
  argument: string;
  value?: string;
  /** Set when replies can be lost to it after their confirm. */
  loss?: string;
}

export function foreignArgument(brokerMessage: string): ForeignArgument | undefined {
  const m = ARG.exec(brokerMessage);
  if (!m) return undefined;
  const [, argument, value] = m;
  // reject-publish refuses (nacks) instead of dropping: answer.ts handles that one.
  const loss = argument === 'x-overflow' && value !== 'drop-head' ? undefined : LOSSY[argument];
  return { argument, value, loss };
}
