/**
 * The authenticated ATLS peer as the inner application sees it.
 *
 * @example
 * ```ts
 * const handler = createAtlsHandler({ tls, app: (req, peer) =>
 *   new Response(`hello ${peer.subject ?? peer.pskIdentity ?? 'anonymous'}`) });
 * ```
 * @module
 */
import { X509Certificate } from 'node:crypto';
import type { HandshakeInfo, TlsVersion } from '../engines/types.js';
import type { Mode } from '../session/types.js';

/** Who is at the other end of an ATLS session, and how it was established. */
export interface AtlsPeer {
  /** The session id (the cookie value). */
  sessionId: string;
  /** `exported` (architecture b) or `records` (architecture a). */
  mode: Mode;
  version: TlsVersion;
  /** IANA cipher suite name, e.g. `TLS_AES_128_GCM_SHA256`. */
  cipherSuite: string;
  alpn: string | undefined;
  /** SNI the client sent. */
  serverName: string | undefined;
  /** The client's certificate chain, DER, leaf first; empty without mutual authentication. */
  certificates: Uint8Array[];
  /** Subject of the client's leaf certificate (`CN=...`, one RDN per line as Node prints it). */
  subject: string | undefined;
  /** The external PSK identity, when the client authenticated with one. */
  pskIdentity: string | undefined;
  /** The handshake resumed an earlier session. */
  resumed: boolean;
}

/** Builds the peer record once, when the handshake completes. */
export function peerFromHandshake(sessionId: string, mode: Mode, info: HandshakeInfo): AtlsPeer {
  let subject: string | undefined;
  const leaf = info.peerCertificates[0];
  if (leaf) {
    try {
      subject = new X509Certificate(leaf).subject;
    } catch {
      subject = undefined; // the TLS stack accepted it; a parse failure here only loses the convenience field
    }
  }
  return {
    sessionId,
    mode,
    version: info.version,
    cipherSuite: info.cipherSuite,
    alpn: info.alpn,
    serverName: info.serverName,
    certificates: info.peerCertificates,
    subject,
    pskIdentity: info.pskIdentity,
    resumed: info.resumed,
  };
}
