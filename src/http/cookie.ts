/**
 * The session cookie (RFC 6265): an unguessable value of at least 128 random
 * bits, optionally prefixed by a routing tag that plain load balancers can
 * match on (`<tag>.<random>`), and the attributes docs/protocol.md §5 fixes.
 *
 * @example
 * ```ts
 * const id = newCookieValue('node-3');          // 'node-3.hT0w...'
 * setCookie('atls-session', id, { path: '/atls', secure: true });
 * readCookie('a=1; atls-session=' + id, 'atls-session'); // id
 * ```
 * @module
 */
import { randomBytes } from 'node:crypto';
import { AtlsError } from '../errors.js';

/** Random bytes in a cookie value: 16 = 128 bits (RFC 6265 §8.4 asks for unguessable). */
const RANDOM_BYTES = 16;
/** A routing tag: 1..32 characters of base64url's alphabet. */
const TAG_RE = /^[A-Za-z0-9_-]{1,32}$/;
/** What this server ever issues; anything else is an unknown session. */
const VALUE_RE = /^(?:[A-Za-z0-9_-]{1,32}\.)?[A-Za-z0-9_-]{22,86}$/;
/** Longest Cookie header we look at; longer ones are scanned only this far. */
const MAX_COOKIE_HEADER = 8192;

/** True when `tag` may be used as a routing tag. */
export function validRoutingTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/**
 * A fresh session id / cookie value: `[tag.]` + 22 base64url characters (128 bits).
 * Throws INVALID_ARGUMENT for a tag outside `[A-Za-z0-9_-]{1,32}`.
 */
export function newCookieValue(routingTag?: string): string {
  if (routingTag !== undefined && !validRoutingTag(routingTag)) {
    throw new AtlsError('INVALID_ARGUMENT', 'routing tag must be 1..32 characters of [A-Za-z0-9_-]');
  }
  const random = randomBytes(RANDOM_BYTES).toString('base64url');
  return routingTag === undefined ? random : `${routingTag}.${random}`;
}

/** True when `value` has the shape of a value we issue (cheap pre-check before a store lookup). */
export function plausibleCookieValue(value: string): boolean {
  return VALUE_RE.test(value);
}

/**
 * The value of cookie `name` in a Cookie request header (RFC 6265 §5.4:
 * `name=value` pairs separated by `; `), or undefined. Tolerant of extra
 * spaces and of quoted values; never throws.
 */
export function readCookie(header: string | null | undefined, name: string): string | undefined {
  if (!header) return undefined;
  const text = header.length > MAX_COOKIE_HEADER ? header.slice(0, MAX_COOKIE_HEADER) : header;
  for (const part of text.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    return value;
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
