/** Messages between the consumer and the isolate (worker thread or child process) that runs the entry script. */
import type { InitContext } from '../entry-script.js';
import type { Outcome } from '../reply.js';

export type CallMethod = 'run' | 'runBatch';

export interface ScriptInfo {
  modelName: string;
  hasRunBatch: boolean;
  inputSchema?: object;
  outputSchema?: object;
}

export type ToRuntime =
  | { type: 'init'; entryScript: string; context: InitContext; maxMessageBytes: number }
  | { type: 'call'; id: number; method: CallMethod; bodies: PackedBodies };

export type FromRuntime =
  | { type: 'ready'; info: ScriptInfo }
  | { type: 'init-failed'; message: string }
  | { type: 'result'; id: number; outcomes: Outcome[] };

/** Message bodies side by side in one buffer, each ending at `ends[i]`: one object to send, and a thread can take it without a copy. */
export interface PackedBodies {
  bytes: Uint8Array;
  ends: Uint32Array;
}

/**
 * Copies the bodies into one fresh buffer. Sent as they are, each body (a slice of amqplib's socket
 * read buffer) would be cloned with the whole buffer behind it, up to 64 kB per body: postMessage was
 * 15% of the consumer's thread in the benchmark's first profile.
 */
export function packBodies(bodies: readonly Uint8Array[]): PackedBodies {
  let total = 0;
  for (const b of bodies) total += b.byteLength;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(bodies.length);
  let at = 0;
  for (let i = 0; i < bodies.length; i++) {
    bytes.set(bodies[i], at);
    at += bodies[i].byteLength;
    ends[i] = at;
  }
  return { bytes, ends };
}

/** Views on the packed buffer, no copies. */
export function unpackBodies({ bytes, ends }: PackedBodies): Uint8Array[] {
  const bodies: Uint8Array[] = new Array(ends.length);
  let start = 0;
  for (let i = 0; i < ends.length; i++) {
    bodies[i] = bytes.subarray(start, ends[i]);
    start = ends[i];
  }
  return bodies;
}
