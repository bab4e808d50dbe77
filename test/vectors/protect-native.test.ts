// The known-answer vectors of protect.json run against each AEAD backend
// explicitly: the native OpenSSL context (src/engines/openssl.ts nativeAead)
// and node:crypto (src/protect/aead.ts). Native tests skip with the reason
// printed when the addon is missing, and fail under ATLS_REQUIRE_NATIVE=1.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nativeAead, nativeLiveObjects, opensslAvailability, type NativeAead } from '../../src/engines/openssl.js';
import { aeadOpen, aeadSealInto, nativeOpen, nativeSealInto } from '../../src/protect/aead.js';
import { ProtectedChannel, aeadForSuite } from '../../src/protect/index.js';
import { fromHex, toHex } from '../../src/bytes.js';
import { REQUIRE_NATIVE } from '../helpers/native-drive.js';

interface VectorMessage {
  sender: 'client' | 'server';
  plaintext: string;
  nonce: string;
  aad: string;
  ciphertext: string;
  tag: string;
}
interface VectorAead {
  aead: string;
  suite: string;
  keyBlock: string;
  clientWriteKey: string;
  serverWriteKey: string;
  messages: VectorMessage[];
}

const vectors = JSON.parse(readFileSync(new URL('./protect.json', import.meta.url), 'utf8')) as { aeads: VectorAead[] };

/** True when the native AEAD can run; otherwise skips (or throws under ATLS_REQUIRE_NATIVE=1). */
function nativeOrSkip(t: TestContext): boolean {
  const probe = nativeAead('aes-128-gcm', new Uint8Array(16), 16, true);
  if (probe) {
    probe.free();
    return true;
  }
  const a = opensslAvailability();
  const reason = a.available ? 'native addon has no AEAD (rebuild it) or ATLS_NATIVE_AEAD=0' : a.reason;
  if (REQUIRE_NATIVE) throw new Error(`native AEAD unavailable and ATLS_REQUIRE_NATIVE=1: ${reason}`);
  console.log(`# skip: ${reason}`);
  t.skip(reason);
  return false;
}

function keyOf(a: VectorAead, m: VectorMessage): Uint8Array {
  return fromHex(m.sender === 'client' ? a.clientWriteKey : a.serverWriteKey);
}

for (const a of vectors.aeads) {
  const spec = aeadForSuite(a.suite);
  describe(`AEAD backends: ${a.aead}`, () => {
    it('native context: seals and opens every vector byte for byte, one context per key', (t) => {
      if (!nativeOrSkip(t)) return;
      const ctxs = new Map<string, { s: NativeAead; o: NativeAead }>();
      try {
        for (const m of a.messages) {
          let c = ctxs.get(m.sender);
          if (!c) {
            c = { s: nativeAead(spec.algorithm, keyOf(a, m), spec.tagLength, true)!, o: nativeAead(spec.algorithm, keyOf(a, m), spec.tagLength, false)! };
            ctxs.set(m.sender, c);
          }
          const pt = fromHex(m.plaintext);
          const out = new Uint8Array(3 + pt.length + spec.tagLength).fill(0xee);
          nativeSealInto(c.s, spec, fromHex(m.nonce), fromHex(m.aad), pt, out, 3);
          assert.equal(toHex(out.subarray(3)), m.ciphertext + m.tag);
          assert.deepEqual([...out.subarray(0, 3)], [0xee, 0xee, 0xee], 'writes nothing before `at`');
          const opened = nativeOpen(c.o, spec, fromHex(m.nonce), fromHex(m.aad), fromHex(m.ciphertext), fromHex(m.tag));
          assert.equal(opened && toHex(opened), m.plaintext);
          // A flipped tag bit, ciphertext bit or AAD bit fails, and the output is zeroed.
          const tag = fromHex(m.tag);
          tag[0]! ^= 1;
          assert.equal(nativeOpen(c.o, spec, fromHex(m.nonce), fromHex(m.aad), fromHex(m.ciphertext), tag), undefined);
          const ct = fromHex(m.ciphertext);
          if (ct.length > 0) {
            ct[ct.length - 1]! ^= 0x80;
            const zeroed = new Uint8Array(ct.length).fill(0xaa);
            assert.equal(c.o.open(fromHex(m.nonce), fromHex(m.aad), ct, zeroed, 0, fromHex(m.tag)), false);
            assert.ok(zeroed.every((b) => b === 0), 'plaintext zeroed on failure');
          }
          const aad = fromHex(m.aad);
          aad[0]! ^= 1;
          assert.equal(nativeOpen(c.o, spec, fromHex(m.nonce), aad, fromHex(m.ciphertext), fromHex(m.tag)), undefined);
          // The context still works after a failure.
          assert.equal(toHex(nativeOpen(c.o, spec, fromHex(m.nonce), fromHex(m.aad), fromHex(m.ciphertext), fromHex(m.tag))!), m.plaintext);
        }
      } finally {
        for (const c of ctxs.values()) {
          c.s.free();
          c.o.free();
        }
      }
    });

    it('node:crypto: seals and opens every vector byte for byte', () => {
      for (const m of a.messages) {
        const pt = fromHex(m.plaintext);
        const out = new Uint8Array(pt.length + spec.tagLength);
        aeadSealInto(spec, keyOf(a, m), fromHex(m.nonce), fromHex(m.aad), pt, out, 0);
        assert.equal(toHex(out), m.ciphertext + m.tag);
        const opened = aeadOpen(spec, keyOf(a, m), fromHex(m.nonce), fromHex(m.aad), fromHex(m.ciphertext), fromHex(m.tag));
        assert.equal(opened && toHex(opened), m.plaintext);
      }
    });
  });
}

