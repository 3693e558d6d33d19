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
  | { type: 'call'; id: number; method: CallMethod; bodies: Uint8Array[] };

export type FromRuntime =
  | { type: 'ready'; info: ScriptInfo }
  | { type: 'init-failed'; message: string }
  | { type: 'result'; id: number; outcomes: Outcome[] };
