/**
 * CoAP wire constants in one place (RFC 7252, RFC 7959, RFC 9175) and the
 * ATLS-over-CoAP choices of this project (docs/protocol.md §6).
 *
 * @example
 * ```ts
 * import { CoapCode, OptionNumber, DEFAULT_CONTENT_FORMATS } from './constants.js';
 * const created = CoapCode.Created; // 2.01 = 0x41
 * ```
 * @module
 */

/** Protocol version carried in every header (RFC 7252 §3). */
export const COAP_VERSION = 1;
/** Default UDP port (RFC 7252 §6.1). */
export const DEFAULT_COAP_PORT = 5683;
/** Payload marker that separates options from payload (RFC 7252 §3). */
export const PAYLOAD_MARKER = 0xff;

/** Message types (RFC 7252 §3). */
export const MessageType = {
  CON: 0,
  NON: 1,
  ACK: 2,
  RST: 3,
} as const;
/** One of {@link MessageType}. */
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

/** A code from class and detail: `c.dd` -> `c << 5 | dd` (RFC 7252 §3). */
export function makeCode(cls: number, detail: number): number {
  return ((cls & 0x07) << 5) | (detail & 0x1f);
}

/** Request methods and response codes used here (RFC 7252 §12.1, RFC 7959 §2.9). */
export const CoapCode = {
  Empty: makeCode(0, 0),
  GET: makeCode(0, 1),
  POST: makeCode(0, 2),
  PUT: makeCode(0, 3),
  DELETE: makeCode(0, 4),
  FETCH: makeCode(0, 5),
  PATCH: makeCode(0, 6),
  iPATCH: makeCode(0, 7),
  Created: makeCode(2, 1),
  Deleted: makeCode(2, 2),
  Valid: makeCode(2, 3),
  Changed: makeCode(2, 4),
  Content: makeCode(2, 5),
  Continue: makeCode(2, 31),
  BadRequest: makeCode(4, 0),
  Unauthorized: makeCode(4, 1),
  BadOption: makeCode(4, 2),
  Forbidden: makeCode(4, 3),
  NotFound: makeCode(4, 4),
  MethodNotAllowed: makeCode(4, 5),
  NotAcceptable: makeCode(4, 6),
  RequestEntityIncomplete: makeCode(4, 8),
  PreconditionFailed: makeCode(4, 12),
  RequestEntityTooLarge: makeCode(4, 13),
  UnsupportedContentFormat: makeCode(4, 15),
  InternalServerError: makeCode(5, 0),
  NotImplemented: makeCode(5, 1),
  BadGateway: makeCode(5, 2),
  ServiceUnavailable: makeCode(5, 3),
  GatewayTimeout: makeCode(5, 4),
  ProxyingNotSupported: makeCode(5, 5),
} as const;

/** Method names accepted by the client APIs, mapped to their codes. */
export const METHOD_CODES: Readonly<Record<string, number>> = {
  GET: CoapCode.GET,
  POST: CoapCode.POST,
  PUT: CoapCode.PUT,
  DELETE: CoapCode.DELETE,
  FETCH: CoapCode.FETCH,
  PATCH: CoapCode.PATCH,
  IPATCH: CoapCode.iPATCH,
};

/** `c.dd` text of a code, e.g. `0x41` -> `"2.01"`. */
export function codeToString(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}

/** A code from `"c.dd"` text; throws on anything else. */
export function codeFromString(text: string): number {
  const m = /^([0-7])\.([0-3][0-9])$/.exec(text);
  if (!m || Number(m[2]) > 31) throw new RangeError(`not a CoAP code: ${text}`);
  return makeCode(Number(m[1]), Number(m[2]));
}

/** True for 0.01..0.31 (RFC 7252 §5.8). */
export function isRequestCode(code: number): boolean {
  return code >> 5 === 0 && code !== 0;
}

/** True for classes 2..5 (RFC 7252 §5.9). */
export function isResponseCode(code: number): boolean {
  const cls = code >> 5;
  return cls >= 2 && cls <= 5;
}

/** Option numbers (RFC 7252 §5.10, RFC 7959 §2.1 and §4, RFC 9175 §3.2). */
export const OptionNumber = {
  IfMatch: 1,
  UriHost: 3,
  ETag: 4,
  IfNoneMatch: 5,
  Observe: 6,
  UriPort: 7,
  LocationPath: 8,
  Oscore: 9,
  UriPath: 11,
  ContentFormat: 12,
  MaxAge: 14,
  UriQuery: 15,
  Accept: 17,
  LocationQuery: 20,
  Block2: 23,
  Block1: 27,
  Size2: 28,
  ProxyUri: 35,
  ProxyScheme: 39,
  Size1: 60,
  /** RFC 9175 §2.2.1: freshness and address verification. */
  Echo: 252,
  NoResponse: 258,
  RequestTag: 292,
} as const;

