/**
 * The optional file watch (MODEL_WATCH_MS > 0, off by default): a reload once the model folder, or
 * the entry script, has had no change for MODEL_WATCH_MS. Waiting for quiet rather than reloading on
 * the first event: a model file being copied in fires many events and is whole only after the last.
 * A reload that reads a half-written file fails and leaves the old model serving; the next event
 * tries again.
 */
import { watch, type FSWatcher } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';

export interface ModelWatch {
  stop(): void;
}

/** `folder` is watched with everything under it; `file` (a user's entry script) through its own folder, filtered to its name. */
export function watchModel(
  folder: string,
  file: string | undefined,
  quietMs: number,
  onQuiet: (changed: string) => void,
  log: Logger,
): ModelWatch {
  let timer: NodeJS.Timeout | undefined;
  let last = '';
  const changed = (what: string) => {
    last = what;
    clearTimeout(timer);
    timer = setTimeout(() => onQuiet(last), quietMs);
  };
  const watchers: FSWatcher[] = [];
  const add = (target: string, recursive: boolean, keep: (name: string) => boolean) => {
    try {
      const w = watch(target, { recursive, persistent: false }, (_event, name) => {
        const n = name?.toString() ?? '';
        if (keep(n)) changed(resolve(target, n));
      });
      w.on('error', (err) =>
        log.warn({ target, err: err.message }, 'model watch failed; reload with SIGHUP or POST /reload'),
      );
      watchers.push(w);
    } catch (err) {
      log.warn(
        { target, err: (err as Error).message },
        'model watch could not start; reload with SIGHUP or POST /reload',
      );
    }
  };
  add(folder, true, () => true);
  if (file) add(dirname(file), false, (n) => resolve(dirname(file), n) === resolve(file));
  log.info({ folder, entryScript: file, quietMs }, 'watching the model for changes');
  return {
    stop() {
      clearTimeout(timer);
      for (const w of watchers) w.close();
    },
  };
}
