/**
 * CoAP message codec (RFC 7252 §3): header, token, options with delta and
 * length extensions, payload marker. Decoding is strict and bounded: any
 * malformed datagram is a remote `AtlsError` with code `MALFORMED_MESSAGE`,
 * never another exception.
 *
 * @example
 * ```ts
 * const bytes = encodeMessage({
 *   type: MessageType.CON, code: CoapCode.POST, messageId: 0x1234,
 *   token: new Uint8Array([1, 2]),
 *   options: [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000)],
 *   payload: flight,
 * });
 * const msg = decodeMessage(bytes);
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { ByteWriter } from '../bytes.js';
import { COAP_VERSION, OptionNumber, PAYLOAD_MARKER, type MessageTypeValue } from './constants.js';

/** One option: its number and raw value. */
export interface CoapOption {
  number: number;
  value: Uint8Array;
}

/** A decoded or to-be-encoded CoAP message. */
export interface CoapMessage {
  type: MessageTypeValue;
  /** `class << 5 | detail`. */
  code: number;
  messageId: number;
  /** 0..8 bytes (RFC 7252 §3). */
  token: Uint8Array;
  /** In any order when encoding (sorted stably by number); sorted when decoded. */
  options: CoapOption[];
  payload: Uint8Array;
}

/** Largest option number the codec accepts (the registry is 16-bit, RFC 7252 §12.2). */
const MAX_OPTION_NUMBER = 0xffff;
const MAX_TOKEN = 8;

function malformed(what: string): AtlsError {
  return new AtlsError('MALFORMED_MESSAGE', `CoAP: ${what}`, { source: 'remote' });
}

/** Reads an option delta or length nibble with its extension (RFC 7252 §3.1). */
function readExtended(buf: Uint8Array, pos: number, nibble: number, field: string): [number, number] {
  if (nibble < 13) return [nibble, pos];
  if (nibble === 13) {
    if (pos + 1 > buf.length) throw malformed(`${field}: 1-byte extension missing`);
    return [buf[pos]! + 13, pos + 1];
  }
  if (nibble === 14) {
    if (pos + 2 > buf.length) throw malformed(`${field}: 2-byte extension missing`);
    return [((buf[pos]! << 8) | buf[pos + 1]!) + 269, pos + 2];
  }
  // 15 is reserved except as the payload marker (RFC 7252 §3.1).
  throw malformed(`${field}: reserved nibble 15`);
}

/**
 * Parses options starting at `pos` until the end or the payload marker.
 * Returns the options and the payload (RFC 7252 §3, §3.1).
 */
export function decodeOptionsAndPayload(buf: Uint8Array, pos: number): { options: CoapOption[]; payload: Uint8Array } {
  const options: CoapOption[] = [];
  let number = 0;
  while (pos < buf.length) {
    const first = buf[pos]!;
    if (first === PAYLOAD_MARKER) {
      // A marker followed by a zero-length payload is a format error (RFC 7252 §3).
      if (pos + 1 === buf.length) throw malformed('payload marker with an empty payload');
      return { options, payload: buf.subarray(pos + 1) };
    }
    pos++;
    let delta: number;
    let length: number;
    [delta, pos] = readExtended(buf, pos, first >> 4, 'option delta');
    [length, pos] = readExtended(buf, pos, first & 0x0f, 'option length');
    number += delta;
    if (number > MAX_OPTION_NUMBER) throw malformed(`option number ${number} out of range`);
    if (pos + length > buf.length) throw malformed(`option ${number}: value of ${length} bytes runs past the end`);
    options.push({ number, value: buf.subarray(pos, pos + length) });
    pos += length;
  }
  return { options, payload: new Uint8Array(0) };
}

