/**
 * QUIC variable-length integers (RFC 9000 §16), the only integer encoding of
 * Binary HTTP (RFC 9292 §3). The two high bits of the first byte give the
 * length (1, 2, 4 or 8 bytes); the rest is the big-endian value.
 *
 * @example
 * ```ts
 * const out = new Uint8Array(varintLength(300));
 * writeVarint(out, 0, 300); // 41 2c
 * readVarint(new ByteReader(out, 'MALFORMED_MESSAGE')); // 300
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { ByteReader } from '../bytes.js';

/** The largest value a varint can carry, 2^62 - 1 (RFC 9000 §16). */
export const MAX_VARINT = 2 ** 62 - 1;

/**
 * Reads one varint. Non-minimal encodings are accepted (RFC 9292 §3: "Integer
 * values do not need to be encoded on the minimum number of bytes necessary").
 * Values above 2^53 come back rounded, which is harmless: every caller compares
 * them with limits far below that.
 */
export function readVarint(r: ByteReader, field = 'varint'): number {
  const first = r.u8(field);
  const len = 1 << (first >> 6); // RFC 9000 §16: 2-bit length prefix
  let v = first & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + r.u8(field);
  return v;
}

/** Bytes needed for the shortest encoding of `v`. */
export function varintLength(v: number): 1 | 2 | 4 | 8 {
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  return 8;
}

/**
 * Writes the shortest encoding of `v` into `out` at `pos`; returns the new position.
 * Throws INVALID_ARGUMENT for negative, fractional or unsafe values.
 */
export function writeVarint(out: Uint8Array, pos: number, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new AtlsError('INVALID_ARGUMENT', `varint value ${v} is not a non-negative safe integer`);
  }
  const len = varintLength(v);
  if (len === 1) {
    out[pos] = v;
    return pos + 1;
  }
  if (len === 2) {
    out[pos] = 0x40 | (v >>> 8);
    out[pos + 1] = v & 0xff;
    return pos + 2;
  }
  if (len === 4) {
    out[pos] = 0x80 | (v >>> 24);
    out[pos + 1] = (v >>> 16) & 0xff;
    out[pos + 2] = (v >>> 8) & 0xff;
    out[pos + 3] = v & 0xff;
    return pos + 4;
  }
  // 8 bytes: split into two 32-bit halves; safe integers stay below 2^53 < 2^62.
  const hi = Math.floor(v / 2 ** 32);
  const lo = v >>> 0;
  out[pos] = 0xc0 | (hi >>> 24);
  out[pos + 1] = (hi >>> 16) & 0xff;
  out[pos + 2] = (hi >>> 8) & 0xff;
  out[pos + 3] = hi & 0xff;
  out[pos + 4] = lo >>> 24;
  out[pos + 5] = (lo >>> 16) & 0xff;
  out[pos + 6] = (lo >>> 8) & 0xff;
  out[pos + 7] = lo & 0xff;
  return pos + 8;
}
