/**
 * The one error type of the library.
 *
 * Every failure is an {@link AtlsError}: a stable `code`, which side caused it
 * (`local` misuse of the API or the `remote` peer breaking the protocol), the
 * TLS alert where one exists, and hints for the HTTP status and CoAP response
 * code a transport binding should answer with. Errors raised by a session are
 * fatal and sticky: every later call on that session throws the same error.
 *
 * @example
 * ```ts
 * try { await server.receive(body); }
 * catch (e) {
 *   if (e instanceof AtlsError) return new Response(e.alertFlight, { status: e.httpStatus });
 *   throw e;
 * }
 * ```
 * @module
 */

/** Who caused an error: this program (API misuse, configuration) or the peer. */
export type ErrorSource = 'local' | 'remote';

/**
 * TLS alert descriptions (RFC 8446 §6, RFC 5246 §7.2, RFC 4279 §2).
 * Values are the wire numbers.
 */
export const AlertDescription = {
  close_notify: 0,
  unexpected_message: 10,
  bad_record_mac: 20,
  record_overflow: 22,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_revoked: 44,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  access_denied: 49,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  insufficient_security: 71,
  internal_error: 80,
  inappropriate_fallback: 86,
  user_canceled: 90,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  bad_certificate_status_response: 113,
  unknown_psk_identity: 115,
  certificate_required: 116,
  no_application_protocol: 120,
} as const;

export type AlertName = keyof typeof AlertDescription;

const alertNames = new Map<number, AlertName>(
  Object.entries(AlertDescription).map(([name, value]) => [value, name as AlertName]),
);

/** The name of an alert description number, or `alert_N` for unknown ones. */
export function alertName(description: number): string {
  return alertNames.get(description) ?? `alert_${description}`;
}

/** A TLS alert: level 1 = warning, 2 = fatal (RFC 5246 §7.2; TLS 1.3 ignores the level). */
export interface Alert {
  level: number;
  description: number;
  /** Human name, e.g. `bad_record_mac`. */
  name: string;
}

/** Stable error codes. Bindings and tests switch on these, never on messages. */
export type AtlsErrorCode =
  // API misuse and configuration (source: local)
  | 'INVALID_ARGUMENT'
  | 'INVALID_STATE'
  | 'NOT_ESTABLISHED'
  | 'UNSUPPORTED'
  | 'ENGINE_UNAVAILABLE'
  | 'CLOSED'
  // TLS handshake and records (source: usually remote)
  | 'HANDSHAKE_FAILED'
  | 'CERTIFICATE_UNTRUSTED'
  | 'CERTIFICATE_EXPIRED'
  | 'CERTIFICATE_NAME_MISMATCH'
  | 'CERTIFICATE_REQUIRED'
  | 'PSK_UNKNOWN'
  | 'PROTOCOL_VERSION'
  | 'BAD_RECORD_MAC'
  | 'MALFORMED_RECORD'
  | 'TRUNCATED_FLIGHT'
  | 'ALERT_RECEIVED'
  // Exported-key protection (architecture b)
  | 'MALFORMED_MESSAGE'
  | 'DECRYPT_FAILED'
  | 'REPLAYED'
  | 'TOO_OLD'
  | 'KEY_LIMIT_REACHED'
  // Resource bounds
  | 'TOO_LARGE'
  | 'LIMIT_REACHED'
  // A shared session store (Redis) did not answer: try again shortly (503 + Retry-After)
  | 'STORE_UNAVAILABLE'
  // Transport: the peer did not answer in time (CoAP retransmission exhausted)
  | 'TIMEOUT'
  // Transport: the peer answered, but not as an ATLS endpoint (a web page, a proxy's error)
  | 'NOT_ATLS'
  | 'INTERNAL';

