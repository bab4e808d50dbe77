/**
 * Byte-level validity rules for Binary HTTP control data and field lines
 * (RFC 9292 §3.4, §3.6), shared by the encoder (our own input, local errors)
 * and the decoder (peer input, remote errors). Every check works on bytes, so
 * a hostile message is judged before any string is built from it.
 *
 * @example
 * ```ts
 * fieldNameKind(new TextEncoder().encode('accept')); // 'regular'
 * fieldValueValid(new TextEncoder().encode(' x'));  // false (leading space)
 * ```
 * @module
 */
import { NodeBuffer } from '../bytes.js';

function table(chars: string, ranges: Array<[number, number]> = []): Uint8Array {
  const t = new Uint8Array(256);
  for (const c of chars) t[c.charCodeAt(0)] = 1;
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) t[i] = 1;
  return t;
}

const DIGIT: [number, number] = [0x30, 0x39];
const LOWER: [number, number] = [0x61, 0x7a];
const UPPER: [number, number] = [0x41, 0x5a];

/** tchar (RFC 9110 §5.6.2). */
const TCHAR = table("!#$%&'*+-.^_`|~", [DIGIT, LOWER, UPPER]);
/** tchar without upper case: field names (RFC 9110 §5.1; RFC 9113 §8.2.1 forbids 0x41-0x5a). */
const NAME_CHAR = table("!#$%&'*+-.^_`|~", [DIGIT, LOWER]);
/** scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1). */
const SCHEME_CHAR = table('+-.', [DIGIT, LOWER, UPPER]);
/** authority without userinfo: unreserved / pct-encoded / sub-delims / ":" / "[" / "]" (RFC 3986 §3.2; RFC 9113 §8.3.1 excludes userinfo). */
const AUTHORITY_CHAR = table("-._~%!$&'()*+,;=:[]", [DIGIT, LOWER, UPPER]);

/** Pseudo-fields carried by the control data; as field lines they make a message invalid (RFC 9292 §3.6). */
const RESERVED_PSEUDO = new Set([':method', ':scheme', ':authority', ':path', ':status']);

/** What a field name is: a regular field, an extension pseudo-field, or invalid. */
export type FieldNameKind = 'regular' | 'pseudo' | 'invalid';

/**
 * Classifies a field name. Regular names are lower-case tokens (RFC 9110 §5.1,
 * RFC 9113 §8.2.1). Names starting with ":" are pseudo-fields (RFC 9113 §8.3);
 * the five that RFC 9292 carries in control data are invalid (RFC 9292 §3.6).
 */
export function fieldNameKind(name: Uint8Array, start = 0, end = name.length): FieldNameKind {
  if (end <= start) return 'invalid'; // RFC 9292 §3.6: Name Length = 1..
  const pseudo = name[start] === 0x3a;
  for (let i = pseudo ? start + 1 : start; i < end; i++) {
    if (NAME_CHAR[name[i]!] !== 1) return 'invalid';
  }
  if (!pseudo) return 'regular';
  if (end - start === 1) return 'invalid';
  if (end - start <= 10 && RESERVED_PSEUDO.has(latin1String(name, start, end))) return 'invalid';
  return 'pseudo';
}

/**
 * True when a field value is valid: no NUL, CR or LF anywhere, and no SP or HTAB
 * at either end (RFC 9113 §8.2.1, required by RFC 9292 §3.6). Other bytes,
 * including obs-text 0x80-0xff, are kept.
 */
export function fieldValueValid(value: Uint8Array, start = 0, end = value.length): boolean {
  if (end <= start) return true;
  const first = value[start]!;
  const last = value[end - 1]!;
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  for (let i = start; i < end; i++) {
    const b = value[i]!;
    if (b === 0x00 || b === 0x0a || b === 0x0d) return false;
  }
  return true;
}

