/**
 * Small pieces of the HTTP binding shared by the server and the client:
 * media type classification, bounded body reading, the piggy-back header,
 * and the one place where an error becomes an HTTP response.
 *
 * @example
 * ```ts
 * const kind = bodyKind(request.headers.get('content-type')); // 'flight' | 'protected' | undefined
 * const body = await readBody(request.body, 1 << 20);
 * ```
 * @module
 */
import { readLimited } from '../streams.js';
import { AtlsError } from '../errors.js';
import type { AtlsErrorCode } from '../errors.js';
import {
  HEADER_ERROR,
  MEDIA_TYPE_FLIGHT,
  MEDIA_TYPE_FLIGHT_LATER,
  MEDIA_TYPE_PROTECTED,
} from './constants.js';

/** What an ATLS request or response body holds, judged by its media type. */
export type BodyKind = 'flight' | 'protected';

/** The media type of a Content-Type value: lower case, without parameters (RFC 9110 §8.3.1). */
export function mediaType(contentType: string | null | undefined): string {
  if (!contentType) return '';
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/** Classifies a Content-Type; undefined for anything that is not an ATLS body (415). */
export function bodyKind(contentType: string | null | undefined): BodyKind | undefined {
  const t = mediaType(contentType);
  if (t === MEDIA_TYPE_FLIGHT || t === MEDIA_TYPE_FLIGHT_LATER) return 'flight'; // draft §9.2 (-00, -02)
  if (t === MEDIA_TYPE_PROTECTED) return 'protected';
  return undefined;
}

/**
 * Reads a body stream into one buffer, refusing more than `max` bytes
 * (TOO_LARGE) without buffering them: memory stays bounded whatever the peer sends.
 */
export async function readBody(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  declaredLength?: string | null,
): Promise<Uint8Array> {
  if (declaredLength !== null && declaredLength !== undefined && /^\d+$/.test(declaredLength)) {
    if (Number(declaredLength) > max) {
      await body?.cancel().catch(() => undefined);
      throw new AtlsError('TOO_LARGE', `body of ${declaredLength} bytes exceeds ${max}`, { source: 'remote' });
    }
  }
  // The transport breaking mid-body (the client went away) is the peer's doing.
  return readLimited(body, max, 'remote');
}

/**
 * Parses the ATLS-Flight-Length header against the body length: a decimal
 * byte count with no sign or leading zeros, at most `bodyLength`.
 * Throws MALFORMED_MESSAGE otherwise.
 */
export function parseFlightLength(value: string, bodyLength: number): number {
  if (!/^(0|[1-9]\d{0,8})$/.test(value)) {
    throw new AtlsError('MALFORMED_MESSAGE', 'ATLS-Flight-Length is not a decimal byte count', { source: 'remote' });
  }
  const n = Number(value);
  if (n > bodyLength) {
    throw new AtlsError('MALFORMED_MESSAGE', `ATLS-Flight-Length ${n} exceeds the body (${bodyLength} bytes)`, {
      source: 'remote',
    });
  }
  return n;
}

/** True when the flight starts with a TLS handshake record holding a ClientHello (RFC 8446 §5.1, §4). */
export function startsWithClientHello(flight: Uint8Array): boolean {
  if (flight[0] !== 22) return false;
  // DTLS record: type(1)=22 version(2)=254,x epoch(2) sequence(6) length(2); handshake: msg_type(1)=1 (RFC 6347 §4.1, §4.2.2)
  if (flight[1] === 254) return flight.length >= 14 && flight[13] === 1;
  // TLS record: type(1)=22 version(2) length(2); handshake: msg_type(1)=1 (client_hello)
  return flight.length >= 6 && flight[5] === 1;
}

/** Idempotent methods (RFC 9110 §9.2.2): safe to resend after the session was lost. */
export function isIdempotent(method: string): boolean {
  return ['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'].includes(method.toUpperCase());
}

const KNOWN_CODES: Record<AtlsErrorCode, true> = {
  INVALID_ARGUMENT: true, INVALID_STATE: true, NOT_ESTABLISHED: true, UNSUPPORTED: true,
  ENGINE_UNAVAILABLE: true, CLOSED: true, HANDSHAKE_FAILED: true, CERTIFICATE_UNTRUSTED: true,
  CERTIFICATE_EXPIRED: true, CERTIFICATE_NAME_MISMATCH: true, CERTIFICATE_REQUIRED: true, PSK_UNKNOWN: true,
  PROTOCOL_VERSION: true, BAD_RECORD_MAC: true, MALFORMED_RECORD: true, TRUNCATED_FLIGHT: true,
  ALERT_RECEIVED: true, MALFORMED_MESSAGE: true, DECRYPT_FAILED: true, REPLAYED: true, TOO_OLD: true,
  KEY_LIMIT_REACHED: true, TOO_LARGE: true, LIMIT_REACHED: true, STORE_UNAVAILABLE: true, INTERNAL: true, TIMEOUT: true, NOT_ATLS: true,
};
const CODES = new Set<string>(Object.keys(KNOWN_CODES));

/** An error code from an ATLS-Error header, if it names one. */
export function errorCodeFromHeader(value: string | null): AtlsErrorCode | undefined {
  return value !== null && CODES.has(value) ? (value as AtlsErrorCode) : undefined;
}

/**
 * A refusal that has no AtlsError code because it is about HTTP itself, not
 * ATLS: 403 (a DELETE that proves nothing), 404 (not an endpoint), 405
 * (method), 415 (media type). Internal: it
 * never escapes the handler.
 */
export class HttpRefusal extends Error {
  constructor(
    readonly status: 403 | 404 | 405 | 415,
    message: string,
    readonly headers: Array<[string, string]> = [],
  ) {
    super(message);
  }
}

/** Extra headers every ATLS response carries. */
export const NO_STORE = { 'cache-control': 'no-store' } as const;

/** An HTTP answer as plain bytes: what both the Web handler and the `node:http` fast path send. */
export interface HttpReply {
  status: number;
  /** Field lines in order; names lower case; `set-cookie` may repeat. */
  headers: Array<[string, string]>;
  /**
   * The body: bytes, or a stream (a chunk stream or records produced as the
   * inner response is, sent chunked). A stream that errors is cut off: the
   * connection is closed mid-body, which the client sees as a cut-short body.
   */
  body: Uint8Array | ReadableStream<Uint8Array>;
}

const encoder = new TextEncoder();

/** A fetch `Response` holding a {@link HttpReply}. */
export function replyToResponse(reply: HttpReply): Response {
  const headers = new Headers();
  for (const [k, v] of reply.headers) headers.append(k, v);
  // A 204 has no body (RFC 9110 §15.3.5); fetch refuses to make one with any.
  return new Response(reply.status === 204 ? null : reply.body, { status: reply.status, headers });
}

/**
 * The one place where a failure becomes an HTTP answer (draft §9.3:
 * existing status codes only). The status is the error's `httpStatus`
 * (src/errors.ts holds the table); the body is the alert records when the
 * TLS stack produced some (401/403/400 after a failed handshake), otherwise
 * a one-line text. `ATLS-Error` names the code. {@link HttpRefusal}s give
 * 403/404/405/415. Anything that is not an
 * AtlsError is our own bug: 500, with no detail leaked.
 */
export function errorReply(e: unknown, extraHeaders: Array<[string, string]> = []): HttpReply {
  if (e instanceof HttpRefusal) {
    return {
      status: e.status,
      headers: [['cache-control', NO_STORE['cache-control']], ['content-type', 'text/plain; charset=utf-8'], ...e.headers, ...extraHeaders],
      body: encoder.encode(`${e.message}\n`),
    };
  }
  const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', 'internal error', { cause: e });
  const headers: Array<[string, string]> = [['cache-control', NO_STORE['cache-control']], [HEADER_ERROR, err.code], ...extraHeaders];
  // RFC 9110 §10.2.3: every 503 here is temporary (limits, engine, session store): say when to retry.
  if (err.retryAfter !== undefined) headers.push(['retry-after', String(Math.max(0, Math.ceil(err.retryAfter)))]);
  else if (err.httpStatus === 503) headers.push(['retry-after', '1']);
  let body: Uint8Array;
  if (err.alertFlight.length > 0) {
    headers.push(['content-type', MEDIA_TYPE_FLIGHT]);
    body = err.alertFlight;
  } else {
    headers.push(['content-type', 'text/plain; charset=utf-8']);
    body = encoder.encode(e instanceof AtlsError ? `${err.code}: ${err.message}\n` : 'INTERNAL: internal error\n');
  }
  return { status: err.httpStatus, headers, body };
}

/** {@link errorReply} as a fetch `Response`. */
export function errorResponse(e: unknown, extraHeaders: Array<[string, string]> = []): Response {
  return replyToResponse(errorReply(e, extraHeaders));
}
