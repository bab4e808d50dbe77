/**
 * The behaviour every SessionStateStore must show, as a reusable suite: the
 * memory store runs it in test/unit, shared stores (Redis, the cluster
 * store) run the same function against their real backend.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError } from '../../src/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { newSessionId, type SessionState, type SessionStateStore } from '../../src/store/index.js';
import { decodeSessionState, encodeSessionState } from '../../src/store/state-codec.js';
import { channelPair } from './protect-pair.js';

/** A fresh established-session state (server role) with a real key block, window 64. */
export function sampleState(id = newSessionId(), suite = 'TLS_AES_128_GCM_SHA256'): SessionState {
  const { server } = channelPair(suite);
  return {
    id,
    establishedAt: 1_700_000_000_000,
    handshake: {
      version: 'TLSv1.3',
      cipherSuite: suite,
      alpn: undefined,
      serverName: 'localhost',
      peerCertificates: [new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x01])],
      pskIdentity: undefined,
      resumed: false,
      earlyData: 'none',
    },
    channel: server.exportState(),
  };
}

/** Runs the contract against stores made by `make` (each test gets a new one; it is closed afterwards). */
export function runStateStoreContract(name: string, make: () => Promise<SessionStateStore> | SessionStateStore): void {
  describe(`SessionStateStore contract: ${name}`, () => {
    const opened: SessionStateStore[] = [];
    const fresh = async (): Promise<SessionStateStore> => {
      const s = await make();
      opened.push(s);
      return s;
    };
    after(async () => {
      for (const s of opened) await s.close();
    });

    it('creates once, never replaces, loads the immutable part', async () => {
      const store = await fresh();
      const st = sampleState();
      assert.equal(await store.create(st, 60_000), true);
      const other = sampleState(st.id);
      assert.equal(await store.create(other, 60_000), false, 'an established session is never replaced');
      const got = await store.load(st.id);
      assert.ok(got);
      assert.equal(got.id, st.id);
      assert.equal(got.suite, st.channel.suite);
      assert.equal(got.role, 'server');
      assert.equal(got.windowSize, 64);
      assert.deepEqual(new Uint8Array(got.secrets), new Uint8Array(st.channel.secrets));
      assert.deepEqual(got.handshake.peerCertificates.map((c) => [...c]), [[0x30, 0x03, 0x02, 0x01, 0x01]]);
      assert.equal(got.handshake.serverName, 'localhost');
      assert.equal(await store.load(newSessionId()), undefined);
    });

    it('commit: fresh numbers reserve distinct send numbers; replays and old numbers change nothing', async () => {
      const store = await fresh();
      const st = sampleState();
      await store.create(st, 60_000);
      const r0 = await store.commit(st.id, 0, 60_000);
      assert.deepEqual(r0, { verdict: 'fresh', sendSeq: 0, sentUnits: 1, failedUnits: 0 });
      assert.equal((await store.commit(st.id, 0, 60_000)).verdict, 'replayed');
      const r5 = await store.commit(st.id, 5, 60_000);
      assert.equal(r5.verdict, 'fresh');
      assert.equal(r5.sendSeq, 1);
      assert.equal((await store.commit(st.id, 3, 60_000)).verdict, 'fresh', 'reordered inside the window');
      assert.equal((await store.commit(st.id, 3, 60_000)).verdict, 'replayed');
      assert.equal((await store.commit(st.id, 200, 60_000)).verdict, 'fresh');
      assert.equal((await store.commit(st.id, 136, 60_000)).verdict, 'too-old', '200 - 136 = 64: left of a window of 64');
      assert.equal((await store.commit(st.id, 137, 60_000)).verdict, 'fresh', '200 - 137 = 63: the oldest the window takes');
    });

    it('commit at the window edge and across 2^32', async () => {
      const store = await fresh();
      const st = sampleState();
      await store.create(st, 60_000);
      const big = 2 ** 32 + 10;
      assert.equal((await store.commit(st.id, big, 60_000)).verdict, 'fresh');
      assert.equal((await store.commit(st.id, big - 63, 60_000)).verdict, 'fresh', 'oldest number the window of 64 takes');
      assert.equal((await store.commit(st.id, big - 64, 60_000)).verdict, 'too-old');
      assert.equal((await store.commit(st.id, big, 60_000)).verdict, 'replayed');
      const snap = await store.snapshot(st.id);
      assert.ok(snap);
      assert.equal(snap.channel.window.top, BigInt(big));
      assert.equal(snap.channel.nextSend, 2n);
    });

    it('commit of a missing session says so', async () => {
      const store = await fresh();
      assert.equal((await store.commit(newSessionId(), 0, 60_000)).verdict, 'missing');
      assert.equal(await store.charge(newSessionId(), { failed: 1 }), undefined);
    });

    it('concurrent commits never hand out one send number twice', async () => {
      const store = await fresh();
      const st = sampleState();
      await store.create(st, 60_000);
      const results = await Promise.all(Array.from({ length: 200 }, (_, i) => store.commit(st.id, i, 60_000)));
      const seqs = results.map((r) => r.sendSeq);
      assert.ok(results.every((r) => r.verdict === 'fresh'));
      assert.equal(new Set(seqs).size, 200);
      const again = await Promise.all(Array.from({ length: 50 }, () => store.commit(st.id, 199, 60_000)));
      assert.ok(again.every((r) => r.verdict === 'replayed'), 'one number accepted once, whoever asks');
    });

    it('reserve: n consecutive send numbers never handed out again, n units charged, concurrent with commits', async () => {
      const store = await fresh();
      const st = sampleState();
      await store.create(st, 60_000);
      const c0 = await store.commit(st.id, 0, 60_000);
      assert.equal(c0.sendSeq, 0);
      const r = await store.reserve(st.id, 64, 60_000);
      assert.deepEqual(r, { first: 1, sentUnits: 65, failedUnits: 0 });
      assert.equal((await store.commit(st.id, 1, 60_000)).sendSeq, 65, 'the next commit comes after the reservation');
      // Reservations and commits racing from many callers: every number handed out once.
      const taken: number[] = [];
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          if (i % 2) {
            const x = await store.reserve(st.id, 1 + (i % 7), 60_000);
            assert.ok(x);
            for (let k = 0; k < 1 + (i % 7); k++) taken.push(x.first + k);
          } else {
            const c = await store.commit(st.id, 2 + i, 60_000);
            assert.equal(c.verdict, 'fresh');
            taken.push(c.sendSeq);
          }
        }),
      );
      assert.equal(new Set(taken).size, taken.length);
      assert.ok(taken.every((n) => n >= 66));
      const snap = await store.snapshot(st.id);
      assert.equal(snap?.channel.nextSend, BigInt(66 + taken.length));
      assert.equal(snap?.channel.sentUnits, 66 + taken.length);
      assert.equal(await store.reserve(newSessionId(), 4, 60_000), undefined, 'missing session');
      for (const bad of [0, -1, 1.5, 65_537]) {
        await assert.rejects(async () => store.reserve(st.id, bad, 60_000), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
      }
    });

    it('charge adds usage; delete removes; snapshot round-trips through the JSON codec', async () => {
      const store = await fresh();
      const st = sampleState();
      await store.create(st, 60_000);
      await store.commit(st.id, 1, 60_000);
      assert.deepEqual(await store.charge(st.id, { sent: 3, failed: 2 }), { sentUnits: 4, failedUnits: 2 });
      const snap = await store.snapshot(st.id);
      assert.ok(snap);
      assert.deepEqual(decodeSessionState(encodeSessionState(snap)), snap);
      assert.equal(await store.delete(st.id), true);
      assert.equal(await store.delete(st.id), false);
      assert.equal(await store.load(st.id), undefined);
      assert.equal((await store.commit(st.id, 2, 60_000)).verdict, 'missing');
    });

    it('expires after the TTL; commit and reserve refresh it', async () => {
      const store = await fresh();
      const [keep, short, refreshed, reserved] = [sampleState(), sampleState(), sampleState(), sampleState()];
      await store.create(keep, 600_000);
      await store.create(short, 200);
      await store.create(refreshed, 2_000);
      await store.create(reserved, 2_000);
      const t0 = Date.now();
      assert.equal((await store.commit(refreshed.id, 0, 600_000)).verdict, 'fresh');
      assert.equal((await store.reserve(reserved.id, 3, 600_000))?.first, 0);
      // Wait (polling, no fixed sleep) until the short one is gone and the refreshed one's first TTL has passed.
      while (((await store.load(short.id)) !== undefined && Date.now() - t0 < 30_000) || Date.now() - t0 < 2_200) await sleep(50);
      assert.equal(await store.load(short.id), undefined, 'expired');
      assert.ok(await store.load(keep.id));
      assert.ok(await store.load(refreshed.id), 'its commit refreshed the TTL');
      assert.ok(await store.load(reserved.id), 'its reservation refreshed the TTL');
      assert.equal((await store.commit(short.id, 0, 600_000)).verdict, 'missing');
    });
  });
}
