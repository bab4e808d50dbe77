/**
 * Wrapping of session records at rest with a key-encryption key
 * (`atls serve --store-key FILE`): AES-256-GCM under a 32-byte key, a fresh
 * random 96-bit nonce per record, and the session id as additional data, so
 * a record moved to another session's key in the store does not open there.
 *
 * Wrapped record = version (1 byte, 1) || nonce (12) || ciphertext || tag (16).
 *
 * Without a key-encryption key, whoever can read the store (a Redis replica,
 * an RDB dump, `MONITOR`) reads every session's traffic keys. With one, they
 * read only counters and expiry times. It does not protect against whoever
 * can WRITE the store: rolling a send counter back would make the server
 * reuse nonces (docs/decisions.md, "Session stores").
 *
 * @example
 * ```ts
 * const kek = StoreKey.fromFile('store.key');         // 32 bytes, raw or 64 hex digits
 * const blob = kek.wrap('a.q2x...Q', record);
 * kek.unwrap('a.q2x...Q', blob);                      // the record
 * kek.unwrap('b.zzz...A', blob);                      // throws INTERNAL
 * ```
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AtlsError } from '../errors.js';

const VERSION = 1;
const KEY_LENGTH = 32;
const NONCE_LENGTH = 12;
const TAG_LENGTH = 16;
const OVERHEAD = 1 + NONCE_LENGTH + TAG_LENGTH;

/**
 * Reads a key file of `length` bytes: either exactly that many raw bytes, or
 * 2 x `length` hex digits (surrounding whitespace allowed), so that both
 * `head -c 32 /dev/urandom > f` and `openssl rand -hex 32 > f` make one.
 */
export function readKeyFile(path: string, length: number, flag: string): Uint8Array {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (raw.length === length) return new Uint8Array(raw);
  const text = raw.toString('latin1').trim();
  if (text.length === 2 * length && /^[0-9a-fA-F]+$/.test(text)) return new Uint8Array(Buffer.from(text, 'hex'));
  throw new AtlsError('INVALID_ARGUMENT', `${flag} ${path}: want ${length} bytes, or ${2 * length} hex digits`);
}

/** A key-encryption key for session records (see the module comment). */
export class StoreKey {
  private readonly key: Buffer;

  constructor(key: Uint8Array) {
    if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
      throw new AtlsError('INVALID_ARGUMENT', `a store key is ${KEY_LENGTH} bytes`);
    }
    this.key = Buffer.from(key);
  }

  /** The key in `path` (32 raw bytes or 64 hex digits). */
  static fromFile(path: string): StoreKey {
    return new StoreKey(readKeyFile(path, KEY_LENGTH, '--store-key'));
  }

  /** Seals `record` for session `id`. */
  wrap(id: string, record: Uint8Array): Uint8Array {
    // Random nonces: at most 2^32 records per key (NIST SP 800-38D §8.3), one per established session.
    const nonce = randomBytes(NONCE_LENGTH);
    const c = createCipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_LENGTH });
    c.setAAD(Buffer.from(id, 'utf8'));
    const body = c.update(record);
    c.final();
    const out = new Uint8Array(OVERHEAD + body.length);
    out[0] = VERSION;
    out.set(nonce, 1);
    out.set(body, 1 + NONCE_LENGTH);
    out.set(c.getAuthTag(), 1 + NONCE_LENGTH + body.length);
    return out;
  }

  /**
   * Opens a record sealed by {@link wrap} for the same `id`. A record that
   * does not open (another key, another session's record, altered bytes) is
   * a fault of this deployment, not of the peer: AtlsError INTERNAL.
   */
  unwrap(id: string, blob: Uint8Array): Uint8Array {
    if (blob.length < OVERHEAD || blob[0] !== VERSION) {
      throw new AtlsError('INTERNAL', `session record of ${id} is not wrapped with a store key (was it written without --store-key?)`);
    }
    const nonce = blob.subarray(1, 1 + NONCE_LENGTH);
    const body = blob.subarray(1 + NONCE_LENGTH, blob.length - TAG_LENGTH);
    const d = createDecipheriv('aes-256-gcm', this.key, nonce, { authTagLength: TAG_LENGTH });
    d.setAAD(Buffer.from(id, 'utf8'));
    d.setAuthTag(blob.subarray(blob.length - TAG_LENGTH));
    const out = d.update(body);
    try {
      d.final();
    } catch {
      out.fill(0);
      throw new AtlsError('INTERNAL', `session record of ${id} does not open with this store key (another key, or another session's record)`);
    }
    return new Uint8Array(out);
  }
}
