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
import type { PemInput, PskCredential, TlsClientConfig, TlsCommonConfig, TlsServerConfig } from './types.js';

/** TLS 1.3 suites, all AEAD; AES-128-GCM (SHA-256) first so external PSKs, which OpenSSL binds to SHA-256, stay usable. */
export const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';
/** TLS 1.2 certificate suites: ECDHE + AEAD only, so exported-key protection (draft §7) always has an AEAD to map to. */
export const TLS12_CERT_SUITES = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');
/** TLS 1.2 PSK suites (RFC 4279, RFC 5487, RFC 7905), AEAD only; the ECDHE one first for forward secrecy. */
export const TLS12_PSK_SUITES = [
  'ECDHE-PSK-CHACHA20-POLY1305',
  'PSK-AES128-GCM-SHA256',
  'PSK-AES256-GCM-SHA384',
  'PSK-CHACHA20-POLY1305',
].join(':');

/** Default session id context: servers that share `ticketKeys` and this value resume each other's sessions. */
export const DEFAULT_SESSION_ID_CONTEXT = 'atls';
/** OpenSSL's limits: SSL_MAX_SID_CTX_LENGTH, PSK_MAX_PSK_LEN; identities kept to 128 bytes (RFC 4279 §5.3 allows 128). */
const MAX_SID_CTX = 32;
const MAX_PSK_KEY = 512;
const MAX_PSK_IDENTITY = 128;

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

/**
 * The cipher string for a role: TLS 1.3 suites (`ciphersuites`, else the TLS
 * 1.3 names in `ciphers`, else {@link TLS13_SUITES}) then the TLS 1.2 list
 * (the other names in `ciphers`, else AEAD-only defaults for the credentials).
 * OpenSSL keeps the two apart; node:tls would clear the TLS 1.3 suites when
 * none are named, silently disabling TLS 1.3.
 */
export function resolveCiphers(cfg: TlsCommonConfig, psk: boolean, cert: boolean): string {
  const names = (value: unknown, what: string): string[] | undefined => {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value.trim() === '') throw invalid(`${what} must be a non-empty string`);
    return value.split(':').filter((s) => s.length > 0);
  };
  const given = names(cfg.ciphers, 'ciphers');
  const suites = names(cfg.ciphersuites, 'ciphersuites');
  if (suites?.some((s) => !s.startsWith('TLS_'))) throw invalid('ciphersuites names TLS 1.3 suites only (TLS_...)');
  const isTls13 = (s: string): boolean => /^!?TLS_/.test(s);
  const tls13 = suites ?? given?.filter(isTls13);
  const tls12 = given?.filter((s) => !isTls13(s));
  const defaults12 = [...(psk ? [TLS12_PSK_SUITES] : []), ...(cert || !psk ? [TLS12_CERT_SUITES] : [])];
  return [
    tls13 !== undefined && tls13.length > 0 ? tls13.join(':') : TLS13_SUITES,
    tls12 !== undefined && tls12.length > 0 ? tls12.join(':') : given === undefined ? defaults12.join(':') : '',
  ]
    .filter((s) => s.length > 0)
    .join(':');
}

function versions(cfg: TlsCommonConfig): { minVersion: tls.SecureVersion; maxVersion: tls.SecureVersion } {
  const minVersion = cfg.minVersion ?? 'TLSv1.2';
  const maxVersion = cfg.maxVersion ?? 'TLSv1.3';
  for (const v of [minVersion, maxVersion]) {
    if (v !== 'TLSv1.2' && v !== 'TLSv1.3') throw invalid(`unsupported TLS version ${String(v)} (TLSv1.2 or TLSv1.3)`);
  }
  if (minVersion === 'TLSv1.3' && maxVersion === 'TLSv1.2') throw invalid('minVersion is above maxVersion');
  return { minVersion, maxVersion };
}

/** Validates an ALPN list (RFC 7301 §3.1: 1..255-byte names). */
export function checkAlpn(alpn: string[] | undefined): string[] | undefined {
  if (alpn === undefined) return undefined;
  if (!Array.isArray(alpn) || alpn.length === 0) throw invalid('alpn must be a non-empty array of protocol names');
  for (const p of alpn) {
    const n = typeof p === 'string' ? Buffer.byteLength(p) : 0;
    if (n < 1 || n > 255) throw invalid('each ALPN protocol name must be 1..255 bytes'); // RFC 7301 §3.1
  }
  return alpn;
}