/** Decodes one datagram (RFC 7252 §3). The result's byte fields are views into `buf`. */
export function decodeMessage(buf: Uint8Array): CoapMessage {
  if (buf.length < 4) throw malformed(`datagram of ${buf.length} bytes is shorter than the 4-byte header`);
  const b0 = buf[0]!;
  const version = b0 >> 6;
  if (version !== COAP_VERSION) throw malformed(`unknown version ${version}`); // RFC 7252 §3: silently ignore
  const type = ((b0 >> 4) & 0x03) as MessageTypeValue;
  const tkl = b0 & 0x0f;
  if (tkl > MAX_TOKEN) throw malformed(`token length ${tkl} is reserved`); // RFC 7252 §3: 9-15 reserved
  const code = buf[1]!;
  const messageId = (buf[2]! << 8) | buf[3]!;
  if (4 + tkl > buf.length) throw malformed('token runs past the end');
  const token = buf.subarray(4, 4 + tkl);
  if (code === 0) {
    // An Empty message has a zero-length token and nothing after the Message ID (RFC 7252 §4.1).
    if (tkl !== 0 || buf.length !== 4) throw malformed('empty message with token, options or payload');
    return { type, code, messageId, token, options: [], payload: new Uint8Array(0) };
  }
  const { options, payload } = decodeOptionsAndPayload(buf, 4 + tkl);
  return { type, code, messageId, token, options, payload };
}

function extendedNibble(n: number): number {
  return n < 13 ? n : n < 269 ? 13 : 14;
}

function writeExtension(w: ByteWriter, n: number): void {
  if (n >= 269) w.u16(n - 269);
  else if (n >= 13) w.u8(n - 13);
}

/** Options sorted by number, keeping the given order of repeated options (RFC 7252 §5.4.5). */
export function sortOptions(options: readonly CoapOption[]): CoapOption[] {
  return options
    .map((o, i) => ({ o, i }))
    .sort((a, b) => a.o.number - b.o.number || a.i - b.i)
    .map((x) => x.o);
}

/** Writes options in RFC 7252 §3.1 encoding (sorted, deltas from 0) and the payload with its marker. */
export function encodeOptionsAndPayload(w: ByteWriter, options: readonly CoapOption[], payload: Uint8Array): void {
  let prev = 0;
  for (const opt of sortOptions(options)) {
    if (!Number.isInteger(opt.number) || opt.number < 0 || opt.number > MAX_OPTION_NUMBER) {
      throw new AtlsError('INVALID_ARGUMENT', `option number ${opt.number} out of range`);
    }
    if (opt.value.length > 65535 + 269) throw new AtlsError('INVALID_ARGUMENT', `option ${opt.number} too long`);
    const delta = opt.number - prev;
    prev = opt.number;
    const len = opt.value.length;
    w.u8((extendedNibble(delta) << 4) | extendedNibble(len));
    writeExtension(w, delta);
    writeExtension(w, len);
    w.bytes(opt.value);
  }
  if (payload.length > 0) {
    w.u8(PAYLOAD_MARKER);
    w.bytes(payload);
  }
}

/** Encodes one message (RFC 7252 §3). Throws INVALID_ARGUMENT on values that do not fit. */
export function encodeMessage(msg: CoapMessage): Uint8Array {
  if (msg.token.length > MAX_TOKEN) throw new AtlsError('INVALID_ARGUMENT', 'token longer than 8 bytes');
  if (!Number.isInteger(msg.messageId) || msg.messageId < 0 || msg.messageId > 0xffff) {
    throw new AtlsError('INVALID_ARGUMENT', `message id ${msg.messageId} out of range`);
  }
  if (!Number.isInteger(msg.code) || msg.code < 0 || msg.code > 0xff) {
    throw new AtlsError('INVALID_ARGUMENT', `code ${msg.code} out of range`);
  }
  const w = new ByteWriter(16 + msg.payload.length);
  w.u8((COAP_VERSION << 6) | (msg.type << 4) | msg.token.length);
  w.u8(msg.code);
  w.u16(msg.messageId);
  w.bytes(msg.token);
  if (msg.code !== 0) encodeOptionsAndPayload(w, msg.options, msg.payload);
  return w.finish();
}

// ---- option value helpers (RFC 7252 §3.2) ----

