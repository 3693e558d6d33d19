/**
 * Run with --expose-gc --trace-gc-verbose: applies `boundHeapGrowth(argv[2])` after V8 has started (as
 * main.ts does), keeps some objects alive and collects, so V8 prints the factor of the limit it sets.
 */
import { boundHeapGrowth } from '../../src/heap-growth.js';

boundHeapGrowth(Number(process.argv[2]));
const kept: Array<{ i: number; s: string }> = [];
for (let i = 0; i < 300_000; i++) kept.push({ i, s: `x${i}` });
(globalThis as unknown as { gc: () => void }).gc();
process.stdout.write(`kept ${kept.length}\n`);
