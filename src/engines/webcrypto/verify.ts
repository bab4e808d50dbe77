/**
 * Server certificate chain validation for the webcrypto engine, with
 * @peculiar/x509 (parsing, signatures over Web Crypto): a path from the leaf
 * through the certificates the server sent to a configured trust anchor, each
 * signature checked, every certificate within its validity period, CA basic
 * constraints and path length, key usage, extended key usage, and the server
 * name (RFC 5280 §6.1, RFC 6125 §6).
 *
 * Failures carry the codes and alerts the other engines give the same
 * failure: untrusted -> unknown_ca, expired -> certificate_expired, wrong
 * name -> bad_certificate.
 *
 * @example
 * ```ts
 * const anchors = parseAnchors(pemCaText);
 * const leafSpki = await verifyServerChain(derChain, anchors, 'localhost', new Date());
 * ```
 * @module
 */
import type * as X509 from '@peculiar/x509';
import { AlertDescription, AtlsError, type AtlsErrorCode } from '../../errors.js';

/** @peculiar/x509, loaded at the first verification: it costs about 0.2 s of start-up otherwise. */
let library: Promise<typeof X509> | undefined;
function x509(): Promise<typeof X509> {
  return (library ??= import('reflect-metadata').then(() => import('@peculiar/x509')));
}

/** RFC 5280 §4.2.1.12 id-kp-serverAuth and anyExtendedKeyUsage. */
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const ANY_EKU = '2.5.29.37.0';
/** Extensions this validator understands; any other critical one fails (RFC 5280 §4.2). */
const KNOWN_CRITICAL = new Set([
  '2.5.29.19', // basicConstraints
  '2.5.29.15', // keyUsage
  '2.5.29.37', // extKeyUsage
  '2.5.29.17', // subjectAltName
]);
/** Longest path accepted, anchor included. */
const MAX_DEPTH = 10;

function fail(code: AtlsErrorCode, alert: number, message: string): AtlsError {
  return new AtlsError(code, `server certificate rejected: ${message}`, { source: 'remote', alert });
}

function parse(lib: typeof X509, der: Uint8Array, what: string): X509.X509Certificate {
  try {
    return new lib.X509Certificate(der);
  } catch (e) {
    throw new AtlsError('HANDSHAKE_FAILED', `${what} is not a valid X.509 certificate`, {
      source: 'remote',
      alert: AlertDescription.bad_certificate,
      cause: e,
    });
  }
}

/** The DER of every PEM block labelled `label` in `text` (a block that is not base64 gives empty bytes). */
export function pemBlocks(text: string, label: string): Uint8Array[] {
  const re = new RegExp(`-----BEGIN ${label}-----([\\s\\S]*?)-----END ${label}-----`, 'g');
  return [...text.matchAll(re)].map((m) => {
    try {
      return Uint8Array.from(atob(m[1]!.replace(/\s+/g, '')), (c) => c.charCodeAt(0));
    } catch {
      return new Uint8Array(0);
    }
  });
}

/**
 * Trust anchors (DER) from PEM text or DER/PEM bytes. Each must be a DER
 * SEQUENCE whose length matches (a full parse waits for the first
 * verification); anything else is a local INVALID_ARGUMENT.
 */
export function parseAnchors(inputs: ReadonlyArray<string | Uint8Array>, what = 'ca'): Uint8Array[] {
  const out: Uint8Array[] = [];
  const dec = new TextDecoder();
  for (const input of inputs) {
    const text = typeof input === 'string' ? input : input[0] === 0x2d /* '-' */ ? dec.decode(input) : undefined;
    const ders = text === undefined ? [input as Uint8Array] : pemBlocks(text, 'CERTIFICATE');
    if (ders.length === 0) throw new AtlsError('INVALID_ARGUMENT', `${what}: no PEM certificate`, { source: 'local' });
    for (const der of ders) {
      if (!looksLikeDer(der)) throw new AtlsError('INVALID_ARGUMENT', `${what}: not a DER certificate`, { source: 'local' });
      out.push(der);
    }
  }
  return out;
}

