/**
 * The exported key block and its split (draft §7.3: export "the exact number
 * of bytes required to generate the necessary client and server cipher suite
 * encryption key and IV values"; order as RFC 5246 §6.3).
 * @module
 */
import { AtlsError } from '../errors.js';
import type { AeadSpec } from './suites.js';

/** The four values carved out of an exported key block. */
export interface KeyBlock {
  clientWriteKey: Uint8Array;
  serverWriteKey: Uint8Array;
  clientWriteIv: Uint8Array;
  serverWriteIv: Uint8Array;
}

/**
 * Bytes to export for an AEAD: 2 x key length + 2 x IV length
 * (56 for AES-128, 88 for AES-256 and ChaCha20-Poly1305).
 *
 * @example
 * ```ts
 * keyBlockLength(aeadForSuite('TLS_AES_128_GCM_SHA256')); // 56
 * ```
 */
export function keyBlockLength(spec: AeadSpec): number {
  return 2 * spec.keyLength + 2 * spec.ivLength;
}

/**
 * Splits an exported key block into
 * client_write_key | server_write_key | client_write_IV | server_write_IV
 * (RFC 5246 §6.3 order, MAC keys omitted as for AEAD suites). Returns
 * copies, so the caller may zero `block` afterwards. Throws
 * INVALID_ARGUMENT when `block` has the wrong length.
 *
 * @example
 * ```ts
 * const { clientWriteKey } = splitKeyBlock(block, spec);
 * ```
 */
export function splitKeyBlock(block: Uint8Array, spec: AeadSpec): KeyBlock {
  const want = keyBlockLength(spec);
  if (!(block instanceof Uint8Array) || block.length !== want) {
    const got = block instanceof Uint8Array ? `${block.length} bytes` : typeof block;
    throw new AtlsError('INVALID_ARGUMENT', `${spec.name} needs a key block of ${want} bytes, got ${got}`);
  }
  const k = spec.keyLength;
  const v = spec.ivLength;
  return {
    clientWriteKey: block.slice(0, k),
    serverWriteKey: block.slice(k, 2 * k),
    clientWriteIv: block.slice(2 * k, 2 * k + v),
    serverWriteIv: block.slice(2 * k + v, 2 * k + 2 * v),
  };
}
