/**
 * Start-up checks of a server's own credentials, whatever the engine: every
 * certificate of the chain parses, each one is issued by the next, and the
 * private key belongs to the leaf. A server started with a key that does not
 * match its certificate (or with the two files swapped) would otherwise fail
 * every handshake at run time with nothing in its log.
 *
 * @example
 * ```ts
 * checkServerCredentials({ cert: chainPem, key: keyPem }); // throws INVALID_ARGUMENT with a one-line reason
 * ```
 * @module
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { AtlsError } from '../errors.js';
import type { PemInput, TlsServerConfig } from './types.js';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

function invalid(message: string, cause?: unknown): AtlsError {
  return new AtlsError('INVALID_ARGUMENT', message, { source: 'local', ...(cause === undefined ? {} : { cause }) });
}

function asBuffer(input: PemInput): Buffer {
  return typeof input === 'string' ? Buffer.from(input, 'latin1') : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
}

/** The certificates of a chain (PEM blocks, or one DER certificate), leaf first. */
function parseChain(input: PemInput, what: string): X509Certificate[] {
  const bytes = asBuffer(input);
  const text = bytes.toString('latin1');
  const blocks = text.includes('-----BEGIN') ? (text.match(PEM_CERT) ?? []) : [bytes];
  if (blocks.length === 0) {
    const hint = text.includes('PRIVATE KEY') ? ' (it holds a private key: are the certificate and key swapped?)' : '';
    throw invalid(`${what} holds no certificate${hint}`);
  }
  return blocks.map((b, i) => {
    try {
      return new X509Certificate(b);
    } catch (e) {
      throw invalid(`${what}: certificate ${i + 1} of the chain does not parse`, e);
    }
  });
}

function parseKey(input: PemInput, what: string): KeyObject {
  const bytes = asBuffer(input);
  const text = bytes.toString('latin1');
  if (text.includes('-----BEGIN CERTIFICATE-----') && !text.includes('PRIVATE KEY')) {
    throw invalid(`${what} holds a certificate, not a private key (are the certificate and key swapped?)`);
  }
  try {
    return text.includes('-----BEGIN') ? createPrivateKey(text) : createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw invalid(`${what} is not a private key this program can read (unencrypted PEM or PKCS#8 DER)`, e);
  }
}

/** Checks one certificate chain and its key; throws INVALID_ARGUMENT with a one-line reason. */
export function checkCertificateAndKey(cert: PemInput, key: PemInput, what = 'server'): void {
  const chain = parseChain(cert, `${what} certificate`);
  const privateKey = parseKey(key, `${what} key`);
  const leaf = chain[0]!;
  if (!leaf.checkPrivateKey(privateKey)) {
    throw invalid(`${what} key does not match the certificate (${leaf.subject.replace(/\n/g, ', ')})`);
  }
  for (let i = 0; i + 1 < chain.length; i++) {
    // RFC 8446 §4.4.2 / RFC 5246 §7.4.2: each certificate certifies the one before it.
    if (!chain[i]!.checkIssued(chain[i + 1]!)) {
      throw invalid(`${what} certificate chain: certificate ${i + 2} did not issue certificate ${i + 1} (wrong order?)`);
    }
  }
}

/** Checks every certificate and key of a server configuration (the main pair and the SNI ones). */
export function checkServerCredentials(tls: TlsServerConfig): void {
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw invalid('cert and key must be given together');
  if (tls.cert !== undefined && tls.key !== undefined) checkCertificateAndKey(tls.cert, tls.key);
  for (const [name, pair] of Object.entries(tls.sniCertificates ?? {})) {
    if (!pair || pair.cert === undefined || pair.key === undefined) throw invalid(`sniCertificates[${name}] needs cert and key`);
    checkCertificateAndKey(pair.cert, pair.key, `sniCertificates[${name}]`);
  }
}