/** A DER SEQUENCE whose (long-form) length covers exactly the input. */
function looksLikeDer(b: Uint8Array): boolean {
  if (b.length < 4 || b[0] !== 0x30 || (b[1]! & 0x80) === 0) return false;
  const n = b[1]! & 0x7f;
  if (n < 1 || n > 3 || b.length < 2 + n) return false;
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + b[2 + i]!;
  return 2 + n + len === b.length;
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

async function signedBy(cert: X509.X509Certificate, issuer: X509.X509Certificate): Promise<boolean> {
  if (cert.issuer !== issuer.subject) return false;
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false; // an algorithm Web Crypto lacks: not a usable issuer
  }
}

/** RFC 5280 §6.1.4 (k), (l), (n): a certificate that signs others. */
function checkCa(lib: typeof X509, cert: X509.X509Certificate, below: number): void {
  const bc = cert.getExtension(lib.BasicConstraintsExtension);
  if (!bc || !bc.ca) throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.bad_certificate, `${cert.subject} is not a CA`);
  // pathLenConstraint counts the non-self-issued intermediates below it.
  if (bc.pathLength !== undefined && below > bc.pathLength) {
    throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.bad_certificate, `${cert.subject} path length exceeded`);
  }
  const ku = cert.getExtension(lib.KeyUsagesExtension);
  if (ku && (ku.usages & lib.KeyUsageFlags.keyCertSign) === 0) {
    throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.bad_certificate, `${cert.subject} may not sign certificates`);
  }
}

function checkCritical(cert: X509.X509Certificate): void {
  for (const ext of cert.extensions) {
    if (ext.critical && !KNOWN_CRITICAL.has(ext.type)) {
      throw fail('HANDSHAKE_FAILED', AlertDescription.unsupported_certificate, `unknown critical extension ${ext.type}`);
    }
  }
}

function checkValidity(cert: X509.X509Certificate, now: Date): void {
  if (now < cert.notBefore || now > cert.notAfter) {
    throw fail('CERTIFICATE_EXPIRED', AlertDescription.certificate_expired, `${cert.subject} is valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`);
  }
}

/** The leaf may sign handshakes for a TLS server (RFC 5280 §4.2.1.3, §4.2.1.12). */
function checkLeafUsage(lib: typeof X509, leaf: X509.X509Certificate): void {
  const ku = leaf.getExtension(lib.KeyUsagesExtension);
  if (ku && (ku.usages & lib.KeyUsageFlags.digitalSignature) === 0) {
    throw fail('HANDSHAKE_FAILED', AlertDescription.bad_certificate, 'leaf key usage lacks digitalSignature');
  }
  const eku = leaf.getExtension(lib.ExtendedKeyUsageExtension);
  if (eku && !eku.usages.some((u) => u === SERVER_AUTH || u === ANY_EKU)) {
    throw fail('HANDSHAKE_FAILED', AlertDescription.bad_certificate, 'leaf extended key usage lacks serverAuth');
  }
}

