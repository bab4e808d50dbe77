/**
 * The policy layer of draft §6.2: what the client's transport TLS looks like
 * (the certificate chain it is shown and whether that chain verifies against
 * the client's trust store for the expected name), and the report of it the
 * client sends inside the ATLS session (docs/protocol.md §5.11).
 *
 * @example
 * ```ts
 * const seen = await observeTransport(new URL('https://svc.example/'), {});
 * if (seen.verified) { ... plain HTTPS is end to end ... }
 * const fields = transportReportFields(seen); // inner request header fields
 * ```
 * @module
 */
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { AtlsError } from '../errors.js';
import type { TransportReport } from '../endpoint/peer.js';

export type { TransportReport };

/** Inner request field: the transport chain, an RFC 8941 List of Byte Sequences (DER, leaf first). */
export const HEADER_TRANSPORT_CHAIN = 'atls-transport-chain';
/** Inner request field: RFC 8941 Boolean, the chain verified for the expected name in the client's trust store. */
export const HEADER_TRANSPORT_VERIFIED = 'atls-transport-verified';
/** Bounds on a report a server accepts: certificates and total DER bytes. */
export const MAX_REPORT_CERTIFICATES = 10;
export const MAX_REPORT_BYTES = 64 * 1024;

/** The client's transport TLS as it saw it. */
export interface TransportObservation {
  /** The chain the transport presented, DER, leaf first (a middlebox's forged chain when intercepted). */
  chain: Uint8Array[];
  /** It verified against the client's trust store for the expected name. */
  verified: boolean;
  /** Why it did not verify (OpenSSL's or the name check's reason). */
  reason?: string;
}

/** Options of {@link observeTransport}. */
export interface ObserveOptions {
  /** The client's trust store for the transport (default: Node's root certificates). */
  ca?: string[];
  /** An HTTP proxy to CONNECT through, as the requests themselves would. */
  proxy?: string;
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
}

/**
 * Connects to `url`'s origin as the client's requests would (through the
 * proxy with CONNECT when there is one), reads the chain the transport
 * presents, checks it against the trust store and the host name, and closes.
 */
export async function observeTransport(url: URL, options: ObserveOptions = {}): Promise<TransportObservation> {
  if (url.protocol !== 'https:') return { chain: [], verified: false, reason: 'no transport TLS (http:)' };
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 443);
  const timeoutMs = options.timeoutMs ?? 10_000;
  const socket = options.proxy ? await connectThrough(new URL(options.proxy), host, port, timeoutMs) : undefined;
  return new Promise<TransportObservation>((resolve, reject) => {
    const conn = tls.connect({
      ...(socket ? { socket } : { host, port }),
      ...(options.ca ? { ca: options.ca } : {}),
      // RFC 6066 §3: SNI carries host names only.
      ...(net.isIP(host) === 0 ? { servername: host } : {}),
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => conn.destroy(new Error(`no TLS answer from ${host}:${port} in ${timeoutMs} ms`)), timeoutMs);
    conn.once('secureConnect', () => {
      clearTimeout(timer);
      const peer = conn.getPeerCertificate(true);
      const chain = chainOf(peer);
      let reason = conn.authorized ? undefined : String(conn.authorizationError ?? 'not verified');
      if (reason === undefined) {
        const nameError = tls.checkServerIdentity(host, peer);
        if (nameError) reason = nameError.message;
      }
      conn.destroy();
      resolve({ chain, verified: reason === undefined, ...(reason !== undefined ? { reason } : {}) });
    });
    conn.once('error', (e) => {
      clearTimeout(timer);
      reject(new AtlsError('CLOSED', `transport check of ${host}:${port} failed: ${e.message}`, { source: 'remote', cause: e }));
    });
  });
}

/** The DER chain, leaf first, as node:tls links it (a self-signed root points at itself). */
function chainOf(leaf: tls.DetailedPeerCertificate): Uint8Array[] {
  const out: Uint8Array[] = [];
  let cur: tls.DetailedPeerCertificate | undefined = leaf;
  while (cur?.raw && out.length < MAX_REPORT_CERTIFICATES) {
    out.push(new Uint8Array(cur.raw));
    if (!cur.issuerCertificate || cur.issuerCertificate === cur || cur.issuerCertificate.raw?.equals(cur.raw)) break;
    cur = cur.issuerCertificate;
  }
  return out;
}

