/**
 * The browser build's stand-in for `src/engines/tls13-alert.ts`
 * (scripts/build-browser.mjs): the record guard (src/session/record-guard.ts)
 * takes HKDF-Expand-Label from it, here the webcrypto engine's on
 * @noble/hashes. A page never guards records (it is a client, and its engine
 * keeps no peer traffic secret), but the session module that holds the guard
 * is shared with Node.
 * @module
 */
import { SHA256, SHA384, expandLabel as expandWithContext } from '../engines/webcrypto/key-schedule.js';

const EMPTY = new Uint8Array(0);

/** RFC 8446 §7.1 HKDF-Expand-Label with an empty context, as the Node module's. */
export function expandLabel(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, length: number): Uint8Array {
  return expandWithContext(hash === 'sha256' ? SHA256 : SHA384, secret, label, EMPTY, length);
}
