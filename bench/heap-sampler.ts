/**
 * The consumer (src/main.ts) with V8's sampling heap profiler in its own process, for
 * bench/allocations.ts: the first SIGUSR2 starts sampling every allocation, those the young and the old
 * generation's collections free included (so it counts what a message allocates, not what it keeps); the
 * second stops and writes the profile to HEAP_PROFILE_OUT.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';

const session = new Session();
session.connect();
const post = (method: string, params: object = {}) =>
  new Promise<unknown>((resolve, reject) =>
    session.post(method, params, (err, result) => (err ? reject(err) : resolve(result))),
  );

let sampling = false;
process.on('SIGUSR2', () => {
  sampling = !sampling;
  if (sampling) {
    void post('HeapProfiler.startSampling', {
      samplingInterval: Number(process.env.HEAP_SAMPLING_INTERVAL ?? 1024),
      includeObjectsCollectedByMinorGC: true,
      includeObjectsCollectedByMajorGC: true,
    }).then(() => process.stdout.write('{"msg":"heap sampling started"}\n'));
    return;
  }
  void post('HeapProfiler.stopSampling').then((result) => {
    writeFileSync(process.env.HEAP_PROFILE_OUT!, JSON.stringify((result as { profile: unknown }).profile));
    process.stdout.write('{"msg":"heap profile written"}\n');
  });
});

await import('../src/main.js');
