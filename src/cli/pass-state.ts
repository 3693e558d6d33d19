/**
 * The state file of one `scorer dead-letters` pass over a dead queue: which pass it is (its run id, so
 * the pass knows its own copies) and the request keys it has finished. A line is appended only after
 * the broker confirmed what the pass published for those messages, and before they are acked; so a
 * pass killed in between finds, when run again, the messages it had finished back in the queue, and
 * acks them without answering or copying them twice. Removed when the pass completes.
 *
 * Format: JSON Lines; the first line the pass ({version, runId, command, deadQueue, startedAt}), then one
 * {"k": key, "c": 1 when a copy of it went back into the dead queue} per finished message.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

export type PassCommand = 'list' | 'answer' | 'replay';

export interface PassHeader {
  version: 1;
  runId: string;
  command: PassCommand;
  deadQueue: string;
  startedAt: string;
}

export interface PassState {
  header: PassHeader;
  /** Request keys finished by this pass. */
  done: Set<string>;
  /** Copies this pass put into the dead queue: they sit behind what it has still to take. */
  copies: number;
  resumed: boolean;
}

export function defaultStatePath(deadQueue: string): string {
  return `scorer-dead-letters.${deadQueue.replace(/[^A-Za-z0-9._-]/g, '_')}.state.jsonl`;
}

export function openPass(path: string, command: PassCommand, deadQueue: string): PassState {
  if (!existsSync(path)) {
    const header: PassHeader = { version: 1, runId: randomBytes(6).toString('hex'), command, deadQueue, startedAt: new Date().toISOString() };
    const fd = openSync(path, 'w');
    writeSync(fd, `${JSON.stringify(header)}\n`);
    closeSync(fd);
    return { header, done: new Set(), copies: 0, resumed: false };
  }
  const lines = readFileSync(path, 'utf8').split('\n');
  let header: PassHeader;
  try {
    header = JSON.parse(lines[0]) as PassHeader;
  } catch {
    throw new Error(`state file ${path} is not a dead-letters state: delete it to start over`);
  }
  if (header.version !== 1 || typeof header.runId !== 'string') throw new Error(`state file ${path} is not a dead-letters state: delete it to start over`);
  if (header.deadQueue !== deadQueue) throw new Error(`state file ${path} is a pass over '${header.deadQueue}', not '${deadQueue}': pass --state`);
  if (header.command !== command) {
    throw new Error(`an interrupted \`dead-letters ${header.command}\` of '${deadQueue}' is unfinished (${path}): run it again to finish it first`);
  }
  const state: PassState = { header, done: new Set(), copies: 0, resumed: true };
  // The last line may be cut short by a kill: its messages are still unacked, so they are simply done again.
  for (const line of lines.slice(1)) {
    if (!line) continue;
    try {
      const entry = JSON.parse(line) as { k: string; c?: number };
      state.done.add(entry.k);
      if (entry.c) state.copies++;
    } catch {
      break;
    }
  }
  return state;
}

export class PassJournal {
  private readonly fd: number;
  constructor(private readonly path: string) {
    this.fd = openSync(path, 'a');
  }

  /** After the broker confirmed what was published for these messages, before they are acked. */
  record(entries: Array<{ key: string; copied: boolean }>): void {
    if (entries.length === 0) return;
    writeSync(this.fd, entries.map((e) => `${JSON.stringify(e.copied ? { k: e.key, c: 1 } : { k: e.key })}\n`).join(''));
  }

  close(): void {
    closeSync(this.fd);
  }

  /** The pass completed: nothing to resume. */
  remove(): void {
    rmSync(this.path, { force: true });
  }
}
