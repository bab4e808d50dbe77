/**
 * The session cookie (RFC 6265) with the attributes docs/protocol.md §5
 * fixes. Its value is a session id of src/store/ids.ts: 128 random bits,
 * optionally behind a routing tag (`<tag>.<random>`).
 *
 * @example
 * ```ts
 * setCookie('atls-session', id, { path: '/atls', secure: true });
 * readCookie('a=1; atls-session=' + id, 'atls-session'); // id
 * ```
 * @module
 */

import { maxHeaderSize } from 'node:http';

/**
 * Longest Cookie header looked at: the HTTP server's own header limit
 * (`--max-http-header-size`, 16 KiB by default), so a cookie the server
 * accepted is always found, wherever a middlebox put it.
 */
const MAX_COOKIE_HEADER = maxHeaderSize;

/**
 * The value of cookie `name` in a Cookie request header (RFC 6265 §5.4:
 * `name=value` pairs separated by `; `), or undefined. The first pair of
 * that name wins (RFC 6265 §5.4 puts the most specific path first).
 * Tolerant of extra spaces and of quoted values; never throws.
 */
export function readCookie(header: string | null | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const end = Math.min(header.length, MAX_COOKIE_HEADER);
  // One pass with indexOf: no array of every other cookie is built.
  for (let start = 0; start < end; ) {
    let stop = header.indexOf(';', start);
    if (stop < 0 || stop > end) stop = end;
    const eq = header.indexOf('=', start);
    if (eq >= 0 && eq < stop && header.slice(start, eq).trim() === name) {
      let value = header.slice(eq + 1, stop).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      return value;
    }
    start = stop + 1;
  }
  return undefined;
}

/** Attributes of the session cookie. */
export interface CookieAttributes {
  /** The ATLS endpoint the request used (RFC 6265 §5.2.4). */
  path: string;
  /** Add `Secure` (the transport is https). */
  secure: boolean;
  /** Seconds; 0 deletes the cookie. Omitted: a session cookie. */
  maxAge?: number;
}

/**
 * A Set-Cookie header value: `name=value; Path=...; HttpOnly; SameSite=Strict[; Secure][; Max-Age=n]`.
 */
export function setCookie(name: string, value: string, attrs: CookieAttributes): string {
  let s = `${name}=${value}; Path=${attrs.path}; HttpOnly; SameSite=Strict`;
  if (attrs.secure) s += '; Secure';
  if (attrs.maxAge !== undefined) s += `; Max-Age=${Math.max(0, Math.floor(attrs.maxAge))}`;
  return s;
}

/**
 * Client side: the value a Set-Cookie header gives cookie `name`, `''` when
 * it deletes it (empty value or Max-Age<=0), undefined when it is about
 * another cookie.
 */
export function parseSetCookie(header: string, name: string): string | undefined {
  const parts = header.split(';');
  const first = parts[0] ?? '';
  const eq = first.indexOf('=');
  if (eq < 0 || first.slice(0, eq).trim() !== name) return undefined;
  const value = first.slice(eq + 1).trim();
  for (const attr of parts.slice(1)) {
    const [k, v] = attr.split('=', 2);
    if (k?.trim().toLowerCase() === 'max-age' && Number(v?.trim()) <= 0) return '';
  }
  return value;
}
