/**
 * Wire constants of the HTTP binding (docs/protocol.md §5): endpoint paths,
 * media types, the session cookie and the extra header names.
 *
 * @example
 * ```ts
 * fetch(new URL(DEFAULT_ENDPOINT, origin), {
 *   method: 'POST',
 *   headers: { 'content-type': MEDIA_TYPE_FLIGHT },
 *   body: flight,
 * });
 * ```
 * @module
 */
import { ENDPOINT_DEFAULTS } from '../endpoint/defaults.js';

/** Endpoint of later draft revisions (-02 on); the client's default. */
export const WELL_KNOWN_ENDPOINT = '/.well-known/atls';
/** Endpoint of draft-00 §9.7. */
export const LEGACY_ENDPOINT = '/atls';
/** The client's default endpoint path. */
export const DEFAULT_ENDPOINT = WELL_KNOWN_ENDPOINT;
/** Paths a server answers by default (both, draft-00 and -02). */
export const DEFAULT_ENDPOINTS: readonly string[] = [WELL_KNOWN_ENDPOINT, LEGACY_ENDPOINT];

/** Media type of bodies that are one TLS flight (draft-00 §9.2). */
export const MEDIA_TYPE_FLIGHT = 'application/atls+octet-stream';
/** The same, as spelled by draft-02 and later; accepted and echoed back. */
export const MEDIA_TYPE_FLIGHT_LATER = 'application/atls';
/**
 * Media type of bodies that are exactly one protected message (architecture
 * b, docs/protocol.md §4). Our choice: the draft defines none (decisions.md).
 */
export const MEDIA_TYPE_PROTECTED = 'application/atls-protected';

/** Name of the session cookie (RFC 6265). */
export const COOKIE_NAME = 'atls-session';

/**
 * Request and response header: the body starts with a flight of this many
 * bytes and ends with one protected message (the piggy-backed first request,
 * or its response). Decimal, no sign, no leading zeros except "0".
 */
export const HEADER_FLIGHT_LENGTH = 'atls-flight-length';
/**
 * Inner request header a records-mode server adds to a request that came as
 * TLS 1.3 early data (RFC 8470 §5.1): replayable, the app may answer 425.
 */
export const HEADER_EARLY_DATA = 'early-data';
/** Response header on every error: the AtlsError code (debugging, client errors). */
export const HEADER_ERROR = 'atls-error';

/** Default cap on one request body, flights and protected messages alike (1 MiB). */
export const DEFAULT_MAX_BODY_BYTES = ENDPOINT_DEFAULTS.httpMaxBodyBytes;
/** Default idle lifetime of an established session (1 hour). */
export const DEFAULT_SESSION_TTL_MS = ENDPOINT_DEFAULTS.sessionTtlMs;
/** Default lifetime of a half-open handshake (30 s). */
export const DEFAULT_HANDSHAKE_TTL_MS = ENDPOINT_DEFAULTS.handshakeTtlMs;
/** Default cap on concurrent half-open handshakes. */
export const DEFAULT_MAX_HALF_OPEN = ENDPOINT_DEFAULTS.maxHalfOpen;
/** Default cap on sessions, half-open or established. */
export const DEFAULT_MAX_SESSIONS = ENDPOINT_DEFAULTS.maxSessions;
