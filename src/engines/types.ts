/**
 * The TLS engine interface: a real TLS stack driven with byte buffers.
 *
 * An engine turns configuration into connections; a connection takes whole
 * peer flights in and gives whole flights out (draft §6.1, Appendix B). It does
 * no network I/O and owns no timers. Three engines implement it: `node`
 * (Node's own `tls` over an in-memory duplex), `openssl` (a native
 * memory-BIO addon) and `webcrypto` (a TLS 1.3 client on the Web Crypto API,
 * for browsers). The conformance suite in `test/pair` runs against each.
 *
 * Flight rule: `start()` / `receive()` resolve with every record the stack
 * produced before it needs more peer input: never a partial flight, never two
 * flights merged.
 * @module
 */
import type { TlsRecord } from '../records.js';

/** Protocol versions an engine may negotiate. */
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3' | 'DTLSv1.2';

/** PEM text or DER/PEM bytes. */
export type PemInput = string | Uint8Array;

/** Settings shared by clients and servers. */
export interface TlsCommonConfig {
  /** Lowest version to negotiate (default `TLSv1.2`). */
  minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** Highest version to negotiate (default `TLSv1.3`). */
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** Use DTLS 1.2 instead of TLS (engines with `capabilities.dtls`). */
  dtls?: boolean;
  /** Own certificate chain (PEM, leaf first). */
  cert?: PemInput;
  /** Own private key (PEM). */
  key?: PemInput;
  /** Trust anchors for verifying the peer (PEM, one or more certificates). */
  ca?: PemInput | PemInput[];
  /** ALPN protocols, in preference order. */
  alpn?: string[];
  /**
   * Cipher list in OpenSSL syntax; TLS 1.3 suite names (`TLS_AES_128_GCM_SHA256`)
   * may appear in it and select the TLS 1.3 suites.
   */
  ciphers?: string;
  /**
   * TLS 1.3 suites, colon separated, as OpenSSL's `-ciphersuites`
   * (`TLS_AES_256_GCM_SHA384:TLS_AES_128_CCM_SHA256`); replaces any TLS 1.3
   * names in `ciphers`. Default: the three suites every TLS 1.3 stack offers.
   */
  ciphersuites?: string;
  /** Key exchange groups, colon separated (`X25519:P-256`). */
  groups?: string;
  /** Signature algorithms, colon separated, OpenSSL syntax. */
  sigalgs?: string;
  /**
   * Receives every secret of the connection as one line of the NSS key log
   * format (`SSLKEYLOGFILE`: `CLIENT_RANDOM`, `EXPORTER_SECRET`, ...), so a
   * capture can be decrypted offline. Node engine only; for examples and
   * debugging, never in production.
   */
  keyLog?: (line: string) => void;
  /** DTLS: largest datagram the engine may produce (default 1200; native engine). */
  dtlsMtu?: number;
  /** DTLS: first retransmission timeout in ms, doubled on each retry (default 1000, RFC 6347 §4.2.4.1). */
  dtlsInitialTimeoutMs?: number;
}

/** An external pre-shared key (TLS 1.2 PSK suites, RFC 4279; TLS 1.3 external PSK, RFC 8446 §4.2.11). */
export interface PskCredential {
  identity: string;
  key: Uint8Array;
}

export interface TlsClientConfig extends TlsCommonConfig {
  /** SNI to send, and the name the server certificate must match (RFC 6125). */
  serverName?: string;
  /** Verify the server certificate (default true). False is for tests only. */
  verifyPeer?: boolean;
  /** Authenticate with a PSK instead of (TLS 1.3: or besides) a certificate. */
  psk?: PskCredential;
  /** Resumption state from an earlier session's `ticket` event. */
  session?: Uint8Array;
  /**
   * Early data to send as 0-RTT on resumption (engines with `capabilities.earlyData`, a ticket that
   * allows it); only replay-safe data. Never sent otherwise: when `HandshakeInfo.earlyData` is not
   * `accepted`, the caller decides whether to send it after the handshake (RFC 8446 §4.2.10).
   */
  earlyData?: Uint8Array;
}

export interface TlsServerConfig extends TlsCommonConfig {
  /** Ask the client for a certificate. */
  requestClientCert?: boolean;
  /** Fail the handshake when the client sends no valid certificate (implies request). */
  requireClientCert?: boolean;
  /** Look up the key for a PSK identity; undefined means unknown identity. */
  pskLookup?: (identity: string) => Uint8Array | undefined;
  /** PSK identity hint (TLS 1.2 only). */
  pskHint?: string;
  /**
   * Session ticket keys (48 bytes). Servers that share them resume each other's
   * sessions; with `sessionIdContext` equal as well.
   */
  ticketKeys?: Uint8Array;
  /** Session id context; must be equal on every server that shares `ticketKeys`. */
  sessionIdContext?: string;
  /** Number of TLS 1.3 tickets to issue (engines with `capabilities.ticketCount`; default 2). */
  ticketCount?: number;
  /** Certificates chosen by SNI; the top-level cert/key serve any other name. */
  sniCertificates?: Record<string, { cert: PemInput; key: PemInput }>;
  /** Accept TLS 1.3 early data up to this many bytes (0 = refuse; native engine only). */
  maxEarlyData?: number;
  /** DTLS: require a cookie exchange (HelloVerifyRequest) before state is kept. */
  dtlsCookieSecret?: Uint8Array;
  /** DTLS: the peer's identity (e.g. `ip:port`) that the cookie is bound to. */
  dtlsPeer?: string;
}

