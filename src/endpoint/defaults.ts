/**
 * Every default of the ATLS endpoints, in one place: the HTTP binding, the
 * CoAP server, the gateway and the `atls` command all read them from here.
 *
 * @example
 * ```ts
 * createAtlsHandler({ tls, app, ttl: ENDPOINT_DEFAULTS.sessionTtlMs / 2 });
 * ```
 * @module
 */

/** Defaults of the session registry and of the bindings' bodies. */
export const ENDPOINT_DEFAULTS = Object.freeze({
  /** Idle lifetime of an established session: 1 hour, refreshed by every request. */
  sessionTtlMs: 60 * 60 * 1000,
  /** Lifetime of a half-open handshake: 30 s (an honest one needs a few round trips). */
  handshakeTtlMs: 30 * 1000,
  /** Handshakes in progress at once, per process. */
  maxHalfOpen: 1000,
  /** Sessions held, half-open or established (local table plus the in-memory state store). */
  maxSessions: 100_000,
  /** Largest HTTP request body, flights and protected messages alike: 1 MiB. */
  httpMaxBodyBytes: 1024 * 1024,
  /** Largest CoAP body (after block-wise reassembly) either way: 64 KiB. */
  coapMaxBodyBytes: 64 * 1024,
  /** Sessions a CoAP-to-HTTP gateway maps at once (the oldest mapping gives way beyond). */
  gatewayMaxSessions: 10_000,
  /** The gateway's HTTP request timeout: 30 s. */
  gatewayTimeoutMs: 30 * 1000,
  /**
   * TLS 1.3 tickets a server issues per handshake when its `tls.ticketCount` is not set and
   * the engine can choose (OpenSSL's default is two): a client keeps only the newest, and each
   * ticket costs the server one session encoding (RFC 8446 §4.6.1).
   */
  ticketCount: 1,
  /** Established sessions whose keys a process keeps ready when the state store is shared (Redis). */
  keyCacheEntries: 10_000,
});
