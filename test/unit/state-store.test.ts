import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError } from '../../src/errors.js';
import { MemoryStateStore, decodeSessionState, encodeSessionState, isSyncStateStore, storeUnavailable } from '../../src/store/index.js';
import { runStateStoreContract, sampleState } from '../helpers/state-store-contract.js';

runStateStoreContract('memory', () => new MemoryStateStore({ sweepIntervalMs: 0 }));

describe('MemoryStateStore specifics', () => {
  it('answers synchronously, and evicts the soonest to expire at its cap', () => {
    const removed: string[] = [];
    const store = new MemoryStateStore({ maxEntries: 2, sweepIntervalMs: 0, onRemove: (id, why) => removed.push(`${id}:${why}`) });
    assert.ok(isSyncStateStore(store));
    const [a, b, c] = [sampleState(), sampleState(), sampleState()];
    store.createSync(a, 1000);
    store.createSync(b, 5000);
    store.createSync(c, 5000);
    assert.equal(store.loadSync(a.id), undefined);
    assert.deepEqual(removed, [`${a.id}:evicted`]);
    assert.equal(store.commitSync(b.id, 0, 5000).sendSeq, 0);
    void store.close();
  });
});

describe('session state codec', () => {
  it('round-trips and refuses damaged or foreign entries', () => {
    const s = sampleState();
    s.handshake.peerVerified = true;
    s.handshake.verifiedChain = [new Uint8Array([1, 2, 3])];
    const text = encodeSessionState(s);
    assert.deepEqual(decodeSessionState(text), s);
    const o = JSON.parse(text) as Record<string, unknown>;
    const bad = (patch: Record<string, unknown>): string => {
      try {
        decodeSessionState(JSON.stringify({ ...o, ...patch }));
        return 'ok';
      } catch (e) {
        assert.ok(e instanceof AtlsError);
        return e.code;
      }
    };
    assert.equal(bad({ v: 2 }), 'INVALID_ARGUMENT');
    assert.equal(bad({ next: '-1' }), 'INVALID_ARGUMENT');
    assert.equal(bad({ next: '18446744073709551617' }), 'INVALID_ARGUMENT');
    assert.equal(bad({ secrets: 'not base64!' }), 'INVALID_ARGUMENT');
    assert.equal(bad({ role: 'admin' }), 'INVALID_ARGUMENT');
    assert.equal(bad({ hs: { ...(o.hs as object), version: 'SSLv3' } }), 'INVALID_ARGUMENT');
    assert.equal(bad({ win: { size: 0, top: null, bits: '' } }), 'INVALID_ARGUMENT');
    assert.throws(() => decodeSessionState('{'), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
  });

  it('storeUnavailable is a 503 / 5.03 with a retry hint', () => {
    const e = storeUnavailable('redis down', 3);
    assert.equal(e.code, 'STORE_UNAVAILABLE');
    assert.equal(e.httpStatus, 503);
    assert.equal(e.coapCode, '5.03');
    assert.equal(e.retryAfter, 3);
  });
});
