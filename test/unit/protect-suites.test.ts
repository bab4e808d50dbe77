import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  EXPORTER_LABEL,
  aeadForSuite,
  keyBlockLength,
  splitKeyBlock,
} from '../../src/protect/index.js';
import { AtlsError } from '../../src/errors.js';

describe('protect: exporter label and cipher suites', () => {
  it('uses the label of draft §7.1', () => {
    assert.equal(EXPORTER_LABEL, 'application-layer-tls');
  });

  const table: [string, string, number, number][] = [
    // TLS 1.3 (RFC 8446 §B.4)
    ['TLS_AES_128_GCM_SHA256', 'aes-128-gcm', 16, 16],
    ['TLS_AES_256_GCM_SHA384', 'aes-256-gcm', 32, 16],
    ['TLS_CHACHA20_POLY1305_SHA256', 'chacha20-poly1305', 32, 16],
    ['TLS_AES_128_CCM_SHA256', 'aes-128-ccm', 16, 16],
    ['TLS_AES_128_CCM_8_SHA256', 'aes-128-ccm', 16, 8],
    // TLS 1.2
    ['TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'aes-128-gcm', 16, 16],
    ['TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'aes-256-gcm', 32, 16],
    ['TLS_PSK_WITH_AES_256_GCM_SHA384', 'aes-256-gcm', 32, 16],
    ['TLS_DHE_RSA_WITH_AES_128_GCM_SHA256', 'aes-128-gcm', 16, 16],
    ['TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256', 'chacha20-poly1305', 32, 16],
    ['TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'chacha20-poly1305', 32, 16],
    ['TLS_ECDHE_ECDSA_WITH_AES_128_CCM', 'aes-128-ccm', 16, 16],
    ['TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', 'aes-128-ccm', 16, 8],
    ['TLS_PSK_WITH_AES_128_CCM', 'aes-128-ccm', 16, 16],
    ['TLS_PSK_WITH_AES_128_CCM_8', 'aes-128-ccm', 16, 8],
    ['TLS_PSK_DHE_WITH_AES_128_CCM_8', 'aes-128-ccm', 16, 8],
    ['TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256', 'aes-128-ccm', 16, 8],
    ['TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256', 'aes-128-gcm', 16, 16],
    ['TLS_RSA_WITH_AES_256_CCM', 'aes-256-ccm', 32, 16],
    ['TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8', 'aes-256-ccm', 32, 8],
  ];
  for (const [suite, algorithm, keyLength, tagLength] of table) {
    it(`maps ${suite}`, () => {
      const spec = aeadForSuite(suite);
      assert.equal(spec.iana, suite);
      assert.equal(spec.algorithm, algorithm);
      assert.equal(spec.keyLength, keyLength);
      assert.equal(spec.ivLength, 12);
      assert.equal(spec.tagLength, tagLength);
      assert.equal(keyBlockLength(spec), 2 * keyLength + 24);
      assert.ok(Object.isFrozen(spec));
    });
  }

  it('has the usage limits of RFC 8446 §5.5 and RFC 9147 §4.5.3', () => {
    const gcm = aeadForSuite('TLS_AES_128_GCM_SHA256');
    assert.equal(gcm.confidentialityLimit, Math.floor(2 ** 24.5));
    assert.equal(gcm.integrityLimit, 2 ** 36);
    const chacha = aeadForSuite('TLS_CHACHA20_POLY1305_SHA256');
    assert.equal(chacha.confidentialityLimit, Infinity);
    assert.equal(chacha.integrityLimit, 2 ** 36);
    const ccm = aeadForSuite('TLS_AES_128_CCM_SHA256');
    assert.equal(ccm.confidentialityLimit, 2 ** 23);
    assert.equal(ccm.integrityLimit, Math.floor(2 ** 23.5));
    assert.equal(ccm.maxPlaintextLength, 2 ** 24 - 1);
    assert.equal(aeadForSuite('TLS_AES_128_CCM_8_SHA256').integrityLimit, 2 ** 7);
  });

  for (const suite of [
    'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
    'TLS_RSA_WITH_AES_256_CBC_SHA',
    'TLS_PSK_WITH_AES_128_CBC_SHA256',
    'TLS_RSA_WITH_NULL_SHA256',
    'TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256',
    'TLS_ECDHE_RSA_WITH_CAMELLIA_128_GCM_SHA256',
    'TLS_SM4_GCM_SM3',
    'TLS_SHA256_SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    '',
    'TLS_' + 'A_'.repeat(5000) + 'WITH_AES_128_GCM_SHA256',
  ]) {
    it(`refuses ${suite.slice(0, 48) || '(empty)'} with UNSUPPORTED`, () => {
      assert.throws(() => aeadForSuite(suite), (e: unknown) => {
        assert.ok(e instanceof AtlsError);
        assert.equal(e.code, 'UNSUPPORTED');
        assert.equal(e.source, 'local');
        return true;
      });
    });
  }

  it('splits a key block in RFC 5246 §6.3 order and copies it', () => {
    const spec = aeadForSuite('TLS_AES_256_GCM_SHA384');
    const block = Uint8Array.from({ length: 88 }, (_, i) => i);
    const kb = splitKeyBlock(block, spec);
    assert.deepEqual([...kb.clientWriteKey], [...block.subarray(0, 32)]);
    assert.deepEqual([...kb.serverWriteKey], [...block.subarray(32, 64)]);
    assert.deepEqual([...kb.clientWriteIv], [...block.subarray(64, 76)]);
    assert.deepEqual([...kb.serverWriteIv], [...block.subarray(76, 88)]);
    block.fill(0);
    assert.equal(kb.serverWriteIv[11], 87, 'the split survives zeroing the block');
  });

  it('refuses a key block of the wrong length', () => {
    const spec = aeadForSuite('TLS_AES_128_GCM_SHA256');
    for (const n of [0, 55, 57, 88]) {
      assert.throws(() => splitKeyBlock(new Uint8Array(n), spec), { code: 'INVALID_ARGUMENT' });
    }
  });
});