/** IPv4 dotted quad or IPv6 text to bytes; undefined when `s` is no IP address. */
function ipBytes(s: string): Uint8Array | undefined {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (v4) {
    const b = v4.slice(1).map(Number);
    return b.every((n) => n <= 255) ? Uint8Array.from(b) : undefined;
  }
  if (!s.includes(':')) return undefined;
  const parts = s.replace(/^\[|\]$/g, '').split('::');
  if (parts.length > 2) return undefined;
  const head = parts[0] ? parts[0].split(':') : [];
  const tail = parts.length === 2 && parts[1] ? parts[1].split(':') : [];
  const fill = parts.length === 2 ? 8 - head.length - tail.length : 0;
  const groups = [...head, ...Array<string>(Math.max(fill, 0)).fill('0'), ...tail];
  if (groups.length !== 8 || !groups.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  return Uint8Array.from(groups.flatMap((g) => [parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff]));
}

/** RFC 6125 §6.4.3: a leftmost-label wildcard matches exactly one label. */
function dnsMatches(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase().replace(/\.$/, '');
  const h = host.toLowerCase().replace(/\.$/, '');
  if (p === h) return true;
  if (!p.startsWith('*.')) return false;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === p.slice(2) && p.slice(2).includes('.');
}

/** RFC 6125 §6: the name the client asked for is in the leaf's subjectAltName (CN only without SANs). */
function checkName(lib: typeof X509, leaf: X509.X509Certificate, serverName: string): void {
  const san = leaf.getExtension(lib.SubjectAlternativeNameExtension);
  const ip = ipBytes(serverName);
  let ok = false;
  if (san) {
    for (const n of san.names.items) {
      if (ip && n.type === 'ip') {
        const other = ipBytes(n.value);
        ok ||= other !== undefined && other.length === ip.length && other.every((b, i) => b === ip[i]);
      } else if (!ip && n.type === 'dns') {
        ok ||= dnsMatches(n.value, serverName);
      }
    }
  } else if (!ip) {
    ok = leaf.subjectName.getField('CN').some((cn) => dnsMatches(cn, serverName));
  }
  if (!ok) throw fail('CERTIFICATE_NAME_MISMATCH', AlertDescription.bad_certificate, `not valid for ${serverName}`);
}

/** The leaf's SubjectPublicKeyInfo (DER), without validation (for `verifyPeer: false`). */
export async function leafPublicKey(der: Uint8Array): Promise<ArrayBuffer> {
  return parse(await x509(), der, 'leaf').publicKey.rawData;
}

/**
 * Validates `chain` (DER, leaf first, as sent) for `serverName` (undefined:
 * no name check) against `anchorsDer` at time `now`. Resolves with the
 * leaf's SubjectPublicKeyInfo (DER); rejects with a remote AtlsError.
 */
export async function verifyServerChain(
  chain: readonly Uint8Array[],
  anchorsDer: readonly Uint8Array[],
  serverName: string | undefined,
  now: Date,
): Promise<ArrayBuffer> {
  const lib = await x509();
  const anchors = anchorsDer.map((der) => {
    try {
      return new lib.X509Certificate(der);
    } catch (e) {
      throw new AtlsError('INVALID_ARGUMENT', 'ca: not a certificate', { source: 'local', cause: e });
    }
  });
  const certs = chain.map((der, i) => parse(lib, der, i === 0 ? 'leaf' : `chain certificate ${i}`));
  const leaf = certs[0];
  if (!leaf) throw fail('HANDSHAKE_FAILED', AlertDescription.decode_error, 'empty chain');
  // Build the path: each step is an issuer from the sent chain or an anchor, signature verified.
  const path: X509.X509Certificate[] = [leaf];
  let anchored = anchors.some((a) => sameBytes(a.rawData, leaf.rawData));
  while (!anchored) {
    if (path.length >= MAX_DEPTH) throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.unknown_ca, 'path too long');
    const current = path[path.length - 1]!;
    let next: X509.X509Certificate | undefined;
    for (const a of anchors) if (await signedBy(current, a)) next = a;
    if (next) {
      anchored = true;
    } else {
      for (const c of certs) {
        if (!path.includes(c) && (await signedBy(current, c))) {
          next = c;
          break;
        }
      }
    }
    if (!next) throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.unknown_ca, `no trusted issuer for ${current.subject}`);
    path.push(next);
  }
  for (const c of path) checkValidity(c, now);
  for (let i = 0; i < path.length; i++) {
    checkCritical(path[i]!);
    if (i > 0) checkCa(lib, path[i]!, i - 1);
  }
  checkLeafUsage(lib, leaf);
  if (serverName !== undefined) checkName(lib, leaf, serverName);
  return leaf.publicKey.rawData;
}
