/**
 * Configuration for the `node` engine: validation, AEAD-only cipher defaults,
 * and a small cache of `tls.SecureContext`s.
 *
 * Creating a SecureContext costs about 1.2 ms (key and certificate parsing),
 * as much as a third of an in-memory handshake, and a server's session ticket
 * keys live in its context: connections made from equal configurations share
 * one context, so they also resume each other's sessions.
 *
 * @example
 * ```ts
 * const cache = new ContextCache(64);
 * const ctx = clientContext({ ca: pem, serverName: 'localhost' }, cache);
 * ```
 * @module
 */
import tls from 'node:tls';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { AtlsError } from '../errors.js';
import type { PemInput, TlsClientConfig, TlsCommonConfig, TlsServerConfig } from './types.js';
import type { CheckedClient, CheckedCommon, CheckedServer } from './config.js';

function invalid(message: string, cause?: unknown): AtlsError {
  return new AtlsError('INVALID_ARGUMENT', message, { source: 'local', ...(cause === undefined ? {} : { cause }) });
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** PEM text or bytes (PEM or DER) as something node:tls accepts. */
function pem(input: PemInput, what: string, kind: 'cert' | 'key'): string | Buffer {
  if (typeof input === 'string') return input;
  if (!(input instanceof Uint8Array)) throw invalid(`${what} must be PEM text or bytes`);
  const bytes = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  if (bytes[0] !== 0x30 /* DER SEQUENCE */ || bytes.includes('-----BEGIN ')) return bytes; // PEM bytes
  try {
    // node:tls takes PEM only; DER is converted once here.
    return kind === 'cert'
      ? new X509Certificate(bytes).toString()
      : (createPrivateKey({ key: bytes, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }) as string);
  } catch (e) {
    throw invalid(`${what} is neither PEM nor DER`, e);
  }
}

/**
 * OpenSSL skips CA blocks it cannot parse without a word; a trust store that
 * silently lost a certificate is a configuration error, so check each block.
 */
function checkCertificates(list: ReadonlyArray<string | Buffer>, what: string): void {
  for (const item of list) {
    const text = typeof item === 'string' ? item : item.toString('latin1');
    const blocks = text.match(PEM_BLOCK) ?? [];
    if (blocks.length === 0) throw invalid(`${what} holds no PEM certificate`);
    for (const block of blocks) {
      try {
        new X509Certificate(block);
      } catch (e) {
        throw invalid(`${what} holds a certificate that does not parse`, e);
      }
    }
  }
}

/** An LRU cache of secure contexts keyed by a digest of their options. */
export class ContextCache {
  private readonly map = new Map<string, tls.SecureContext>();
  constructor(private readonly max: number) {}

  /** The context for `options`, created on first use. */
  get(options: tls.SecureContextOptions, what: string): tls.SecureContext {
    const key = digestOptions(options);
    const hit = this.map.get(key);
    if (hit) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    let ctx: tls.SecureContext;
    if (options.ca !== undefined) checkCertificates(options.ca as Array<string | Buffer>, `${what}: ca`);
    try {
      ctx = tls.createSecureContext(options);
    } catch (e) {
      throw invalid(`${what}: ${(e as Error).message ?? String(e)}`, e);
    }
    if (this.max > 0) {
      this.map.set(key, ctx);
      while (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    }
    return ctx;
  }

  /** Number of cached contexts. */
  get size(): number {
    return this.map.size;
  }

  /** Forget every context (their ticket keys with them). */
  clear(): void {
    this.map.clear();
  }
}

function digestOptions(options: tls.SecureContextOptions): string {
  const h = createHash('sha256');
  for (const [k, v] of Object.entries(options).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (v === undefined) continue;
    h.update(k).update('\0');
    for (const item of Array.isArray(v) ? v : [v]) {
      const bytes = typeof item === 'string' ? Buffer.from(item) : Buffer.isBuffer(item) ? item : Buffer.from(String(item));
      h.update(String(bytes.length)).update(':').update(bytes);
    }
    h.update('\0');
  }
  return h.digest('base64');
}

function common(cfg: TlsCommonConfig, checked: CheckedCommon): tls.SecureContextOptions {
  const o: tls.SecureContextOptions = { minVersion: checked.minVersion, maxVersion: checked.maxVersion, ciphers: checked.ciphers };
  if (cfg.cert !== undefined) o.cert = pem(cfg.cert, 'cert', 'cert');
  if (cfg.key !== undefined) o.key = pem(cfg.key, 'key', 'key');
  if (cfg.ca !== undefined) o.ca = (Array.isArray(cfg.ca) ? cfg.ca : [cfg.ca]).map((c) => pem(c, 'ca', 'cert'));
  if (cfg.groups !== undefined) o.ecdhCurve = cfg.groups;
  if (cfg.sigalgs !== undefined) o.sigalgs = cfg.sigalgs;
  return o;
}

/** The (cached) context of a client configuration checked by config.ts. */
export function clientContext(cfg: TlsClientConfig, checked: CheckedClient, cache: ContextCache): tls.SecureContext {
  return cache.get(common(cfg, checked), 'client config');
}

/** A server's main context and its per-name SNI contexts (lower-case names). */
export interface ServerContexts {
  main: tls.SecureContext;
  sni: Map<string, tls.SecureContext>;
}

/** The (cached) contexts of a server configuration checked by config.ts. */
export function serverContexts(cfg: TlsServerConfig, checked: CheckedServer, cache: ContextCache): ServerContexts {
  const base = common(cfg, checked);
  base.sessionIdContext = checked.sessionIdContext;
  if (cfg.ticketKeys !== undefined) base.ticketKeys = Buffer.from(cfg.ticketKeys);
  const main = cache.get(base, 'server config');
  const sni = new Map<string, tls.SecureContext>();
  for (const [name, pair] of Object.entries(cfg.sniCertificates ?? {})) {
    const o = { ...base, cert: pem(pair.cert, 'cert', 'cert'), key: pem(pair.key, 'key', 'key') };
    sni.set(name.toLowerCase(), cache.get(o, `sniCertificates[${name}]`));
  }
  return { main, sni };
}
