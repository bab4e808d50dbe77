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
 * await verifyServerChain(derChain, anchors, 'localhost', new Date());
 * ```
 * @module
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { AlertDescription, AtlsError, type AtlsErrorCode } from '../../errors.js';

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

function parse(der: Uint8Array, what: string): x509.X509Certificate {
  try {
    return new x509.X509Certificate(der);
  } catch (e) {
    throw new AtlsError('HANDSHAKE_FAILED', `${what} is not a valid X.509 certificate`, {
      source: 'remote',
      alert: AlertDescription.bad_certificate,
      cause: e,
    });
  }
}

/**
 * Trust anchors from PEM text or DER/PEM bytes; throws a local
 * INVALID_ARGUMENT for anything that is not a certificate.
 */
export function parseAnchors(inputs: ReadonlyArray<string | Uint8Array>): x509.X509Certificate[] {
  const out: x509.X509Certificate[] = [];
  const dec = new TextDecoder();
  for (const input of inputs) {
    const text = typeof input === 'string' ? input : isPem(input) ? dec.decode(input) : undefined;
    try {
      if (text === undefined) {
        out.push(new x509.X509Certificate(input));
        continue;
      }
      const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
      if (blocks.length === 0) throw new Error('no PEM certificate');
      for (const b of blocks) out.push(new x509.X509Certificate(b));
    } catch (e) {
      throw new AtlsError('INVALID_ARGUMENT', `ca: not a certificate (${e instanceof Error ? e.message : String(e)})`, { source: 'local' });
    }
  }
  return out;
}

function isPem(b: Uint8Array): boolean {
  return b.length > 10 && b[0] === 0x2d; // '-'
}

function sameBytes(a: ArrayBuffer, b: ArrayBuffer): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

async function signedBy(cert: x509.X509Certificate, issuer: x509.X509Certificate): Promise<boolean> {
  if (cert.issuer !== issuer.subject) return false;
  try {
    return await cert.verify({ publicKey: issuer.publicKey, signatureOnly: true });
  } catch {
    return false; // an algorithm Web Crypto lacks: not a usable issuer
  }
}

/** RFC 5280 §6.1.4 (k), (l), (n): a certificate that signs others. */
function checkCa(cert: x509.X509Certificate, below: number): void {
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc || !bc.ca) throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.bad_certificate, `${cert.subject} is not a CA`);
  // pathLenConstraint counts the non-self-issued intermediates below it.
  if (bc.pathLength !== undefined && below > bc.pathLength) {
    throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.bad_certificate, `${cert.subject} path length exceeded`);
  }
  const ku = cert.getExtension(x509.KeyUsagesExtension);
  if (ku && (ku.usages & x509.KeyUsageFlags.keyCertSign) === 0) {
    throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.bad_certificate, `${cert.subject} may not sign certificates`);
  }
}

function checkCritical(cert: x509.X509Certificate): void {
  for (const ext of cert.extensions) {
    if (ext.critical && !KNOWN_CRITICAL.has(ext.type)) {
      throw fail('HANDSHAKE_FAILED', AlertDescription.unsupported_certificate, `unknown critical extension ${ext.type}`);
    }
  }
}

function checkValidity(cert: x509.X509Certificate, now: Date): void {
  if (now < cert.notBefore || now > cert.notAfter) {
    throw fail('CERTIFICATE_EXPIRED', AlertDescription.certificate_expired, `${cert.subject} is valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()}`);
  }
}

/** The leaf may sign handshakes for a TLS server (RFC 5280 §4.2.1.3, §4.2.1.12). */
function checkLeafUsage(leaf: x509.X509Certificate): void {
  const ku = leaf.getExtension(x509.KeyUsagesExtension);
  if (ku && (ku.usages & x509.KeyUsageFlags.digitalSignature) === 0) {
    throw fail('HANDSHAKE_FAILED', AlertDescription.bad_certificate, 'leaf key usage lacks digitalSignature');
  }
  const eku = leaf.getExtension(x509.ExtendedKeyUsageExtension);
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
function checkName(leaf: x509.X509Certificate, serverName: string): void {
  const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
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

/**
 * Validates `chain` (DER, leaf first, as sent) for `serverName` (undefined:
 * no name check) against `anchors` at time `now`. Resolves with the leaf's
 * public key information; rejects with a remote AtlsError.
 */
export async function verifyServerChain(
  chain: readonly Uint8Array[],
  anchors: readonly x509.X509Certificate[],
  serverName: string | undefined,
  now: Date,
): Promise<x509.X509Certificate> {
  const certs = chain.map((der, i) => parse(der, i === 0 ? 'leaf' : `chain certificate ${i}`));
  const leaf = certs[0];
  if (!leaf) throw fail('HANDSHAKE_FAILED', AlertDescription.decode_error, 'empty chain');
  // Build the path: each step is an issuer from the sent chain or an anchor, signature verified.
  const path: x509.X509Certificate[] = [leaf];
  let anchored = anchors.some((a) => sameBytes(a.rawData, leaf.rawData));
  while (!anchored) {
    if (path.length >= MAX_DEPTH) throw fail('CERTIFICATE_UNTRUSTED', AlertDescription.unknown_ca, 'path too long');
    const current = path[path.length - 1]!;
    let next: x509.X509Certificate | undefined;
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
    if (i > 0) checkCa(path[i]!, i - 1);
  }
  checkLeafUsage(leaf);
  if (serverName !== undefined) checkName(leaf, serverName);
  return leaf;
}
