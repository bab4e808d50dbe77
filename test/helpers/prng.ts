/**
 * A small deterministic PRNG (mulberry32) for fuzz and property tests, so a
 * failing case is reproduced by its seed.
 *
 * @example
 * ```ts
 * const rnd = prng(42);
 * rnd.int(10); rnd.bytes(16); rnd.pick(['a', 'b']);
 * ```
 */
export interface Prng {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, n). */
  int(n: number): number;
  bytes(n: number): Uint8Array;
  pick<T>(items: readonly T[]): T;
}

/** A PRNG seeded with a 32-bit integer. */
export function prng(seed: number): Prng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    bytes: (n) => {
      const b = new Uint8Array(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    pick: (items) => {
      if (items.length === 0) throw new Error('pick from an empty list');
      return items[int(items.length)]!;
    },
  };
}
