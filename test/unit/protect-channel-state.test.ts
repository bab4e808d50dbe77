import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ProtectedChannel, ReplayWindow } from '../../src/protect/index.js';
import { AtlsError } from '../../src/errors.js';
import { channelPair, SUITES_PER_AEAD } from '../helpers/protect-pair.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    assert.ok(e instanceof AtlsError, `not an AtlsError: ${String(e)}`);
    return e.code;
  }
}

describe('protect: channel state export and restore', () => {
  for (const suite of SUITES_PER_AEAD) {
    it(`${suite}: a restored channel goes on exactly (next seq, window verdicts, counters)`, () => {
      const { client, server } = channelPair(suite, { server: { replayWindow: 16 } });
      const msgs = Array.from({ length: 40 }, (_, i) => client.seal(enc.encode(`m${i}`)));
      // Accept out of order: 0..9, then 30, then 25 and 21, leaving holes.
      for (let i = 0; i < 10; i++) server.open(msgs[i]!);
      server.open(msgs[30]!);
      server.open(msgs[25]!);
      server.open(msgs[21]!);
      for (let i = 0; i < 3; i++) server.seal(enc.encode('r'));
      const state = server.exportState();
      assert.equal(state.suite, suite);
      assert.equal(state.role, 'server');
      assert.equal(state.nextSend, 3n);
      assert.equal(state.window.top, 30n);
      assert.equal(state.window.size, 16);
      assert.equal(state.sentUnits, 3);
      const restored = ProtectedChannel.fromState(structuredClone(state));
      assert.deepEqual(restored.exportState(), state, 'export(restore(s)) = s');
      // Same verdict for every message at the original and the restored channel.
      for (const i of [9, 14, 15, 21, 22, 25, 29, 30, 31, 39]) {
        const a = codeOf(() => server.open(msgs[i]!));
        const b = codeOf(() => restored.open(msgs[i]!));
        assert.equal(b, a, `message ${i}`);
      }
      assert.equal(codeOf(() => restored.open(msgs[30]!)), 'REPLAYED');
      assert.equal(codeOf(() => restored.open(msgs[14]!)), 'TOO_OLD');
      // Same next sequence number: the client opens both channels' next message in the same order.
      assert.equal(restored.nextSequence, 3n);
      const fromRestored = restored.seal(enc.encode('after'));
      assert.equal(dec.decode(client.open(fromRestored)), 'after');
      assert.equal(codeOf(() => client.open(server.seal(enc.encode('dup')))), 'REPLAYED', 'both would reuse number 3: the peer refuses the second');
    });
  }

  it('authenticate + sealAt leave the window and send counter to the caller', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256');
    const m = client.seal(enc.encode('x'));
    const a = server.authenticate(m);
    assert.equal(a.sequence, 0);
    assert.equal(dec.decode(a.plaintext), 'x');
    assert.equal(dec.decode(server.authenticate(m).plaintext), 'x', 'no window here: the store decides');
    assert.equal(server.exportState().window.top, undefined);
    const forged = new Uint8Array(m);
    forged[forged.length - 1]! ^= 1;
    assert.equal(codeOf(() => server.authenticate(forged)), 'DECRYPT_FAILED');
    assert.equal(server.exportState().failedUnits, 1);
    const r = server.sealAt(7, enc.encode('seven'));
    assert.equal(dec.decode(client.open(r)), 'seven');
    assert.equal(server.nextSequence, 0n, 'sealAt does not move the own counter');
    assert.equal(codeOf(() => server.sealAt(-1, enc.encode(''))), 'INVALID_ARGUMENT');
  });

  it('refuses inconsistent state', () => {
    const { server } = channelPair('TLS_CHACHA20_POLY1305_SHA256');
    const s = server.exportState();
    assert.equal(codeOf(() => ProtectedChannel.fromState({ ...s, secrets: s.secrets.subarray(1) })), 'INVALID_ARGUMENT');
    assert.equal(codeOf(() => ProtectedChannel.fromState({ ...s, suite: 'TLS_RSA_WITH_AES_128_CBC_SHA' })), 'UNSUPPORTED');
    assert.equal(codeOf(() => ProtectedChannel.fromState({ ...s, nextSend: -1n })), 'INVALID_ARGUMENT');
    assert.equal(codeOf(() => ProtectedChannel.fromState({ ...s, sentUnits: 1.5 })), 'INVALID_ARGUMENT');
    assert.equal(codeOf(() => ProtectedChannel.fromState({ ...s, window: { ...s.window, bits: new Uint8Array(1) } })), 'INVALID_ARGUMENT');
    assert.equal(codeOf(() => ProtectedChannel.fromState({ ...s, window: { size: 64, top: undefined, bits: new Uint8Array(8).fill(1) } })), 'INVALID_ARGUMENT');
    server.destroy();
    assert.equal(codeOf(() => server.exportState()), 'CLOSED');
  });

  it('replay window state round-trips across the 32-bit boundary and near 0', () => {
    const w = new ReplayWindow(100);
    for (const s of [3n, 5n, 2n ** 32n - 3n, 2n ** 32n + 1n, 2n ** 32n + 40n]) w.update(s);
    const r = ReplayWindow.fromState(w.exportState());
    for (let s = 2n ** 32n - 70n; s < 2n ** 32n + 50n; s++) {
      assert.equal(codeOf(() => r.check(s)), codeOf(() => w.check(s)), `seq ${s}`);
    }
    const small = new ReplayWindow(64);
    small.update(2n);
    small.update(0n);
    const rs = ReplayWindow.fromState(small.exportState());
    for (const s of [0n, 1n, 2n, 3n]) assert.equal(codeOf(() => rs.check(s)), codeOf(() => small.check(s)));
  });
});
