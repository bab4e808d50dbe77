import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { AtlsError } from '../../src/errors.js';
import {
  isSyncStore,
  isValidRoutingTag,
  MemoryStore,
  newSessionId,
  parseSessionId,
  sessionOwner,
  type RemoveReason,
  type SessionStore,
} from '../../src/store/index.js';
import { prng } from '../helpers/prng.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

function recorder(): { log: Array<[string, unknown, RemoveReason]>; onRemove: (id: string, v: unknown, r: RemoveReason) => void } {
  const log: Array<[string, unknown, RemoveReason]> = [];
  return { log, onRemove: (id, v, r) => log.push([id, v, r]) };
}

describe('MemoryStore', () => {
  it('implements the async interface and the sync fast path', async () => {
    const store: SessionStore<string> = new MemoryStore<string>({ sweepIntervalMs: 0 });
    assert.ok(isSyncStore(store));
    await store.set('a', 'A', 1000);
    assert.equal(await store.get('a'), 'A');
    assert.equal(store.getSync('a'), 'A');
    await store.delete('a');
    assert.equal(await store.get('a'), undefined);
    assert.equal(store.deleteSync('a'), false);
    assert.ok(!isSyncStore({ get: async () => undefined, set: async () => {}, delete: async () => {} }));
    await store.close?.();
  });

  it('expires lazily on get, with the injected clock', () => {
    const c = clock();
    const r = recorder();
    const s = new MemoryStore<number>({ now: c.now, sweepIntervalMs: 0, onRemove: r.onRemove });
    s.setSync('x', 1, 100);
    c.advance(99);
    assert.equal(s.getSync('x'), 1);
    c.advance(1); // expiresAt <= now: gone
    assert.equal(s.getSync('x'), undefined);
    assert.deepEqual(r.log, [['x', 1, 'expired']]);
    assert.equal(s.size, 0);
  });

  it('set again replaces the value and extends the TTL', () => {
    const c = clock();
    const r = recorder();
    const s = new MemoryStore<object>({ now: c.now, sweepIntervalMs: 0, onRemove: r.onRemove });
    const v1 = {};
    const v2 = {};
    s.setSync('x', v1, 100);
    c.advance(90);
    s.setSync('x', v1, 100); // same value: a refresh, no callback
    assert.deepEqual(r.log, []);
    c.advance(90);
    assert.equal(s.getSync('x'), v1);
    s.setSync('x', v2, 100);
    assert.deepEqual(r.log, [['x', v1, 'replaced']]);
    assert.equal(s.size, 1);
  });

  it('sweep() removes expired entries without reads; size counts live ones', () => {
    const c = clock();
    const r = recorder();
    const s = new MemoryStore<number>({ now: c.now, sweepIntervalMs: 0, onRemove: r.onRemove });
    for (let i = 0; i < 10; i++) s.setSync(`k${i}`, i, 100 + i * 10);
    c.advance(145);
    assert.equal(s.sweep(), 5);
    assert.deepEqual(
      r.log.map(([id]) => id),
      ['k0', 'k1', 'k2', 'k3', 'k4'],
    );
    c.advance(1000);
    assert.equal(s.size, 0);
  });

  it('the background sweep runs on its own (unref timer)', async () => {
    const c = clock();
    const r = recorder();
    const s = new MemoryStore<number>({ now: c.now, sweepIntervalMs: 5, onRemove: r.onRemove });
    s.setSync('x', 1, 10);
    c.advance(10);
    await sleep(30);
    assert.deepEqual(r.log, [['x', 1, 'expired']]);
    s.close();
  });

  it('when full, evicts expired entries first, then the one expiring soonest (ties: oldest write)', () => {
    const c = clock();
    const r = recorder();
    const s = new MemoryStore<string>({ now: c.now, maxEntries: 3, sweepIntervalMs: 0, onRemove: r.onRemove });
    s.setSync('established-1', 'e1', 3_600_000);
    s.setSync('handshake-1', 'h1', 30_000);
    s.setSync('established-2', 'e2', 3_600_000);
    // A flood of short-lived entries evicts short-lived entries, not the established sessions.
    for (let i = 2; i < 50; i++) {
      c.advance(10);
      s.setSync(`handshake-${i}`, `h${i}`, 30_000);
    }
    assert.equal(s.getSync('established-1'), 'e1');
    assert.equal(s.getSync('established-2'), 'e2');
    assert.equal(s.getSync('handshake-49'), 'h49');
    assert.equal(s.size, 3);
    assert.ok(r.log.every(([id, , why]) => id.startsWith('handshake-') && why === 'evicted'));
    // Expired entries go before any live one is evicted.
    c.advance(30_000);
    r.log.length = 0;
    s.setSync('n', 'n', 1000);
    assert.deepEqual(r.log, [['handshake-49', 'h49', 'expired']]);
    // Equal expiry: the older write is evicted.
    const t = new MemoryStore<string>({ now: c.now, maxEntries: 2, sweepIntervalMs: 0 });
    t.setSync('a', 'a', 100);
    t.setSync('b', 'b', 100);
    t.setSync('c', 'c', 100);
    assert.equal(t.getSync('a'), undefined);
    assert.equal(t.getSync('b'), 'b');
  });

  it('matches a naive model under 20 000 random operations', () => {
    const c = clock();
    const rnd = prng(9);
    const removed: Array<[string, RemoveReason]> = [];
    const max = 50;
    const s = new MemoryStore<number>({ now: c.now, maxEntries: max, sweepIntervalMs: 0, onRemove: (id, _v, why) => removed.push([id, why]) });
    const model = new Map<string, { v: number; exp: number; seq: number }>();
    let seq = 0;
    const modelSweep = (): void => {
      for (const [k, e] of model) if (e.exp <= c.now()) model.delete(k);
    };
    for (let i = 0; i < 20_000; i++) {
      const id = `k${rnd.int(200)}`;
      const op = rnd.int(10);
      if (op < 4) {
        const ttl = 1 + rnd.int(3000);
        if (!model.has(id) || model.get(id)!.exp <= c.now()) {
          modelSweep();
          if (model.size >= max) {
            // Evict soonest expiry, ties by oldest write.
            let victim: string | undefined;
            for (const [k, e] of model) {
              const v = victim === undefined ? undefined : model.get(victim)!;
              if (v === undefined || e.exp < v.exp || (e.exp === v.exp && e.seq < v.seq)) victim = k;
            }
            model.delete(victim!);
          }
        }
        model.set(id, { v: i, exp: c.now() + ttl, seq: seq++ });
        s.setSync(id, i, ttl);
      } else if (op < 8) {
        const e = model.get(id);
        const expect = e && e.exp > c.now() ? e.v : undefined;
        if (e && e.exp <= c.now()) model.delete(id);
        assert.equal(s.getSync(id), expect, `op ${i} get ${id}`);
      } else if (op < 9) {
        const had = model.has(id);
        model.delete(id);
        const did = s.deleteSync(id);
        if (!had) assert.equal(did, false);
      } else {
        c.advance(rnd.int(100));
      }
      if (i % 1000 === 0) {
        modelSweep();
        assert.equal(s.size, model.size, `op ${i} size`);
      }
    }
    assert.ok(removed.some(([, why]) => why === 'evicted'));
    assert.ok(removed.some(([, why]) => why === 'expired'));
  });

  it('close() drops everything with reason "closed", and later calls fail with CLOSED', async () => {
    const r = recorder();
    const s = new MemoryStore<number>({ sweepIntervalMs: 10, onRemove: r.onRemove });
    s.setSync('a', 1, 1000);
    s.close();
    s.close();
    assert.deepEqual(r.log, [['a', 1, 'closed']]);
    assert.throws(() => s.getSync('a'), (e: unknown) => e instanceof AtlsError && e.code === 'CLOSED' && e.source === 'local');
    await assert.rejects(s.get('a'), (e: unknown) => e instanceof AtlsError && e.code === 'CLOSED');
    await assert.rejects(s.set('a', 1, 1), (e: unknown) => e instanceof AtlsError && e.code === 'CLOSED');
  });

  it('refuses bad TTLs and sizes; a throwing onRemove does not break the store', async () => {
    const s = new MemoryStore<number>({
      sweepIntervalMs: 0,
      onRemove: () => {
        throw new Error('boom');
      },
    });
    for (const ttl of [0, -1, NaN, Infinity]) {
      assert.throws(() => s.setSync('a', 1, ttl), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    }
    await assert.rejects(s.set('a', 1, 0), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    s.setSync('a', 1, 100);
    s.setSync('a', 2, 100);
    assert.equal(s.deleteSync('a'), true);
    assert.throws(() => new MemoryStore({ maxEntries: 0 }), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    s.close();
  });
});

describe('session ids', () => {
  it('newSessionId: 128 random bits in base64url, optional routing tag', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const id = newSessionId();
      assert.match(id, /^[A-Za-z0-9_-]{21}[AQgw]$/);
      assert.equal(Buffer.from(id, 'base64url').length, 16);
      seen.add(id);
    }
    assert.equal(seen.size, 1000);
    const tagged = newSessionId('node-3');
    assert.match(tagged, /^node-3\.[A-Za-z0-9_-]{22}$/);
    assert.deepEqual(parseSessionId(tagged), { id: tagged, routingTag: 'node-3' });
    for (const bad of ['', 'a.b', 'x'.repeat(33), 'ü', 'a b']) {
      assert.throws(() => newSessionId(bad), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    }
    assert.ok(isValidRoutingTag('A_z-09'));
    assert.ok(!isValidRoutingTag('a.b'));
  });

  it('parseSessionId accepts what newSessionId makes and nothing else', () => {
    const plain = newSessionId();
    assert.deepEqual(parseSessionId(plain), { id: plain, routingTag: undefined });
    const max = newSessionId('t'.repeat(32));
    assert.equal(parseSessionId(max)?.routingTag, 't'.repeat(32));
    const random = plain;
    for (const bad of [
      undefined,
      null,
      42,
      '',
      random.slice(1), // too short
      random + 'A', // too long
      random.slice(0, 21) + 'B', // non-canonical last char
      random.slice(0, 21) + '=',
      random.replace(/^./, '+'), // base64, not base64url
      '.' + random, // empty tag
      't'.repeat(33) + '.' + random, // tag too long
      'a.b.' + random, // two dots
      'a b.' + random,
      random + '.',
      `${random}\n`,
      'x'.repeat(10_000),
    ]) {
      assert.equal(parseSessionId(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('session ids shared out among processes', () => {
  it('newSessionId with an owner: sessionOwner finds it, ids stay canonical, every first character an owner may use is used', () => {
    for (const count of [1, 2, 3, 7, 64]) {
      for (let index = 0; index < count; index++) {
        const firsts = new Set<string>();
        for (let i = 0; i < 200; i++) {
          const id = newSessionId(i % 2 ? 'edge-1' : undefined, { index, count });
          assert.ok(parseSessionId(id), id);
          assert.equal(sessionOwner(id, count), index, `${id} of ${index}/${count}`);
          firsts.add(id[id.indexOf('.') + 1]!);
        }
        // Owner `index` of `count` may start its ids with ceil((64 - index) / count) characters.
        if (count > 3) assert.equal(firsts.size, Math.ceil((64 - index) / count), `${index}/${count}`);
      }
    }
    assert.throws(() => newSessionId(undefined, { index: 2, count: 2 }), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    assert.throws(() => newSessionId(undefined, { index: 0, count: 65 }), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
  });
});
