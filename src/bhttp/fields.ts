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
export function fieldNameKind(name: Uint8Array): FieldNameKind {
  if (name.length === 0) return 'invalid'; // RFC 9292 §3.6: Name Length = 1..
  const pseudo = name[0] === 0x3a;
  for (let i = pseudo ? 1 : 0; i < name.length; i++) {
    if (NAME_CHAR[name[i]!] !== 1) return 'invalid';
  }
  if (!pseudo) return 'regular';
  if (name.length === 1) return 'invalid';
  if (name.length <= 10 && RESERVED_PSEUDO.has(latin1String(name))) return 'invalid';
  return 'pseudo';
}

/**
 * True when a field value is valid: no NUL, CR or LF anywhere, and no SP or HTAB
 * at either end (RFC 9113 §8.2.1, required by RFC 9292 §3.6). Other bytes,
 * including obs-text 0x80-0xff, are kept.
 */
export function fieldValueValid(value: Uint8Array): boolean {
  const n = value.length;
  if (n === 0) return true;
  const first = value[0]!;
  const last = value[n - 1]!;
  if (first === 0x20 || first === 0x09 || last === 0x20 || last === 0x09) return false;
  for (let i = 0; i < n; i++) {
    const b = value[i]!;
    if (b === 0x00 || b === 0x0a || b === 0x0d) return false;
  }
  return true;
}

/** A method is a non-empty token, case-sensitive (RFC 9110 §9.1). */
export function methodValid(method: Uint8Array): boolean {
  if (method.length === 0) return false;
  for (const b of method) if (TCHAR[b] !== 1) return false;
  return true;
}

/**
 * A scheme is ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1).
 * Empty is accepted here; the caller decides when it is allowed.
 */
export function schemeValid(scheme: Uint8Array): boolean {
  if (scheme.length === 0) return true;
  const f = scheme[0]!;
  if (!((f >= 0x41 && f <= 0x5a) || (f >= 0x61 && f <= 0x7a))) return false;
  for (const b of scheme) if (SCHEME_CHAR[b] !== 1) return false;
  return true;
}

/** An authority is host[:port] without userinfo (RFC 9113 §8.3.1); empty is allowed (RFC 9292 §3.4). */
export function authorityValid(authority: Uint8Array): boolean {
  for (const b of authority) if (AUTHORITY_CHAR[b] !== 1) return false;
  return true;
}

/**
 * A path (with query, without fragment) is visible ASCII other than "#"; it
 * must not be empty unless the caller allows it (RFC 9113 §8.3.1).
 */
export function pathValid(path: Uint8Array): boolean {
  for (const b of path) if (b <= 0x20 || b >= 0x7f || b === 0x23) return false;
  return true;
}


/** Bytes to a string, one char per byte (ISO-8859-1), as fetch's ByteString does. */
export function latin1String(b: Uint8Array): string {
  if (b.length < 32 || !NodeBuffer) {
    let s = '';
    for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
    return s;
  }
  return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/** A string to bytes, one byte per char; undefined when a char is above U+00FF. */
export function latin1Bytes(s: string): Uint8Array | undefined {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return undefined;
  if (NodeBuffer) return NodeBuffer.from(s, 'latin1');
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}