/** A method is a non-empty token, case-sensitive (RFC 9110 §9.1). */
export function methodValid(method: Uint8Array, start = 0, end = method.length): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) if (TCHAR[method[i]!] !== 1) return false;
  return true;
}

/**
 * A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1).
 * Empty is accepted here; the caller decides when it is allowed.
 */
export function schemeValid(scheme: Uint8Array, start = 0, end = scheme.length): boolean {
  if (end <= start) return true;
  const f = scheme[start]!;
  if (!((f >= 0x41 && f <= 0x5a) || (f >= 0x61 && f <= 0x7a))) return false;
  for (let i = start; i < end; i++) if (SCHEME_CHAR[scheme[i]!] !== 1) return false;
  return true;
}

/** An authority is host[:port] without userinfo (RFC 9113 §8.3.1); empty is allowed (RFC 9292 §3.4). */
export function authorityValid(authority: Uint8Array, start = 0, end = authority.length): boolean {
  for (let i = start; i < end; i++) if (AUTHORITY_CHAR[authority[i]!] !== 1) return false;
  return true;
}

/** {@link authorityValid} for a string (a `host` field or an outer Host); false for a char above U+00FF. */
export function authorityStringValid(authority: string): boolean {
  for (let i = 0; i < authority.length; i++) {
    const c = authority.charCodeAt(i);
    if (c > 0xff || AUTHORITY_CHAR[c] !== 1) return false;
  }
  return true;
}

/**
 * A path (with query, without fragment) is visible ASCII other than "#"; it
 * must not be empty unless the caller allows it (RFC 9113 §8.3.1).
 */
export function pathValid(path: Uint8Array, start = 0, end = path.length): boolean {
  for (let i = start; i < end; i++) {
    const b = path[i]!;
    if (b <= 0x20 || b >= 0x7f || b === 0x23) return false;
  }
  return true;
}

const char = String.fromCharCode;

/** Bytes `start..end` of `b` to a string, one char per byte (ISO-8859-1), as fetch's ByteString does. */
export function latin1String(b: Uint8Array, start = 0, end = b.length): string {
  // Up to 12 bytes: one call that makes the string whole (a string added to char by char is a new string per
  // char, about 130 instructions each); longer ones through Buffer, or char by char without it.
  const s = start;
  switch (end - start) {
    case 0: return '';
    case 1: return char(b[s]!);
    case 2: return char(b[s]!, b[s + 1]!);
    case 3: return char(b[s]!, b[s + 1]!, b[s + 2]!);
    case 4: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!);
    case 5: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!);
    case 6: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!);
    case 7: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!);
    case 8: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!);
    case 9: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!, b[s + 8]!);
    case 10: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!, b[s + 8]!, b[s + 9]!);
    case 11: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!, b[s + 8]!, b[s + 9]!, b[s + 10]!);
    case 12: return char(b[s]!, b[s + 1]!, b[s + 2]!, b[s + 3]!, b[s + 4]!, b[s + 5]!, b[s + 6]!, b[s + 7]!, b[s + 8]!, b[s + 9]!, b[s + 10]!, b[s + 11]!);
  }
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset + start, end - start).toString('latin1');
  let out = '';
  for (let i = start; i < end; i++) out += char(b[i]!);
  return out;
}

/** A string to bytes, one byte per char; undefined when a char is above U+00FF. */
export function latin1Bytes(s: string): Uint8Array | undefined {
  if (latin1Length(s) < 0) return undefined;
  if (NodeBuffer) return NodeBuffer.from(s, 'latin1');
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/** The bytes `s` takes as a byte string (its length), or -1 when a char is above U+00FF. */
export function latin1Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return -1;
  return s.length;
}

/** Writes byte string `s` (every char <= U+00FF, see {@link latin1Length}) into `out` at `at`; returns the end. */
export function writeLatin1(out: Uint8Array, at: number, s: string): number {
  const n = s.length;
  for (let i = 0; i < n; i++) out[at + i] = s.charCodeAt(i);
  return at + n;
}
