/**
 * The state file of one `scorer dead-letters` pass over a dead queue: which pass it is (its run id, so
 * the pass knows its own copies) and the request keys it has finished. A line is appended only after
 * the broker confirmed what the pass published for those messages, and before they are acked; so a
 * pass killed in between finds, when run again, the messages it had finished back in the queue, and
 * acks them without answering or copying them twice. Removed when the pass completes.
 *
 * The pass takes the messages parked when it began and no more: its own copies, and messages parked
 * since, are behind them. A resumed pass takes what is left of that number, not counting the finished
 * messages it meets again; so it never reaches its copies, even one whose confirm the kill cut off.
 *
 * Format: JSON Lines; the first line the pass ({version, runId, command, deadQueue, parked, startedAt}),
 * then one {"k": request key} per finished message.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';

export type PassCommand = 'list' | 'answer' | 'replay';

export interface PassHeader {
  version: 1;
  runId: string;
  command: PassCommand;
  deadQueue: string;
  /** Messages parked when the pass began: it takes these and no more (later ones, and its own copies, are behind them). */
  parked: number;
  startedAt: string;
}

export interface PassState {
  header: PassHeader;
  /** Request keys finished by this pass. */
  done: Set<string>;
  resumed: boolean;
}

export function defaultStatePath(deadQueue: string): string {
  return `scorer-dead-letters.${deadQueue.replace(/[^A-Za-z0-9._-]/g, '_')}.state.jsonl`;
}

/** @param parked the dead queue's depth now: the pass's size when it is a new one */
export function openPass(path: string, command: PassCommand, deadQueue: string, parked: number): PassState {
  if (!existsSync(path)) {
    const header: PassHeader = {
      version: 1,
      runId: randomBytes(6).toString('hex'),
      command,
      deadQueue,
      parked,
      startedAt: new Date().toISOString(),
    };
    const fd = openSync(path, 'w');
    writeSync(fd, `${JSON.stringify(header)}\n`);
    closeSync(fd);
    return { header, done: new Set(), resumed: false };
  }
  const lines = readFileSync(path, 'utf8').split('\n');
  let header: PassHeader;
  try {
    header = JSON.parse(lines[0]) as PassHeader;
  } catch {
    throw new Error(`state file ${path} is not a dead-letters state: delete it to start over`);
  }
  if (header.version !== 1 || typeof header.runId !== 'string' || typeof header.parked !== 'number')
    throw new Error(`state file ${path} is not a dead-letters state: delete it to start over`);
  if (header.deadQueue !== deadQueue)
    throw new Error(`state file ${path} is a pass over '${header.deadQueue}', not '${deadQueue}': pass --state`);
  if (header.command !== command) {
    throw new Error(
      `an interrupted \`dead-letters ${header.command}\` of '${deadQueue}' is unfinished (${path}): run it again to finish it first`,
    );
  }
  const state: PassState = { header, done: new Set(), resumed: true };
  // The last line may be cut short by a kill: its messages are still unacked, so they are simply done again.
  for (const line of lines.slice(1)) {
    if (!line) continue;
    try {
      state.done.add((JSON.parse(line) as { k: string }).k);
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
  record(keys: string[]): void {
    if (keys.length === 0) return;
    writeSync(this.fd, keys.map((k) => `${JSON.stringify({ k })}\n`).join(''));
  }

  close(): void {
    closeSync(this.fd);
  }

  /** The pass completed: nothing to resume. */
  remove(): void {
    rmSync(this.path, { force: true });
  }
}
