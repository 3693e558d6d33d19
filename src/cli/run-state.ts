/**
 * The small file next to --out that lets an interrupted `submit` resume: which run it was (its reply
 * queue) and how far the input has been sent. Written atomically (temp file, then rename), so a kill
 * leaves either the old state or the new one.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  ftruncateSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { readWrittenResults, type WrittenResults } from './records.js';

export interface RunState {
  version: 1;
  runId: string;
  /** Absolute path of the input file. */
  input: string;
  queue: string;
  replyQueue: string;
  /** Every non-blank input line up to this one has been sent (publisher-confirmed) or answered locally. */
  sentThrough: number;
  startedAt: string;
  /** A folder's or glob's sorted file names, digested: resuming over changed files would mislabel results. */
  digest?: string;
}

export const statePathFor = (out: string): string => `${out}.state.json`;

export function readState(path: string): RunState | undefined {
  if (!existsSync(path)) return undefined;
  let state: Partial<RunState>;
  try {
    state = JSON.parse(readFileSync(path, 'utf8')) as Partial<RunState>;
  } catch (err) {
    throw new Error(`state file ${path} is unreadable: ${(err as Error).message}`);
  }
  if (
    state.version !== 1 ||
    typeof state.runId !== 'string' ||
    typeof state.replyQueue !== 'string' ||
    typeof state.sentThrough !== 'number'
  ) {
    throw new Error(`state file ${path} is not a scorer submit state`);
  }
  return state as RunState;
}

export function writeState(path: string, state: RunState): void {
  const temp = `${path}.tmp`;
  writeFileSync(temp, `${JSON.stringify(state, null, 2)}\n`);
  renameSync(temp, path);
}

export function removeState(path: string): void {
  rmSync(path, { force: true });
}

/**
 * A new run (a fresh run id and reply queue, --out emptied) or, with `resume`, the interrupted one: its
 * state, and what --out already holds, a record cut short by the kill dropped (its reply is still in
 * the queue, unacked).
 */
export function startOrResume(
  o: { out: string; queue: string; resume: boolean },
  input: string,
  statePath: string,
  stderr: NodeJS.WritableStream,
  digest?: string,
): { state: RunState; written: WrittenResults } {
  const existing = readState(statePath);
  if (!o.resume) {
    if (existing)
      throw new Error(
        `an interrupted run's state is in ${statePath}: add --resume to finish it, or delete that file to start over`,
      );
    const runId = `${new Date().toISOString().slice(0, 10).replaceAll('-', '')}-${randomBytes(4).toString('hex')}`;
    closeSync(openSync(o.out, 'w'));
    const state: RunState = {
      version: 1,
      runId,
      input,
      queue: o.queue,
      replyQueue: `scorer.submit.${runId}`,
      sentThrough: 0,
      startedAt: new Date().toISOString(),
      ...(digest ? { digest } : {}),
    };
    return { state, written: { lastLine: 0, ok: 0, errors: 0, validLength: 0 } };
  }
  if (!existing) throw new Error(`nothing to resume: no ${statePath} (the run finished, or never started)`);
  if (existing.input !== input) throw new Error(`${statePath} is a run of ${existing.input}, not of ${input}`);
  if (existing.digest !== digest)
    throw new Error(
      `the files of ${input} are not the ones the run in ${statePath} started with: restore them, or start a new run with another --out`,
    );
  if (existing.queue !== o.queue)
    throw new Error(`${statePath} is a run on queue '${existing.queue}', not '${o.queue}'`);
  const written = existsSync(o.out)
    ? readWrittenResults(readFileSync(o.out, 'utf8'))
    : { lastLine: 0, ok: 0, errors: 0, validLength: 0 };
  const fd = openSync(o.out, existsSync(o.out) ? 'r+' : 'w');
  ftruncateSync(fd, written.validLength);
  closeSync(fd);
  const firstNew = Math.max(existing.sentThrough, written.lastLine) + 1;
  stderr.write(
    `resuming run ${existing.runId}: ${written.ok + written.errors} lines already in ${o.out}; ` +
      `lines up to ${firstNew - 1} were sent, their replies are collected from ${existing.replyQueue}; sending from line ${firstNew}\n`,
  );
  return { state: existing, written };
}