/** Minimal big-endian bytes of a non-negative integer (RFC 7252 §3.2: no leading zeros). */
export function encodeUint(v: number): Uint8Array {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new AtlsError('INVALID_ARGUMENT', `uint option ${v} out of range`);
  const out: number[] = [];
  for (let x = v; x > 0; x = Math.floor(x / 256)) out.unshift(x & 0xff);
  return new Uint8Array(out);
}

/** An unsigned integer option value of 0..4 bytes; longer values are malformed. */
export function decodeUint(value: Uint8Array, what = 'uint option'): number {
  if (value.length > 4) throw malformed(`${what} of ${value.length} bytes`);
  let v = 0;
  for (const b of value) v = v * 256 + b;
  return v;
}

/** An option with a uint value. */
export function uintOption(number: number, value: number): CoapOption {
  return { number, value: encodeUint(value) };
}

/** An option with a UTF-8 string value. */
export function stringOption(number: number, value: string): CoapOption {
  return { number, value: new TextEncoder().encode(value) };
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A string option value; invalid UTF-8 is malformed. */
export function decodeString(value: Uint8Array, what = 'string option'): string {
  try {
    return utf8.decode(value);
  } catch {
    throw malformed(`${what} is not UTF-8`);
  }
}

/** The first option with this number, or undefined. */
export function getOption(msg: { options?: readonly CoapOption[] | undefined }, number: number): CoapOption | undefined {
  return msg.options?.find((o) => o.number === number);
}

/** Every option with this number, in order. */
export function getOptions(msg: { options?: readonly CoapOption[] | undefined }, number: number): CoapOption[] {
  return (msg.options ?? []).filter((o) => o.number === number);
}

/** A uint option's value, or undefined when absent. */
export function getUintOption(msg: { options?: readonly CoapOption[] | undefined }, number: number): number | undefined {
  const o = getOption(msg, number);
  return o ? decodeUint(o.value, `option ${number}`) : undefined;
}

/** Options without any of the given numbers. */
export function withoutOptions(options: readonly CoapOption[], ...numbers: number[]): CoapOption[] {
  return options.filter((o) => !numbers.includes(o.number));
}

/** Uri-Path segments of a message (decoded, RFC 7252 §6.5). */
export function getPath(msg: { options?: readonly CoapOption[] | undefined }): string[] {
  return getOptions(msg, OptionNumber.UriPath).map((o) => decodeString(o.value, 'Uri-Path'));
}

/** Location-Path segments of a response. */
export function getLocationPath(msg: { options?: readonly CoapOption[] | undefined }): string[] {
  return getOptions(msg, OptionNumber.LocationPath).map((o) => decodeString(o.value, 'Location-Path'));
}

/** Uri-Query items of a message. */
export function getQuery(msg: { options?: readonly CoapOption[] | undefined }): string[] {
  return getOptions(msg, OptionNumber.UriQuery).map((o) => decodeString(o.value, 'Uri-Query'));
}

/**
 * Uri-Path options of a path such as `/a/b` (RFC 7252 §6.4: one option per
 * segment, percent-decoded; an empty path gives no option).
 */
export function pathOptions(path: string, number: number = OptionNumber.UriPath): CoapOption[] {
  const trimmed = path.startsWith('/') ? path.slice(1) : path;
  if (trimmed === '') return [];
  return trimmed.split('/').map((seg) => stringOption(number, decodeURIComponent(seg)));
}

/** Uri-Query options of a query string such as `a=1&b` (without `?`). */
export function queryOptions(query: string): CoapOption[] {
  const q = query.startsWith('?') ? query.slice(1) : query;
  if (q === '') return [];
  return q.split('&').map((item) => stringOption(OptionNumber.UriQuery, decodeURIComponent(item)));
}

/** `/seg/seg` of path segments, percent-encoding what needs it. */
export function joinPath(segments: readonly string[]): string {
  return '/' + segments.map((s) => encodeURIComponent(s)).join('/');
}
