/**
 * Session ids: 128 random bits in base64url, optionally behind a routing tag,
 * `<tag>.<random>`, so that a plain load balancer (an nginx `map`, an haproxy
 * ACL) can send every flight of a session to the node that holds it.
 *
 * @example
 * ```ts
 * const id = newSessionId('node-3');     // "node-3.q2x...Q"
 * parseSessionId(id);                    // { id, routingTag: 'node-3' }
 * parseSessionId('node-3.<script>');     // undefined
 * ```
 * @module
 */
import { randomBytes } from 'node:crypto';
import { AtlsError } from '../errors.js';

/** Random bytes in an id: 128 bits, beyond guessing and birthday collisions. */
export const SESSION_ID_RANDOM_BYTES = 16;

const TAG = /^[A-Za-z0-9_-]{1,32}$/;
/**
 * 22 base64url chars carry 132 bits; for 128 bits the last char holds 2 bits
 * and 4 zero bits, so only A, Q, g or w can end a canonical id.
 */
const RANDOM = /^[A-Za-z0-9_-]{21}[AQgw]$/;
const MAX_LENGTH = 32 + 1 + 22;

/** True when `tag` can prefix a session id: 1 to 32 of [A-Za-z0-9_-]. */
export function isValidRoutingTag(tag: unknown): tag is string {
  return typeof tag === 'string' && TAG.test(tag);
}

/** Largest number of processes that can share ids by {@link sessionOwner}: one per first base64url character. */
export const MAX_ID_OWNERS = 64;

/** One process among `count` that mint ids (`atls serve --workers`): `index` in 0..count-1. */
export interface IdOwner {
  index: number;
  count: number;
}

/** Random bytes for ids are drawn 4 KiB at a time: one call into OpenSSL per ~240 ids (~7 µs each here) instead of one per id. */
const POOL_BYTES = 4096;
let pool = Buffer.alloc(0);
let poolAt = 0;

/** `n` fresh random bytes, each handed out once. */
function randomSlice(n: number): Buffer {
  if (poolAt + n > pool.length) {
    pool = randomBytes(POOL_BYTES);
    poolAt = 0;
  }
  const out = pool.subarray(poolAt, poolAt + n);
  poolAt += n;
  return out;
}

/**
 * A fresh session id, `<routingTag>.<22 base64url chars>` or just the random part.
 * With `owner`, the id's first random character is chosen so that
 * {@link sessionOwner} gives `owner.index` (at most 6 of the 128 bits are
 * fixed that way). Throws INVALID_ARGUMENT for a bad tag or owner.
 */
export function newSessionId(routingTag?: string, owner?: IdOwner): string {
  // One spare byte picks the owner's first character without reusing the id's own bits.
  const all = randomSlice(SESSION_ID_RANDOM_BYTES + 1);
  const bytes = all.subarray(0, SESSION_ID_RANDOM_BYTES);
  if (owner !== undefined) {
    const { index, count } = owner;
    if (!Number.isInteger(count) || count < 1 || count > MAX_ID_OWNERS || !Number.isInteger(index) || index < 0 || index >= count) {
      throw new AtlsError('INVALID_ARGUMENT', `id owner must be 0..count-1 with count 1..${MAX_ID_OWNERS}`);
    }
    // The first character carries the top 6 bits of the first byte: a value v with v mod count = index.
    const v = index + count * (all[SESSION_ID_RANDOM_BYTES]! % (Math.floor((MAX_ID_OWNERS - 1 - index) / count) + 1));
    bytes[0] = (v << 2) | (bytes[0]! & 3);
  }
  const random = bytes.toString('base64url');
  if (routingTag === undefined) return random;
  if (!isValidRoutingTag(routingTag)) {
    throw new AtlsError('INVALID_ARGUMENT', 'routing tag must be 1-32 characters of [A-Za-z0-9_-]');
  }
  return `${routingTag}.${random}`;
}

/** A session id that passed {@link parseSessionId}. */
export interface ParsedSessionId {
  /** The whole id, as given. */
  id: string;
  routingTag: string | undefined;
}

/**
 * Validates an id that came from a peer (cookie, header, CoAP option): length,
 * alphabet and shape, before it is used as a key or logged. Returns undefined
 * for anything that {@link newSessionId} could not have produced.
 */
export function parseSessionId(input: unknown): ParsedSessionId | undefined {
  if (!isSessionId(input)) return undefined;
  const dot = input.indexOf('.');
  return { id: input, routingTag: dot === -1 ? undefined : input.slice(0, dot) };
}

/** {@link parseSessionId} as a yes or no, building nothing (checked on every request). */
export function isSessionId(input: unknown): input is string {
  if (typeof input !== 'string' || input.length > MAX_LENGTH) return false;
  const dot = input.indexOf('.');
  if (dot === -1) return RANDOM.test(input);
  return TAG.test(input.slice(0, dot)) && RANDOM.test(input.slice(dot + 1));
}

/**
 * Which of `count` processes minted `id` with {@link newSessionId}'s `owner`:
 * the first random character's place in the base64url alphabet, mod `count`.
 * The id must have passed {@link parseSessionId}.
 */
export function sessionOwner(id: string, count: number): number {
  const c = id.charCodeAt(id.indexOf('.') + 1);
  // base64url alphabet order: A-Z, a-z, 0-9, '-', '_'
  const v = c >= 65 && c <= 90 ? c - 65 : c >= 97 && c <= 122 ? c - 71 : c >= 48 && c <= 57 ? c + 4 : c === 45 ? 62 : 63;
  return v % count;
}
