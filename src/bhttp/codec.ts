/**
 * Binary HTTP messages (RFC 9292): encoder (known-length form only) and
 * decoder (known-length and indeterminate-length forms).
 *
 * Strings in this API are byte strings: one char per byte (ISO-8859-1), the
 * way fetch's `Headers` holds them, so any valid field value survives a round
 * trip. Decoding is strict (RFC 9292 §4: invalid messages are not processed)
 * and bounded: every failure on peer input is an `AtlsError` with code
 * `MALFORMED_MESSAGE` or `TOO_LARGE` and source `remote`.
 *
 * @example
 * ```ts
 * const bytes = encodeRequest({
 *   method: 'GET', scheme: 'https', authority: 'example.com', path: '/',
 *   headers: [['accept', 'text/plain']],
 * });
 * const req = decodeRequest(bytes); // req.headers -> [['accept', 'text/plain']]
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { ByteReader } from '../bytes.js';
import { readVarint, varintLength, writeVarint } from './varint.js';
import {
  authorityValid,
  fieldNameKind,
  fieldValueValid,
  latin1Bytes,
  latin1Length,
  latin1String,
  methodValid,
  pathValid,
  schemeValid,
  writeLatin1,
} from './fields.js';

/** One field line: lower-case name and value, both byte strings. */
export type FieldLine = [name: string, value: string];

/** Field lines as accepted by the encoders (names of any case; lower-cased on encode); a fetch `Headers` fits. */
export type FieldLinesInit = Iterable<readonly [name: string, value: string]>;

/** A decoded request (RFC 9292 §3.4 control data, §3.6 fields, §3.7 content). */
export interface BhttpRequest {
  method: string;
  /** May be empty: then the scheme of the carrying request applies (see docs/decisions.md, http). */
  scheme: string;
  /** May be empty (RFC 9292 §3.4); a `host` header field may then name the target. */
  authority: string;
  /** Path and query, e.g. `/hello.txt?x=1`; `*` for OPTIONS; empty only for CONNECT. */
  path: string;
  /** Extension pseudo-fields (names starting with ":") come first, as RFC 9292 §3.6 requires. */
  headers: FieldLine[];
  /** A view into the decoded input for known-length messages (no copy). */
  content: Uint8Array;
  trailers: FieldLine[];
}

/** Input of {@link encodeRequest}; omitted sections are empty. */
export interface BhttpRequestInit {
  method: string;
  scheme: string;
  authority?: string;
  path: string;
  headers?: FieldLinesInit;
  content?: Uint8Array;
  trailers?: FieldLinesInit;
}

/** An informational (1xx) response that preceded the final one (RFC 9292 §3.5.1). */
export interface BhttpInformational {
  status: number;
  headers: FieldLine[];
}

/** A decoded response (RFC 9292 §3.5). */
export interface BhttpResponse {
  /** Final status, 200..599. */
  status: number;
  headers: FieldLine[];
  /** A view into the decoded input for known-length messages (no copy). */
  content: Uint8Array;
  trailers: FieldLine[];
  /** Informational responses, in order; parsed and validated, usually ignored. */
  informational: BhttpInformational[];
}

/** Input of {@link encodeResponse}; omitted sections are empty. */
export interface BhttpResponseInit {
  status: number;
  headers?: FieldLinesInit;
  content?: Uint8Array;
  trailers?: FieldLinesInit;
  informational?: ReadonlyArray<{ status: number; headers?: FieldLinesInit }>;
}

/** Resource bounds for decoding; exceeding one raises `TOO_LARGE`. */
export interface BhttpLimits {
  /** Field lines in all sections together (default 256). */
  maxFields?: number;
  /** Bytes of names and values in all sections together (default 64 KiB). */
  maxFieldBytes?: number;
  /** Content bytes (default 16 MiB). */
  maxContent?: number;
  /** Informational responses before the final one (default 16). */
  maxInformational?: number;
}

