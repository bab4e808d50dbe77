/**
 * Per-message nonces: the 12-byte IV XOR the 64-bit sequence number,
 * left-padded with zeros to 12 bytes (RFC 8446 §5.3).
 * @module
 */
import { AtlsError } from '../errors.js';
import { IV_LENGTH } from './constants.js';
import { toSeqParts } from './seq.js';

/** Writes IV XOR (hi, lo) into `out[0..12]`. */
function xorInto(out: Uint8Array, iv: Uint8Array, hi: number, lo: number): void {
  // RFC 8446 §5.3: the sequence number, big-endian, occupies the last 8 bytes.
  out[0] = iv[0]!;
  out[1] = iv[1]!;
  out[2] = iv[2]!;
  out[3] = iv[3]!;
  out[4] = iv[4]! ^ (hi >>> 24);
  out[5] = iv[5]! ^ ((hi >>> 16) & 0xff);
  out[6] = iv[6]! ^ ((hi >>> 8) & 0xff);
  out[7] = iv[7]! ^ (hi & 0xff);
  out[8] = iv[8]! ^ (lo >>> 24);
  out[9] = iv[9]! ^ ((lo >>> 16) & 0xff);
  out[10] = iv[10]! ^ ((lo >>> 8) & 0xff);
  out[11] = iv[11]! ^ (lo & 0xff);
}

/**
 * The nonce for one message: `iv` XOR the sequence number (RFC 8446 §5.3).
 *
 * @example
 * ```ts
 * nonceFor(new Uint8Array(12), 1); // 00..00 01
 * ```
 */
export function nonceFor(iv: Uint8Array, seq: number | bigint): Uint8Array {
  if (!(iv instanceof Uint8Array) || iv.length !== IV_LENGTH) {
    throw new AtlsError('INVALID_ARGUMENT', `IV must be ${IV_LENGTH} bytes`);
  }
  const { hi, lo } = toSeqParts(seq);
  const out = new Uint8Array(IV_LENGTH);
  xorInto(out, iv, hi, lo);
  return out;
}

/**
 * Builds nonces for one direction into a single reused buffer. The buffer is
 * only valid until the next call; `node:crypto` copies it when a cipher is
 * created, so that is enough.
 */
export class NonceBuilder {
  private readonly iv: Buffer;
  private readonly nonce: Buffer;

  /**
   * `storage` (2 x 12 bytes, optional) holds the IV copy and the nonce, so a
   * channel can keep all its secrets in one allocation of its own: small
   * `Buffer.from` copies come from Node's shared 8 KiB pool, and one live
   * copy keeps a whole pool slab alive (about 600 B per idle session).
   */
  constructor(iv: Uint8Array, storage?: Buffer) {
    if (iv.length !== IV_LENGTH) throw new AtlsError('INVALID_ARGUMENT', `IV must be ${IV_LENGTH} bytes`);
    if (storage !== undefined && storage.length !== 2 * IV_LENGTH) {
      throw new AtlsError('INVALID_ARGUMENT', `nonce storage must be ${2 * IV_LENGTH} bytes`);
    }
    const mem = storage ?? Buffer.alloc(2 * IV_LENGTH);
    this.iv = mem.subarray(0, IV_LENGTH); // own copy, wiped by wipe()
    this.iv.set(iv);
    this.nonce = mem.subarray(IV_LENGTH);
  }

  /** The nonce for sequence number (hi, lo), in the shared buffer. */
  at(hi: number, lo: number): Buffer {
    xorInto(this.nonce, this.iv, hi, lo);
    return this.nonce;
  }

  /** Zeroes the IV and the last nonce. */
  wipe(): void {
    this.iv.fill(0);
    this.nonce.fill(0);
  }
}
