/**
 * The Redis session store against a real redis-server: the same contract
 * suite as the memory store, plus what only a shared store shows: two
 * connections (as two processes) sharing one session, one EVALSHA per
 * commit, records wrapped at rest, and Redis going away and coming back.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AtlsError } from '../../src/errors.js';
import { StoreKey } from '../../src/store/key-wrap.js';
import { RedisStateStore, ringToWindow, windowToRing } from '../../src/store/redis.js';
import { parseRedisUrl } from '../../src/store/redis-url.js';
import { ReplayWindow } from '../../src/protect/replay-window.js';
import { runStateStoreContract, sampleState } from '../helpers/state-store-contract.js';
import { clientCommandsDuring, redisIfInstalled, type RedisServer } from '../helpers/redis.js';
import { prng } from '../helpers/prng.js';

let redis: RedisServer | undefined;
const stores: RedisStateStore[] = [];
async function open(options: Partial<ConstructorParameters<typeof RedisStateStore>[0]> = {}): Promise<RedisStateStore> {
  const s = new RedisStateStore({ url: redis!.url, ...options });
  stores.push(s);
  assert.ok(await s.ready(5000), 'connected');
  return s;
}

before(async () => {
  redis = await redisIfInstalled();
});
after(async () => {
  for (const s of stores) await s.close();
  await redis?.stop();
});

// The contract suite needs a server; without one (developer machine) it is not registered at all.
if (process.env.ATLS_REQUIRE_INTEROP === '1' || (await import('../helpers/redis.js')).redisServerPath()) {
  runStateStoreContract('redis', () => open());
  runStateStoreContract('redis with --store-key', () => open({ storeKey: new StoreKey(randomBytes(32)) }));
}

describe('RedisStateStore', () => {
  it('window ring <-> contract window: lossless for random windows', () => {
    const rnd = prng(99);
    for (const size of [1, 7, 64, 100, 4096]) {
      const w = new ReplayWindow(size);
      for (let i = 0; i < 300; i++) {
        const s = BigInt(rnd.int(size * 4));
        try {
          w.update(s);
        } catch {
          // replayed or too old: fine
        }
        const st = w.exportState();
        const r = windowToRing(st);
        assert.deepEqual(ringToWindow(size, r.hi || undefined, r.lo || undefined, r.ring), st);
      }
    }
  });

  it('parses --store URLs and refuses others', () => {
    assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6380/2'), { host: '127.0.0.1', port: 6380, db: 2 });
    assert.deepEqual(parseRedisUrl('redis://cache'), { host: 'cache', port: 6379, db: 0 });
    assert.deepEqual(parseRedisUrl('redis://[::1]:7000'), { host: '::1', port: 7000, db: 0 });
    for (const bad of ['http://x:1', 'redis://', 'redis://h:1/x', 'redis://h:1/-1', 'nonsense', 'redis://h:1/?a=1']) {
      assert.throws(() => parseRedisUrl(bad), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT', bad);
    }
    assert.throws(() => parseRedisUrl('http://user:secret@h:1'), (e: unknown) => e instanceof Error && !e.message.includes('secret'));
  });

  it('two connections share one session: a number accepted by one is replayed at the other; send numbers never repeat', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const a = await open();
    const b = await open();
    const st = sampleState();
    assert.equal(await a.create(st, 60_000), true, 'created');
    assert.equal(await b.create(sampleState(st.id), 60_000), false, 'never replaced');
    assert.equal((await b.load(st.id))?.suite, st.channel.suite);
    assert.equal((await a.commit(st.id, 5, 60_000)).verdict, 'fresh');
    assert.equal((await b.commit(st.id, 5, 60_000)).verdict, 'replayed');
    // 10 rounds of 30 concurrent commits, half through each connection; a round stays inside the window of 64.
    const both = [];
    for (let round = 0; round < 10; round++) {
      const base = 10 + 30 * round;
      both.push(...(await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).commit(st.id, base + i, 60_000)))));
    }
    assert.deepEqual(new Set(both.map((r) => r.verdict)), new Set(['fresh']));
    const seqs = [0, ...both.map((r) => r.sendSeq)];
    assert.equal(new Set(seqs).size, 301, 'every reserved send number distinct');
    assert.equal(Math.max(...seqs), 300);
  });

  it('a commit is one round trip: one EVALSHA, nothing else', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const s = await open();
    const st = sampleState();
    await s.create(st, 60_000);
    await s.commit(st.id, 0, 60_000); // the script is cached by Redis from here on
    const sent = await clientCommandsDuring(redis, async () => {
      for (let i = 1; i <= 50; i++) {
        assert.equal((await s.commit(st.id, i, 60_000)).verdict, 'fresh');
      }
    });
    assert.deepEqual([...sent], [['evalsha', 50]], 'one EVALSHA per request, nothing else');
  });

  it('with a store key the record at rest holds no key bytes; a record swapped to another id does not open', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const kek = new StoreKey(randomBytes(32));
    const s = await open({ storeKey: kek });
    const a = sampleState();
    const b = sampleState();
    await s.create(a, 60_000);
    await s.create(b, 60_000);
    const raw = await s.redis.hgetBuffer(`atls:s:${a.id}`, 'st');
    assert.ok(raw);
    const secrets = Buffer.from(a.channel.secrets);
    for (const form of [secrets, Buffer.from(secrets.toString('base64url')), Buffer.from(secrets.toString('hex'))]) {
      assert.ok(!raw.includes(form.subarray(0, 12)), 'no key bytes at rest');
    }
    // Unwrapped, the same record shows the keys: this is what --store-key protects.
    const plain = await open();
    const p = sampleState();
    await plain.create(p, 60_000);
    const rawPlain = await plain.redis.hgetBuffer(`atls:s:${p.id}`, 'st');
    assert.ok(rawPlain?.includes(Buffer.from(Buffer.from(p.channel.secrets).toString('base64url'))));
    // Swap a's record into b's hash: b no longer opens (the id is the AAD).
    await s.redis.hset(`atls:s:${b.id}`, 'st', raw);
    const fresh = await open({ storeKey: kek });
    await assert.rejects(fresh.load(b.id), (e: unknown) => e instanceof AtlsError && e.code === 'INTERNAL');
    // A process without the key cannot read wrapped records; one with another key neither.
    await assert.rejects((await open()).load(a.id), (e: unknown) => e instanceof AtlsError && e.code === 'INTERNAL');
    await assert.rejects((await open({ storeKey: new StoreKey(randomBytes(32)) })).load(a.id), /does not open/);
    assert.equal((await fresh.load(a.id))?.id, a.id);
  });

  it('Redis gone: STORE_UNAVAILABLE at once, never a hang or a crash; restarted empty: sessions missing, new ones work', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const s = await open({ commandTimeoutMs: 1000 });
    const st = sampleState();
    await s.create(st, 60_000);
    await redis.process.kill(0);
    const started = Date.now();
    for (const call of [() => s.commit(st.id, 1, 60_000), () => s.create(sampleState(), 60_000), () => s.delete(st.id), () => s.load(sampleState().id)]) {
      await assert.rejects(call(), (e: unknown) => e instanceof AtlsError && e.code === 'STORE_UNAVAILABLE' && e.httpStatus === 503 && e.retryAfter === 1);
    }
    assert.ok(Date.now() - started < 5000, 'failed fast');
    await redis.restart();
    assert.ok(await s.ready(10_000), 'reconnected by itself');
    assert.equal((await s.commit(st.id, 1, 60_000)).verdict, 'missing', 'Redis lost it: the client handshakes again');
    const again = sampleState();
    assert.equal(await s.create(again, 60_000), true);
    assert.equal((await s.commit(again.id, 0, 60_000)).verdict, 'fresh', 'scripts reloaded after NOSCRIPT');
  });
});