/** Options for the encoders. */
export interface BhttpEncodeOptions {
  /**
   * Omit an empty trailer section, and then empty content too (RFC 9292 §3.8).
   * Default false, which yields the RFC's own example bytes.
   */
  truncate?: boolean;
  /** Zero bytes to append (RFC 9292 §3.8), e.g. to hide the length. Default 0. */
  padding?: number;
}

/** Default bounds of {@link BhttpLimits}. */
export const BHTTP_DEFAULT_LIMITS: Readonly<Required<BhttpLimits>> = Object.freeze({
  maxFields: 256,
  maxFieldBytes: 64 * 1024,
  maxContent: 16 * 1024 * 1024,
  maxInformational: 16,
});

/** Framing indicators (RFC 9292 §3.3). */
export const KNOWN_REQUEST = 0;
export const KNOWN_RESPONSE = 1;
export const INDETERMINATE_REQUEST = 2;
export const INDETERMINATE_RESPONSE = 3;

const EMPTY = new Uint8Array(0);

const zeroed = (size: number): Uint8Array => new Uint8Array(size);

/** Which field section a line belongs to. */
export type SectionKind = 'header' | 'trailer';

// ---------------------------------------------------------------------------
// Shared rules

/**
 * RFC 9292 §3.4 via RFC 9113 §8.3.1: the rules of :method, :scheme,
 * :authority and :path, judged where the values lie in `b` (each value `i`
 * at `at[2i]..at[2i+1]`).
 */
export function controlDataProblem(b: Uint8Array, at: ArrayLike<number>): string | undefined {
  if (!methodValid(b, at[0], at[1])) return 'method is not a token'; // RFC 9110 §9.1
  if (!schemeValid(b, at[2], at[3])) return 'invalid scheme'; // RFC 3986 §3.1
  if (!authorityValid(b, at[4], at[5])) return 'invalid authority'; // RFC 9113 §8.3.1 (no userinfo)
  const p = at[6]!;
  const pEnd = at[7]!;
  if (!pathValid(b, p, pEnd)) return 'invalid path';
  const isConnect = at[1]! - at[0]! === 7 && latin1String(b, at[0], at[1]) === 'CONNECT';
  if (isConnect) {
    if (at[5] === at[4]) return 'CONNECT without authority'; // RFC 9113 §8.5
  } else {
    // RFC 9113 §8.3.1: :path is not empty; origin-form or "*" (RFC 9112 §3.2).
    if (pEnd === p) return 'empty path';
    if (b[p] !== 0x2f && !(pEnd - p === 1 && b[p] === 0x2a)) return 'path is neither "/..." nor "*"';
  }
  return undefined;
}

/** {@link controlDataProblem} for four values held apart (our own encoder's input, a streamed head). */
export function controlValuesProblem(method: Uint8Array, scheme: Uint8Array, authority: Uint8Array, path: Uint8Array): string | undefined {
  const b = new Uint8Array(method.length + scheme.length + authority.length + path.length);
  const at = [0, 0, 0, 0, 0, 0, 0, 0];
  let pos = 0;
  [method, scheme, authority, path].forEach((v, i) => {
    b.set(v, pos);
    at[2 * i] = pos;
    pos += v.length;
    at[2 * i + 1] = pos;
  });
  return controlDataProblem(b, at);
}

/**
 * Checks one field line against RFC 9292 §3.6 where it lies: the name at
 * `name[nameAt..nameEnd)`, the value at `value[valueAt..valueEnd)` (often one
 * buffer). Returns a problem or undefined.
 */
