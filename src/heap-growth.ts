/**
 * How far V8 lets the main heap grow past what its last full collection kept. V8 picks that factor
 * itself, up to 4 on a machine with memory to spare, from how fast the program allocates against how
 * fast it collects. Under load this consumer's in-flight inputs (PREFETCH of them, with their deliveries,
 * held entries and promises) outlive a young-generation collection or two, are promoted, and die in the
 * old generation: the heap V8 holds then rises in a sawtooth from about 22 MB live to 55–117 MB (iris and
 * the MLP drained by `bench/ab.ts` with `--trace-gc-verbose`), and where in that sawtooth a reading falls decided
 * whether RSS looked flat. A fixed factor bounds the sawtooth, for more frequent full collections, most of
 * their marking done on V8's helper threads (README, Configuration).
 *
 * V8 reads the flag each time it sets a new limit, after every full collection, so setting it at boot
 * applies from the next one on, for every isolate of the process (worker threads too).
 */
import { setFlagsFromString } from 'node:v8';

/** 0 leaves the factor to V8. */
export function boundHeapGrowth(percent: number): void {
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}
