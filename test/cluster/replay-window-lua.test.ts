/**
 * The Redis store's anti-replay window (a Lua script) against the in-process
 * ReplayWindow: the same random sequence numbers, the same verdicts, for
 * several window sizes, near the 2^32 boundary of the halves and at 2^53.
 * Needs a real redis-server.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { ReplayVerdict, ReplayWindow } from '../../src/protect/replay-window.js';
import { toSeqParts } from '../../src/protect/seq.js';
import { RedisScript, WINDOW_SCRIPT } from '../../src/store/redis-scripts.js';
import { prng } from '../helpers/prng.js';
import { redisIfInstalled, type RedisServer } from '../helpers/redis.js';

let redis: RedisServer | undefined;
let client: Redis;

describe('Lua replay window = ReplayWindow', () => {
  before(async () => {
    redis = await redisIfInstalled();
    if (!redis) return;
    client = new Redis(redis.url, { lazyConnect: true });
    await client.connect();
  });
  after(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  /** Drives both windows with `count` numbers around `base`; returns how many of each verdict. */
  async function compare(key: string, size: number, base: bigint, seed: number, count: number): Promise<number[]> {
    const rnd = prng(seed);
    const local = new ReplayWindow(size);
    const seen = [0, 0, 0];
    let top = base;
    for (let n = 0; n < count; n++) {
      // Mostly near the top (inside and just outside the window), sometimes far ahead or far behind.
      const r = rnd.next();
      let seq: bigint;
      if (r < 0.55) seq = top - BigInt(rnd.int(size + 3));
      else if (r < 0.9) seq = top + BigInt(1 + rnd.int(Math.min(size, 70)));
      else if (r < 0.95) seq = top + BigInt(1 + rnd.int(4 * size + 200));
      else seq = top - BigInt(rnd.int(8 * size + 200));
      if (seq < 0n) seq = 0n;
      const { hi, lo } = toSeqParts(seq);
      const expected = local.test(hi, lo);
      if (expected === ReplayVerdict.Fresh) local.mark(hi, lo);
      const got = Number(await WINDOW_SCRIPT.run(client, [key], [hi, lo, size]));
      assert.equal(got, expected, `size ${size}, step ${n}, seq ${seq}: Lua says ${got}, ReplayWindow ${expected}`);
      seen[got]!++;
      if (seq > top) top = seq;
    }
    return seen;
  }

  for (const size of [1, 5, 32, 64, 100, 1024, 65536]) {
    it(`window ${size}: every verdict equal`, async (t) => {
      if (!redis) return t.skip('redis-server not installed');
      const seen = await compare(`w:${size}`, size, BigInt(size * 3), 1000 + size, size > 1024 ? 600 : 1500);
      // The sequence exercised all three verdicts (a run that never rejects would prove nothing).
      assert.ok(seen.every((c) => c > 0), `verdict counts ${seen.join('/')}`);
    });
  }

  it('across the 2^32 boundary of the halves and near 2^53', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    await compare('w:2^32', 64, 2n ** 32n - 40n, 7, 800);
    await compare('w:2^53', 128, 2n ** 53n - 300n, 8, 800);
  });

  it('a stored window of another size is an error, not a fresh window', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    assert.equal(Number(await WINDOW_SCRIPT.run(client, ['w:size'], [0, 5, 64])), 0);
    await assert.rejects(WINDOW_SCRIPT.run(client, ['w:size'], [0, 6, 128]), /another size/);
  });

  it('NOSCRIPT after SCRIPT FLUSH falls back to EVAL once, then EVALSHA works again', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const script = new RedisScript(`return ARGV[1] .. '-ok'`);
    await client.script('FLUSH');
    assert.equal(await script.run(client, [], ['a']), 'a-ok');
    assert.equal(Number(await client.script('EXISTS', script.sha).then((r) => (r as number[])[0])), 1);
    assert.equal(await script.run(client, [], ['b']), 'b-ok');
  });
});