export function fieldProblem(
  name: Uint8Array,
  nameAt: number,
  nameEnd: number,
  value: Uint8Array,
  valueAt: number,
  valueEnd: number,
  kind: SectionKind,
  sawRegular: boolean,
): string | undefined {
  const k = fieldNameKind(name, nameAt, nameEnd);
  if (k === 'invalid') return 'invalid field name'; // RFC 9292 §3.6, RFC 9110 §5.1
  if (k === 'pseudo') {
    if (kind === 'trailer') return 'pseudo-field in trailers'; // RFC 9292 §3.6, RFC 9113 §8.1
    if (sawRegular) return 'pseudo-field after a regular field'; // RFC 9292 §3.6
  }
  if (!fieldValueValid(value, valueAt, valueEnd)) return 'invalid field value'; // RFC 9113 §8.2.1
  return undefined;
}

export function localError(message: string): AtlsError {
  return new AtlsError('INVALID_ARGUMENT', `binary HTTP: ${message}`, { source: 'local' });
}

export function malformed(what: string, message: string): AtlsError {
  return new AtlsError('MALFORMED_MESSAGE', `${what}: ${message}`, { source: 'remote' });
}

export function tooLarge(what: string, message: string): AtlsError {
  return new AtlsError('TOO_LARGE', `${what}: ${message}`, { source: 'remote' });
}

// ---------------------------------------------------------------------------
// Encoding

/**
 * A field section sized and ready to write: names lower-cased, every char
 * checked to be a byte. The lines are judged (RFC 9292 §3.6) as they are
 * written, on the bytes in place: no buffer per string.
 */
export interface PreparedSection {
  kind: SectionKind;
  /** Names and values, alternating, as byte strings. */
  lines: string[];
  /** Bytes of the field lines, without the section's length prefix. */
  size: number;
}

export function stringBytes(s: unknown, what: string): Uint8Array {
  if (typeof s !== 'string') throw localError(`${what} is not a string`);
  const b = latin1Bytes(s);
  if (b === undefined) throw localError(`${what} has a character above U+00FF`);
  return b;
}

/** The bytes a byte string takes (its length); a non-string or a char above U+00FF is a local error. */
function byteLength(s: unknown, what: string): number {
  if (typeof s !== 'string') throw localError(`${what} is not a string`);
  const n = latin1Length(s);
  if (n < 0) throw localError(`${what} has a character above U+00FF`);
  return n;
}

export function prepareSection(fields: FieldLinesInit | undefined, kind: SectionKind): PreparedSection {
  const lines: string[] = [];
  let size = 0;
  if (fields === undefined) return { kind, lines, size };
  for (const line of fields) {
    const rawName: unknown = line[0];
    const value: unknown = line[1];
    // RFC 9113 §8.2: field names are converted to lower case when constructing a message.
    const name = typeof rawName === 'string' ? rawName.toLowerCase() : rawName;
    const n = byteLength(name, 'field name');
    const v = byteLength(value, 'field value');
    lines.push(name as string, value as string);
    size += varintLength(n) + n + varintLength(v) + v;
  }
  return { kind, lines, size };
}

