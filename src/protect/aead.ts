/**
 * AEAD encryption and decryption for the algorithms of {@link AeadSpec}:
 * one-shot with `node:crypto` (a new cipher object per message), or, when the
 * native addon is built, an OpenSSL context kept per key and direction
 * ({@link nativeAeadFor}, about 4x cheaper per small message). Internal to
 * the protect module: callers never choose nonces; {@link ProtectedChannel} does.
 * @module
 */
import { createCipheriv, createDecipheriv, type CipherGCMTypes } from 'node:crypto';
import { AtlsError } from '../errors.js';
import { nativeAead, type NativeAead } from '../engines/openssl.js';
import type { AeadSpec } from './suites.js';

export type { NativeAead } from '../engines/openssl.js';

/**
 * The native AEAD for one key and direction, or `null` when the addon is
 * missing (callers then use {@link aeadSealInto} / {@link aeadOpen}).
 */
export function nativeAeadFor(spec: AeadSpec, key: Uint8Array, encrypt: boolean, iv?: Uint8Array): NativeAead | null {
  return nativeAead(spec.algorithm, key, spec.tagLength, encrypt, iv) ?? null;
}

/**
 * Seals protected message `message` (header || plaintext || tag) in place through a context made with an IV:
 * the header is the AAD, the nonce is the IV XOR `hi`:`lo`; `plaintext`, when given, is copied in first.
 */
export function nativeSealAt(aead: NativeAead, spec: AeadSpec, hi: number, lo: number, message: Uint8Array, headerLength: number, plaintext?: Uint8Array): void {
  try {
    aead.sealAt(hi, lo, message, headerLength, plaintext);
  } catch (e) {
    throw new AtlsError('INTERNAL', `${spec.name} encryption failed`, { cause: e });
  }
}

/** Opens `message` (header || ciphertext || tag) through a context made with an IV; undefined when the tag does not verify. */
export function nativeOpenAt(aead: NativeAead, spec: AeadSpec, hi: number, lo: number, message: Uint8Array, headerLength: number, ctLength: number): Buffer | undefined {
  // Unpooled: the caller may hand pt.buffer on without exposing other data.
  const pt = Buffer.allocUnsafeSlow(ctLength);
  let ok: boolean;
  try {
    ok = aead.openAt(hi, lo, message, headerLength, pt);
  } catch (e) {
    pt.fill(0);
    throw new AtlsError('INTERNAL', `${spec.name} decryption failed`, { cause: e });
  }
  return ok ? pt : undefined; // on failure the addon has already zeroed pt
}

// GCM, CCM and ChaCha20-Poly1305 ciphers share one API in node:crypto (setAAD
// with an optional plaintext length, getAuthTag/setAuthTag); the GCM typing
// stands for all three of AeadSpec's algorithms below.

/** {@link aeadSealInto} through a native context made by {@link nativeAeadFor}(…, true). */
export function nativeSealInto(
  aead: NativeAead,
  spec: AeadSpec,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  at: number,
): void {
  try {
    aead.seal(nonce, aad, plaintext, out, at);
  } catch (e) {
    throw new AtlsError('INTERNAL', `${spec.name} encryption failed`, { cause: e });
  }
}

/** {@link aeadOpen} through a native context made by {@link nativeAeadFor}(…, false). */
export function nativeOpen(
  aead: NativeAead,
  spec: AeadSpec,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): Buffer | undefined {
  // Unpooled: the caller may hand pt.buffer on without exposing other data.
  const pt = Buffer.allocUnsafeSlow(ciphertext.length);
  let ok: boolean;
  try {
    ok = aead.open(nonce, aad, ciphertext, pt, 0, tag);
  } catch (e) {
    pt.fill(0);
    throw new AtlsError('INTERNAL', `${spec.name} decryption failed`, { cause: e });
  }
  return ok ? pt : undefined; // on failure the addon has already zeroed pt
}

/**
 * Encrypts `plaintext` into `out` at `at`, followed by the tag.
 * `out` must have room for plaintext.length + spec.tagLength bytes there.
 */
export function aeadSealInto(
  spec: AeadSpec,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  plaintext: Uint8Array,
  out: Uint8Array,
  at: number,
): void {
  try {
    const c = createCipheriv(spec.algorithm as CipherGCMTypes, key, nonce, { authTagLength: spec.tagLength });
    c.setAAD(aad, { plaintextLength: plaintext.length }); // CCM needs the length up front (RFC 3610 §2.2)
    const ct = c.update(plaintext);
    const fin = c.final();
    const tag = c.getAuthTag();
    out.set(ct, at);
    if (fin.length) out.set(fin, at + ct.length);
    out.set(tag, at + plaintext.length);
  } catch (e) {
    throw new AtlsError('INTERNAL', `${spec.name} encryption failed`, { cause: e });
  }
}

/**
 * Decrypts and authenticates; returns the plaintext, or `undefined` when
 * the tag does not verify (any failure inside the AEAD counts as that).
 */
export function aeadOpen(
  spec: AeadSpec,
  key: Uint8Array,
  nonce: Uint8Array,
  aad: Uint8Array,
  ciphertext: Uint8Array,
  tag: Uint8Array,
): Buffer | undefined {
  let pt: Buffer | undefined;
  try {
    const d = createDecipheriv(spec.algorithm as CipherGCMTypes, key, nonce, { authTagLength: spec.tagLength });
    d.setAuthTag(tag);
    d.setAAD(aad, { plaintextLength: ciphertext.length });
    pt = d.update(ciphertext);
    const fin = d.final(); // throws when the tag does not verify
    return fin.length ? Buffer.concat([pt, fin]) : pt;
  } catch {
    pt?.fill(0); // GCM releases plaintext before the tag is checked; do not leave it around
    return undefined;
  }
}