/** A CONNECT tunnel through an HTTP proxy (RFC 9110 §9.3.6). */
function connectThrough(proxy: URL, host: string, port: number, timeoutMs: number): Promise<Duplex> {
  return new Promise((resolve, reject) => {
    const authority = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    const req = http.request({ host: proxy.hostname, port: Number(proxy.port || 80), method: 'CONNECT', path: authority, headers: { host: authority } });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`proxy ${proxy.host} did not answer CONNECT`)));
    req.once('connect', (res, socket) => {
      if (res.statusCode === 200) resolve(socket);
      else {
        socket.destroy();
        reject(new AtlsError('CLOSED', `proxy ${proxy.host} refused CONNECT ${authority}: ${res.statusCode}`, { source: 'remote' }));
      }
    });
    req.once('error', (e) => reject(new AtlsError('CLOSED', `proxy ${proxy.host}: ${e.message}`, { source: 'remote', cause: e })));
    req.end();
  });
}

/** The two inner request fields of a report (docs/protocol.md §5.11). */
export function transportReportFields(seen: TransportObservation): Array<[string, string]> {
  return [
    [HEADER_TRANSPORT_CHAIN, seen.chain.map((der) => `:${Buffer.from(der).toString('base64')}:`).join(', ')],
    [HEADER_TRANSPORT_VERIFIED, seen.verified ? '?1' : '?0'],
  ];
}

const BYTE_SEQUENCE = /^:([A-Za-z0-9+/]*={0,2}):$/;

/**
 * Parses a report strictly; `ownCertificates` (DER) are the service's own
 * transport certificates, when it knows them. A malformed report is the
 * peer's error (`MALFORMED_MESSAGE`); no fields at all is `undefined`.
 */
export function parseTransportReport(
  chainField: string | null | undefined,
  verifiedField: string | null | undefined,
  ownCertificates: readonly Uint8Array[] = [],
): TransportReport | undefined {
  if ((chainField === null || chainField === undefined) && (verifiedField === null || verifiedField === undefined)) return undefined;
  const bad = (why: string): AtlsError => new AtlsError('MALFORMED_MESSAGE', `transport report: ${why}`, { source: 'remote' });
  if (verifiedField !== '?0' && verifiedField !== '?1') throw bad(`${HEADER_TRANSPORT_VERIFIED} must be ?0 or ?1`);
  if (typeof chainField !== 'string') throw bad(`${HEADER_TRANSPORT_CHAIN} is missing`);
  if (chainField.length > (MAX_REPORT_BYTES * 4) / 3 + 4 * MAX_REPORT_CERTIFICATES) throw bad('too large');
  const items = chainField === '' ? [] : chainField.split(',').map((s) => s.trim());
  if (items.length > MAX_REPORT_CERTIFICATES) throw bad(`more than ${MAX_REPORT_CERTIFICATES} certificates`);
  const chain = items.map((item) => {
    const m = BYTE_SEQUENCE.exec(item);
    if (!m || m[1]!.length % 4 !== 0 || m[1]!.length === 0) throw bad('each certificate is an RFC 8941 byte sequence (:base64:)');
    return new Uint8Array(Buffer.from(m[1]!, 'base64'));
  });
  const verified = verifiedField === '?1';
  let subject: string | undefined;
  let issuer: string | undefined;
  if (chain[0]) {
    try {
      const leaf = new X509Certificate(chain[0]);
      subject = leaf.subject;
      issuer = leaf.issuer;
    } catch {
      throw bad('the leaf is not an X.509 certificate');
    }
  }
  const leaf = chain[0];
  const intercepted =
    ownCertificates.length > 0
      ? leaf === undefined || !ownCertificates.some((own) => Buffer.from(own).equals(leaf))
      : !verified;
  return { chain, verified, intercepted, subject, issuer };
}