/** Writes into a buffer of exactly the computed size (from `pos`). */
export class Out {
  readonly buf: Uint8Array;
  pos: number;
  /** A new zeroed buffer of `size` bytes, or `buf` itself written from `at`. */
  constructor(size: number, buf?: Uint8Array, at = 0) {
    this.buf = buf ?? new Uint8Array(size);
    this.pos = at;
  }
  varint(v: number): void {
    this.pos = writeVarint(this.buf, this.pos, v);
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
  lengthPrefixed(b: Uint8Array): void {
    this.varint(b.length);
    this.bytes(b);
  }
  /** A length-prefixed byte string; returns where its bytes start. */
  string(s: string): number {
    this.varint(s.length);
    const at = this.pos;
    this.pos = writeLatin1(this.buf, at, s);
    return at;
  }
  /** A known-length section (RFC 9292 §3.1): its length, then its lines. */
  section(s: PreparedSection): void {
    this.varint(s.size);
    this.fieldLines(s);
  }
  /** The field lines of a section, each judged where it lies (RFC 9292 §3.6): INVALID_ARGUMENT (local) for a bad one. */
  fieldLines(s: PreparedSection): void {
    let sawRegular = false;
    for (let i = 0; i < s.lines.length; i += 2) {
      const name = s.lines[i]!;
      const nameAt = this.string(name);
      const valueAt = this.string(s.lines[i + 1]!);
      const problem = fieldProblem(this.buf, nameAt, nameAt + name.length, this.buf, valueAt, this.pos, s.kind, sawRegular);
      if (problem) throw localError(`${s.kind} field "${s.lines[i]!}": ${problem}`);
      if (this.buf[nameAt] !== 0x3a) sawRegular = true;
    }
  }
}

function checkContent(content: unknown): Uint8Array {
  if (content === undefined) return EMPTY;
  if (!(content instanceof Uint8Array)) throw localError('content is not a Uint8Array');
  return content;
}

function checkPadding(padding: unknown): number {
  if (padding === undefined) return 0;
  if (typeof padding !== 'number' || !Number.isSafeInteger(padding) || padding < 0) {
    throw localError('padding is not a non-negative integer');
  }
  return padding;
}

/** The header section, content and trailer section of a message to encode, with §3.8 truncation decided. */
class Tail {
  readonly size: number;
  private readonly omitTrailers: boolean;
  private readonly omitContent: boolean;

  constructor(
    private readonly headers: PreparedSection,
    private readonly content: Uint8Array,
    private readonly trailers: PreparedSection,
    options: BhttpEncodeOptions,
  ) {
    // RFC 9292 §3.8: empty trailers MAY be omitted; empty content MAY be omitted if trailers are too.
    this.omitTrailers = options.truncate === true && trailers.lines.length === 0;
    this.omitContent = this.omitTrailers && content.length === 0;
    let size = varintLength(headers.size) + headers.size;
    if (!this.omitContent) size += varintLength(content.length) + content.length;
    if (!this.omitTrailers) size += varintLength(trailers.size) + trailers.size;
    this.size = size;
  }

