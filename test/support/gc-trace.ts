/** Reading what `node --trace-gc-verbose` printed. */

/** The factors V8 applied to the old generation's limits, in order. */
export function appliedHeapFactors(trace: string): number[] {
  // V8 11 (Node 20) prints the factor it applied on its Limit line; later V8s print it on the factor line instead.
  const onLimit = [...trace.matchAll(/\[HeapController\] Limit: .*\(([\d.]+)\)/g)].map((m) => Number(m[1]));
  if (onLimit.length > 0) return onLimit;
  return [...trace.matchAll(/\[HeapController\] factor ([\d.]+)/g)].map((m) => Number(m[1]));
}