/** What the handshake established. */
export interface HandshakeInfo {
  version: TlsVersion;
  /** IANA cipher suite name, e.g. `TLS_AES_128_GCM_SHA256`. */
  cipherSuite: string;
  /** Negotiated ALPN protocol, if any. */
  alpn: string | undefined;
  /** SNI the client sent (as the server saw it) or asked for (client). */
  serverName: string | undefined;
  /** Peer certificate chain, DER, leaf first; empty when the peer sent none. */
  peerCertificates: Uint8Array[];
  /** PSK identity used, when the handshake was authenticated by an external PSK. */
  pskIdentity: string | undefined;
  /** True when this handshake resumed an earlier session. */
  resumed: boolean;
  /** TLS 1.3 early data: accepted, rejected or not offered. */
  earlyData: 'accepted' | 'rejected' | 'none';
  /** Native engine: the peer's certificate chain verified to a trust anchor. */
  peerVerified?: boolean;
  /** Native engine: why verification failed (OpenSSL's text), when it did. */
  verifyError?: string;
  /** Native engine: the chain OpenSSL built, DER, leaf first, ending at the trust anchor. */
  verifiedChain?: Uint8Array[];
}

/** Events an engine reports while processing a flight. */
export type EngineEvent =
  | { type: 'handshake'; info: HandshakeInfo }
  | { type: 'data'; data: Uint8Array; /** TLS 1.3 early data (replayable, RFC 8446 §8). */ early?: boolean }
  | { type: 'ticket'; session: Uint8Array }
  | { type: 'alert'; level: number; description: number; name: string }
  | { type: 'closed' };

/** The result of one step: the outbound flight (possibly empty) and events. */
export interface EngineStep {
  flight: Uint8Array;
  /** DTLS: `flight` cut into the datagrams the stack wrote, each within the MTU. */
  datagrams?: Uint8Array[];
  events: EngineEvent[];
}

/** A client secret from the engine's key log (NSS key log format: label, client random, secret). */
export interface PeerSecret {
  /** TLS 1.3: client_application_traffic_secret_0 (CLIENT_TRAFFIC_SECRET_0); TLS 1.2: the master secret (CLIENT_RANDOM). */
  secret: Uint8Array;
  /** The ClientHello random the line names (TLS 1.2 key expansion, RFC 5246 §6.3). */
  clientRandom: Uint8Array;
}

/**
 * One TLS connection inside an engine. Methods reject with `AtlsError`; on a
 * fatal error the error's `alertFlight` holds the alert records to deliver.
 */
export interface EngineConnection {
  /** Client: begin the handshake; resolves with the first flight. */
  start(): Promise<EngineStep>;
  /**
   * Inject one whole peer flight; resolves once the stack wants more input.
   * `records`: the flight already split by the record scanner (src/records.ts),
   * so that an engine does not parse it again.
   */
  receive(flight: Uint8Array, records?: readonly TlsRecord[]): Promise<EngineStep>;
  /** Encrypt application data into TLS records (after the handshake). */
  write(data: Uint8Array): Promise<EngineStep>;
  /**
   * RFC 5705 / RFC 8446 §7.5 exporter. `context === undefined` means no
   * context, which differs from an empty one in TLS 1.2.
   */
  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array;
  /** Send close_notify; resolves with the records to deliver. */
  close(): Promise<EngineStep>;
  /** Free everything now; idempotent. */
  destroy(): void;
  /**
   * Server, called before the first flight: keep the client's secret from
   * the key log (see {@link PeerSecret}) for {@link peerTrafficSecret}.
   */
  keepPeerTrafficSecret?(): void;
  /**
   * The kept client secret, handed over once (the engine forgets it);
   * undefined before the handshake completed and in DTLS. Lets the endpoint
   * authenticate the peer's records before the engine reads them (a record
   * failing there would be fatal, RFC 8446 §5.2, RFC 5246 §7.2.2).
   */
  peerTrafficSecret?(): PeerSecret | undefined;
  /** DTLS: the time in ms until the next retransmission is due, or undefined. */
  dtlsTimeout?(): number | undefined;
  /** DTLS: the retransmission timer fired; resolves with records to resend. */
  dtlsHandleTimeout?(): Promise<EngineStep>;
}

/** What an engine can do beyond the common interface. */
export interface EngineCapabilities {
  /** Flights are delimited exactly (the stack says when it wants to read). */
  exactFlights: boolean;
  dtls: boolean;
  earlyData: boolean;
  ticketCount: boolean;
  /** Exporter keeps "no context" apart from "empty context" as requested. */
  exporterContextControl: boolean;
  /** The engine implements the server role (`createServer`). */
  server: boolean;
  /** The TLS versions it negotiates. */
  tlsVersions: readonly ('TLSv1.2' | 'TLSv1.3')[];
  /** A client can authenticate with a certificate (`cert`/`key`). */
  clientCertificates: boolean;
}

/** A TLS engine: creates connections in either role. */
export interface TlsEngine {
  readonly name: 'node' | 'openssl' | 'webcrypto';
  readonly capabilities: EngineCapabilities;
  createClient(config: TlsClientConfig): EngineConnection;
  createServer(config: TlsServerConfig): EngineConnection;
}
