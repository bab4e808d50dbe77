/**
 * The browser build's AEAD (scripts/build-browser.mjs puts it in place of
 * aead.ts): the same functions on @noble/ciphers (audited, synchronous), so
 * that {@link ProtectedChannel} stays synchronous. Web Crypto's AES-GCM
 * would make every seal and open asynchronous, and it has no ChaCha20.
 * AES-CCM, which no suite of the webcrypto engine negotiates, is refused.
 * @module
 */
import { gcm } from '@noble/ciphers/aes.js';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AtlsError } from '../errors.js';
import type { AeadSpec } from './suites.js';

/** No native contexts in a browser. */
export type NativeAead = never;

export function nativeAeadFor(): NativeAead | null {
  return null;
}

export function nativeSealInto(): void {
  throw new AtlsError('INTERNAL', 'no native AEAD in the browser build');
}

export function nativeOpen(): Uint8Array | undefined {
  throw new AtlsError('INTERNAL', 'no native AEAD in the browser build');
}

export function nativeSealAt(): void {
  throw new AtlsError('INTERNAL', 'no native AEAD in the browser build');
}

export function nativeOpenAt(): Uint8Array | undefined {
  throw new AtlsError('INTERNAL', 'no native AEAD in the browser build');
}

function cipher(spec: AeadSpec, key: Uint8Array, nonce: Uint8Array, aad: Uint8Array): ReturnType<typeof gcm> {
  if (spec.algorithm === 'chacha20-poly1305') return chacha20poly1305(key, nonce, aad);
  if (spec.algorithm === 'aes-128-gcm' || spec.algorithm === 'aes-256-gcm') return gcm(key, nonce, aad);
  throw new AtlsError('UNSUPPORTED', `${spec.name} is not in the browser build`);
}

/** As aead.ts: ciphertext then tag into `out` at `at`. */
export function aeadSealInto(
  spec: AeadSpec,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  at: number,
): void {
  let sealed: Uint8Array;
  try {
    sealed = cipher(spec, key, Uint8Array.from(nonce), aad).encrypt(plaintext);
  } catch (e) {
    throw e instanceof AtlsError ? e : new AtlsError('INTERNAL', `${spec.name} encryption failed`, { cause: e });
  }
  out.set(sealed, at);
}

/** As aead.ts: the plaintext, or undefined when the tag does not verify. */
export function aeadOpen(
  spec: AeadSpec,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): Uint8Array | undefined {
  const sealed = new Uint8Array(ciphertext.length + tag.length);
  sealed.set(ciphertext);
  sealed.set(tag, ciphertext.length);
  try {
    return cipher(spec, key, Uint8Array.from(nonce), aad).decrypt(sealed);
  } catch {
    return undefined;
  }
}