/** Option numbers this implementation understands; others that are critical get 4.02. */
export const KNOWN_OPTIONS: ReadonlySet<number> = new Set(Object.values(OptionNumber));

/** Critical options have an odd number (RFC 7252 §5.4.6). */
export function isCriticalOption(number: number): boolean {
  return (number & 1) === 1;
}

/**
 * Content-Formats of ATLS bodies. None was ever registered (the drafts say
 * "TBD"), so they come from the experimental range 65000-65535 (RFC 7252
 * §12.3) and are configurable; these defaults are documented in
 * docs/protocol.md §6.
 */
export interface AtlsContentFormats {
  /** A body that is one TLS flight (records). Default 65000. */
  records: number;
  /** A body that is one protected message (architecture b). Default 65001. */
  protected: number;
}

/** The default ATLS Content-Formats. */
export const DEFAULT_CONTENT_FORMATS: Readonly<AtlsContentFormats> = Object.freeze({
  records: 65000,
  protected: 65001,
});

/** Lowest experimental Content-Format (RFC 7252 §12.3). */
export const EXPERIMENTAL_FORMAT_MIN = 65000;
/** Highest experimental Content-Format (RFC 7252 §12.3). */
export const EXPERIMENTAL_FORMAT_MAX = 65535;

/** Registered Content-Formats that appear in examples and the gateway map (RFC 7252 §12.3). */
export const ContentFormat = {
  TextPlain: 0,
  LinkFormat: 40,
  Xml: 41,
  OctetStream: 42,
  Json: 50,
  Cbor: 60,
} as const;

/** The well-known endpoint of ATLS flights (draft-02 on), as Uri-Path segments. */
export const WELL_KNOWN_PATH: readonly string[] = ['.well-known', 'atls'];
/** First Location-Path segment of per-session resources (`atls/<id>`, the -05 model). */
export const SESSION_PATH_PREFIX = 'atls';

/**
 * Transmission parameters (RFC 7252 §4.8) and the derived times (§4.8.2), in
 * milliseconds. An endpoint takes a partial override for tests.
 */
export interface TransmissionParameters {
  ackTimeout: number;
  ackRandomFactor: number;
  maxRetransmit: number;
  nstart: number;
  defaultLeisure: number;
  probingRate: number;
  maxLatency: number;
  processingDelay: number;
}

/** RFC 7252 §4.8 defaults. */
export const DEFAULT_TRANSMISSION: Readonly<TransmissionParameters> = Object.freeze({
  ackTimeout: 2000,
  ackRandomFactor: 1.5,
  maxRetransmit: 4,
  nstart: 1,
  defaultLeisure: 5000,
  probingRate: 1,
  maxLatency: 100_000,
  processingDelay: 2000,
});

/** MAX_TRANSMIT_SPAN = ACK_TIMEOUT * (2^MAX_RETRANSMIT - 1) * ACK_RANDOM_FACTOR (RFC 7252 §4.8.2). */
export function maxTransmitSpan(p: TransmissionParameters): number {
  return p.ackTimeout * (2 ** p.maxRetransmit - 1) * p.ackRandomFactor;
}

/** MAX_TRANSMIT_WAIT = ACK_TIMEOUT * (2^(MAX_RETRANSMIT + 1) - 1) * ACK_RANDOM_FACTOR (RFC 7252 §4.8.2). */
export function maxTransmitWait(p: TransmissionParameters): number {
  return p.ackTimeout * (2 ** (p.maxRetransmit + 1) - 1) * p.ackRandomFactor;
}

/** MAX_RTT = 2 * MAX_LATENCY + PROCESSING_DELAY (RFC 7252 §4.8.2). */
export function maxRtt(p: TransmissionParameters): number {
  return 2 * p.maxLatency + p.processingDelay;
}

/** EXCHANGE_LIFETIME = MAX_TRANSMIT_SPAN + 2 * MAX_LATENCY + PROCESSING_DELAY (RFC 7252 §4.8.2); 247 s by default. */
export function exchangeLifetime(p: TransmissionParameters): number {
  return maxTransmitSpan(p) + 2 * p.maxLatency + p.processingDelay;
}

/** NON_LIFETIME = MAX_TRANSMIT_SPAN + MAX_LATENCY (RFC 7252 §4.8.2); 145 s by default. */
export function nonLifetime(p: TransmissionParameters): number {
  return maxTransmitSpan(p) + p.maxLatency;
}

/** Smallest and largest block sizes as SZX (RFC 7959 §2.2: 2^(SZX+4), SZX 7 reserved). */
export const MIN_SZX = 0;
export const MAX_SZX = 6;
/** Default block size of our client and server (bytes). */
export const DEFAULT_BLOCK_SIZE = 1024;
