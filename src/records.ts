/**
 * Record framing and keyless inspection of ATLS flights (draft §6.1.2–§6.1.4).
 *
 * An ATLS body is a whole number of TLS (or DTLS) records. This module is
 * what a gateway, middlebox or operator's tool can see of it without keys:
 * the record layer, and the plaintext hellos of the handshake. It imports
 * nothing but the error type and the byte reader, so it can be used alone:
 *
 * @example
 * ```ts
 * import { splitRecords, inspectFlight, parseClientHello } from 'atls/records';
 * const records = splitRecords(body);            // throws AtlsError on a bad record layer
 * const hello = parseClientHello(body);          // SNI, ALPN, suites, groups, ...
 * console.log(hello.serverName, hello.alpn);
 * console.log(JSON.stringify(inspectFlight(body), null, 2));
 * ```
 *
 * Every byte is treated as hostile: all lengths are bounds-checked, memory is
 * at most a small multiple of the input, and every failure is an `AtlsError`
 * with source `remote` (`TRUNCATED_FLIGHT` or `MALFORMED_RECORD`).
 * @module
 */
import { AtlsError, AlertDescription, alertName } from './errors.js';
import { ByteReader, concatBytes, toHex } from './bytes.js';
import {
  type NamedValue,
  cipherSuiteName,
  contentTypeName,
  extensionName,
  groupName,
  handshakeTypeName,
  named,
  pskModeName,
  signatureSchemeName,
  versionName,
} from './tls-names.js';

export type { NamedValue } from './tls-names.js';
export {
  cipherSuiteName,
  contentTypeName,
  extensionName,
  groupName,
  handshakeTypeName,
  pskModeName,
  signatureSchemeName,
  versionName,
} from './tls-names.js';

// ---------------------------------------------------------------------------
// Constants

/** Record content types (RFC 8446 §5.1, RFC 6520, RFC 9146). */
export const ContentType = {
  change_cipher_spec: 20,
  alert: 21,
  handshake: 22,
  application_data: 23,
  heartbeat: 24,
  /** DTLS 1.2 with a connection ID only (RFC 9146 §4). */
  tls12_cid: 25,
} as const;

