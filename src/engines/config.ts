/**
 * The one configuration validator of the `node` and `openssl` engines: every
 * setting is checked here, once, with the same rules and messages, and
 * normalised (versions, the cipher string with its AEAD-only defaults, ALPN,
 * PSK, session id context, client-certificate policy). Each engine only maps
 * the result onto its stack; what an engine cannot do is refused from its
 * capabilities (UNSUPPORTED) before anything is built.
 *
 * @example
 * ```ts
 * const checked = checkServerConfig({ cert, key, alpn: ['atls'] }, { name: 'openssl', capabilities, keyLog: false });
 * checked.ciphers; // 'TLS_AES_128_GCM_SHA256:...:ECDHE-ECDSA-AES128-GCM-SHA256:...'
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { EngineCapabilities, PskCredential, TlsClientConfig, TlsCommonConfig, TlsServerConfig } from './types.js';

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

/** Client session state from a `ticket` event is ~0.3-3 KB; anything this large is not one. */
const MAX_SESSION = 64 * 1024;
/** The TLS 1.3 tickets a server issues when `ticketCount` is not given (and the only count node:tls knows). */
const DEFAULT_TICKET_COUNT = 2;
const MAX_TICKET_COUNT = 16;
const MIN_COOKIE_SECRET = 16;

function invalid(message: string): AtlsError {
  return new AtlsError('INVALID_ARGUMENT', message, { source: 'local' });
}

/** What the engine being configured can do, for its UNSUPPORTED refusals. */
export interface EngineTraits {
  name: string;
  capabilities: EngineCapabilities;
  /** The engine can report secrets to `keyLog`. */
  keyLog: boolean;
}