  write(o: Out): void {
    o.section(this.headers);
    if (!this.omitContent) o.lengthPrefixed(this.content);
    if (!this.omitTrailers) o.section(this.trailers);
  }
}

/**
 * Encodes a request in the known-length form (framing indicator 0, RFC 9292 §3.1).
 * Field names are lower-cased; invalid input throws `INVALID_ARGUMENT` (local).
 *
 * @example
 * ```ts
 * encodeRequest({ method: 'POST', scheme: 'https', authority: 'a.example', path: '/x',
 *                 content: new TextEncoder().encode('hi') }, { truncate: true });
 * ```
 */
export function encodeRequest(req: BhttpRequestInit, options: BhttpEncodeOptions = {}): Uint8Array {
  const [method, scheme, authority, path] = requestControlData(req);
  const t = new Tail(prepareSection(req.headers, 'header'), checkContent(req.content), prepareSection(req.trailers, 'trailer'), options);
  const padding = checkPadding(options.padding);
  let size = varintLength(KNOWN_REQUEST) + t.size + padding;
  for (const b of [method, scheme, authority, path]) size += varintLength(b.length) + b.length;
  const o = new Out(size);
  o.varint(KNOWN_REQUEST);
  o.lengthPrefixed(method);
  o.lengthPrefixed(scheme);
  o.lengthPrefixed(authority);
  o.lengthPrefixed(path);
  t.write(o);
  return o.buf; // padding bytes are already zero
}

/** A request's control data as bytes (RFC 9292 §3.4), checked: our own input, so errors are local. */
export function requestControlData(req: Pick<BhttpRequestInit, 'method' | 'scheme' | 'authority' | 'path'>): [Uint8Array, Uint8Array, Uint8Array, Uint8Array] {
  const method = stringBytes(req.method, 'method');
  const scheme = stringBytes(req.scheme, 'scheme');
  const authority = stringBytes(req.authority ?? '', 'authority');
  const path = stringBytes(req.path, 'path');
  const problem = controlValuesProblem(method, scheme, authority, path);
  if (problem) throw localError(problem);
  return [method, scheme, authority, path];
}

export function checkStatus(status: unknown, min: number, max: number, what: string): number {
  if (typeof status !== 'number' || !Number.isInteger(status) || status < min || status > max) {
    throw localError(`${what} ${String(status)} is not in ${min}..${max}`);
  }
  return status;
}

const NO_INFORMATIONAL: ReadonlyArray<{ status: number; headers: PreparedSection }> = [];

/**
 * Encodes a response in the known-length form (framing indicator 1, RFC 9292 §3.1),
 * informational responses first (RFC 9292 §3.5.1). `allocate` gives the
 * output of exactly `size` bytes (default a new zeroed array; the server
 * passes pooled memory for an answer it seals at once).
 *
 * @example
 * ```ts
 * encodeResponse({ status: 200, headers: [['content-type', 'text/plain']],
 *                  content: new TextEncoder().encode('ok') });
 * ```
 */
export function encodeResponse(res: BhttpResponseInit, options: BhttpEncodeOptions = {}, allocate: (size: number) => Uint8Array = zeroed): Uint8Array {
  const status = checkStatus(res.status, 200, 599, 'final status'); // RFC 9292 §3.5
  const infos = res.informational === undefined || res.informational.length === 0 ? NO_INFORMATIONAL : res.informational.map((i) => ({
    status: checkStatus(i.status, 100, 199, 'informational status'), // RFC 9292 §3.5.1
    headers: prepareSection(i.headers, 'header'),
  }));
  const t = new Tail(prepareSection(res.headers, 'header'), checkContent(res.content), prepareSection(res.trailers, 'trailer'), options);
  const padding = checkPadding(options.padding);
  let size = varintLength(KNOWN_RESPONSE) + varintLength(status) + t.size + padding;
  for (const i of infos) size += varintLength(i.status) + varintLength(i.headers.size) + i.headers.size;
  const o = new Out(size, allocate(size));
  o.varint(KNOWN_RESPONSE);
  for (const i of infos) {
    o.varint(i.status);
    o.section(i.headers);
  }
  o.varint(status);
  t.write(o);
  o.buf.fill(0, o.pos); // RFC 9292 §3.8: padding is zeros (an allocated buffer may hold old bytes)
  return o.buf;
}

// ---------------------------------------------------------------------------
// Decoding

export function limitsOf(l: BhttpLimits): Required<BhttpLimits> {
  if (l.maxFields !== undefined && l.maxFieldBytes !== undefined && l.maxContent !== undefined && l.maxInformational !== undefined) {
    return l as Required<BhttpLimits>; // complete already: no object per message
  }
  return {
    maxFields: l.maxFields ?? BHTTP_DEFAULT_LIMITS.maxFields,
    maxFieldBytes: l.maxFieldBytes ?? BHTTP_DEFAULT_LIMITS.maxFieldBytes,
    maxContent: l.maxContent ?? BHTTP_DEFAULT_LIMITS.maxContent,
    maxInformational: l.maxInformational ?? BHTTP_DEFAULT_LIMITS.maxInformational,
  };
}

/**
 * The field budget of one message, kept across its sections (RFC 9292 §8:
 * bound fields before building strings), and the checks of one field line.
 */
export class FieldBudget {
  private fields = 0;
  private bytes = 0;

  constructor(
    readonly what: string,
    readonly limits: Required<BhttpLimits>,
  ) {}

  /** Counts a field line and its name, before the name is read. */
  name(nameLen: number): void {
    if (++this.fields > this.limits.maxFields) throw tooLarge(this.what, `more than ${this.limits.maxFields} field lines`);
    this.value(nameLen);
  }

  /** Counts a value (or name) of `len` bytes, before it is read. */
  value(len: number): void {
    if (this.bytes + len > this.limits.maxFieldBytes) throw tooLarge(this.what, `field bytes exceed ${this.limits.maxFieldBytes}`);
    this.bytes += len;
  }

