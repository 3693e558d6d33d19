/**
 * Arrays for the message path, built packed whatever tier of V8's code builds them. V8's optimised code
 * checks the map of each array it reads, and a map holds the array's elements kind: `new Array(n)` is
 * holey, and so is what `map()` returns once TurboFan has inlined it (it allocates `new Array(length)`),
 * while the interpreter's `map()` and `[]` + `push` give packed arrays. A function handed both kinds
 * throws its optimised code away and is compiled again, and so are the functions it was inlined into,
 * over and over while callers move between tiers (bench/HISTORY.md, Which term holds each miss). Pushing onto `[]`
 * gives a packed array in every tier.
 */

/** `length` slots, each `fill`. */
export function packedArray<T>(length: number, fill: T): T[] {
  const out: T[] = [];
  for (let i = 0; i < length; i++) out.push(fill);
  return out;
}

/** `items.map(f)`, packed. */
export function packedMap<T, U>(items: readonly T[], f: (item: T, index: number) => U): U[] {
  const out: U[] = [];
  for (let i = 0; i < items.length; i++) out.push(f(items[i], i));
  return out;
}
