/**
 * The AEAD of a negotiated TLS cipher suite (draft §7.2: "use the cipher suite
 * negotiated during ATLS session establishment"), with its key size and usage
 * limits.
 * @module
 */
import { AtlsError } from '../errors.js';
import { IV_LENGTH } from './constants.js';

/** `node:crypto` names of the AEADs that protected messages support. */
export type AeadAlgorithm = 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305' | 'aes-128-ccm' | 'aes-256-ccm';

/** Everything the protected channel needs to know about one AEAD. */
export interface AeadSpec {
  /** The IANA cipher suite name it was chosen for, e.g. `TLS_AES_128_GCM_SHA256`. */
  readonly iana: string;
  /** AEAD name in RFC 5116 style, e.g. `AEAD_AES_128_CCM_8`. */
  readonly name: string;
  /** `node:crypto` algorithm. */
  readonly algorithm: AeadAlgorithm;
  /** Key length in bytes. */
  readonly keyLength: number;
  /** IV (and nonce) length in bytes: always 12. */
  readonly ivLength: 12;
  /** Authentication tag length in bytes (16, or 8 for CCM_8). */
  readonly tagLength: number;
  /**
   * Messages (counted in 16 KiB units, see LIMIT_UNIT_BYTES) one key may seal
   * (RFC 8446 §5.5; RFC 9147 §4.5.3 and Appendix B for CCM). `Infinity` when
   * the 2^64 sequence space is the only bound.
   */
  readonly confidentialityLimit: number;
  /** Failed decryptions (in the same units) one key may see (RFC 9147 §4.5.3, Appendix B). */
  readonly integrityLimit: number;
  /** Largest plaintext the AEAD can protect with a 12-byte nonce. */
  readonly maxPlaintextLength: number;
}

type AeadBase = Omit<AeadSpec, 'iana'>;

// RFC 8446 §5.5: AES-GCM 2^24.5 full-size records; ChaCha20-Poly1305 is
// bounded only by the sequence number space. RFC 9147 §4.5.3: integrity
// limit 2^36 for both. Maximum lengths: RFC 5116 §5.1 (GCM, P_MAX = 2^36 - 31
// minus padding; we use 2^36 - 32), RFC 8439 §2.8 (2^38 - 64).
const GCM_CONFIDENTIALITY = 23726566; // floor(2^24.5)
const INTEGRITY_2_36 = 2 ** 36;
// RFC 9147 §4.5.3 / Appendix B: AEAD_AES_128_CCM confidentiality 2^23,
// integrity 2^23.5; AEAD_AES_128_CCM_8 integrity 2^7. Appendix B analyses
// AES-128 only; the bounds depend on the block size, not the key size, so
// they are applied to AES-256-CCM as well.
const CCM_CONFIDENTIALITY = 2 ** 23;
const CCM_INTEGRITY = 11863283; // floor(2^23.5)
const CCM8_INTEGRITY = 2 ** 7;
// RFC 3610 §2: with a 12-byte nonce the length field has L = 3 bytes.
const CCM_MAX = 2 ** 24 - 1;