  /**
   * Checks a field line (RFC 9292 §3.6) where it lies and appends it as
   * strings; returns whether a regular field has now been seen.
   */
  line(
    name: Uint8Array,
    nameAt: number,
    nameEnd: number,
    value: Uint8Array,
    valueAt: number,
    valueEnd: number,
    kind: SectionKind,
    sawRegular: boolean,
    out: FieldLine[],
  ): boolean {
    const problem = fieldProblem(name, nameAt, nameEnd, value, valueAt, valueEnd, kind, sawRegular);
    if (problem) throw malformed(this.what, `${kind} section: ${problem}`);
    out.push([latin1String(name, nameAt, nameEnd), latin1String(value, valueAt, valueEnd)]);
    return sawRegular || name[nameAt] !== 0x3a;
  }

  /**
   * The field lines of a known-length section (RFC 9292 §3.1) read in place
   * from `r` up to offset `end`, the length prefix already read.
   */
  knownSection(r: ByteReader, end: number, kind: SectionKind): FieldLine[] {
    // A reader that ends with the section (offsets stay those of r's buffer): a line cannot reach past it.
    const sub = new ByteReader(r.source.subarray(0, end), 'MALFORMED_MESSAGE', `${this.what} ${kind} section`);
    sub.skip(r.offset);
    r.skip(end - r.offset);
    const out: FieldLine[] = [];
    let sawRegular = false;
    while (sub.remaining > 0) {
      const nameLen = readVarint(sub, 'name length');
      if (nameLen === 0) throw malformed(this.what, 'empty field name'); // RFC 9292 §3.6: Name Length = 1..
      sawRegular = this.fieldLine(sub, nameLen, kind, sawRegular, out);
    }
    return out;
  }

  /** One field line from `r` whose name length was read, judged in place. */
  fieldLine(r: ByteReader, nameLen: number, kind: SectionKind, sawRegular: boolean, out: FieldLine[]): boolean {
    this.name(nameLen);
    const nameAt = r.skip(nameLen, 'field name');
    const valueLen = readVarint(r, 'value length');
    this.value(valueLen);
    const valueAt = r.skip(valueLen, 'field value');
    const b = r.source;
    return this.line(b, nameAt, nameAt + nameLen, b, valueAt, valueAt + valueLen, kind, sawRegular, out);
  }
}

const SECTION_LENGTH: Record<SectionKind, string> = { header: 'header section length', trailer: 'trailer section length' };
const FIELD_NAME_LENGTH: Record<SectionKind, string> = { header: 'header field name length', trailer: 'trailer field name length' };

/** Reads the parts after the framing indicator, keeping the field budget across sections. */
class Decoder {
  private readonly budget: FieldBudget;

  constructor(
    readonly r: ByteReader,
    readonly what: string,
    readonly known: boolean,
    readonly limits: Required<BhttpLimits>,
  ) {
    this.budget = new FieldBudget(what, limits);
  }

  /** A header or trailer section (RFC 9292 §3.1 known-length, §3.2 indeterminate-length). */
  section(kind: SectionKind): FieldLine[] {
    if (this.known) {
      const len = readVarint(this.r, SECTION_LENGTH[kind]);
      if (len === 0) return []; // an empty section (most trailers): no reader for it
      if (len > this.r.remaining) throw malformed(this.what, `${kind} section of ${len} bytes overruns the message`);
      return this.budget.knownSection(this.r, this.r.offset + len, kind);
    }
    const out: FieldLine[] = [];
    let sawRegular = false;
    for (;;) {
      const nameLen = readVarint(this.r, FIELD_NAME_LENGTH[kind]);
      if (nameLen === 0) break; // RFC 9292 §3.2: Content Terminator ends the section
      sawRegular = this.budget.fieldLine(this.r, nameLen, kind, sawRegular, out);
    }
    return out;
  }