function unsupported(engine: EngineTraits, message: string): AtlsError {
  return new AtlsError('UNSUPPORTED', `${engine.name} engine: ${message}`, { source: 'local' });
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

type Version = 'TLSv1.2' | 'TLSv1.3';

function versions(cfg: TlsCommonConfig): { minVersion: Version; maxVersion: Version } {
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

/** Settings both roles share, checked and normalised. */
export interface CheckedCommon {
  minVersion: Version;
  maxVersion: Version;
  /** TLS 1.3 may be negotiated. */
  tls13: boolean;
  /** TLS 1.3 suites then TLS 1.2 suites, OpenSSL syntax (see {@link resolveCiphers}). */
  ciphers: string;
  alpn: string[] | undefined;
  keyLog: ((line: string) => void) | undefined;
}

export interface CheckedClient extends CheckedCommon {
  psk: { identity: string; key: Buffer } | undefined;
  verifyPeer: boolean;
}

export interface CheckedServer extends CheckedCommon {
  psk: boolean;
  sessionIdContext: string;
  requestCert: boolean;
  requireCert: boolean;
}

function checkCommon(cfg: TlsCommonConfig, engine: EngineTraits, psk: boolean, cert: boolean): CheckedCommon {
  if (cfg.dtls && !engine.capabilities.dtls) throw unsupported(engine, 'no DTLS');
  if ((cfg.cert === undefined) !== (cfg.key === undefined)) throw invalid('cert and key must be given together');
  if (cfg.keyLog !== undefined) {
    if (!engine.keyLog) throw unsupported(engine, 'no key log; use the node engine');
    if (typeof cfg.keyLog !== 'function') throw invalid('keyLog must be a function');
  }
  const v = versions(cfg);
  return {
    ...v,
    tls13: v.maxVersion === 'TLSv1.3',
    ciphers: resolveCiphers(cfg, psk, cert),
    alpn: checkAlpn(cfg.alpn),
    keyLog: cfg.keyLog,
  };
}

function configObject<T>(cfg: T, what: string): T {
  if (typeof cfg !== 'object' || cfg === null) throw invalid(`${what} must be an object`);
  return cfg;
}

/**
 * Results per configuration object and engine: a server checks its one
 * configuration once, not on every handshake. A configuration object is
 * treated as immutable once used (the engines cache their contexts by it too).
 */
const memo = new WeakMap<object, Map<EngineTraits, CheckedClient | CheckedServer>>();

function memoised<T extends CheckedClient | CheckedServer>(config: object, engine: EngineTraits, check: () => T): T {
  let byEngine = memo.get(config);
  const hit = byEngine?.get(engine);
  if (hit) return hit as T;
  const checked = check();
  if (!byEngine) memo.set(config, (byEngine = new Map()));
  byEngine.set(engine, checked);
  return checked;
}

/** Checks a client configuration for `engine`; throws INVALID_ARGUMENT or UNSUPPORTED. */
export function checkClientConfig(config: TlsClientConfig, engine: EngineTraits): CheckedClient {
  return memoised(configObject(config, 'client config'), engine, () => checkClient(config, engine));
}

/** Checks a server configuration for `engine`; throws INVALID_ARGUMENT or UNSUPPORTED. */
export function checkServerConfig(config: TlsServerConfig, engine: EngineTraits): CheckedServer {
  return memoised(configObject(config, 'server config'), engine, () => checkServer(config, engine));
}

function checkClient(cfg: TlsClientConfig, engine: EngineTraits): CheckedClient {
  // `earlyData` is sent as 0-RTT when the ticket allows and never otherwise (RFC 8446 §4.2.10: no
  // automatic resend); an engine without 0-RTT simply never can: earlyData 'none', the caller decides.
  if (cfg.earlyData !== undefined && !(cfg.earlyData instanceof Uint8Array)) throw invalid('earlyData must be bytes');
  if (cfg.serverName !== undefined && (typeof cfg.serverName !== 'string' || !/^[^\0]{1,255}$/.test(cfg.serverName))) {
    throw invalid('serverName must be 1..255 characters'); // RFC 6066 §3
  }
  if (cfg.session !== undefined && (!(cfg.session instanceof Uint8Array) || cfg.session.length === 0 || cfg.session.length > MAX_SESSION)) {
    throw invalid('session must be the bytes of a ticket event');
  }
  return {
    ...checkCommon(cfg, engine, cfg.psk !== undefined, cfg.cert !== undefined || cfg.psk === undefined),
    psk: cfg.psk === undefined ? undefined : checkPsk(cfg.psk),
    verifyPeer: cfg.verifyPeer !== false,
  };
}

function checkServer(cfg: TlsServerConfig, engine: EngineTraits): CheckedServer {
  const caps = engine.capabilities;
  const psk = cfg.pskLookup !== undefined;
  if (psk && typeof cfg.pskLookup !== 'function') throw invalid('pskLookup must be a function');
  if (cfg.cert === undefined && !psk) throw invalid('a server needs cert and key, or pskLookup');
  const sid = cfg.sessionIdContext ?? DEFAULT_SESSION_ID_CONTEXT;
  if (typeof sid !== 'string' || Buffer.byteLength(sid) < 1 || Buffer.byteLength(sid) > MAX_SID_CTX) {
    throw invalid(`sessionIdContext must be 1..${MAX_SID_CTX} bytes`); // SSL_MAX_SID_CTX_LENGTH
  }
  if (cfg.ticketKeys !== undefined && (!(cfg.ticketKeys instanceof Uint8Array) || cfg.ticketKeys.length !== 48)) {
    throw invalid('ticketKeys must be 48 bytes');
  }
  if (cfg.ticketCount !== undefined) {
    if (!caps.ticketCount && cfg.ticketCount !== DEFAULT_TICKET_COUNT) throw unsupported(engine, `always issues ${DEFAULT_TICKET_COUNT} TLS 1.3 tickets`);
    if (!Number.isInteger(cfg.ticketCount) || cfg.ticketCount < 0 || cfg.ticketCount > MAX_TICKET_COUNT) {
      throw invalid(`ticketCount must be an integer 0..${MAX_TICKET_COUNT}`);
    }
  }
  if (cfg.maxEarlyData !== undefined) {
    if (!caps.earlyData && cfg.maxEarlyData !== 0) throw unsupported(engine, 'no API for TLS 1.3 early data');
    if (!Number.isInteger(cfg.maxEarlyData) || cfg.maxEarlyData < 0) throw invalid('maxEarlyData must be a non-negative integer');
  }
  if (cfg.dtlsCookieSecret !== undefined) {
    if (!caps.dtls) throw unsupported(engine, 'no DTLS');
    if (!(cfg.dtlsCookieSecret instanceof Uint8Array) || cfg.dtlsCookieSecret.length < MIN_COOKIE_SECRET) {
      throw invalid(`dtlsCookieSecret must be at least ${MIN_COOKIE_SECRET} bytes`);
    }
  }
  for (const [name, pair] of Object.entries(cfg.sniCertificates ?? {})) {
    if (!pair || pair.cert === undefined || pair.key === undefined) throw invalid(`sniCertificates[${name}] needs cert and key`);
  }
  const requireCert = cfg.requireClientCert === true;
  return {
    ...checkCommon(cfg, engine, psk, cfg.cert !== undefined),
    psk,
    sessionIdContext: sid,
    requestCert: requireCert || cfg.requestClientCert === true,
    requireCert,
  };
}
