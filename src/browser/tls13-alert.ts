/**
 * The browser build's stand-in for `src/engines/tls13-alert.ts`
 * (scripts/build-browser.mjs): the record guard (src/session/record-guard.ts)
 * takes HKDF-Expand-Label and the TLS 1.2 PRF from it, here on the webcrypto engine's
 * @noble/hashes. A page never guards records (it is a client, and its engine
 * keeps no peer traffic secret), but the session module that holds the guard
 * is shared with Node.
 * @module
 */
import { SHA256, SHA384, expandLabel as expandWithContext } from '../engines/webcrypto/key-schedule.js';
import { concatBytes } from '../bytes.js';

const EMPTY = new Uint8Array(0);

/** RFC 8446 §7.1 HKDF-Expand-Label with an empty context, as the Node module's. */
export function expandLabel(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, length: number): Uint8Array {
  return expandWithContext(hash === 'sha256' ? SHA256 : SHA384, secret, label, EMPTY, length);
}

/** RFC 5246 §5 PRF (P_hash), as the Node module's. */
export function tls12Prf(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, seed: Uint8Array, length: number): Uint8Array {
  const h = hash === 'sha256' ? SHA256 : SHA384;
  const labelSeed = concatBytes([new TextEncoder().encode(label), seed]);
  const out = new Uint8Array(length);
  let a = labelSeed;
  for (let have = 0; have < length; ) {
    a = h.hmac(secret, a);
    const block = h.hmac(secret, concatBytes([a, labelSeed]));
    out.set(block.subarray(0, length - have), have);
    have += block.length;
  }
  return out;
}
