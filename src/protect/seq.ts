/**
 * 64-bit sequence numbers as two unsigned 32-bit halves. The hot path never
 * touches BigInt: a half fits a JS number exactly, increments are cheap, and
 * the nonce and header are written byte by byte from the halves.
 * @module
 */
import { AtlsError } from '../errors.js';
import { MAX_SEQUENCE } from './constants.js';

const TWO32 = 0x1_0000_0000;

/** A sequence number split into its high and low 32-bit halves. */
export interface SeqParts {
  hi: number;
  lo: number;
}

/**
 * Splits a sequence number given as a non-negative safe integer or a bigint
 * below 2^64. Anything else throws `INVALID_ARGUMENT`.
 *
 * @example
 * ```ts
 * toSeqParts(2n ** 32n); // { hi: 1, lo: 0 }
 * ```
 */
export function toSeqParts(seq: number | bigint): SeqParts {
  if (typeof seq === 'number') {
    if (!Number.isSafeInteger(seq) || seq < 0) {
      throw new AtlsError('INVALID_ARGUMENT', `sequence number ${seq} is not a non-negative safe integer`);
    }
    return { hi: Math.floor(seq / TWO32), lo: seq % TWO32 };
  }
  if (typeof seq !== 'bigint' || seq < 0n || seq > MAX_SEQUENCE) {
    throw new AtlsError('INVALID_ARGUMENT', `sequence number ${String(seq)} is outside 0..2^64-1`);
  }
  return { hi: Number(seq >> 32n), lo: Number(seq & 0xffff_ffffn) };
}

/** Joins the halves back into a bigint. */
export function fromSeqParts(hi: number, lo: number): bigint {
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** Number of bytes in the minimal big-endian encoding (1..8; 0 takes one byte). */
export function seqByteLength(hi: number, lo: number): number {
  if (hi === 0) return lo < 0x100 ? 1 : lo < 0x1_0000 ? 2 : lo < 0x100_0000 ? 3 : 4;
  return hi < 0x100 ? 5 : hi < 0x1_0000 ? 6 : hi < 0x100_0000 ? 7 : 8;
}

/**
 * `a - b` for two sequence numbers as a JS number. Exact while the distance
 * is below 2^53; beyond that it is rounded but stays far beyond any replay
 * window, which is all its callers compare it with.
 */
export function seqDistance(aHi: number, aLo: number, bHi: number, bLo: number): number {
  return (aHi - bHi) * TWO32 + (aLo - bLo);
}
