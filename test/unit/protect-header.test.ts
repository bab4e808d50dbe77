import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeHeader, nonceFor, parseHeader } from '../../src/protect/index.js';
import { fromHex, toHex } from '../../src/bytes.js';

describe('protect: header and nonce', () => {
  const cases: [bigint, string][] = [
    [0n, '2000'],
    [1n, '2001'],
    [255n, '20ff'],
    [256n, '210100'],
    [65535n, '21ffff'],
    [65536n, '22010000'],
    [2n ** 32n - 1n, '23ffffffff'],
    [2n ** 32n, '240100000000'],
    [2n ** 53n - 1n, '261fffffffffffff'],
    [2n ** 53n, '2620000000000000'],
    [2n ** 56n, '270100000000000000'],
    [2n ** 64n - 1n, '27ffffffffffffffff'],
  ];
  for (const [seq, hex] of cases) {
    it(`encodes and parses seq ${seq}`, () => {
      assert.equal(toHex(encodeHeader(seq)), hex);
      if (seq <= BigInt(Number.MAX_SAFE_INTEGER)) assert.equal(toHex(encodeHeader(Number(seq))), hex);
      const h = parseHeader(fromHex(hex + 'aabbcc'));
      assert.equal(h.seq, seq);
      assert.equal(h.version, 1);
      assert.equal(h.headerLength, hex.length / 2);
      assert.equal(h.seqLength, hex.length / 2 - 1);
    });
  }

  it('keeps the overhead at tag + 3 for seq < 2^16', () => {
    assert.equal(encodeHeader(65535).length, 3);
  });

  it('refuses sequence numbers outside 0..2^64-1', () => {
    for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1, NaN, -1n, 2n ** 64n]) {
      assert.throws(() => encodeHeader(bad), { code: 'INVALID_ARGUMENT' });
    }
  });

  const malformed: [string, string][] = [
    ['', 'empty'],
    ['00', 'version 0'],
    ['4000', 'version 2'],
    ['e000', 'version 7'],
    ['2800', 'reserved bit 3'],
    ['3000', 'reserved bit 4'],
    ['2100', 'truncated seq'],
    ['27ffffffffffffff', 'truncated 8-byte seq'],
    ['210001', 'non-minimal 2-byte seq'],
    ['2100ff', 'non-minimal 2-byte seq'],
    ['27000000000000ffff', 'non-minimal 8-byte seq'],
    ['2200ffff', 'non-minimal 3-byte seq'],
  ];
  for (const [hex, what] of malformed) {
    it(`rejects ${what} (${hex || 'no bytes'}) as MALFORMED_MESSAGE`, () => {
      assert.throws(() => parseHeader(fromHex(hex)), { code: 'MALFORMED_MESSAGE', source: 'remote' });
    });
  }

  it('has exactly one encoding per sequence number', () => {
    // Every 2- and 3-byte header either parses to a number whose encoding is itself, or is refused.
    for (let f = 0; f < 256; f++) {
      for (const rest of ['00', '01', 'ff', '0000', '0001', '0100', 'ffff', '000000', '010000']) {
        const bytes = fromHex(f.toString(16).padStart(2, '0') + rest);
        let seq: bigint;
        try {
          seq = parseHeader(bytes).seq;
        } catch {
          continue;
        }
        const h = encodeHeader(seq);
        assert.equal(toHex(bytes.subarray(0, h.length)), toHex(h));
      }
    }
  });

  it('XORs the sequence number into the last 8 bytes of the IV (RFC 8446 §5.3)', () => {
    const iv = fromHex('202122232425262728292a2b');
    assert.equal(toHex(nonceFor(iv, 0)), '202122232425262728292a2b');
    assert.equal(toHex(nonceFor(iv, 1)), '202122232425262728292a2a');
    assert.equal(toHex(nonceFor(iv, 256)), '202122232425262728292b2b');
    assert.equal(toHex(nonceFor(iv, 2n ** 32n)), '202122232425262628292a2b');
    assert.equal(toHex(nonceFor(iv, 2n ** 64n - 1n)), '20212223dbdad9d8d7d6d5d4');
    assert.equal(toHex(nonceFor(iv, 2 ** 53 - 1)), '20212223243ad9d8d7d6d5d4');
    assert.throws(() => nonceFor(new Uint8Array(11), 0), { code: 'INVALID_ARGUMENT' });
  });
});
