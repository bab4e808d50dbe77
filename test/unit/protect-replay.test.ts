import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow } from '../../src/protect/index.js';

/** The obvious implementation, to compare the bitmap against. */
class ModelWindow {
  private seen = new Set<bigint>();
  private top: bigint | undefined;
  constructor(private readonly size: number) {}
  verdict(s: bigint): 'ok' | 'REPLAYED' | 'TOO_OLD' {
    if (this.top === undefined || s > this.top) return 'ok';
    if (this.top - s >= BigInt(this.size)) return 'TOO_OLD';
    return this.seen.has(s) ? 'REPLAYED' : 'ok';
  }
  update(s: bigint): void {
    this.seen.add(s);
    if (this.top === undefined || s > this.top) this.top = s;
  }
}

function verdict(w: ReplayWindow, s: bigint): string {
  try {
    w.check(s);
    return 'ok';
  } catch (e) {
    return (e as { code: string }).code;
  }
}

describe('protect: replay window', () => {
  it('accepts in order, reordered within the window once, and refuses replays and old numbers', () => {
    const w = new ReplayWindow(64);
    assert.equal(w.highest, undefined);
    w.update(10n);
    w.update(12n);
    assert.equal(verdict(w, 11n), 'ok');
    w.update(11n);
    assert.equal(verdict(w, 11n), 'REPLAYED');
    assert.equal(verdict(w, 12n), 'REPLAYED');
    assert.equal(verdict(w, 0n), 'ok', 'first number seen was 10; 0 is still inside the window');
    w.update(100n);
    assert.equal(verdict(w, 37n), 'ok', '100 - 63 is the oldest accepted');
    assert.equal(verdict(w, 36n), 'TOO_OLD');
    assert.equal(verdict(w, 38n), 'ok');
    assert.equal(w.highest, 100n);
    assert.throws(() => w.update(100n), { code: 'REPLAYED', source: 'remote' });
    assert.throws(() => w.check(1n), { code: 'TOO_OLD', source: 'remote' });
  });

  it('check() changes nothing', () => {
    const w = new ReplayWindow(8);
    w.check(5n);
    w.check(5n);
    assert.equal(w.highest, undefined);
  });

  it('window of 1 accepts only increasing numbers', () => {
    const w = new ReplayWindow(1);
    w.update(1n);
    w.update(3n);
    assert.equal(verdict(w, 2n), 'TOO_OLD');
    assert.equal(verdict(w, 3n), 'REPLAYED');
    assert.equal(verdict(w, 4n), 'ok');
  });

  it('crosses the 2^32 and 2^53 boundaries and reaches 2^64 - 1', () => {
    const w = new ReplayWindow(64);
    for (const base of [2n ** 32n - 3n, 2n ** 53n - 3n, 2n ** 64n - 6n]) {
      for (let i = 0n; i < 6n; i++) w.update(base + i);
      assert.equal(verdict(w, base + 2n), 'REPLAYED');
      assert.equal(w.highest, base + 5n);
    }
    assert.equal(verdict(w, 2n ** 64n - 70n), 'TOO_OLD');
    assert.throws(() => w.check(2n ** 64n), { code: 'INVALID_ARGUMENT' });
  });

  it('refuses bad sizes', () => {
    for (const s of [0, -1, 1.5, 65537, NaN]) assert.throws(() => new ReplayWindow(s), { code: 'INVALID_ARGUMENT' });
  });

  it('agrees with a simple model on random traffic', () => {
    let x = 0x12345678;
    const rnd = (): number => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) / 2 ** 32;
    };
    for (const size of [1, 7, 32, 64, 100, 1024]) {
      for (const start of [0n, 2n ** 32n - 500n, 2n ** 64n - 5000n]) {
        const w = new ReplayWindow(size);
        const m = new ModelWindow(size);
        let next = start;
        for (let i = 0; i < 3000; i++) {
          let s: bigint;
          const r = rnd();
          if (r < 0.5) s = next++;
          else if (r < 0.9) s = next - BigInt(Math.floor(rnd() * size * 1.5)) - 1n;
          else s = next += BigInt(Math.floor(rnd() * size * 3));
          if (s < start || s > 2n ** 64n - 1n) continue;
          const want = m.verdict(s);
          assert.equal(verdict(w, s), want, `size ${size}, seq ${s}`);
          if (want === 'ok' && rnd() < 0.9) {
            // Sometimes a fresh number fails authentication and is never recorded.
            w.update(s);
            m.update(s);
          }
        }
      }
    }
  });
});
