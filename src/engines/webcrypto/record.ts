/**
 * TLS 1.3 record protection (RFC 8446 §5.2-5.3) on Web Crypto AES-GCM, and
 * on @noble/ciphers for ChaCha20-Poly1305, which Web Crypto lacks.
 *
 * @example
 * ```ts
 * const key = await RecordKey.create(SUITES.get(0x1301)!, trafficSecret);
 * const record = await key.seal(CONTENT_APPLICATION_DATA, data);
 * const { type, content } = await key.open(record.subarray(0, 5), record.subarray(5));
 * ```
 * @module
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AlertDescription, AtlsError } from '../../errors.js';
import { ContentType, MAX_RECORD_FRAGMENT } from '../../records.js';
import type { CryptoKey } from './crypto.js';
import { SHA256, SHA384, trafficKeys, type SuiteHash } from './key-schedule.js';

/** RFC 8446 §5.1 content types (the one table in records.ts). */
export const CONTENT_CHANGE_CIPHER_SPEC = ContentType.change_cipher_spec;
export const CONTENT_ALERT = ContentType.alert;
export const CONTENT_HANDSHAKE = ContentType.handshake;
export const CONTENT_APPLICATION_DATA = ContentType.application_data;

/** RFC 8446 §5.1: TLSPlaintext.length <= 2^14. */
export const MAX_PLAINTEXT = 2 ** 14;
/** RFC 8446 §5.2: TLSCiphertext.length <= 2^14 + 256. */
export const MAX_CIPHERTEXT = MAX_RECORD_FRAGMENT;
const TAG = 16;

/** A TLS 1.3 cipher suite this engine implements (RFC 8446 §B.4). */
export interface Tls13Suite {
  readonly code: number;
  readonly name: string;
  readonly hash: SuiteHash;
  readonly keyLength: number;
  readonly aead: 'AES-GCM' | 'ChaCha20-Poly1305';
}

export const SUITES: ReadonlyMap<number, Tls13Suite> = new Map(
  (
    [
      { code: 0x1301, name: 'TLS_AES_128_GCM_SHA256', hash: SHA256, keyLength: 16, aead: 'AES-GCM' },
      { code: 0x1302, name: 'TLS_AES_256_GCM_SHA384', hash: SHA384, keyLength: 32, aead: 'AES-GCM' },
      { code: 0x1303, name: 'TLS_CHACHA20_POLY1305_SHA256', hash: SHA256, keyLength: 32, aead: 'ChaCha20-Poly1305' },
    ] as const
  ).map((s) => [s.code, s]),
);

function badMac(): AtlsError {
  return new AtlsError('BAD_RECORD_MAC', 'record failed authentication', { source: 'remote', alert: AlertDescription.bad_record_mac });
}

/** Seals or opens records under one traffic secret, counting its sequence number. */
export class RecordKey {
  private seq = 0n;

  private constructor(
    private readonly suite: Tls13Suite,
    private readonly iv: Uint8Array,
    private readonly aesKey: CryptoKey | undefined,
    private readonly rawKey: Uint8Array | undefined,
  ) {}

  static async create(suite: Tls13Suite, secret: Uint8Array): Promise<RecordKey> {
    const { key, iv } = trafficKeys(suite.hash, secret, suite.keyLength);
    if (suite.aead === 'ChaCha20-Poly1305') return new RecordKey(suite, iv, undefined, key);
    const aesKey = await globalThis.crypto.subtle.importKey('raw', key, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    key.fill(0);
    return new RecordKey(suite, iv, aesKey, undefined);
  }

  /** §5.3: the 64-bit sequence number, left-padded, XORed into the IV. */
  private nonce(): Uint8Array {
    const nonce = Uint8Array.from(this.iv);
    let seq = this.seq;
    for (let i = 11; i >= 4; i--) {
      nonce[i]! ^= Number(seq & 0xffn);
      seq >>= 8n;
    }
    this.seq++;
    return nonce;
  }

  private async aead(encrypt: boolean, nonce: Uint8Array, aad: Uint8Array, data: Uint8Array): Promise<Uint8Array> {
    if (this.rawKey) {
      const c = chacha20poly1305(this.rawKey, nonce, aad);
      return encrypt ? c.encrypt(data) : c.decrypt(data);
    }
    const params = { name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 128 };
    const out = encrypt
      ? await globalThis.crypto.subtle.encrypt(params, this.aesKey!, data)
      : await globalThis.crypto.subtle.decrypt(params, this.aesKey!, data);
    return new Uint8Array(out);
  }

  /** §5.2: one protected record carrying `content` of `type` (no padding). */
  async seal(type: number, content: Uint8Array): Promise<Uint8Array> {
    if (content.length > MAX_PLAINTEXT) throw new AtlsError('INTERNAL', 'record content above 2^14 bytes');
    const inner = new Uint8Array(content.length + 1);
    inner.set(content);
    inner[content.length] = type;
    const length = inner.length + TAG;
    // opaque_type application_data, legacy_record_version 0x0303; the header is the AAD.
    const header = Uint8Array.of(CONTENT_APPLICATION_DATA, 3, 3, length >> 8, length & 0xff);
    const body = await this.aead(true, this.nonce(), header, inner);
    const record = new Uint8Array(header.length + body.length);
    record.set(header);
    record.set(body, header.length);
    return record;
  }

  /**
   * §5.2: opens a protected record (header = its 5-byte header, the AAD).
   * Returns the real content type and content with the padding removed.
   */
  async open(header: Uint8Array, body: Uint8Array): Promise<{ type: number; content: Uint8Array }> {
    if (body.length > MAX_CIPHERTEXT) {
      throw new AtlsError('MALFORMED_RECORD', `protected record of ${body.length} bytes`, { alert: AlertDescription.record_overflow });
    }
    if (body.length < TAG + 1) throw badMac();
    let inner: Uint8Array;
    try {
      inner = await this.aead(false, this.nonce(), header, body);
    } catch {
      throw badMac();
    }
    // §5.4: strip zero padding; the last non-zero byte is the content type.
    let end = inner.length;
    while (end > 0 && inner[end - 1] === 0) end--;
    if (end === 0) throw new AtlsError('MALFORMED_RECORD', 'protected record without a content type', { alert: AlertDescription.unexpected_message });
    if (end - 1 > MAX_PLAINTEXT) {
      throw new AtlsError('MALFORMED_RECORD', 'record plaintext above 2^14 bytes', { alert: AlertDescription.record_overflow });
    }
    return { type: inner[end - 1]!, content: inner.subarray(0, end - 1) };
  }
}