/** HTTP status hint per code (draft §9.3: existing status codes only). */
const HTTP_STATUS: Record<AtlsErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  INVALID_STATE: 409,
  NOT_ESTABLISHED: 409,
  UNSUPPORTED: 400,
  ENGINE_UNAVAILABLE: 503,
  CLOSED: 410,
  HANDSHAKE_FAILED: 403,
  CERTIFICATE_UNTRUSTED: 403,
  CERTIFICATE_EXPIRED: 403,
  CERTIFICATE_NAME_MISMATCH: 403,
  CERTIFICATE_REQUIRED: 401,
  PSK_UNKNOWN: 401,
  PROTOCOL_VERSION: 400,
  BAD_RECORD_MAC: 400,
  MALFORMED_RECORD: 400,
  TRUNCATED_FLIGHT: 400,
  ALERT_RECEIVED: 400,
  MALFORMED_MESSAGE: 400,
  DECRYPT_FAILED: 400,
  REPLAYED: 400,
  TOO_OLD: 400,
  KEY_LIMIT_REACHED: 410,
  TOO_LARGE: 413,
  LIMIT_REACHED: 503,
  STORE_UNAVAILABLE: 503,
  TIMEOUT: 504,
  NOT_ATLS: 502,
  INTERNAL: 500,
};

/** Every error code, in the order of docs/protocol.md §1.4. */
export const ERROR_CODES = Object.keys(HTTP_STATUS) as readonly AtlsErrorCode[];

/** CoAP response code hint per code (RFC 7252 §5.9), as "c.dd". */
const COAP_CODE: Record<AtlsErrorCode, string> = {
  INVALID_ARGUMENT: '4.00',
  INVALID_STATE: '4.00',
  NOT_ESTABLISHED: '4.00',
  UNSUPPORTED: '4.00',
  ENGINE_UNAVAILABLE: '5.03',
  CLOSED: '4.04',
  HANDSHAKE_FAILED: '4.03',
  CERTIFICATE_UNTRUSTED: '4.03',
  CERTIFICATE_EXPIRED: '4.03',
  CERTIFICATE_NAME_MISMATCH: '4.03',
  CERTIFICATE_REQUIRED: '4.01',
  PSK_UNKNOWN: '4.01',
  PROTOCOL_VERSION: '4.00',
  BAD_RECORD_MAC: '4.00',
  MALFORMED_RECORD: '4.00',
  TRUNCATED_FLIGHT: '4.00',
  ALERT_RECEIVED: '4.00',
  MALFORMED_MESSAGE: '4.00',
  DECRYPT_FAILED: '4.00',
  REPLAYED: '4.00',
  TOO_OLD: '4.00',
  KEY_LIMIT_REACHED: '4.04',
  TOO_LARGE: '4.13',
  LIMIT_REACHED: '5.03',
  STORE_UNAVAILABLE: '5.03',
  TIMEOUT: '5.04',
  NOT_ATLS: '5.02',
  INTERNAL: '5.00',
};

/** Options for {@link AtlsError}. */
export interface AtlsErrorOptions {
  source?: ErrorSource;
  /** The TLS alert sent or received for this failure, if any. */
  alert?: Alert | number;
  /** Records (usually our alert) the binding must still deliver to the peer. */
  alertFlight?: Uint8Array;
  cause?: unknown;
  /** Seconds after which a retry may succeed (HTTP Retry-After, CoAP Max-Age on 5.03), for 503-class errors. */
  retryAfter?: number;
}

const DEFAULT_SOURCE: Partial<Record<AtlsErrorCode, ErrorSource>> = {
  INVALID_ARGUMENT: 'local',
  INVALID_STATE: 'local',
  NOT_ESTABLISHED: 'local',
  UNSUPPORTED: 'local',
  ENGINE_UNAVAILABLE: 'local',
  CLOSED: 'local',
  KEY_LIMIT_REACHED: 'local',
  STORE_UNAVAILABLE: 'local',
  INTERNAL: 'local',
};