  /** Content (RFC 9292 §3.1 length-prefixed, §3.2 chunked with a zero terminator). */
  content(): Uint8Array {
    const max = this.limits.maxContent;
    if (this.known) {
      const len = readVarint(this.r, 'content length');
      if (len > max) throw tooLarge(this.what, `content of ${len} bytes exceeds ${max}`);
      return this.r.bytes(len, 'content');
    }
    // Copy chunks into one growing buffer: memory stays within 2x the content, however small the chunks.
    let buf = EMPTY;
    let len = 0;
    for (;;) {
      const n = readVarint(this.r, 'chunk length');
      if (n === 0) break; // RFC 9292 §3.2: Content Terminator
      if (len + n > max) throw tooLarge(this.what, `content exceeds ${max} bytes`);
      const chunk = this.r.bytes(n, 'content chunk');
      if (len + n > buf.length) {
        const next = new Uint8Array(Math.min(max, Math.max(len + n, buf.length * 2, 256)));
        next.set(buf.subarray(0, len));
        buf = next;
      }
      buf.set(chunk, len);
      len += n;
    }
    return buf.subarray(0, len);
  }

  /** Whether the message ends here; RFC 9292 §3.8 lets it end before a field section or content. */
  atEnd(): boolean {
    return this.r.remaining === 0;
  }

  /** Everything after the trailer section must be zero (RFC 9292 §3.8; we choose to validate). */
  padding(): void {
    if (this.r.remaining === 0) return;
    const rest = this.r.rest();
    for (let i = 0; i < rest.length; i++) {
      if (rest[i] !== 0) throw malformed(this.what, `non-zero padding byte at offset ${this.r.offset - rest.length + i}`);
    }
  }

