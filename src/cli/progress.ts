/** How far a run is: a bar with rate and ETA on a terminal (cli-progress), plain lines in a log otherwise. */
import cliProgress from 'cli-progress';

export interface Progress {
  /** `done`: lines with a result, this run and earlier ones. */
  update(done: number): void;
  stop(): void;
}

/** What the bar says it counts: `submit` counts lines, `dead-letters answer` messages. */
export interface ProgressLabel {
  name: string;
  unit: string;
}

export function createProgress(
  total: number,
  alreadyDone: number,
  stream: NodeJS.WriteStream = process.stderr,
  label: ProgressLabel = { name: 'submit', unit: 'lines' },
): Progress {
  const started = performance.now();
  const rate = (done: number) => (done - alreadyDone) / Math.max(0.001, (performance.now() - started) / 1000);
  return stream.isTTY
    ? barProgress(total, alreadyDone, stream, rate, label)
    : lineProgress(total, alreadyDone, stream, rate, label);
}

function barProgress(
  total: number,
  alreadyDone: number,
  stream: NodeJS.WriteStream,
  rate: (done: number) => number,
  label: ProgressLabel,
): Progress {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.name} {bar} {percentage}% | {value}/{total} ${label.unit} | {rate} msg/s | ETA {eta_formatted}`,
      stream,
      fps: 10,
      etaBuffer: 500,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, alreadyDone, { rate: '0' });
  return {
    update: (done) => bar.update(done, { rate: Math.round(rate(done)).toString() }),
    stop: () => bar.stop(),
  };
}

const PLAIN_EVERY_MS = 2000;

function lineProgress(
  total: number,
  alreadyDone: number,
  stream: NodeJS.WriteStream,
  rate: (done: number) => number,
  label: ProgressLabel,
): Progress {
  let last = 0;
  let latest = alreadyDone;
  const print = () => {
    const r = rate(latest);
    const eta = r > 0 ? `${Math.ceil((total - latest) / r)}s` : '?';
    const percent = total > 0 ? Math.floor((latest / total) * 100) : 100;
    stream.write(`${label.name}: ${latest}/${total} ${label.unit} (${percent}%), ${Math.round(r)} msg/s, ETA ${eta}\n`);
    last = performance.now();
  };
  return {
    update(done) {
      latest = done;
      if (performance.now() - last >= PLAIN_EVERY_MS) print();
    },
    stop() {
      if (latest !== alreadyDone || last === 0) print();
    },
  };
}