const AEADS = {
  AES_128_GCM: {
    name: 'AEAD_AES_128_GCM', algorithm: 'aes-128-gcm', keyLength: 16, ivLength: IV_LENGTH, tagLength: 16,
    confidentialityLimit: GCM_CONFIDENTIALITY, integrityLimit: INTEGRITY_2_36, maxPlaintextLength: 2 ** 36 - 32,
  },
  AES_256_GCM: {
    name: 'AEAD_AES_256_GCM', algorithm: 'aes-256-gcm', keyLength: 32, ivLength: IV_LENGTH, tagLength: 16,
    confidentialityLimit: GCM_CONFIDENTIALITY, integrityLimit: INTEGRITY_2_36, maxPlaintextLength: 2 ** 36 - 32,
  },
  CHACHA20_POLY1305: {
    name: 'AEAD_CHACHA20_POLY1305', algorithm: 'chacha20-poly1305', keyLength: 32, ivLength: IV_LENGTH, tagLength: 16,
    confidentialityLimit: Infinity, integrityLimit: INTEGRITY_2_36, maxPlaintextLength: 2 ** 38 - 64,
  },
  AES_128_CCM: {
    name: 'AEAD_AES_128_CCM', algorithm: 'aes-128-ccm', keyLength: 16, ivLength: IV_LENGTH, tagLength: 16,
    confidentialityLimit: CCM_CONFIDENTIALITY, integrityLimit: CCM_INTEGRITY, maxPlaintextLength: CCM_MAX,
  },
  AES_128_CCM_8: {
    name: 'AEAD_AES_128_CCM_8', algorithm: 'aes-128-ccm', keyLength: 16, ivLength: IV_LENGTH, tagLength: 8,
    confidentialityLimit: CCM_CONFIDENTIALITY, integrityLimit: CCM8_INTEGRITY, maxPlaintextLength: CCM_MAX,
  },
  AES_256_CCM: {
    name: 'AEAD_AES_256_CCM', algorithm: 'aes-256-ccm', keyLength: 32, ivLength: IV_LENGTH, tagLength: 16,
    confidentialityLimit: CCM_CONFIDENTIALITY, integrityLimit: CCM_INTEGRITY, maxPlaintextLength: CCM_MAX,
  },
  AES_256_CCM_8: {
    name: 'AEAD_AES_256_CCM_8', algorithm: 'aes-256-ccm', keyLength: 32, ivLength: IV_LENGTH, tagLength: 8,
    confidentialityLimit: CCM_CONFIDENTIALITY, integrityLimit: CCM8_INTEGRITY, maxPlaintextLength: CCM_MAX,
  },
} as const satisfies Record<string, AeadBase>;

type AeadKey = keyof typeof AEADS;

// RFC 8446 §B.4: the five TLS 1.3 suites name only the AEAD and the hash.
const TLS13: Record<string, AeadKey> = {
  TLS_AES_128_GCM_SHA256: 'AES_128_GCM',
  TLS_AES_256_GCM_SHA384: 'AES_256_GCM',
  TLS_CHACHA20_POLY1305_SHA256: 'CHACHA20_POLY1305',
  TLS_AES_128_CCM_SHA256: 'AES_128_CCM',
  TLS_AES_128_CCM_8_SHA256: 'AES_128_CCM_8',
};

// TLS 1.2 names are TLS_<key exchange>_WITH_<cipher>[_<hash>] (RFC 5288,
// RFC 5487, RFC 6655, RFC 7905, RFC 8442). CCM_8 must be tried before CCM.
const TLS12 = /^TLS_[A-Z0-9]+(?:_[A-Z0-9]+)*_WITH_(AES_128_GCM|AES_256_GCM|CHACHA20_POLY1305|AES_128_CCM_8|AES_128_CCM|AES_256_CCM_8|AES_256_CCM)(?:_SHA256|_SHA384)?$/;

/**
 * The AEAD of a negotiated cipher suite, by its IANA name (what
 * `HandshakeInfo.cipherSuite` carries). Suites without an AEAD the library
 * supports (CBC, NULL, ARIA, Camellia, SM4, ...) throw `UNSUPPORTED`.
 *
 * @example
 * ```ts
 * aeadForSuite('TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256').keyLength; // 32
 * ```
 */
export function aeadForSuite(ianaName: string): AeadSpec {
  if (typeof ianaName !== 'string') {
    throw new AtlsError('INVALID_ARGUMENT', 'cipher suite name must be a string');
  }
  // Real suite names are under 64 characters; the cap keeps the regex cheap.
  const key =
    TLS13[ianaName] ?? (ianaName.length <= 100 ? (TLS12.exec(ianaName)?.[1] as AeadKey | undefined) : undefined);
  if (key === undefined) {
    throw new AtlsError(
      'UNSUPPORTED',
      `cipher suite ${JSON.stringify(ianaName.slice(0, 80))} has no supported AEAD (AES-GCM, ChaCha20-Poly1305, AES-CCM); ` +
        'exported-key protection needs one (draft §7.2)',
      { source: 'local' },
    );
  }
  return Object.freeze({ iana: ianaName, ...AEADS[key] });
}