  /**
   * Header section, content, trailer section and padding. A missing part reads
   * as empty (RFC 9292 §3.8: "Decoders MUST treat missing truncated fields as
   * equivalent to having been sent with the length field set to zero").
   * Truncation is accepted right after the control data too, as RFC 9292 §3.1
   * allows truncation "before any of the length prefixes that precede the
   * field sections or content"; anywhere else it is invalid.
   */
  tail(): { headers: FieldLine[]; content: Uint8Array; trailers: FieldLine[] } {
    const headers = this.atEnd() ? [] : this.section('header');
    const content = this.atEnd() ? EMPTY : this.content();
    const trailers = this.atEnd() ? [] : this.section('trailer');
    this.padding();
    return { headers, content, trailers };
  }
}

function start(bytes: Uint8Array, what: string): { r: ByteReader; framing: number } {
  if (!(bytes instanceof Uint8Array)) throw localError('input is not a Uint8Array');
  const r = new ByteReader(bytes, 'MALFORMED_MESSAGE', what);
  const framing = readVarint(r, 'framing indicator');
  if (framing > INDETERMINATE_RESPONSE) throw malformed(what, `unknown framing indicator ${framing}`); // RFC 9292 §3.3
  return { r, framing };
}

function decodeRequestAfterFraming(r: ByteReader, framing: number, limits: BhttpLimits): BhttpRequest {
  const what = 'binary HTTP request';
  const d = new Decoder(r, what, framing === KNOWN_REQUEST, limitsOf(limits));
  // RFC 9292 §3.4: four length-prefixed values; they cannot be truncated. Judged in place, strings built after.
  const at = [0, 0, 0, 0, 0, 0, 0, 0];
  for (let i = 0; i < 8; i += 2) {
    const field = CONTROL_NAMES[i >> 1]!;
    const len = readVarint(r, CONTROL_LENGTHS[i >> 1]!);
    at[i] = r.skip(len, field);
    at[i + 1] = at[i]! + len;
  }
  const b = r.source;
  const problem = controlDataProblem(b, at);
  if (problem) throw malformed(what, problem);
  const t = d.tail();
  return {
    method: latin1String(b, at[0], at[1]),
    scheme: latin1String(b, at[2], at[3]),
    authority: latin1String(b, at[4], at[5]),
    path: latin1String(b, at[6], at[7]),
    headers: t.headers,
    content: t.content,
    trailers: t.trailers,
  };
}

const CONTROL_NAMES = ['method', 'scheme', 'authority', 'path'] as const;
/** Labels for errors, made once (not a string per message). */
const CONTROL_LENGTHS = CONTROL_NAMES.map((n) => `${n} length`);

function decodeResponseAfterFraming(r: ByteReader, framing: number, limits: BhttpLimits): BhttpResponse {
  const what = 'binary HTTP response';
  const l = limitsOf(limits);
  const d = new Decoder(r, what, framing === KNOWN_RESPONSE, l);
  const informational: BhttpInformational[] = [];
  for (;;) {
    const status = readVarint(r, 'status code');
    if (status >= 100 && status <= 199) {
      // RFC 9292 §3.5.1: an informational status is followed by a header section and more control data.
      if (informational.length >= l.maxInformational) throw tooLarge(what, `more than ${l.maxInformational} informational responses`);
      informational.push({ status, headers: d.section('header') });
      continue;
    }
    if (status < 200 || status > 599) throw malformed(what, `status code ${status} is not in 100..599`); // RFC 9292 §3.5
    return { status, ...d.tail(), informational };
  }
}

/**
 * Decodes a request, known-length (framing 0) or indeterminate-length (framing 2).
 * Throws `MALFORMED_MESSAGE` or `TOO_LARGE` (source remote) on bad input.
 *
 * @example
 * ```ts
 * const { method, path, headers } = decodeRequest(body, { maxFields: 64 });
 * ```
 */
export function decodeRequest(bytes: Uint8Array, limits: BhttpLimits = {}): BhttpRequest {
  const { r, framing } = start(bytes, 'binary HTTP request');
  if (framing !== KNOWN_REQUEST && framing !== INDETERMINATE_REQUEST) {
    throw malformed('binary HTTP request', `framing indicator ${framing} is a response`);
  }
  return decodeRequestAfterFraming(r, framing, limits);
}

/**
 * Decodes a response, known-length (framing 1) or indeterminate-length (framing 3).
 * Informational responses are parsed, validated and returned in `informational`.
 *
 * @example
 * ```ts
 * const { status, content } = decodeResponse(body);
 * ```
 */
export function decodeResponse(bytes: Uint8Array, limits: BhttpLimits = {}): BhttpResponse {
  const { r, framing } = start(bytes, 'binary HTTP response');
  if (framing !== KNOWN_RESPONSE && framing !== INDETERMINATE_RESPONSE) {
    throw malformed('binary HTTP response', `framing indicator ${framing} is a request`);
  }
  return decodeResponseAfterFraming(r, framing, limits);
}

/** A decoded message of either kind, from {@link decodeMessage}. */
export type BhttpMessage =
  | { kind: 'request'; framing: 'known-length' | 'indeterminate-length'; request: BhttpRequest }
  | { kind: 'response'; framing: 'known-length' | 'indeterminate-length'; response: BhttpResponse };

/**
 * Decodes a request or a response, whichever the framing indicator says
 * (RFC 9292 §3.3); for tools that inspect messages of unknown kind.
 */
export function decodeMessage(bytes: Uint8Array, limits: BhttpLimits = {}): BhttpMessage {
  const { r, framing } = start(bytes, 'binary HTTP message');
  const form = framing < 2 ? 'known-length' : 'indeterminate-length';
  if (framing === KNOWN_REQUEST || framing === INDETERMINATE_REQUEST) {
    return { kind: 'request', framing: form, request: decodeRequestAfterFraming(r, framing, limits) };
  }
  return { kind: 'response', framing: form, response: decodeResponseAfterFraming(r, framing, limits) };
}
