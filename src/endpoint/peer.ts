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

/**
 * What a server learns from a client's report of the transport TLS it saw (draft §6.2;
 * parsed by the HTTP binding, src/http/transport-report.ts), next to the authenticated peer.
 */
export interface TransportReport {
  chain: Uint8Array[];
  /** The client's verdict: the chain verified in its trust store for the name it expected. */
  verified: boolean;
  /**
   * The chain is not the service's own transport certificate (when the
   * service knows it: `transportCertificates`), else the client's chain did
   * not verify: someone in between terminated TLS.
   */
  intercepted: boolean;
  /** Subject and issuer of the reported leaf (`CN=...`, one RDN per line as Node prints them). */
  subject: string | undefined;
  issuer: string | undefined;
}

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
  /**
   * The client's report of its transport TLS (draft §6.2): the chain it was
   * shown and whether a middlebox intercepted it. Set by the first inner
   * request that carries one; undefined until then or from clients that send none.
   * Kept with this process's view of the session: not in the shared session state.
   */
  transport?: TransportReport;
}

/**
 * The peer record: fields copied from the handshake, except `subject`, which
 * parses the leaf certificate only when first read (an X.509 parse cost
 * ~0.2 ms per handshake, paid by every mutual handshake whether the app
 * looked or not). A prototype getter: `{ ...peer }` leaves it out, `JSON.stringify` keeps it.
 */
class PeerRecord implements AtlsPeer {
  readonly version: TlsVersion;
  readonly cipherSuite: string;
  readonly alpn: string | undefined;
  readonly serverName: string | undefined;
  readonly certificates: Uint8Array[];
  readonly pskIdentity: string | undefined;
  readonly resumed: boolean;
  transport?: TransportReport;
  /** null: parsed, no subject; undefined: not parsed yet. */
  private parsedSubject: string | null | undefined = undefined;

  constructor(
    readonly sessionId: string,
    readonly mode: Mode,
    info: HandshakeInfo,
  ) {
    this.version = info.version;
    this.cipherSuite = info.cipherSuite;
    this.alpn = info.alpn;
    this.serverName = info.serverName;
    this.certificates = info.peerCertificates;
    this.pskIdentity = info.pskIdentity;
    this.resumed = info.resumed;
  }

  get subject(): string | undefined {
    if (this.parsedSubject === undefined) {
      const leaf = this.certificates[0];
      let subject: string | null = null;
      if (leaf) {
        try {
          subject = new X509Certificate(leaf).subject;
        } catch {
          subject = null; // the TLS stack accepted it; a parse failure here only loses the convenience field
        }
      }
      this.parsedSubject = subject;
    }
    return this.parsedSubject ?? undefined;
  }

  /** A plain copy with `subject` (what spreading would miss). */
  toJSON(): AtlsPeer {
    return {
      sessionId: this.sessionId,
      mode: this.mode,
      version: this.version,
      cipherSuite: this.cipherSuite,
      alpn: this.alpn,
      serverName: this.serverName,
      certificates: this.certificates,
      subject: this.subject,
      pskIdentity: this.pskIdentity,
      resumed: this.resumed,
      ...(this.transport ? { transport: this.transport } : {}),
    };
  }
}

/**
 * Builds the peer record when the handshake completes; the certificate's
 * subject is parsed only if someone reads it.
 *
 * @example
 * ```ts
 * const peer = peerFromHandshake(id, 'exported', info);
 * peer.subject; // parsed now, once
 * ```
 */
export function peerFromHandshake(sessionId: string, mode: Mode, info: HandshakeInfo): AtlsPeer {
  return new PeerRecord(sessionId, mode, info);
}
