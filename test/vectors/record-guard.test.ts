/**
 * The records-mode guard (src/session/record-guard.ts) against RFC 8448 §3:
 * the client's application traffic secret opens the client's application
 * data record at sequence 0 (key and IV by RFC 8446 §7.3, nonce by §5.3,
 * the header as additional data by §5.2), and nothing else; TLS 1.2 key
 * expansion against OpenSSL's TLS1-PRF and records sealed by node:crypto.
 */
import { describe, it } from 'node:test';
import { createCipheriv, type CipherGCM } from 'node:crypto';
import assert from 'node:assert/strict';
import { RecordGuard } from '../../src/session/record-guard.js';
import { splitRecords } from '../../src/records.js';
import { AtlsError } from '../../src/errors.js';
import * as v from './rfc8448.js';

const SUITE = 'TLS_AES_128_GCM_SHA256';
const badRecord = (e: unknown): boolean => e instanceof AtlsError && e.code === 'BAD_RECORD_MAC' && e.source === 'remote';

describe('record guard, RFC 8448 §3', () => {
  it('opens the client application record at sequence 0 and refuses its replay', () => {
    const guard = new RecordGuard(SUITE, v.secrets.clientApplication);
    const record = splitRecords(v.clientApplicationRecord);
    guard.authenticate(record);
    assert.throws(() => guard.authenticate(record), badRecord, 'the same record again is at sequence 1: a replay');
  });

  it('catches up with the flight that completed the handshake: the Finished under the handshake key, then data', () => {
    const guard = new RecordGuard(SUITE, v.secrets.clientApplication);
    const flight = splitRecords(new Uint8Array([...v.clientFinishedRecord, ...v.clientApplicationRecord]));
    assert.equal(guard.catchUp(flight), true);
    assert.throws(() => guard.authenticate(splitRecords(v.clientApplicationRecord)), badRecord, 'sequence 0 is used');
  });

  it('refuses a flipped byte, the server\'s record, a plaintext alert, and a batch with one bad record whole', () => {
    const guard = new RecordGuard(SUITE, v.secrets.clientApplication);
    const flipped = Uint8Array.from(v.clientApplicationRecord);
    flipped[20]! ^= 1;
    assert.throws(() => guard.authenticate(splitRecords(flipped)), badRecord);
    const header = Uint8Array.from(v.clientApplicationRecord);
    header[2] = 1; // the header is the additional data (RFC 8446 §5.2)
    assert.throws(() => guard.authenticate(splitRecords(header)), badRecord);
    assert.throws(() => guard.authenticate(splitRecords(v.serverApplicationRecord)), badRecord);
    assert.throws(() => guard.authenticate(splitRecords(Uint8Array.from([21, 3, 3, 0, 2, 2, 40]))), badRecord);
    const batch = splitRecords(new Uint8Array([...v.clientApplicationRecord, ...v.serverApplicationRecord]));
    assert.throws(() => guard.authenticate(batch), badRecord);
    // Nothing moved: the client's record still opens at sequence 0.
    guard.authenticate(splitRecords(v.clientApplicationRecord));
    guard.destroy();
  });
});

describe('record guard, the browser build', () => {
  it("takes the same HKDF-Expand-Label from the webcrypto engine's key schedule as from node:crypto", async () => {
    const node = await import('../../src/engines/tls13-alert.js');
    const browser = await import('../../src/browser/tls13-alert.js');
    const secret = Uint8Array.from({ length: 48 }, (_, i) => i * 7);
    for (const hash of ['sha256', 'sha384'] as const) {
      for (const [label, length] of [['key', 16], ['iv', 12], ['traffic upd', hash === 'sha256' ? 32 : 48]] as const) {
        assert.deepEqual(browser.expandLabel(hash, secret, label, length), new Uint8Array(node.expandLabel(hash, secret, label, length)));
      }
    }
  });
});

/**
 * TLS 1.2 key expansion (RFC 5246 §6.3) against OpenSSL's own TLS1-PRF KDF (RFC 5246 has no vectors):
 * master secret 00..2f, server random 40..5f, client random 60..7f, computed with
 * `openssl kdf -keylen N -kdfopt digest:SHA256|SHA384 -kdfopt hexsecret:<master>
 *  -kdfopt hexseed:<"key expansion" in hex><server random><client random> TLS1-PRF`.
 */
