/**
 * A protected TLS 1.3 alert record, built from a traffic secret.
 *
 * After the ServerHello every TLS 1.3 record is protected (RFC 8446 §5.1), so
 * an alert an engine synthesises there must be encrypted to be read as an
 * alert. The node engine learns the traffic secrets from node:tls' `keylog`
 * event and uses this where node:tls cannot send the alert itself, at
 * sequence number 0 of a key whose records the stack wrote were withheld.
 *
 * @example
 * ```ts
 * const record = tls13AlertRecord('TLS_AES_128_GCM_SHA256', serverTrafficSecret0, 48); // unknown_ca
 * ```
 * @module
 */
import { createCipheriv, createHmac } from 'node:crypto';

interface Suite {
  cipher: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305' | 'aes-128-ccm';
  hash: 'sha256' | 'sha384';
  keyLength: number;
  tagLength: number;
}

/** RFC 8446 §B.4 suites and RFC 8446 §5.3 key/iv sizes. */
const SUITES: Record<string, Suite> = {
  TLS_AES_128_GCM_SHA256: { cipher: 'aes-128-gcm', hash: 'sha256', keyLength: 16, tagLength: 16 },
  TLS_AES_256_GCM_SHA384: { cipher: 'aes-256-gcm', hash: 'sha384', keyLength: 32, tagLength: 16 },
  TLS_CHACHA20_POLY1305_SHA256: { cipher: 'chacha20-poly1305', hash: 'sha256', keyLength: 32, tagLength: 16 },
  TLS_AES_128_CCM_SHA256: { cipher: 'aes-128-ccm', hash: 'sha256', keyLength: 16, tagLength: 16 },
  TLS_AES_128_CCM_8_SHA256: { cipher: 'aes-128-ccm', hash: 'sha256', keyLength: 16, tagLength: 8 },
};

const IV_LENGTH = 12; // RFC 8446 §5.3: iv_length = max(8, N_MIN) = 12 for every suite above
const CONTENT_ALERT = 21;
const CONTENT_APPLICATION_DATA = 23;

/**
 * RFC 8446 §7.1 HKDF-Expand-Label(secret, label, "", length) for length up to
 * one hash block, which covers keys and IVs: T(1) of RFC 5869 §2.3.
 */
export function expandLabel(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, length: number): Buffer {
  const full = Buffer.from(`tls13 ${label}`, 'ascii');
  const info = Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([0])]);
  return createHmac(hash, secret).update(info).update(Buffer.from([1])).digest().subarray(0, length);
}

/**
 * RFC 5246 §5 PRF(secret, label, seed) = P_<hash>(secret, label + seed) cut
 * to `length` bytes: the TLS 1.2 key expansion of the record guard (§6.3).
 */
export function tls12Prf(hash: 'sha256' | 'sha384', secret: Uint8Array, label: string, seed: Uint8Array, length: number): Buffer {
  const labelSeed = Buffer.concat([Buffer.from(label, 'ascii'), seed]);
  const out: Buffer[] = [];
  let a: Buffer = labelSeed; // A(0) = seed
  for (let have = 0; have < length; ) {
    a = createHmac(hash, secret).update(a).digest(); // A(i) = HMAC(secret, A(i-1))
    const block = createHmac(hash, secret).update(a).update(labelSeed).digest();
    out.push(block);
    have += block.length;
  }
  const all = Buffer.concat(out);
  const result = Buffer.from(all.subarray(0, length));
  all.fill(0);
  return result;
}

/** True when {@link tls13AlertRecord} can protect records of this suite. */
export function canProtectAlert(cipherSuite: string): boolean {
  return SUITES[cipherSuite] !== undefined;
}

/**
 * The protected record carrying alert `level`/`description` under the traffic
 * secret, at record sequence number `sequence` (RFC 8446 §5.2, §5.3). Returns
 * undefined for a suite it does not know.
 */
export function tls13AlertRecord(
  cipherSuite: string,
  trafficSecret: Uint8Array,
  description: number,
  level = 2,
  sequence = 0,
): Uint8Array | undefined {
  const s = SUITES[cipherSuite];
  if (!s) return undefined;
  const key = expandLabel(s.hash, trafficSecret, 'key', s.keyLength);
  const nonce = expandLabel(s.hash, trafficSecret, 'iv', IV_LENGTH);
  // RFC 8446 §5.3: the 64-bit sequence number, left-padded, XORed into the IV.
  let seq = BigInt(sequence);
  for (let i = IV_LENGTH - 1; i >= IV_LENGTH - 8; i--) {
    nonce[i]! ^= Number(seq & 0xffn);
    seq >>= 8n;
  }
  // RFC 8446 §5.2: TLSInnerPlaintext = content || ContentType, no padding.
  const inner = Buffer.from([level, description, CONTENT_ALERT]);
  const length = inner.length + s.tagLength;
  // RFC 8446 §5.2: opaque_type application_data, legacy_record_version 0x0303; the header is the AAD.
  const header = Buffer.from([CONTENT_APPLICATION_DATA, 3, 3, length >> 8, length & 0xff]);
  let body: Buffer;
  if (s.cipher === 'aes-128-ccm') {
    const c = createCipheriv(s.cipher, key, nonce, { authTagLength: s.tagLength });
    c.setAAD(header, { plaintextLength: inner.length });
    body = Buffer.concat([c.update(inner), c.final(), c.getAuthTag()]);
  } else if (s.cipher === 'chacha20-poly1305') {
    const c = createCipheriv(s.cipher, key, nonce, { authTagLength: s.tagLength });
    c.setAAD(header, { plaintextLength: inner.length });
    body = Buffer.concat([c.update(inner), c.final(), c.getAuthTag()]);
  } else {
    const c = createCipheriv(s.cipher, key, nonce, { authTagLength: s.tagLength });
    c.setAAD(header);
    body = Buffer.concat([c.update(inner), c.final(), c.getAuthTag()]);
  }
  key.fill(0);
  const out = new Uint8Array(header.length + body.length);
  out.set(header, 0);
  out.set(body, header.length);
  return out;
}
