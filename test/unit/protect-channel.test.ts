import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { ProtectedChannel, aeadForSuite, parseHeader } from '../../src/protect/index.js';
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

describe('protect: channel', () => {
  for (const suite of SUITES_PER_AEAD) {
    const spec = aeadForSuite(suite);
    describe(spec.name, () => {
      it('round-trips both ways, sizes 0 to 70000', () => {
        const { client, server } = channelPair(suite);
        for (const n of [0, 1, 15, 16, 17, 1000, 16384, 70000]) {
          const pt = new Uint8Array(randomBytes(n));
          const overhead = client.overhead;
          const m = client.seal(pt);
          assert.equal(m.length, pt.length + overhead);
          assert.deepEqual(server.open(m), Buffer.from(pt));
          assert.deepEqual(client.open(server.seal(pt)), Buffer.from(pt));
        }
        assert.deepEqual(client.stats, { sent: 8, received: 8, failures: 0, rejected: 0 });
      });

      it('has overhead 1 + n + tag and never reuses a sequence number', () => {
        const { client } = channelPair(suite);
        assert.equal(client.overhead, 2 + spec.tagLength);
        assert.equal(client.maxOverhead, 9 + spec.tagLength);
        const m0 = client.seal(enc.encode('a'));
        const m1 = client.seal(enc.encode('a'));
        assert.equal(m0.length, 1 + 1 + 1 + spec.tagLength);
        assert.equal(parseHeader(m0).seq, 0n);
        assert.equal(parseHeader(m1).seq, 1n);
        assert.notDeepEqual(m0.subarray(2), m1.subarray(2), 'distinct nonces give distinct ciphertexts');
        assert.equal(client.nextSequence, 2n);
      });

      it('does not open its own messages (each direction has its own key)', () => {
        const { client } = channelPair(suite);
        assert.equal(codeOf(() => client.open(client.seal(enc.encode('echo')))), 'DECRYPT_FAILED');
      });

      it('detects a flipped bit anywhere: header, ciphertext, tag', () => {
        const { client, server } = channelPair(suite);
        const m = client.seal(enc.encode('hello, atls'));
        for (let i = 0; i < m.length; i++) {
          for (const bit of [0x01, 0x80]) {
            const f = Uint8Array.from(m);
            f[i]! ^= bit;
            const code = codeOf(() => server.open(f));
            // A flipped header bit is either malformed, or a different sequence number that fails authentication.
            if (i === 0) assert.equal(code, 'MALFORMED_MESSAGE', `flags bit ${bit}`);
            else assert.equal(code, 'DECRYPT_FAILED', `byte ${i} bit ${bit}`);
          }
        }
        assert.equal(dec.decode(server.open(m)), 'hello, atls', 'forgeries did not kill the channel or move the window');
        assert.equal(server.stats.failures, 2 * (m.length - 1));
      });

      it('rejects truncated messages and extra bytes', () => {
        const { client, server } = channelPair(suite);
        const m = client.seal(enc.encode('hello'));
        for (let n = 0; n < m.length; n++) {
          const code = codeOf(() => server.open(m.subarray(0, n)));
          if (n < 2 + spec.tagLength) assert.equal(code, 'MALFORMED_MESSAGE', `length ${n}`);
          else assert.equal(code, 'DECRYPT_FAILED', `length ${n}`);
        }
        const longer = new Uint8Array(m.length + 1);
        longer.set(m);
        assert.equal(codeOf(() => server.open(longer)), 'DECRYPT_FAILED');
        assert.equal(dec.decode(server.open(m)), 'hello');
      });
    });
  }

  it('rejects replays, accepts reordering within the window once, rejects too old', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256', { server: { replayWindow: 8 } });
    const msgs = Array.from({ length: 20 }, (_, i) => client.seal(enc.encode(`m${i}`)));
    assert.equal(dec.decode(server.open(msgs[3]!)), 'm3');
    assert.equal(dec.decode(server.open(msgs[1]!)), 'm1', 'older but inside the window');
    assert.throws(() => server.open(msgs[1]!), { code: 'REPLAYED', source: 'remote' });
    assert.throws(() => server.open(msgs[3]!), { code: 'REPLAYED' });
    assert.equal(dec.decode(server.open(msgs[12]!)), 'm12');
    assert.throws(() => server.open(msgs[4]!), { code: 'TOO_OLD', source: 'remote' });
    assert.equal(dec.decode(server.open(msgs[5]!)), 'm5', '12 - 7 is the oldest the window of 8 accepts');
    assert.equal(dec.decode(server.open(msgs[19]!)), 'm19');
    assert.equal(dec.decode(server.open(msgs[13]!)), 'm13');
    assert.deepEqual(server.stats, { sent: 0, received: 6, failures: 0, rejected: 3 });
  });

  it('does not let a forged high sequence number move the window', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256');
    const m0 = client.seal(enc.encode('zero'));
    const forged = new Uint8Array([0x27, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...new Uint8Array(16)]);
    assert.throws(() => server.open(forged), { code: 'DECRYPT_FAILED' });
    assert.equal(dec.decode(server.open(m0)), 'zero');
  });

  it('rejects non-minimal sequence numbers and reserved bits before decrypting', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256');
    const m = client.seal(enc.encode('x')); // 20 00 ...
    const nonMinimal = new Uint8Array([0x21, 0x00, ...m.subarray(1)]);
    assert.throws(() => server.open(nonMinimal), { code: 'MALFORMED_MESSAGE', source: 'remote' });
    for (const flags of [0x28, 0x30, 0x38, 0x00, 0x40, 0xa0]) {
      const f = Uint8Array.from(m);
      f[0] = flags;
      assert.throws(() => server.open(f), { code: 'MALFORMED_MESSAGE' });
    }
    assert.equal(server.stats.failures, 0);
    assert.equal(server.stats.rejected, 7);
    assert.equal(dec.decode(server.open(m)), 'x');
  });

  it('binds optional application AAD', () => {
    const { client, server } = channelPair('TLS_CHACHA20_POLY1305_SHA256');
    const aad = enc.encode('POST /api 42');
    const m = client.seal(enc.encode('body'), aad);
    assert.throws(() => server.open(m), { code: 'DECRYPT_FAILED' });
    assert.throws(() => server.open(m, enc.encode('POST /api 43')), { code: 'DECRYPT_FAILED' });
    assert.equal(dec.decode(server.open(m, aad)), 'body');
    // An empty AAD is the same as none.
    assert.equal(dec.decode(server.open(client.seal(enc.encode('b')), new Uint8Array(0))), 'b');
  });

  it('stops sealing at the confidentiality limit, for good', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256', { client: { limits: { confidentiality: 3 } } });
    const sent = [1, 2, 3].map((i) => client.seal(enc.encode(`m${i}`)));
    assert.equal(client.canSeal, true);
    assert.throws(() => client.seal(enc.encode('4')), { code: 'KEY_LIMIT_REACHED', source: 'local' });
    assert.throws(() => client.seal(new Uint8Array(0)), { code: 'KEY_LIMIT_REACHED' });
    assert.equal(client.canSeal, false);
    assert.equal(client.stats.sent, 3);
    // The other direction is unaffected: replies to what was sent still open.
    for (const m of sent) server.open(m);
    assert.equal(dec.decode(client.open(server.seal(enc.encode('reply')))), 'reply');
  });

  it('counts large messages in 16 KiB units against the limits', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256', {
      client: { limits: { confidentiality: 5 } },
      server: { limits: { integrity: 3 } },
    });
    client.seal(new Uint8Array(16384)); // 1
    client.seal(new Uint8Array(16385)); // 2 more: 3
    client.seal(new Uint8Array(32768)); // 2 more: 5
    assert.throws(() => client.seal(new Uint8Array(1)), { code: 'KEY_LIMIT_REACHED' });
    const forged = new Uint8Array(2 + 40000 + 16);
    forged[0] = 0x20;
    // One forgery of 40000 bytes weighs 3 units: the integrity limit of 3 is reached at once.
    assert.throws(() => server.open(forged), { code: 'KEY_LIMIT_REACHED' });
    assert.equal(server.stats.failures, 1);
  });

  it('stops opening at the integrity limit, for good', () => {
    const { client, server } = channelPair('TLS_AES_128_CCM_8_SHA256', { server: { limits: { integrity: 3 } } });
    const good = client.seal(enc.encode('good'));
    const bad = Uint8Array.from(good);
    bad[bad.length - 1]! ^= 1;
    assert.throws(() => server.open(bad), { code: 'DECRYPT_FAILED', source: 'remote' });
    assert.throws(() => server.open(bad), { code: 'DECRYPT_FAILED' });
    assert.equal(server.canOpen, true);
    assert.throws(() => server.open(bad), { code: 'KEY_LIMIT_REACHED', source: 'local' });
    assert.equal(server.canOpen, false);
    assert.throws(() => server.open(good), { code: 'KEY_LIMIT_REACHED' }, 'sticky even for a good message');
    assert.equal(server.stats.failures, 3);
    // Replays and malformed messages are not decryption failures.
    const { client: c2, server: s2 } = channelPair('TLS_AES_128_GCM_SHA256', { server: { limits: { integrity: 1 } } });
    const m = c2.seal(enc.encode('once'));
    s2.open(m);
    for (let i = 0; i < 5; i++) assert.throws(() => s2.open(m), { code: 'REPLAYED' });
    assert.throws(() => s2.open(new Uint8Array([0x20])), { code: 'MALFORMED_MESSAGE' });
    assert.equal(s2.canOpen, true);
  });

  it('uses every sequence number up to 2^64 - 1 and then refuses to wrap', () => {
    const { client, server } = channelPair('TLS_AES_256_GCM_SHA384', {
      client: { initialSequence: 2n ** 64n - 2n },
    });
    assert.equal(client.overhead, 9 + 16);
    const a = client.seal(enc.encode('a'));
    const b = client.seal(enc.encode('b'));
    assert.equal(parseHeader(b).seq, 2n ** 64n - 1n);
    assert.throws(() => client.seal(enc.encode('c')), { code: 'KEY_LIMIT_REACHED', source: 'local' });
    assert.throws(() => client.seal(enc.encode('c')), { code: 'KEY_LIMIT_REACHED' });
    assert.equal(dec.decode(server.open(b)), 'b');
    assert.equal(dec.decode(server.open(a)), 'a');
  });

  it('crosses 2^32 and 2^53 with exact sequence numbers', () => {
    for (const start of [2n ** 32n - 2n, 2n ** 53n - 2n]) {
      const { client, server } = channelPair('TLS_AES_128_GCM_SHA256', { client: { initialSequence: start } });
      for (let i = 0n; i < 4n; i++) {
        const m = client.seal(enc.encode(String(i)));
        assert.equal(parseHeader(m).seq, start + i);
        assert.equal(dec.decode(server.open(m)), String(i));
      }
    }
  });

  it('refuses plaintexts and messages above maxPlaintextLength', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256', {
      client: { maxPlaintextLength: 100 },
      server: { maxPlaintextLength: 50 },
    });
    assert.throws(() => client.seal(new Uint8Array(101)), { code: 'TOO_LARGE', source: 'local' });
    const m = client.seal(new Uint8Array(100));
    assert.throws(() => server.open(m), { code: 'TOO_LARGE', source: 'remote' });
    assert.equal(client.stats.sent, 1);
    assert.equal(aeadForSuite('TLS_AES_128_CCM_SHA256').maxPlaintextLength, 2 ** 24 - 1);
  });

  it('validates its options and inputs', () => {
    const spec = aeadForSuite('TLS_AES_128_GCM_SHA256');
    const block = new Uint8Array(56);
    const bad: object[] = [
      { replayWindow: 0 },
      { replayWindow: 1e6 },
      { limits: { confidentiality: 0 } },
      { limits: { confidentiality: 2 ** 30 } },
      { limits: { integrity: 2 ** 40 } },
      { limits: { integrity: 1.5 } },
      { maxPlaintextLength: 2 ** 40 },
      { initialSequence: -1 },
      { initialSequence: 2n ** 64n },
    ];
    for (const o of bad) {
      assert.throws(() => ProtectedChannel.fromKeyBlock(block, spec, 'client', o), { code: 'INVALID_ARGUMENT' }, JSON.stringify(o, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
    }
    assert.throws(() => ProtectedChannel.fromKeyBlock(block, spec, 'peer' as 'client'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => ProtectedChannel.fromKeyBlock(new Uint8Array(55), spec, 'client'), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => ProtectedChannel.fromKeyBlock(block, { ...spec, keyLength: 32 }, 'client'), { code: 'INVALID_ARGUMENT' });
    const ch = ProtectedChannel.fromKeyBlock(block, spec, 'client');
    assert.throws(() => ch.seal('text' as unknown as Uint8Array), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => ch.open([1, 2, 3] as unknown as Uint8Array), { code: 'INVALID_ARGUMENT' });
  });

  it('destroy() zeroes the keys and closes both directions', () => {
    const block = new Uint8Array(randomBytes(56));
    const { client } = channelPair('TLS_AES_128_GCM_SHA256', { block });
    // Keys and IVs live in one private allocation (`mem`: send key, receive key, send IV, receive IV).
    const secrets = (client as unknown as { mem: Buffer }).mem;
    assert.equal(secrets.length, 2 * 16 + 2 * 12);
    assert.ok(secrets.some((b) => b !== 0));
    client.destroy();
    assert.ok(secrets.every((b) => b === 0));
    assert.throws(() => client.seal(new Uint8Array(1)), { code: 'CLOSED' });
    assert.throws(() => client.open(new Uint8Array(20)), { code: 'CLOSED' });
    client.destroy();
    assert.ok(block.some((b) => b !== 0), 'the caller owns the key block');
  });

  it('returns messages that own their ArrayBuffer (no pool data behind .buffer)', () => {
    const { client } = channelPair('TLS_AES_128_GCM_SHA256');
    const m = client.seal(enc.encode('x'));
    assert.equal(m.byteOffset, 0);
    assert.equal(m.buffer.byteLength, m.length);
  });

  it('only ever throws AtlsError on random and mutated input', () => {
    const { client, server } = channelPair('TLS_AES_128_CCM_SHA256');
    const base = client.seal(enc.encode('fuzz me please'));
    let x = 99;
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) >>> 0;
      return x % n;
    };
    for (let i = 0; i < 5000; i++) {
      let input: Uint8Array;
      if (i % 2) input = new Uint8Array(randomBytes(rnd(40)));
      else {
        input = Uint8Array.from(base);
        for (let k = 0; k <= rnd(3); k++) input[rnd(input.length)] = rnd(256);
        input = input.subarray(0, rnd(input.length + 1));
      }
      const code = codeOf(() => server.open(input));
      assert.ok(['ok', 'MALFORMED_MESSAGE', 'DECRYPT_FAILED', 'REPLAYED', 'TOO_OLD'].includes(code), code);
    }
    assert.equal(server.canOpen, true);
  });
});
