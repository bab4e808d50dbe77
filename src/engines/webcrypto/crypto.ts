/**
 * The public-key operations of the webcrypto client, on Web Crypto: (EC)DHE
 * key shares (RFC 8446 §4.2.8, §7.4) and CertificateVerify signatures
 * (§4.4.3) with the schemes the client offers.
 * @module
 */
import { AlertDescription } from '../../errors.js';
import { AtlsError } from '../../errors.js';
import { ecdsaDerToRaw, ecdsaRawToDer, violation } from './messages.js';

/** The runtime's Web Crypto (the browser's, or Node's globalThis.crypto). */
export type Subtle = typeof globalThis.crypto.subtle;
export type CryptoKey = Awaited<ReturnType<Subtle['importKey']>>;
type Algorithm = Parameters<Subtle['importKey']>[2];
type VerifyAlgorithm = Parameters<Subtle['verify']>[0];

const subtle = (): Subtle => globalThis.crypto.subtle;

/** A named group this client implements (RFC 8446 §4.2.7). */
export interface Group {
  readonly code: number;
  readonly name: string;
  /** Web Crypto algorithm for key generation and import. */
  readonly algorithm: { name: 'X25519' } | { name: 'ECDH'; namedCurve: 'P-256' | 'P-384' };
  /** Length of the public value on the wire (§4.2.8.2: uncompressed points). */
  readonly publicLength: number;
  readonly secretBits: number;
}

export const GROUPS: readonly Group[] = [
  { code: 0x001d, name: 'X25519', algorithm: { name: 'X25519' }, publicLength: 32, secretBits: 256 },
  { code: 0x0017, name: 'P-256', algorithm: { name: 'ECDH', namedCurve: 'P-256' }, publicLength: 65, secretBits: 256 },
  { code: 0x0018, name: 'P-384', algorithm: { name: 'ECDH', namedCurve: 'P-384' }, publicLength: 97, secretBits: 384 },
];

/** OpenSSL and IANA spellings of the groups, for the `groups` setting. */
export const GROUP_ALIASES: Record<string, number> = {
  x25519: 0x001d,
  'p-256': 0x0017,
  prime256v1: 0x0017,
  secp256r1: 0x0017,
  'p-384': 0x0018,
  secp384r1: 0x0018,
};

/** One ephemeral key pair and its public value. */
export interface KeyShare {
  group: Group;
  privateKey: CryptoKey;
  publicValue: Uint8Array;
}

export async function generateShare(group: Group): Promise<KeyShare> {
  const pair = (await subtle().generateKey(group.algorithm, true, ['deriveBits'])) as { publicKey: CryptoKey; privateKey: CryptoKey };
  const publicValue = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  return { group, privateKey: pair.privateKey, publicValue };
}

/**
 * The shared secret with the server's public value. A value of the wrong
 * size, a point off the curve or an all-zero X25519 result (§7.4.2) is
 * illegal_parameter.
 */
export async function sharedSecret(share: KeyShare, peer: Uint8Array): Promise<Uint8Array> {
  const g = share.group;
  if (peer.length !== g.publicLength || (g.algorithm.name === 'ECDH' && peer[0] !== 4)) {
    throw violation(AlertDescription.illegal_parameter, `${g.name} key share of ${peer.length} bytes`);
  }
  let secret: Uint8Array;
  try {
    const key = await subtle().importKey('raw', peer, g.algorithm, false, []);
    secret = new Uint8Array(await subtle().deriveBits({ name: g.algorithm.name, public: key }, share.privateKey, g.secretBits));
  } catch {
    throw violation(AlertDescription.illegal_parameter, `the server's ${g.name} key share is not a valid public key`);
  }
  if (secret.every((b) => b === 0)) throw violation(AlertDescription.illegal_parameter, 'all-zero shared secret');
  return secret;
}

/** A CertificateVerify scheme (RFC 8446 §4.2.3) this client verifies. */
interface Scheme {
  readonly code: number;
  readonly name: string;
  readonly importAlgorithm: Algorithm;
  readonly verifyAlgorithm: VerifyAlgorithm;
  /** ECDSA: size of r and s. */
  readonly ecSize?: number;
}

