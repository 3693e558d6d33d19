/**
 * The one capped exponential backoff: every retry loop (reconnects aside, which amqplib's recovery
 * times itself with the same RECONNECT_* settings) waits this long, its delays taken from config.
 */
export interface Backoff {
  initialMs: number;
  maxMs: number;
}

/** The wait before retry `attempt` (0 for the first): initialMs, doubling, never past maxMs. */
export function backoffMs(b: Backoff, attempt: number): number {
  return Math.min(b.maxMs, b.initialMs * 2 ** attempt);
}
