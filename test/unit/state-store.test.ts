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

describe('docs/protocol.md §7.5', () => {
  it('the stored-form example is what the codec produces', async () => {
    const { readFileSync } = await import('node:fs');
    const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('### 7.5 The stored form'), doc.indexOf('<!-- /section:state -->'));
    const shown = /```json\n(.*)\n```/.exec(section)?.[1];
    assert.ok(shown, 'example present');
    const bits = new Uint8Array(8);
    bits[0] = 0b101;
    const text = encodeSessionState({
      id: 'node-1.AAAAAAAAAAAAAAAAAAAAAA',
      establishedAt: 1_700_000_000_000,
      handshake: {
        version: 'TLSv1.3',
        cipherSuite: 'TLS_AES_128_GCM_SHA256',
        alpn: undefined,
        serverName: 'localhost',
        peerCertificates: [],
        pskIdentity: 'device-17',
        resumed: false,
        earlyData: 'none',
      },
      channel: {
        suite: 'TLS_AES_128_GCM_SHA256',
        role: 'server',
        secrets: Uint8Array.from({ length: 56 }, (_, i) => i),
        nextSend: 2n,
        window: { size: 64, top: 2n, bits },
        sentUnits: 2,
        failedUnits: 0,
      },
    });
    assert.equal(text, shown);
    // And it is a channel that restores: the window says 0 and 2 were seen, 1 was not.
    const { ProtectedChannel } = await import('../../src/protect/index.js');
    const state = decodeSessionState(text);
    const ch = ProtectedChannel.fromState(state.channel);
    assert.equal(ch.nextSequence, 2n);
    assert.deepEqual(ch.exportState().window, state.channel.window);
  });
});