/** The single error type thrown by every part of the library. */
export class AtlsError extends Error {
  override readonly name = 'AtlsError';
  readonly code: AtlsErrorCode;
  readonly source: ErrorSource;
  readonly alert: Alert | undefined;
  /** Records to send to the peer despite the failure (may be empty). */
  readonly alertFlight: Uint8Array;
  /** Seconds after which a retry may succeed, when the error says so (see {@link AtlsErrorOptions.retryAfter}). */
  readonly retryAfter: number | undefined;

  constructor(code: AtlsErrorCode, message: string, options: AtlsErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.source = options.source ?? DEFAULT_SOURCE[code] ?? 'remote';
    const a = options.alert;
    this.alert =
      a === undefined
        ? undefined
        : typeof a === 'number'
          ? { level: 2, description: a, name: alertName(a) }
          : a;
    this.alertFlight = options.alertFlight ?? new Uint8Array(0);
    this.retryAfter = options.retryAfter;
  }

  /** Suggested HTTP status for a response caused by this error. */
  get httpStatus(): number {
    return HTTP_STATUS[this.code];
  }

  /** Suggested CoAP response code ("4.00", ...) for this error. */
  get coapCode(): string {
    return COAP_CODE[this.code];
  }

  /** A copy carrying records that must reach the peer (used when an alert is produced). */
  withAlertFlight(alertFlight: Uint8Array): AtlsError {
    return new AtlsError(this.code, this.message, {
      source: this.source,
      ...(this.alert ? { alert: this.alert } : {}),
      alertFlight,
      cause: this.cause,
      ...(this.retryAfter !== undefined ? { retryAfter: this.retryAfter } : {}),
    });
  }

  /** A plain-object form for logs and JSON error bodies. */
  toJSON(): { code: AtlsErrorCode; source: ErrorSource; message: string; alert?: string } {
    return {
      code: this.code,
      source: this.source,
      message: this.message,
      ...(this.alert ? { alert: this.alert.name } : {}),
    };
  }
}

/**
 * The error code that best explains a fatal alert (RFC 8446 §6.2). Used both
 * for alerts received from the peer and for alerts a local stack produced.
 */
export function codeForAlert(description: number): AtlsErrorCode {
  switch (description) {
    case AlertDescription.unknown_ca:
      return 'CERTIFICATE_UNTRUSTED';
    case AlertDescription.certificate_expired:
      return 'CERTIFICATE_EXPIRED';
    case AlertDescription.bad_certificate:
    case AlertDescription.certificate_unknown:
    case AlertDescription.unsupported_certificate:
    case AlertDescription.certificate_revoked:
      return 'HANDSHAKE_FAILED';
    case AlertDescription.certificate_required:
      return 'CERTIFICATE_REQUIRED';
    case AlertDescription.unknown_psk_identity:
      return 'PSK_UNKNOWN';
    case AlertDescription.bad_record_mac:
      return 'BAD_RECORD_MAC';
    case AlertDescription.protocol_version:
      return 'PROTOCOL_VERSION';
    case AlertDescription.decode_error:
    case AlertDescription.record_overflow:
      return 'MALFORMED_RECORD';
    case AlertDescription.handshake_failure:
    case AlertDescription.insufficient_security:
    case AlertDescription.illegal_parameter:
    case AlertDescription.decrypt_error:
    case AlertDescription.no_application_protocol:
      return 'HANDSHAKE_FAILED';
    default:
      return 'ALERT_RECEIVED';
  }
}

/** An AtlsError for a fatal alert the peer sent us. */
export function receivedAlertError(description: number, level = 2): AtlsError {
  const name = alertName(description);
  return new AtlsError(codeForAlert(description), `peer sent fatal alert ${name} (${description})`, {
    source: 'remote',
    alert: { level, description, name },
  });
}

/** True when `e` is an AtlsError, optionally with the given code. */
export function isAtlsError(e: unknown, code?: AtlsErrorCode): e is AtlsError {
  return e instanceof AtlsError && (code === undefined || e.code === code);
}