/** Validates a PSK credential and returns its key as a Buffer. */
export function checkPsk(psk: PskCredential): { identity: string; key: Buffer } {
  if (typeof psk !== 'object' || psk === null) throw invalid('psk must be { identity, key }');
  const idLen = typeof psk.identity === 'string' ? Buffer.byteLength(psk.identity) : 0;
  if (idLen < 1 || idLen > MAX_PSK_IDENTITY) throw invalid(`psk.identity must be 1..${MAX_PSK_IDENTITY} bytes`);
  if (!(psk.key instanceof Uint8Array) || psk.key.length < 1 || psk.key.length > MAX_PSK_KEY) {
    throw invalid(`psk.key must be 1..${MAX_PSK_KEY} bytes`);
  }
  return { identity: psk.identity, key: Buffer.from(psk.key) };
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

function common(cfg: TlsCommonConfig, psk: boolean, cert: boolean): tls.SecureContextOptions {
  if ((cfg.cert === undefined) !== (cfg.key === undefined)) throw invalid('cert and key must be given together');
  const o: tls.SecureContextOptions = { ...versions(cfg), ciphers: resolveCiphers(cfg, psk, cert) };
  if (cfg.cert !== undefined) o.cert = pem(cfg.cert, 'cert', 'cert');
  if (cfg.key !== undefined) o.key = pem(cfg.key, 'key', 'key');
  if (cfg.ca !== undefined) o.ca = (Array.isArray(cfg.ca) ? cfg.ca : [cfg.ca]).map((c) => pem(c, 'ca', 'cert'));
  if (cfg.groups !== undefined) o.ecdhCurve = cfg.groups;
  if (cfg.sigalgs !== undefined) o.sigalgs = cfg.sigalgs;
  return o;
}

/** The (cached) context of a client configuration. */
export function clientContext(cfg: TlsClientConfig, cache: ContextCache): tls.SecureContext {
  return cache.get(common(cfg, cfg.psk !== undefined, cfg.cert !== undefined || cfg.psk === undefined), 'client config');
}

/** A server's main context and its per-name SNI contexts (lower-case names). */
export interface ServerContexts {
  main: tls.SecureContext;
  sni: Map<string, tls.SecureContext>;
}

/** The (cached) contexts of a server configuration. */
export function serverContexts(cfg: TlsServerConfig, cache: ContextCache): ServerContexts {
  const psk = cfg.pskLookup !== undefined;
  if (psk && typeof cfg.pskLookup !== 'function') throw invalid('pskLookup must be a function');
  if (cfg.cert === undefined && !psk) throw invalid('a server needs cert and key, or pskLookup');
  const base = common(cfg, psk, cfg.cert !== undefined);
  const sid = cfg.sessionIdContext ?? DEFAULT_SESSION_ID_CONTEXT;
  if (typeof sid !== 'string' || Buffer.byteLength(sid) < 1 || Buffer.byteLength(sid) > MAX_SID_CTX) {
    throw invalid(`sessionIdContext must be 1..${MAX_SID_CTX} bytes`); // SSL_MAX_SID_CTX_LENGTH
  }
  base.sessionIdContext = sid;
  if (cfg.ticketKeys !== undefined) {
    if (!(cfg.ticketKeys instanceof Uint8Array) || cfg.ticketKeys.length !== 48) throw invalid('ticketKeys must be 48 bytes');
    base.ticketKeys = Buffer.from(cfg.ticketKeys);
  }
  const main = cache.get(base, 'server config');
  const sni = new Map<string, tls.SecureContext>();
  for (const [name, pair] of Object.entries(cfg.sniCertificates ?? {})) {
    if (!pair || pair.cert === undefined || pair.key === undefined) throw invalid(`sniCertificates[${name}] needs cert and key`);
    const o = { ...base, cert: pem(pair.cert, 'cert', 'cert'), key: pem(pair.key, 'key', 'key') };
    sni.set(name.toLowerCase(), cache.get(o, `sniCertificates[${name}]`));
  }
  return { main, sni };
}
