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
import { aeadOpen, aeadSealInto, nativeOpen, nativeOpenAt, nativeSealAt, nativeSealInto } from '../../src/protect/aead.js';
import { ProtectedChannel, aeadForSuite } from '../../src/protect/index.js';
import { fromHex, toHex } from '../../src/bytes.js';
import { REQUIRE_NATIVE } from '../helpers/native-drive.js';

interface VectorMessage {
  sender: 'client' | 'server';
  seq: string;
  header: string;
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
  clientWriteIv: string;
  serverWriteIv: string;
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

    it('native context with the IV: sealAt and openAt build the nonce from the sequence number, byte for byte', (t) => {
      if (!nativeOrSkip(t)) return;
      for (const m of a.messages.filter((x) => x.aad === x.header)) {
        const iv = fromHex(m.sender === 'client' ? a.clientWriteIv : a.serverWriteIv);
        const s = nativeAead(spec.algorithm, keyOf(a, m), spec.tagLength, true, iv)!;
        const o = nativeAead(spec.algorithm, keyOf(a, m), spec.tagLength, false, iv)!;
        try {
          const seq = BigInt(m.seq);
          const hi = Number(seq >> 32n);
          const lo = Number(seq & 0xffff_ffffn);
          const header = fromHex(m.header);
          const pt = fromHex(m.plaintext);
          const want = m.header + m.ciphertext + m.tag;
          // The plaintext copied in, and already in place.
          const message = new Uint8Array(header.length + pt.length + spec.tagLength);
          message.set(header);
          nativeSealAt(s, spec, hi, lo, message, header.length, pt);
          assert.equal(toHex(message), want, `seq ${m.seq}`);
          const inPlace = new Uint8Array(message.length);
          inPlace.set(header);
          inPlace.set(pt, header.length);
          nativeSealAt(s, spec, hi, lo, inPlace, header.length);
          assert.equal(toHex(inPlace), want);
          const opened = nativeOpenAt(o, spec, hi, lo, message, header.length, pt.length);
          assert.equal(opened && toHex(opened), m.plaintext);
          // Another sequence number, a flipped header bit (the AAD) or tag bit fails, and the output is zeroed.
          assert.equal(nativeOpenAt(o, spec, hi, (lo ^ 1) >>> 0, message, header.length, pt.length), undefined);
          message[0]! ^= 1;
          assert.equal(nativeOpenAt(o, spec, hi, lo, message, header.length, pt.length), undefined);
          message[0]! ^= 1;
          message[message.length - 1]! ^= 1;
          const zeroed = new Uint8Array(pt.length).fill(0xaa);
          assert.equal(o.openAt(hi, lo, message, header.length, zeroed), false);
          assert.ok(zeroed.every((b) => b === 0), 'plaintext zeroed on failure');
        } finally {
          s.free();
          o.free();
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

  it('sealAt and openAt refuse bad arguments with INTERNAL or a throw, never a crash or a write out of bounds', (t) => {
    if (!nativeOrSkip(t)) return;
    const spec = aeadForSuite('TLS_AES_128_GCM_SHA256');
    const key = new Uint8Array(16);
    const iv = new Uint8Array(12);
    assert.throws(() => nativeAead('aes-128-gcm', key, 16, true, new Uint8Array(11)), { code: 'INVALID_ARGUMENT' });
    const noIv = nativeAead('aes-128-gcm', key, 16, true)!;
    assert.throws(() => nativeSealAt(noIv, spec, 0, 0, new Uint8Array(18), 2), { code: 'INTERNAL' }, 'a context without an IV');
    noIv.free();
    const s = nativeAead('aes-128-gcm', key, 16, true, iv)!;
    const o = nativeAead('aes-128-gcm', key, 16, false, iv)!;
    const m = new Uint8Array(2 + 4 + 16);
    for (const [hi, lo] of [[-1, 0], [0, -1], [2 ** 32, 0], [0, 2 ** 32], [0.5, 0], [0, NaN], ['1', 0]] as Array<[number, number]>) {
      assert.throws(() => nativeSealAt(s, spec, hi, lo, m, 2), { code: 'INTERNAL' }, `hi ${hi} lo ${lo}`);
      assert.throws(() => o.openAt(hi, lo, m, 2, new Uint8Array(4)), Error, `open: hi ${hi} lo ${lo}`);
    }
    assert.throws(() => nativeSealAt(s, spec, 0, 0, new Uint8Array(17), 2), { code: 'INTERNAL' }, 'shorter than header + tag');
    assert.throws(() => nativeSealAt(s, spec, 0, 0, m, 2, new Uint8Array(5)), { code: 'INTERNAL' }, 'plaintext of another length');
    assert.throws(() => nativeSealAt(s, spec, 0, 0, m, -1), { code: 'INTERNAL' });
    assert.throws(() => nativeSealAt(s, spec, 0, 0, new Uint16Array(11) as unknown as Uint8Array, 2), { code: 'INTERNAL' }, 'not bytes');
    assert.throws(() => nativeSealAt(o, spec, 0, 0, m, 2), { code: 'INTERNAL' }, 'an opener cannot seal');
    nativeSealAt(s, spec, 0, 0, m, 2);
    assert.throws(() => o.openAt(0, 0, m, 2, new Uint8Array(3)), Error, 'output too short');
    assert.throws(() => o.openAt(0, 0, m, 2, undefined as unknown as Uint8Array), Error, 'no output');
    assert.throws(() => s.openAt(0, 0, m, 2, new Uint8Array(4)), Error, 'a sealer cannot open');
    assert.equal(nativeOpenAt(o, spec, 0, 0, m, 2, 4)?.length, 4);
    s.free();
    o.free();
    assert.throws(() => nativeSealAt(s, spec, 0, 0, m, 2), { code: 'INTERNAL' }, 'freed');
    assert.throws(() => nativeOpenAt(o, spec, 0, 0, m, 2, 4), { code: 'INTERNAL' }, 'freed');
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