/** Handshake message types (RFC 8446 §4 and §4.4.1, RFC 6347 §4.3.2). */
export const HandshakeType = {
  client_hello: 1,
  server_hello: 2,
  hello_verify_request: 3,
  new_session_ticket: 4,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;

/** Bytes in a TLS record header: type(1) version(2) length(2) (RFC 8446 §5.1). */
export const TLS_HEADER_LENGTH = 5;
/** Bytes in a DTLS 1.0/1.2 record header: type(1) version(2) epoch(2) seq(6) length(2) (RFC 6347 §4.1). */
export const DTLS_HEADER_LENGTH = 13;

/**
 * Default upper bound on a record fragment: 2^14 + 256, the TLS 1.3 ciphertext
 * limit (RFC 8446 §5.2). Every AEAD record any current stack writes fits in it.
 */
export const MAX_RECORD_FRAGMENT = 2 ** 14 + 256;
/**
 * The largest fragment any TLS version allows, 2^14 + 2048 (RFC 5246 §6.2.3);
 * `maxRecordLength` may be raised up to this for old CBC stacks.
 */
export const MAX_RECORD_FRAGMENT_TLS12 = 2 ** 14 + 2048;
/** Default bound on records per body (see docs/decisions.md, `records`). */
export const DEFAULT_MAX_RECORDS = 4096;
/** Default bound on one reassembled handshake message (256 KiB). */
export const DEFAULT_MAX_HANDSHAKE_LENGTH = 2 ** 18;
/** Most handshake messages read from one flight; real flights carry fewer than 20. */
export const MAX_HANDSHAKE_MESSAGES = 1024;

/** The random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3). */
export const HELLO_RETRY_REQUEST_RANDOM = Uint8Array.from(
  'cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c'.match(/../g)!.map((h) => parseInt(h, 16)),
);

/** Downgrade sentinels in the last 8 bytes of a ServerHello random (RFC 8446 §4.1.3). */
const DOWNGRADE_TLS12 = '444f574e47524401';
const DOWNGRADE_TLS11 = '444f574e47524400';

// ---------------------------------------------------------------------------
// Record layer

/** One whole record of a flight. `fragment` is a view into the input (no copy). */
export interface TlsRecord {
  contentType: number;
  /** e.g. `handshake`, `application_data`. */
  contentTypeName: string;
  /** The record's (legacy) version field, e.g. 0x0303. */
  version: number;
  /** e.g. `TLSv1.2`, `DTLSv1.2`. */
  versionName: string;
  /** Fragment length from the header. */
  length: number;
  fragment: Uint8Array;
  /** Offset of the record header within the body. */
  offset: number;
  /** Header size: 5 (TLS), 13 (DTLS), 13 + CID length (DTLS tls12_cid). */
  headerLength: number;
  /** DTLS only. */
  epoch?: number;
  /** DTLS only: the 48-bit record sequence number. */
  sequence?: bigint;
  /** DTLS tls12_cid records only: the connection ID (RFC 9146 §4). */
  cid?: Uint8Array;
}

/** Options for {@link splitRecords}. */
export interface SplitOptions {
  /** Parse DTLS 1.0/1.2 records instead of TLS (default false). */
  dtls?: boolean;
  /** Most records accepted in one body (default {@link DEFAULT_MAX_RECORDS}). */
  maxRecords?: number;
  /**
   * Longest fragment accepted (default {@link MAX_RECORD_FRAGMENT}; at most
   * {@link MAX_RECORD_FRAGMENT_TLS12}).
   */
  maxRecordLength?: number;
  /**
   * DTLS: the connection ID length negotiated for records the peer receives.
   * The tls12_cid header does not carry it (RFC 9146 §4), so such records are
   * rejected unless it is given.
   */
  cidLength?: number;
}

function malformed(message: string, alert: number = AlertDescription.decode_error): AtlsError {
  return new AtlsError('MALFORMED_RECORD', message, { source: 'remote', alert });
}

function truncated(message: string): AtlsError {
  return new AtlsError('TRUNCATED_FLIGHT', message, { source: 'remote', alert: AlertDescription.decode_error });
}

function intOption(v: number | undefined, dflt: number, name: string, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new AtlsError('INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}`);
  }
  return v;
}

interface Limits {
  dtls: boolean;
  maxRecords: number;
  maxRecordLength: number;
  cidLength: number | undefined;
}

function limits(opts: SplitOptions): Limits {
  return {
    dtls: opts.dtls === true,
    maxRecords: intOption(opts.maxRecords, DEFAULT_MAX_RECORDS, 'maxRecords', 1, 2 ** 31),
    maxRecordLength: intOption(
      opts.maxRecordLength,
      MAX_RECORD_FRAGMENT,
      'maxRecordLength',
      0,
      MAX_RECORD_FRAGMENT_TLS12,
    ),
    cidLength: opts.cidLength === undefined ? undefined : intOption(opts.cidLength, 0, 'cidLength', 1, 255),
  };
}

function validContentType(t: number, dtls: boolean): boolean {
  // RFC 8446 §5: an unknown record type is an unexpected_message.
  return (t >= 20 && t <= 24) || (dtls && t === ContentType.tls12_cid);
}

function validVersion(v: number, dtls: boolean): boolean {
  // DTLS 1.0 = 0xfeff, DTLS 1.2 = 0xfefd (RFC 6347 §4.1); TLS records carry 0x03xx.
  return dtls ? v === 0xfeff || v === 0xfefd : v >> 8 === 0x03;
}

/**
 * Reads the record at `pos`; returns null when the body ends inside it.
 * Fields are checked as soon as their bytes are present, so a bad type byte is
 * reported as malformed even when the rest of the header is missing.
 */
function readRecord(body: Uint8Array, pos: number, lim: Limits): TlsRecord | null {
  const avail = body.length - pos;
  const type = body[pos]!;
  if (!validContentType(type, lim.dtls)) {
    throw malformed(`record at offset ${pos}: unknown content type ${type}`, AlertDescription.unexpected_message);
  }
  if (avail < 3) return null;
  const version = (body[pos + 1]! << 8) | body[pos + 2]!;
  if (!validVersion(version, lim.dtls)) {
    throw malformed(
      `record at offset ${pos}: invalid record version 0x${version.toString(16).padStart(4, '0')}`,
      AlertDescription.protocol_version,
    );
  }
  let headerLength = TLS_HEADER_LENGTH;
  if (lim.dtls) {
    headerLength = DTLS_HEADER_LENGTH;
    if (type === ContentType.tls12_cid) {
      // RFC 9146 §4: the CID sits between seq and length; its size is not on the wire.
      if (lim.cidLength === undefined) {
        throw malformed(`record at offset ${pos}: tls12_cid record but no cidLength configured`);
      }
      headerLength += lim.cidLength;
    }
  }
  if (avail < headerLength) return null;
  const length = (body[pos + headerLength - 2]! << 8) | body[pos + headerLength - 1]!;
  if (length > lim.maxRecordLength) {
    // RFC 8446 §5.2 / RFC 5246 §6.2.3: record_overflow.
    throw malformed(
      `record at offset ${pos}: fragment of ${length} bytes exceeds ${lim.maxRecordLength}`,
      AlertDescription.record_overflow,
    );
  }
  if (length === 0 && type !== ContentType.application_data) {
    // RFC 8446 §5.1, RFC 5246 §6.2.1: no zero-length handshake, alert or CCS fragments.
    throw malformed(`record at offset ${pos}: zero-length ${contentTypeName(type)} fragment`);
  }
  if (avail < headerLength + length) return null;
  const rec: TlsRecord = {
    contentType: type,
    contentTypeName: contentTypeName(type),
    version,
    versionName: versionName(version),
    length,
    fragment: body.subarray(pos + headerLength, pos + headerLength + length),
    offset: pos,
    headerLength,
  };
  if (lim.dtls) {
    rec.epoch = (body[pos + 3]! << 8) | body[pos + 4]!;
    let seq = 0n;
    for (let i = 5; i < 11; i++) seq = (seq << 8n) | BigInt(body[pos + i]!);
    rec.sequence = seq;
    if (type === ContentType.tls12_cid) rec.cid = body.subarray(pos + 11, pos + headerLength - 2);
  }
  return rec;
}

/**
 * Splits an ATLS body into whole records. An empty body is an empty flight.
 *
 * Throws `TRUNCATED_FLIGHT` when the body ends inside a record, and
 * `MALFORMED_RECORD` for an unknown content type, a version that is not
 * 0x03xx (TLS) or 0xfeff/0xfefd (DTLS), an oversized or forbidden empty
 * fragment, or more than `maxRecords` records.
 *
 * @example
 * ```ts
 * for (const r of splitRecords(body)) console.log(r.offset, r.contentTypeName, r.length);
 * ```
 */
export function splitRecords(body: Uint8Array, opts: SplitOptions = {}): TlsRecord[] {
  const lim = limits(opts);
  const out: TlsRecord[] = [];
  let pos = 0;
  while (pos < body.length) {
    if (out.length >= lim.maxRecords) {
      throw malformed(`more than ${lim.maxRecords} records in one flight`);
    }
    const rec = readRecord(body, pos, lim);
    if (rec === null) {
      throw truncated(`flight ends inside the record at offset ${pos} (${body.length - pos} bytes left)`);
    }
    out.push(rec);
    pos += rec.headerLength + rec.length;
  }
  return out;
}

/** What {@link scanRecords} found. */
export interface RecordScan {
  /** Whole records with valid headers, in order. */
  records: TlsRecord[];
  /** The body ends inside a record whose header was valid so far. */
  truncated: boolean;
  /**
   * Offset of the first header that is not a valid record header (type,
   * version, length); undefined when there is none. A TLS engine leaves the
   * bytes from here on to its stack, which answers them with its own alert.
   */
  garbageAt: number | undefined;
}

/**
 * The record layer of a body that may be anything: like {@link splitRecords}
 * (the same header checks, no copy) but it never throws; it stops at a
 * truncated record or at the first invalid header and says so. The one
 * record scanner under both the sessions and the engines.
 *
 * @example
 * ```ts
 * const scan = scanRecords(flight);
 * if (scan.truncated) throw new AtlsError('TRUNCATED_FLIGHT', 'the flight ends inside a TLS record');
 * ```
 */
export function scanRecords(body: Uint8Array, opts: SplitOptions = {}): RecordScan {
  // No record count limit: the caller bounds the body; the longest fragment any version allows.
  const lim = limits({ maxRecordLength: MAX_RECORD_FRAGMENT_TLS12, ...opts });
  const records: TlsRecord[] = [];
  let pos = 0;
  while (pos < body.length) {
    let rec: TlsRecord | null;
    try {
      rec = readRecord(body, pos, lim);
    } catch {
      return { records, truncated: false, garbageAt: pos };
    }
    if (rec === null) return { records, truncated: true, garbageAt: undefined };
    records.push(rec);
    pos += rec.headerLength + rec.length;
  }
  return { records, truncated: false, garbageAt: undefined };
}

/**
 * The length of the longest prefix of `body` made of whole records: equal to
 * `body.length` exactly when the body is a complete flight. Useful to a
 * transport that receives a flight in pieces. Throws `MALFORMED_RECORD` for a
 * bad header, like {@link splitRecords}, but never `TRUNCATED_FLIGHT`.
 */
export function wholeRecordsLength(body: Uint8Array, opts: SplitOptions = {}): number {
  const lim = limits(opts);
  let pos = 0;
  let n = 0;
  while (pos < body.length) {
    if (n++ >= lim.maxRecords) throw malformed(`more than ${lim.maxRecords} records in one flight`);
    const rec = readRecord(body, pos, lim);
    if (rec === null) break;
    pos += rec.headerLength + rec.length;
  }
  return pos;
}

// ---------------------------------------------------------------------------
// Handshake messages

/** One handshake message, reassembled from one or more records. */
export interface HandshakeMessage {
  type: number;
  typeName: string;
  /** Body length (without the 4- or 12-byte header). */
  length: number;
  /** The message body (after the header). */
  body: Uint8Array;
  /** Offset (in the flight body) of the record where the message starts. */
  recordOffset: number;
  /** DTLS only (RFC 6347 §4.2.2). */
  messageSeq?: number;
}

/** Options for the handshake parsers. */
export interface HandshakeOptions extends SplitOptions {
  /** Longest handshake message accepted (default {@link DEFAULT_MAX_HANDSHAKE_LENGTH}). */
  maxHandshakeLength?: number;
}

function maxHandshake(opts: HandshakeOptions): number {
  return intOption(opts.maxHandshakeLength, DEFAULT_MAX_HANDSHAKE_LENGTH, 'maxHandshakeLength', 0, 2 ** 24 - 1);
}

/**
 * Reassembles the handshake messages carried by plaintext handshake records
 * (other record types in `records` are ignored). TLS messages may span
 * records (RFC 8446 §5.1); DTLS messages may come in fragments, in any order,
 * overlapping (RFC 6347 §4.2.3). A message that does not end inside the given
 * records gives `TRUNCATED_FLIGHT` (ATLS flights are whole).
 */
export function readHandshakeMessages(records: readonly TlsRecord[], opts: HandshakeOptions = {}): HandshakeMessage[] {
  const hs = records.filter((r) => r.contentType === ContentType.handshake);
  const max = maxHandshake(opts);
  const dtls = opts.dtls ?? hs.some((r) => r.epoch !== undefined);
  return dtls ? reassembleDtls(hs, max) : reassembleTls(hs, max);
}

function reassembleTls(hs: readonly TlsRecord[], max: number): HandshakeMessage[] {
  // Concatenating costs at most the input size again; messages are views into it.
  const stream = concatBytes(hs.map((r) => r.fragment));
  const starts: number[] = [];
  let at = 0;
  for (const r of hs) {
    starts.push(at);
    at += r.length;
  }
  // Message starts only move forward, so one cursor maps them to records in linear time.
  let ri = 0;
  const recordAt = (pos: number): number => {
    while (ri + 1 < starts.length && starts[ri + 1]! <= pos) ri++;
    return hs[ri]?.offset ?? 0;
  };
  const out: HandshakeMessage[] = [];
  let pos = 0;
  while (pos < stream.length) {
    if (out.length >= MAX_HANDSHAKE_MESSAGES) throw malformed(`more than ${MAX_HANDSHAKE_MESSAGES} handshake messages`);
    if (stream.length - pos < 4) throw truncated(`handshake header cut short at stream offset ${pos}`);
    const type = stream[pos]!;
    const length = (stream[pos + 1]! << 16) | (stream[pos + 2]! << 8) | stream[pos + 3]!;
    if (length > max) {
      throw malformed(`${handshakeTypeName(type)} of ${length} bytes exceeds the ${max}-byte limit`);
    }
    if (stream.length - pos - 4 < length) {
      throw truncated(`${handshakeTypeName(type)} needs ${length} bytes, ${stream.length - pos - 4} present`);
    }
    out.push({
      type,
      typeName: handshakeTypeName(type),
      length,
      body: stream.subarray(pos + 4, pos + 4 + length),
      recordOffset: recordAt(pos),
    });
    pos += 4 + length;
  }
  return out;
}

interface DtlsFragment {
  offset: number;
  data: Uint8Array;
}

interface DtlsPending {
  type: number;
  length: number;
  seq: number;
  recordOffset: number;
  fragments: DtlsFragment[];
}

function reassembleDtls(hs: readonly TlsRecord[], max: number): HandshakeMessage[] {
  const pending = new Map<number, DtlsPending>();
  for (const rec of hs) {
    const r = new ByteReader(rec.fragment, 'MALFORMED_RECORD', `DTLS handshake record at offset ${rec.offset}`);
    while (r.remaining > 0) {
      // RFC 6347 §4.2.2: msg_type length message_seq fragment_offset fragment_length.
      if (r.remaining < 12) throw truncated(`DTLS handshake header cut short in record at offset ${rec.offset}`);
      const type = r.u8();
      const length = r.u24();
      const seq = r.u16();
      const fragOffset = r.u24();
      const fragLength = r.u24();
      if (length > max) throw malformed(`${handshakeTypeName(type)} of ${length} bytes exceeds the ${max}-byte limit`);
      if (fragOffset + fragLength > length) {
        throw malformed(`DTLS fragment ${fragOffset}+${fragLength} beyond message length ${length}`);
      }
      if (fragLength > r.remaining) {
        throw truncated(`DTLS fragment needs ${fragLength} bytes, ${r.remaining} left in record at offset ${rec.offset}`);
      }
      const data = r.bytes(fragLength);
      const p = pending.get(seq);
      if (p === undefined) {
        if (pending.size >= MAX_HANDSHAKE_MESSAGES) {
          throw malformed(`more than ${MAX_HANDSHAKE_MESSAGES} handshake messages`);
        }
        pending.set(seq, { type, length, seq, recordOffset: rec.offset, fragments: [{ offset: fragOffset, data }] });
      } else if (p.type !== type || p.length !== length) {
        throw malformed(`DTLS fragments of message_seq ${seq} disagree on type or length`, AlertDescription.illegal_parameter);
      } else {
        p.fragments.push({ offset: fragOffset, data });
      }
    }
  }
  const out: HandshakeMessage[] = [];
  for (const p of [...pending.values()].sort((a, b) => a.seq - b.seq)) {
    // Check coverage before allocating, so the buffer is never larger than the input.
    const frags = [...p.fragments].sort((a, b) => a.offset - b.offset);
    let covered = 0;
    for (const f of frags) {
      if (f.offset > covered) break;
      covered = Math.max(covered, f.offset + f.data.length);
    }
    if (covered < p.length) {
      throw truncated(`${handshakeTypeName(p.type)} (message_seq ${p.seq}) has ${covered} of ${p.length} bytes`);
    }
    const body = new Uint8Array(p.length);
    for (const f of frags) body.set(f.data, f.offset);
    out.push({
      type: p.type,
      typeName: handshakeTypeName(p.type),
      length: p.length,
      body,
      recordOffset: p.recordOffset,
      messageSeq: p.seq,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Hellos

/** One extension as listed in a hello. */
export interface ExtensionInfo {
  type: number;
  name: string;
  /** Length of extension_data. */
  length: number;
}

/** What a ClientHello reveals (RFC 8446 §4.1.2, RFC 6347 §4.2.1). Byte strings are hex. */
export interface ClientHelloInfo {
  dtls: boolean;
  /** Body length of the handshake message. */
  length: number;
  legacyVersion: number;
  legacyVersionName: string;
  /** 32 bytes, hex. */
  random: string;
  /** legacy_session_id, hex (may be empty). */
  sessionId: string;
  /** DTLS only: the cookie, hex (empty in a first ClientHello). */
  cookie?: string;
  cipherSuites: NamedValue[];
  compressionMethods: number[];
  extensions: ExtensionInfo[];
  /** SNI host_name (RFC 6066 §3); bytes outside printable ASCII are escaped as `\xNN`. */
  serverName?: string;
  /** ALPN protocol names (RFC 7301), escaped like `serverName`. */
  alpn?: string[];
  /** e.g. `['TLSv1.3', 'TLSv1.2']` (RFC 8446 §4.2.1). */
  supportedVersions?: string[];
  supportedGroups?: NamedValue[];
  /** Groups of the key_share entries (RFC 8446 §4.2.8). */
  keyShareGroups?: NamedValue[];
  signatureAlgorithms?: NamedValue[];
  signatureAlgorithmsCert?: NamedValue[];
  /** e.g. `['psk_dhe_ke']` (RFC 8446 §4.2.9). */
  pskKeyExchangeModes?: string[];
  /** Number of PSK identities offered (RFC 8446 §4.2.11). */
  pskIdentities?: number;
  hasPreSharedKey: boolean;
  hasEarlyData: boolean;
  /** A TLS 1.3 cookie extension is echoed (second ClientHello after HRR). */
  hasCookie: boolean;
}

/** What a ServerHello or HelloRetryRequest reveals (RFC 8446 §4.1.3, §4.1.4). Byte strings are hex. */
export interface ServerHelloInfo {
  dtls: boolean;
  length: number;
  legacyVersion: number;
  legacyVersionName: string;
  random: string;
  sessionId: string;
  cipherSuite: NamedValue;
  compressionMethod: number;
  extensions: ExtensionInfo[];
  /** From supported_versions when present (RFC 8446 §4.2.1), else the legacy version. */
  selectedVersion: string;
  /** The random is the HelloRetryRequest constant (RFC 8446 §4.1.3). */
  isHelloRetryRequest: boolean;
  /** ServerHello: the group of the server's key share; HRR: the group asked for. */
  keyShareGroup?: NamedValue;
  alpn?: string;
  hasPreSharedKey: boolean;
  selectedPskIdentity?: number;
  /** HRR carries a cookie the client must echo. */
  hasCookie: boolean;
  /** A TLS 1.3 server that negotiated less says so in its random (RFC 8446 §4.1.3). */
  downgradeSentinel?: 'TLSv1.2' | 'TLSv1.1';
}

/** Bytes as text: printable ASCII kept, everything else (and `\`) as `\xNN`, so output is terminal-safe. */
export function printableBytes(b: Uint8Array): string {
  let s = '';
  for (const c of b) {
    s += c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : '\\x' + c.toString(16).padStart(2, '0');
  }
  return s;
}

function u16List(data: Uint8Array, what: string, minBytes: number): number[] {
  if (data.length % 2 !== 0 || data.length < minBytes) throw malformed(`${what}: bad list length ${data.length}`);
  const out: number[] = [];
  for (let i = 0; i < data.length; i += 2) out.push((data[i]! << 8) | data[i + 1]!);
  return out;
}

/** Runs `f` on a reader over one extension's data and checks it was consumed exactly. */
function inExtension<T>(data: Uint8Array, what: string, f: (r: ByteReader) => T): T {
  const r = new ByteReader(data, 'MALFORMED_RECORD', what);
  const v = f(r);
  r.end();
  return v;
}

interface RawExtension {
  type: number;
  data: Uint8Array;
}

function readExtensions(r: ByteReader, what: string): RawExtension[] {
  // RFC 5246 §7.4.1.2: the extensions block may be absent altogether.
  if (r.remaining === 0) return [];
  const block = r.vector16('extensions');
  r.end('after extensions');
  const er = new ByteReader(block, 'MALFORMED_RECORD', `${what} extensions`);
  const out: RawExtension[] = [];
  const seen = new Set<number>();
  while (er.remaining > 0) {
    const type = er.u16('extension_type');
    const data = er.vector16('extension_data');
    if (seen.has(type)) {
      // RFC 8446 §4.2: no more than one extension of the same type.
      throw malformed(`${what}: duplicate extension ${extensionName(type)}`, AlertDescription.illegal_parameter);
    }
    seen.add(type);
    out.push({ type, data });
  }
  return out;
}

function alpnList(r: ByteReader): string[] {
  const list = new ByteReader(r.vector16('protocol_name_list'), 'MALFORMED_RECORD', 'ALPN');
  const names: string[] = [];
  while (list.remaining > 0) {
    const n = list.vector8('protocol_name');
    if (n.length === 0) throw malformed('ALPN: empty protocol name'); // RFC 7301 §3.1
    names.push(printableBytes(n));
  }
  return names;
}

/**
 * Parses a ClientHello body (after the 4-byte TLS or 12-byte DTLS handshake
 * header). Throws `MALFORMED_RECORD` on any structural error.
 */
export function parseClientHelloBody(body: Uint8Array, dtls = false): ClientHelloInfo {
  const r = new ByteReader(body, 'MALFORMED_RECORD', 'ClientHello');
  const legacyVersion = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const sessionId = r.vector8('legacy_session_id');
  if (sessionId.length > 32) throw malformed(`ClientHello: session id of ${sessionId.length} bytes`); // RFC 8446 §4.1.2
  const cookie = dtls ? r.vector8('cookie') : undefined; // RFC 6347 §4.2.1
  const suites = u16List(r.vector16('cipher_suites'), 'ClientHello cipher_suites', 2);
  const compression = r.vector8('compression_methods');
  if (compression.length === 0) throw malformed('ClientHello: no compression methods'); // RFC 5246 §7.4.1.2
  const exts = readExtensions(r, 'ClientHello');

  const info: ClientHelloInfo = {
    dtls,
    length: body.length,
    legacyVersion,
    legacyVersionName: versionName(legacyVersion),
    random: toHex(random),
    sessionId: toHex(sessionId),
    ...(cookie !== undefined ? { cookie: toHex(cookie) } : {}),
    cipherSuites: suites.map((v) => named(v, cipherSuiteName)),
    compressionMethods: [...compression],
    extensions: exts.map((e) => ({ type: e.type, name: extensionName(e.type), length: e.data.length })),
    hasPreSharedKey: false,
    hasEarlyData: false,
    hasCookie: false,
  };
  exts.forEach((e, i) => {
    const what = `ClientHello ${extensionName(e.type)}`;
    switch (e.type) {
      case 0: // RFC 6066 §3
        if (e.data.length === 0) break;
        inExtension(e.data, what, (x) => {
          const list = new ByteReader(x.vector16('server_name_list'), 'MALFORMED_RECORD', what);
          while (list.remaining > 0) {
            const nameType = list.u8('name_type');
            const name = list.vector16('name');
            if (nameType === 0 && info.serverName === undefined) info.serverName = printableBytes(name);
          }
        });
        break;
      case 16:
        info.alpn = inExtension(e.data, what, alpnList);
        break;
      case 43: // RFC 8446 §4.2.1: versions<2..254>
        info.supportedVersions = inExtension(e.data, what, (x) => u16List(x.vector8('versions'), what, 2)).map(
          versionName,
        );
        break;
      case 10: // RFC 8446 §4.2.7
        info.supportedGroups = inExtension(e.data, what, (x) => u16List(x.vector16('named_group_list'), what, 2)).map(
          (v) => named(v, groupName),
        );
        break;
      case 51: // RFC 8446 §4.2.8
        info.keyShareGroups = inExtension(e.data, what, (x) => {
          const list = new ByteReader(x.vector16('client_shares'), 'MALFORMED_RECORD', what);
          const groups: NamedValue[] = [];
          while (list.remaining > 0) {
            groups.push(named(list.u16('group'), groupName));
            if (list.vector16('key_exchange').length === 0) throw malformed(`${what}: empty key_exchange`);
          }
          return groups;
        });
        break;
      case 13: // RFC 8446 §4.2.3
        info.signatureAlgorithms = inExtension(e.data, what, (x) =>
          u16List(x.vector16('supported_signature_algorithms'), what, 2),
        ).map((v) => named(v, signatureSchemeName));
        break;
      case 50:
        info.signatureAlgorithmsCert = inExtension(e.data, what, (x) =>
          u16List(x.vector16('supported_signature_algorithms'), what, 2),
        ).map((v) => named(v, signatureSchemeName));
        break;
      case 45: // RFC 8446 §4.2.9: ke_modes<1..255>
        info.pskKeyExchangeModes = inExtension(e.data, what, (x) => {
          const modes = x.vector8('ke_modes');
          if (modes.length === 0) throw malformed(`${what}: empty list`);
          return [...modes].map(pskModeName);
        });
        break;
      case 41: // RFC 8446 §4.2.11
        if (i !== exts.length - 1) {
          // RFC 8446 §4.2.11: pre_shared_key MUST be the last extension.
          throw malformed('ClientHello: pre_shared_key is not the last extension', AlertDescription.illegal_parameter);
        }
        info.hasPreSharedKey = true;
        info.pskIdentities = inExtension(e.data, what, (x) => {
          const ids = new ByteReader(x.vector16('identities'), 'MALFORMED_RECORD', what);
          let n = 0;
          while (ids.remaining > 0) {
            ids.vector16('identity');
            ids.u32('obfuscated_ticket_age');
            n++;
          }
          const binders = new ByteReader(x.vector16('binders'), 'MALFORMED_RECORD', what);
          let b = 0;
          while (binders.remaining > 0) {
            binders.vector8('binder');
            b++;
          }
          if (n === 0 || n !== b) throw malformed(`${what}: ${n} identities but ${b} binders`, AlertDescription.illegal_parameter);
          return n;
        });
        break;
      case 42: // RFC 8446 §4.2.10: empty in a ClientHello
        if (e.data.length !== 0) throw malformed(`${what}: not empty`);
        info.hasEarlyData = true;
        break;
      case 44: // RFC 8446 §4.2.2
        inExtension(e.data, what, (x) => {
          if (x.vector16('cookie').length === 0) throw malformed(`${what}: empty cookie`);
        });
        info.hasCookie = true;
        break;
      default:
        break;
    }
  });
  return info;
}

/**
 * Parses a ServerHello (or HelloRetryRequest) body after the handshake header.
 * Throws `MALFORMED_RECORD` on any structural error.
 */
export function parseServerHelloBody(body: Uint8Array, dtls = false): ServerHelloInfo {
  const r = new ByteReader(body, 'MALFORMED_RECORD', 'ServerHello');
  const legacyVersion = r.u16('legacy_version');
  const random = r.bytes(32, 'random');
  const sessionId = r.vector8('legacy_session_id_echo');
  if (sessionId.length > 32) throw malformed(`ServerHello: session id of ${sessionId.length} bytes`); // RFC 8446 §4.1.3
  const suite = r.u16('cipher_suite');
  const compressionMethod = r.u8('legacy_compression_method');
  const isHrr = equalBytes(random, HELLO_RETRY_REQUEST_RANDOM);
  const what = isHrr ? 'HelloRetryRequest' : 'ServerHello';
  const exts = readExtensions(r, what);

  const tail = toHex(random.subarray(24));
  const info: ServerHelloInfo = {
    dtls,
    length: body.length,
    legacyVersion,
    legacyVersionName: versionName(legacyVersion),
    random: toHex(random),
    sessionId: toHex(sessionId),
    cipherSuite: named(suite, cipherSuiteName),
    compressionMethod,
    extensions: exts.map((e) => ({ type: e.type, name: extensionName(e.type), length: e.data.length })),
    selectedVersion: versionName(legacyVersion),
    isHelloRetryRequest: isHrr,
    hasPreSharedKey: false,
    hasCookie: false,
    ...(tail === DOWNGRADE_TLS12 ? { downgradeSentinel: 'TLSv1.2' as const } : {}),
    ...(tail === DOWNGRADE_TLS11 ? { downgradeSentinel: 'TLSv1.1' as const } : {}),
  };
  for (const e of exts) {
    const w = `${what} ${extensionName(e.type)}`;
    switch (e.type) {
      case 43: // RFC 8446 §4.2.1: selected_version
        info.selectedVersion = versionName(inExtension(e.data, w, (x) => x.u16('selected_version')));
        break;
      case 51: // RFC 8446 §4.2.8: HRR carries only the group, a ServerHello a KeyShareEntry
        info.keyShareGroup = named(
          inExtension(e.data, w, (x) => {
            const g = x.u16('group');
            if (!isHrr && x.vector16('key_exchange').length === 0) throw malformed(`${w}: empty key_exchange`);
            return g;
          }),
          groupName,
        );
        break;
      case 16: {
        const names = inExtension(e.data, w, alpnList);
        // RFC 7301 §3.1: the server selects exactly one protocol.
        if (names.length !== 1) throw malformed(`${w}: ${names.length} protocols selected`);
        info.alpn = names[0]!;
        break;
      }
      case 41:
        info.hasPreSharedKey = true;
        info.selectedPskIdentity = inExtension(e.data, w, (x) => x.u16('selected_identity'));
        break;
      case 44:
        inExtension(e.data, w, (x) => {
          if (x.vector16('cookie').length === 0) throw malformed(`${w}: empty cookie`);
        });
        info.hasCookie = true;
        break;
      default:
        break;
    }
  }
  return info;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Input of the hello parsers: a flight body, or records already split from one. */
export type FlightInput = Uint8Array | readonly TlsRecord[];

function toRecords(input: FlightInput, opts: HandshakeOptions): readonly TlsRecord[] {
  return input instanceof Uint8Array ? splitRecords(input, { ...opts, dtls: opts.dtls ?? looksLikeDtls(input) }) : input;
}

function isDtls(records: readonly TlsRecord[], opts: HandshakeOptions): boolean {
  return opts.dtls ?? records.some((r) => r.epoch !== undefined);
}

/** The first run of consecutive handshake records (a handshake message never spans other record types, RFC 8446 §5.1). */
function firstHandshakeRun(records: readonly TlsRecord[]): TlsRecord[] {
  const start = records.findIndex((r) => r.contentType === ContentType.handshake);
  if (start < 0) return [];
  let end = start;
  while (end < records.length && records[end]!.contentType === ContentType.handshake) end++;
  return records.slice(start, end);
}

function findMessage(input: FlightInput, opts: HandshakeOptions, type: number): { msg: HandshakeMessage; dtls: boolean } {
  const records = toRecords(input, opts);
  const dtls = isDtls(records, opts);
  const msgs = readHandshakeMessages(firstHandshakeRun(records), { ...opts, dtls });
  const msg = msgs.find((m) => m.type === type);
  if (msg === undefined) {
    throw malformed(`no ${handshakeTypeName(type)} in the flight`, AlertDescription.unexpected_message);
  }
  return { msg, dtls };
}

/**
 * Finds and parses the ClientHello in a flight (TLS or DTLS), reassembling it
 * when it spans several records or DTLS fragments.
 *
 * @example
 * ```ts
 * const ch = parseClientHello(body);
 * if (ch.serverName === 'api.example') route(body);
 * ```
 */
export function parseClientHello(input: FlightInput, opts: HandshakeOptions = {}): ClientHelloInfo {
  const { msg, dtls } = findMessage(input, opts, HandshakeType.client_hello);
  return parseClientHelloBody(msg.body, dtls);
}

/**
 * Finds and parses the ServerHello (or HelloRetryRequest) in a flight.
 *
 * @example
 * ```ts
 * const sh = parseServerHello(body);
 * sh.selectedVersion;     // 'TLSv1.3'
 * sh.isHelloRetryRequest; // false
 * ```
 */
export function parseServerHello(input: FlightInput, opts: HandshakeOptions = {}): ServerHelloInfo {
  const { msg, dtls } = findMessage(input, opts, HandshakeType.server_hello);
  return parseServerHelloBody(msg.body, dtls);
}

// ---------------------------------------------------------------------------
// Flight inspection

/** One record as the inspector reports it (JSON-friendly). */
export interface RecordSummary {
  offset: number;
  /** The record header bytes, hex. */
  header: string;
  contentType: number;
  contentTypeName: string;
  version: number;
  versionName: string;
  length: number;
  epoch?: number;
  /** DTLS record sequence number (48 bits, exact as a JS number). */
  sequence?: number;
  /** DTLS tls12_cid: the connection ID, hex. */
  cid?: string;
  /** True when the fragment is protected (so its content is not shown). */
  encrypted: boolean;
  /** Names of the handshake messages that start in this record. */
  handshake?: string[];
  /** A plaintext alert. */
  alert?: { level: number; description: number; name: string };
  note?: string;
}

/** One plaintext handshake message in a flight. */
export interface HandshakeSummary {
  type: number;
  /** e.g. `client_hello`, `hello_retry_request`, `certificate`. */
  name: string;
  length: number;
  recordOffset: number;
  messageSeq?: number;
  /** TLS 1.2 plaintext Certificate: the DER length of each certificate, leaf first. */
  certificateLengths?: number[];
}

/** DTLS HelloVerifyRequest (RFC 6347 §4.2.1). */
export interface HelloVerifyRequestInfo {
  serverVersion: number;
  serverVersionName: string;
  /** hex */
  cookie: string;
}

/** The JSON-friendly result of {@link inspectFlight}. */
export interface FlightSummary {
  protocol: 'TLS' | 'DTLS';
  /** Body length in bytes. */
  length: number;
  records: RecordSummary[];
  handshake: HandshakeSummary[];
  clientHello?: ClientHelloInfo;
  serverHello?: ServerHelloInfo;
  helloVerifyRequest?: HelloVerifyRequestInfo;
  /** Plain-language remarks (e.g. that TLS 1.3 encrypts most of the handshake). */
  notes: string[];
  /** The first problem met inside the handshake; the record layer itself was fine. */
  error?: { code: string; message: string };
}

/**
 * Options for {@link inspectFlight}. Unlike {@link splitRecords}, an absent
 * `dtls` means "guess from the first record header" ({@link looksLikeDtls}).
 */
export type InspectOptions = HandshakeOptions;

/**
 * Describes a flight without keys: its records, the plaintext handshake
 * messages, and the parsed ClientHello / ServerHello. Throws (like
 * {@link splitRecords}) only when the record layer is malformed; an odd
 * handshake inside well-formed records is reported in `error` instead.
 *
 * @example
 * ```ts
 * const s = inspectFlight(body);
 * s.records.map((r) => r.contentTypeName); // ['handshake']
 * s.clientHello?.serverName;               // 'api.example'
 * ```
 */
export function inspectFlight(body: Uint8Array, opts: InspectOptions = {}): FlightSummary {
  const dtls = opts.dtls ?? looksLikeDtls(body);
  const records = splitRecords(body, { ...opts, dtls });
  const summary: FlightSummary = {
    protocol: dtls ? 'DTLS' : 'TLS',
    length: body.length,
    records: records.map((r) => recordSummary(body, r)),
    handshake: [],
    notes: [],
  };
  const fail = (e: unknown): void => {
    if (!(e instanceof AtlsError)) throw e; // a bug, not peer input: let it surface
    summary.error ??= { code: e.code, message: e.message };
  };

  let afterCcs = false;
  let i = 0;
  while (i < records.length) {
    const rec = records[i]!;
    const rs = summary.records[i]!;
    if (rec.contentType !== ContentType.handshake) {
      describeOther(rec, rs, dtls ? (rec.epoch ?? 0) > 0 : afterCcs);
      if (rec.contentType === ContentType.change_cipher_spec) afterCcs = true;
      i++;
      continue;
    }
    // A run of consecutive handshake records (DTLS: of the same epoch).
    let j = i + 1;
    while (
      j < records.length &&
      records[j]!.contentType === ContentType.handshake &&
      (!dtls || records[j]!.epoch === rec.epoch)
    ) {
      j++;
    }
    const run = records.slice(i, j);
    const runSummaries = summary.records.slice(i, j);
    inspectHandshakeRun(run, runSummaries, summary, dtls, afterCcs, opts, fail);
    i = j;
  }

  if (records.some((r) => r.contentType === ContentType.application_data)) {
    summary.notes.push(
      'application_data records are encrypted; in TLS 1.3 they also carry the rest of the handshake ' +
        '(EncryptedExtensions, Certificate, CertificateVerify, Finished, NewSessionTicket) and alerts (RFC 8446 §5.2)',
    );
  }
  if (summary.serverHello?.isHelloRetryRequest) {
    summary.notes.push('HelloRetryRequest: the client must send a new ClientHello (RFC 8446 §4.1.4)');
  }
  return summary;
}

/**
 * Guesses the record flavour from the first header: DTLS record versions
 * start with 0xfe, TLS ones with 0x03 (RFC 6347 §4.1).
 */
export function looksLikeDtls(body: Uint8Array): boolean {
  return body.length >= 2 && body[1] === 0xfe;
}

function recordSummary(body: Uint8Array, r: TlsRecord): RecordSummary {
  return {
    offset: r.offset,
    header: toHex(body.subarray(r.offset, r.offset + r.headerLength)),
    contentType: r.contentType,
    contentTypeName: r.contentTypeName,
    version: r.version,
    versionName: r.versionName,
    length: r.length,
    ...(r.epoch !== undefined ? { epoch: r.epoch } : {}),
    ...(r.sequence !== undefined ? { sequence: Number(r.sequence) } : {}),
    ...(r.cid !== undefined ? { cid: toHex(r.cid) } : {}),
    encrypted: false,
  };
}

function describeOther(rec: TlsRecord, rs: RecordSummary, protectedState: boolean): void {
  switch (rec.contentType) {
    case ContentType.change_cipher_spec:
      // RFC 8446 §5: a plaintext CCS is the single byte 0x01.
      if (rec.length === 1 && rec.fragment[0] === 1) rs.note = 'change_cipher_spec';
      else rs.encrypted = true;
      break;
    case ContentType.alert:
      if (!protectedState && rec.length === 2) {
        const level = rec.fragment[0]!;
        const description = rec.fragment[1]!;
        rs.alert = { level, description, name: alertName(description) };
        rs.note = `${level === 1 ? 'warning' : level === 2 ? 'fatal' : `level ${level}`} alert ${alertName(description)}`;
      } else {
        rs.encrypted = true;
        rs.note = 'encrypted alert';
      }
      break;
    case ContentType.application_data:
      rs.encrypted = true;
      rs.note = 'encrypted';
      break;
    case ContentType.tls12_cid:
      rs.encrypted = true;
      rs.note = 'encrypted (connection ID record)';
      break;
    default:
      rs.encrypted = protectedState;
      break;
  }
}

function inspectHandshakeRun(
  run: readonly TlsRecord[],
  runSummaries: readonly RecordSummary[],
  summary: FlightSummary,
  dtls: boolean,
  afterCcs: boolean,
  opts: InspectOptions,
  fail: (e: unknown) => void,
): void {
  const markEncrypted = (): void => {
    for (const rs of runSummaries) {
      rs.encrypted = true;
      rs.note = 'encrypted handshake';
    }
  };
  // DTLS: epoch 0 is plaintext (RFC 6347 §4.1). TLS: handshake records after a CCS
  // in the same flight are protected, except a TLS 1.3 second ClientHello sent
  // after a middlebox-compatibility CCS (RFC 8446 §D.4), recognised by parsing.
  if (dtls ? (run[0]!.epoch ?? 0) > 0 : false) {
    markEncrypted();
    return;
  }
  let messages: HandshakeMessage[];
  try {
    messages = readHandshakeMessages(run, { ...opts, dtls });
  } catch (e) {
    if (afterCcs && !dtls) {
      if (!(e instanceof AtlsError)) throw e;
      markEncrypted();
    } else {
      fail(e);
    }
    return;
  }
  if (afterCcs && !dtls) {
    const first = messages[0];
    let plainHello = false;
    if (first?.type === HandshakeType.client_hello) {
      try {
        parseClientHelloBody(first.body, false);
        plainHello = true;
      } catch (e) {
        if (!(e instanceof AtlsError)) throw e;
      }
    }
    if (!plainHello) {
      markEncrypted();
      return;
    }
  }
  const byOffset = new Map(runSummaries.map((rs) => [rs.offset, rs]));
  for (const m of messages) {
    const hs: HandshakeSummary = {
      type: m.type,
      name: m.typeName,
      length: m.length,
      recordOffset: m.recordOffset,
      ...(m.messageSeq !== undefined ? { messageSeq: m.messageSeq } : {}),
    };
    try {
      switch (m.type) {
        case HandshakeType.client_hello:
          if (summary.clientHello === undefined) summary.clientHello = parseClientHelloBody(m.body, dtls);
          break;
        case HandshakeType.server_hello: {
          const sh = parseServerHelloBody(m.body, dtls);
          if (sh.isHelloRetryRequest) hs.name = 'hello_retry_request';
          summary.serverHello ??= sh;
          break;
        }
        case HandshakeType.hello_verify_request:
          if (dtls) summary.helloVerifyRequest ??= parseHelloVerifyRequest(m.body);
          break;
        case HandshakeType.certificate:
          hs.certificateLengths = parseTls12Certificate(m.body);
          break;
        default:
          break;
      }
    } catch (e) {
      fail(e);
    }
    summary.handshake.push(hs);
    const rs = byOffset.get(m.recordOffset);
    if (rs) (rs.handshake ??= []).push(hs.name);
  }
}

function parseHelloVerifyRequest(body: Uint8Array): HelloVerifyRequestInfo {
  // RFC 6347 §4.2.1: server_version, cookie<0..2^8-1>.
  const r = new ByteReader(body, 'MALFORMED_RECORD', 'HelloVerifyRequest');
  const serverVersion = r.u16('server_version');
  const cookie = r.vector8('cookie');
  r.end();
  return { serverVersion, serverVersionName: versionName(serverVersion), cookie: toHex(cookie) };
}

function parseTls12Certificate(body: Uint8Array): number[] {
  // RFC 5246 §7.4.2: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>.
  const r = new ByteReader(body, 'MALFORMED_RECORD', 'Certificate');
  const list = new ByteReader(r.vector24('certificate_list'), 'MALFORMED_RECORD', 'Certificate');
  r.end();
  const lengths: number[] = [];
  while (list.remaining > 0) {
    const cert = list.vector24('ASN.1Cert');
    if (cert.length === 0) throw malformed('Certificate: empty certificate');
    lengths.push(cert.length);
  }
  return lengths;
}