describe('native AEAD: misuse and lifetime', () => {
  it('refuses bad arguments with INVALID_ARGUMENT or INTERNAL, never a crash', (t) => {
    if (!nativeOrSkip(t)) return;
    assert.throws(() => nativeAead('aes-128-gcm', new Uint8Array(15), 16, true), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => nativeAead('des-cbc', new Uint8Array(8), 16, true), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => nativeAead('aes-128-gcm', new Uint8Array(16), 8, true), { code: 'INVALID_ARGUMENT' });
    const spec = aeadForSuite('TLS_AES_128_GCM_SHA256');
    const s = nativeAead('aes-128-gcm', new Uint8Array(16), 16, true)!;
    const o = nativeAead('aes-128-gcm', new Uint8Array(16), 16, false)!;
    const n = new Uint8Array(12);
    const e = new Uint8Array(0);
    assert.throws(() => nativeSealInto(s, spec, new Uint8Array(11), e, e, new Uint8Array(16), 0), { code: 'INTERNAL' });
    assert.throws(() => nativeSealInto(s, spec, n, e, new Uint8Array(4), new Uint8Array(19), 0), { code: 'INTERNAL' });
    assert.throws(() => nativeSealInto(s, spec, n, e, e, new Uint8Array(16), 1), { code: 'INTERNAL' });
    assert.throws(() => nativeSealInto(s, spec, n, e, e, new Uint8Array(32), -1), { code: 'INTERNAL' });
    assert.throws(() => nativeSealInto(o, spec, n, e, e, new Uint8Array(16), 0), { code: 'INTERNAL' }, 'opener cannot seal');
    assert.throws(() => o.open(n, e, new Uint8Array(8), new Uint8Array(7), 0, new Uint8Array(16)));
    assert.equal(o.open(n, e, e, e, 0, new Uint8Array(15)), false, 'short tag is a failed open');
    s.free();
    s.free();
    assert.throws(() => nativeSealInto(s, spec, n, e, e, new Uint8Array(16), 0), { code: 'INTERNAL' });
    o.free();
  });

  it('a channel frees its contexts on destroy(), a dropped one through the finalizer', async (t) => {
    if (!nativeOrSkip(t)) return;
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const settle = async (): Promise<void> => {
      for (let i = 0; i < 4; i++) {
        gc();
        await new Promise((r) => setImmediate(r));
      }
    };
    const spec = aeadForSuite('TLS_CHACHA20_POLY1305_SHA256');
    const block = new Uint8Array(2 * 32 + 2 * 12).fill(7);
    await settle();
    const base = nativeLiveObjects().aeads;
    const c = ProtectedChannel.fromKeyBlock(block, spec, 'client');
    const s = ProtectedChannel.fromKeyBlock(block, spec, 'server');
    assert.equal(toHex(s.open(c.seal(fromHex('68690a')))), '68690a');
    assert.equal(nativeLiveObjects().aeads - base, 2, 'one context per used direction');
    c.destroy();
    s.destroy();
    assert.equal(nativeLiveObjects().aeads, base);
    for (let i = 0; i < 200; i++) {
      const x = ProtectedChannel.fromKeyBlock(block, spec, 'client');
      const y = ProtectedChannel.fromKeyBlock(block, spec, 'server');
      y.open(x.seal(new Uint8Array(100)));
    }
    assert.ok(nativeLiveObjects().aeads - base > 0);
    await settle();
    assert.ok(nativeLiveObjects().aeads - base <= 8, `live AEAD contexts after GC: ${nativeLiveObjects().aeads - base}`);
  });
});