export const SIGNATURE_SCHEMES: readonly Scheme[] = [
  {
    code: 0x0403,
    name: 'ecdsa_secp256r1_sha256',
    importAlgorithm: { name: 'ECDSA', namedCurve: 'P-256' },
    verifyAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    ecSize: 32,
  },
  {
    code: 0x0503,
    name: 'ecdsa_secp384r1_sha384',
    importAlgorithm: { name: 'ECDSA', namedCurve: 'P-384' },
    verifyAlgorithm: { name: 'ECDSA', hash: 'SHA-384' },
    ecSize: 48,
  },
  ...([
    [0x0804, 'rsa_pss_rsae_sha256', 'SHA-256', 32],
    [0x0805, 'rsa_pss_rsae_sha384', 'SHA-384', 48],
    [0x0806, 'rsa_pss_rsae_sha512', 'SHA-512', 64],
  ] as const).map(([code, name, hash, saltLength]) => ({
    code,
    name,
    importAlgorithm: { name: 'RSA-PSS', hash },
    verifyAlgorithm: { name: 'RSA-PSS', saltLength },
  })),
];

/**
 * Schemes accepted in certificates only (§4.2.3: RSASSA-PKCS1-v1_5 never in
 * CertificateVerify). Offered so servers with PKCS#1-signed chains pick them.
 */
export const CERT_ONLY_SCHEMES: readonly number[] = [0x0401, 0x0501, 0x0601];

const enc = new TextEncoder();

/** §4.4.3: 64 spaces, the context string, a zero byte, the transcript hash. */
export function signedContent(context: string, transcriptHash: Uint8Array): Uint8Array {
  const label = enc.encode(context);
  const out = new Uint8Array(64 + label.length + 1 + transcriptHash.length);
  out.fill(0x20, 0, 64);
  out.set(label, 64);
  out.set(transcriptHash, 64 + label.length + 1);
  return out;
}

/** A client's private key and the CertificateVerify schemes it signs with. */
export interface SigningKey {
  key: CryptoKey;
  schemes: readonly number[];
}

/**
 * Imports a PKCS#8 private key as the first of ECDSA P-256, ECDSA P-384 or
 * RSA-PSS (SHA-256) that accepts it; a local INVALID_ARGUMENT otherwise.
 */
export async function importSigningKey(pkcs8: Uint8Array): Promise<SigningKey> {
  for (const code of [0x0403, 0x0503, 0x0804]) {
    const s = SIGNATURE_SCHEMES.find((x) => x.code === code)!;
    try {
      return { key: await subtle().importKey('pkcs8', pkcs8, s.importAlgorithm, false, ['sign']), schemes: [code] };
    } catch {
      // not this kind of key
    }
  }
  throw new AtlsError('INVALID_ARGUMENT', 'key: not an ECDSA P-256/P-384 or RSA private key (PKCS#8)', { source: 'local' });
}

/** §4.4.3: the client's CertificateVerify signature over the transcript hash. */
export async function signCertificateVerify(key: SigningKey, scheme: number, transcriptHash: Uint8Array): Promise<Uint8Array> {
  const s = SIGNATURE_SCHEMES.find((x) => x.code === scheme)!;
  const content = signedContent('TLS 1.3, client CertificateVerify', transcriptHash);
  const sig = new Uint8Array(await subtle().sign(s.verifyAlgorithm, key.key, content));
  return s.ecSize ? ecdsaRawToDer(sig) : sig;
}

/**
 * Verifies a server CertificateVerify signature with the leaf's key
 * (`spki`, DER). A scheme not offered or not matching the key is
 * illegal_parameter; a bad signature is decrypt_error (§4.4.3).
 */
export async function verifyCertificateVerify(
  scheme: number,
  offered: readonly number[],
  spki: ArrayBuffer,
  signature: Uint8Array,
  transcriptHash: Uint8Array,
): Promise<void> {
  const s = SIGNATURE_SCHEMES.find((x) => x.code === scheme);
  if (!s || !offered.includes(scheme)) throw violation(AlertDescription.illegal_parameter, `signature scheme 0x${scheme.toString(16)} was not offered`);
  let key: CryptoKey;
  try {
    key = await subtle().importKey('spki', spki, s.importAlgorithm, false, ['verify']);
  } catch {
    throw violation(AlertDescription.illegal_parameter, `${s.name} does not match the certificate's key`);
  }
  const sig = s.ecSize ? ecdsaDerToRaw(signature, s.ecSize) : signature;
  const content = signedContent('TLS 1.3, server CertificateVerify', transcriptHash);
  const ok = sig !== undefined && (await subtle().verify(s.verifyAlgorithm, key, sig, content).catch(() => false));
  if (!ok) throw violation(AlertDescription.decrypt_error, `CertificateVerify (${s.name}) does not verify`);
}
