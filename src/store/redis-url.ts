/**
 * The `--store redis://...` URL, checked without loading the Redis client.
 *
 * @example
 * ```ts
 * parseRedisUrl('redis://10.0.0.5:6380/2'); // { host: '10.0.0.5', port: 6380, db: 2 }
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';

/** What {@link parseRedisUrl} found. */
export interface RedisAddress {
  host: string;
  port: number;
  db: number;
}

/**
 * Checks a `--store` Redis URL: scheme `redis:`, a host, port 1..65535
 * (default 6379), an optional database number path. INVALID_ARGUMENT otherwise.
 */
export function parseRedisUrl(text: string): RedisAddress {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new AtlsError('INVALID_ARGUMENT', `--store wants redis://HOST:PORT[/DB], got ${JSON.stringify(text)}`);
  }
  const db = u.pathname === '' || u.pathname === '/' ? 0 : Number(u.pathname.slice(1));
  if (u.protocol !== 'redis:' || u.hostname === '' || !Number.isInteger(db) || db < 0 || u.search !== '' || u.hash !== '') {
    throw new AtlsError('INVALID_ARGUMENT', `--store wants redis://HOST:PORT[/DB], got ${JSON.stringify(text.replace(/\/\/[^@/]*@/, '//…@'))}`);
  }
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port: u.port === '' ? 6379 : Number(u.port), db };
}