const MASTER = Uint8Array.from({ length: 48 }, (_, i) => i);
const SERVER_RANDOM = Uint8Array.from({ length: 32 }, (_, i) => 0x40 + i);
const CLIENT_RANDOM = Uint8Array.from({ length: 32 }, (_, i) => 0x60 + i);
const KEY_BLOCKS = [
  // AES-128-GCM: 2 x 16-byte key + 2 x 4-byte salt (RFC 5288 §3).
  { hash: 'sha256', suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', keyLength: 16, ivLength: 4, block: '25b8932c0824c8f2962638ec1c6ec99e1b07457bc265278c23064c1d63c61e0417053567ed3a0d6c' },
  // AES-256-GCM with the SHA-384 PRF.
  { hash: 'sha384', suite: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', keyLength: 32, ivLength: 4, block: '3288e85d38fe09d3dcbb30ef211d546e81c947e4be7963709d27eb6d5f082fcb5790b97c651f2b7d143853361bc9b1b5ef1aa49d3cc6494deb85c73cd413fea9b1a66b28f715bcea' },
  // ChaCha20-Poly1305: 2 x 32-byte key + 2 x 12-byte IV (RFC 7905 §2).
  { hash: 'sha256', suite: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', keyLength: 32, ivLength: 12, block: '25b8932c0824c8f2962638ec1c6ec99e1b07457bc265278c23064c1d63c61e0417053567ed3a0d6c431f60219bcc5357c4451e2e158a5edb30d23cd1f2e3b267fed87da243fe882ab7ab42deead4eb57d29451d294f6b4d2' },
] as const;

/** A TLS 1.2 application-data record sealed with node:crypto under the client half of `block` at `seq`. */
function sealed12(kb: (typeof KEY_BLOCKS)[number], seq: number, text: string): Uint8Array {
  const block = Buffer.from(kb.block, 'hex');
  const key = block.subarray(0, kb.keyLength);
  const iv = block.subarray(2 * kb.keyLength, 2 * kb.keyLength + kb.ivLength);
  const chacha = kb.ivLength === 12;
  const explicit = Buffer.alloc(chacha ? 0 : 8, 0xa5); // any 8 bytes the sender chooses (RFC 5288 §3)
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  // RFC 7905 §2: IV XOR the padded sequence number; RFC 5288 §3: salt + explicit nonce.
  const nonce = chacha ? Buffer.from(iv.map((b, i) => b ^ (i < 4 ? 0 : seqBytes[i - 4]!))) : Buffer.concat([iv, explicit]);
  const plain = Buffer.from(text);
  // RFC 5246 §6.2.3.3: seq_num + type + version + length.
  const aad = Buffer.concat([seqBytes, Buffer.from([23, 3, 3, plain.length >> 8, plain.length & 0xff])]);
  const algorithm = chacha ? 'chacha20-poly1305' : kb.keyLength === 16 ? 'aes-128-gcm' : 'aes-256-gcm';
  const c = createCipheriv(algorithm, key, nonce, { authTagLength: 16 } as never) as CipherGCM;
  c.setAAD(aad, { plaintextLength: plain.length });
  const body = Buffer.concat([explicit, c.update(plain), c.final(), c.getAuthTag()]);
  return Uint8Array.from([23, 3, 3, body.length >> 8, body.length & 0xff, ...body]);
}

describe('record guard, TLS 1.2', () => {
  for (const kb of KEY_BLOCKS) {
    it(`${kb.suite}: the PRF gives OpenSSL's key block (node:crypto and the browser build)`, async () => {
      const node = await import('../../src/engines/tls13-alert.js');
      const browser = await import('../../src/browser/tls13-alert.js');
      const seed = new Uint8Array([...SERVER_RANDOM, ...CLIENT_RANDOM]);
      const length = kb.block.length / 2;
      assert.equal(Buffer.from(node.tls12Prf(kb.hash, MASTER, 'key expansion', seed, length)).toString('hex'), kb.block);
      assert.equal(Buffer.from(browser.tls12Prf(kb.hash, MASTER, 'key expansion', seed, length)).toString('hex'), kb.block);
    });

    it(`${kb.suite}: opens the client's records in sequence from the master secret, refuses replays, other types and the server's key`, () => {
      const guard = new RecordGuard(kb.suite, MASTER, { clientRandom: CLIENT_RANDOM, serverRandom: SERVER_RANDOM });
      // The completing flight: ChangeCipherSpec, then the Finished at sequence 0 (RFC 5246 §6.1).
      const finished = sealed12(kb, 0, 'finished');
      finished[0] = 22; // a handshake record does not open as application data: the type is in the additional data
      assert.throws(() => guard.authenticate(splitRecords(finished)), badRecord);
      assert.equal(guard.catchUp(splitRecords(new Uint8Array([20, 3, 3, 0, 1, 1, ...sealed12(kb, 0, 'finished')]))), true);
      const first = splitRecords(sealed12(kb, 1, 'GET /'));
      guard.authenticate(first);
      assert.throws(() => guard.authenticate(first), badRecord, 'a replay is at the wrong sequence number');
      const typed = sealed12(kb, 2, 'x');
      typed[0] = 21;
      assert.throws(() => guard.authenticate(splitRecords(typed)), badRecord, 'the type is in the additional data');
      guard.authenticate(splitRecords(new Uint8Array([...sealed12(kb, 2, 'a'), ...sealed12(kb, 3, 'b')])));
      guard.destroy();
    });
  }

  it('catches up only with a flight that has the ChangeCipherSpec', () => {
    const kb = KEY_BLOCKS[0];
    const guard = new RecordGuard(kb.suite, MASTER, { clientRandom: CLIENT_RANDOM, serverRandom: SERVER_RANDOM });
    assert.equal(guard.catchUp(splitRecords(sealed12(kb, 0, 'finished'))), false);
  });
});
