/**
 * The `openssl` TLS engine: OpenSSL `SSL` objects driven through memory BIOs
 * by a Node-API addon (native/atls_openssl.cc), as in draft Appendix B.1.
 *
 * The addon uses the OpenSSL inside the node binary (no other library). A
 * flight ends exactly when OpenSSL reports that it wants to read. Beyond the
 * `node` engine it offers DTLS 1.2 (cookie exchange, MTU, caller-driven
 * retransmission), TLS 1.3 early data, a configurable TLS 1.3 ticket count
 * and explicit exporter context control. All work is synchronous; the
 * methods return resolved promises to fit {@link EngineConnection}.
 *
 * @example
 * ```ts
 * const engine = loadOpensslEngine();
 * if (engine.engine) {
 *   const server = engine.engine.createServer({ cert, key });
 *   const client = engine.engine.createClient({ serverName: 'localhost', ca });
 *   const hello = await client.start();
 *   const reply = await server.receive(hello.flight);
 * }
 * ```
 * @module
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEFAULT_CIPHERS, rootCertificates } from 'node:tls';
import { AtlsError, alertName, codeForAlert, receivedAlertError, type AtlsErrorCode } from '../errors.js';
import type {
  EngineCapabilities,
  EngineConnection,
  EngineEvent,
  EngineStep,
  HandshakeInfo,
  PemInput,
  TlsClientConfig,
  TlsCommonConfig,
  TlsEngine,
  TlsServerConfig,
} from './types.js';

// ------------------------------------------------------------ the addon

interface NativeError {
  sslError: number;
  message: string;
  lib: number;
  reason: number;
  reasonString: string;
  verifyResult: number;
  verifyError?: string;
  alertSent?: number;
  alertReceived?: number;
  lookupThrew?: boolean;
  handshakeDone: boolean;
}

type NativeEvent =
  | { type: 'handshake'; info: HandshakeInfo }
  | { type: 'data'; data: Uint8Array; early?: boolean }
  | { type: 'ticket'; session: Uint8Array }
  | { type: 'alert'; level: number; description: number }
  | { type: 'closed' };

interface NativeResult {
  flight: Uint8Array;
  /** DTLS: sizes of the datagrams that make up `flight`. */
  datagrams?: number[];
  events: NativeEvent[];
  error?: NativeError;
}

interface NativeConnection {
  start(): NativeResult;
  receive(flight: Uint8Array): NativeResult;
  write(data: Uint8Array): NativeResult;
  close(): NativeResult;
  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array;
  dtlsTimeout(): number | undefined;
  dtlsHandleTimeout(): NativeResult;
  destroy(): void;
}

interface NativeAddon {
  Context: new (options: Record<string, unknown>) => object;
  Connection: new (context: object, options: Record<string, unknown>) => NativeConnection;
  opensslVersion(): { text: string; number: number; headers: string };
  liveObjects(): { contexts: number; connections: number };
  threadCpuNs(): number;
}

let loaded: { addon: NativeAddon; version: string } | { addon: undefined; reason: string } | undefined;

/** Where the addon is looked for: `ATLS_NATIVE_ADDON`, else build/Release next to src/ or dist/. */
function addonPath(): string {
  const override = process.env.ATLS_NATIVE_ADDON;
  if (override) return override;
  return fileURLToPath(new URL('../../build/Release/atls_openssl.node', import.meta.url));
}

/** Loads the addon once; never throws. */
function loadAddon(): { addon: NativeAddon; version: string } | { addon: undefined; reason: string } {
  if (loaded) return loaded;
  const path = addonPath();
  if (!existsSync(path)) {
    loaded = { addon: undefined, reason: 'native addon not built (run `node scripts/build-native.mjs`)' };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    const v = addon.opensslVersion();
    // The addon must resolve against node's own OpenSSL, never another libssl.
    if (!v.text.includes(process.versions.openssl ?? '?')) {
      loaded = { addon: undefined, reason: `addon runs ${v.text}, node has OpenSSL ${process.versions.openssl}` };
    } else {
      loaded = { addon, version: v.text };
    }
  } catch (e) {
    loaded = { addon: undefined, reason: `native addon failed to load: ${e instanceof Error ? e.message : String(e)}` };
  }
  return loaded;
}

/**
 * Whether the native engine can be used here, and why not.
 *
 * @example
 * ```ts
 * const a = opensslAvailability();
 * console.log(a.available ? `openssl (${a.version})` : `unavailable: ${a.reason}`);
 * ```
 */
export function opensslAvailability(): { available: true; version: string } | { available: false; reason: string } {
  const l = loadAddon();
  return l.addon ? { available: true, version: l.version } : { available: false, reason: l.reason };
}

/** Live native objects (contexts, connections), for leak tests. Zeros when the addon is absent. */
export function nativeLiveObjects(): { contexts: number; connections: number } {
  const l = loadAddon();
  return l.addon ? l.addon.liveObjects() : { contexts: 0, connections: 0 };
}

/**
 * CPU time of the calling thread in ns (for benchmarks that count work, not
 * wall time); falls back to process CPU time when the addon is absent.
 */
export function threadCpuNs(): number {
  const l = loadAddon();
  if (l.addon) return l.addon.threadCpuNs();
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

// --------------------------------------------------- config normalisation

const VERSION_NUMBERS = { 'TLSv1.2': 0x0303, 'TLSv1.3': 0x0304 } as const;
const enc = new TextEncoder();

function toBytes(v: PemInput): Uint8Array {
  return typeof v === 'string' ? enc.encode(v) : v;
}

/** RFC 7301 §3.1: ProtocolNameList of 1..255-byte names. */
function alpnWire(list: string[] | undefined): Uint8Array | undefined {
  if (!list || list.length === 0) return undefined;
  const parts = list.map((p) => enc.encode(p));
  const out = new Uint8Array(parts.reduce((n, p) => n + 1 + p.length, 0));
  let o = 0;
  for (const p of parts) {
    if (p.length < 1 || p.length > 255) throw new AtlsError('INVALID_ARGUMENT', 'ALPN names are 1..255 bytes');
    out[o++] = p.length;
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Splits an OpenSSL cipher string like Node does: TLS 1.3 suite names select the TLS 1.3 suites. */
function splitCiphers(ciphers: string): { cipherList: string; cipherSuites: string } {
  const parts = ciphers.split(':').filter((s) => s.length > 0);
  return {
    cipherSuites: parts.filter((p) => p.startsWith('TLS_')).join(':'),
    cipherList: parts.filter((p) => !p.startsWith('TLS_')).join(':'),
  };
}

function commonOptions(c: TlsCommonConfig, server: boolean): Record<string, unknown> {
  const { cipherList, cipherSuites } = splitCiphers(c.ciphers ?? DEFAULT_CIPHERS);
  const ca = c.ca === undefined ? undefined : (Array.isArray(c.ca) ? c.ca : [c.ca]).map(toBytes);
  return {
    server,
    dtls: c.dtls === true,
    minVersion: VERSION_NUMBERS[c.minVersion ?? 'TLSv1.2'],
    maxVersion: VERSION_NUMBERS[c.maxVersion ?? 'TLSv1.3'],
    cert: c.cert === undefined ? undefined : toBytes(c.cert),
    key: c.key === undefined ? undefined : toBytes(c.key),
    ca,
    alpn: alpnWire(c.alpn),
    // Only TLS 1.3 names given: keep OpenSSL's TLS 1.2 defaults rather than none.
    cipherList: cipherList.length > 0 ? cipherList : undefined,
    cipherSuites: cipherSuites.length > 0 ? cipherSuites : undefined,
    groups: c.groups,
    sigalgs: c.sigalgs,
  };
}

function serverContextOptions(c: TlsServerConfig): Record<string, unknown> {
  if (c.ticketKeys !== undefined && c.ticketKeys.length !== 48) {
    throw new AtlsError('INVALID_ARGUMENT', 'ticketKeys must be 48 bytes');
  }
  if (c.ticketCount !== undefined && (!Number.isInteger(c.ticketCount) || c.ticketCount < 0 || c.ticketCount > 16)) {
    throw new AtlsError('INVALID_ARGUMENT', 'ticketCount must be an integer 0..16');
  }
  if (c.maxEarlyData !== undefined && (!Number.isInteger(c.maxEarlyData) || c.maxEarlyData < 0)) {
    throw new AtlsError('INVALID_ARGUMENT', 'maxEarlyData must be a non-negative integer');
  }
  if (c.dtlsCookieSecret !== undefined && c.dtlsCookieSecret.length < 16) {
    throw new AtlsError('INVALID_ARGUMENT', 'dtlsCookieSecret must be at least 16 bytes');
  }
  return {
    ...commonOptions(c, true),
    requestCert: c.requestClientCert === true || c.requireClientCert === true,
    requireCert: c.requireClientCert === true,
    psk: c.pskLookup !== undefined,
    pskHint: c.pskHint,
    ticketKeys: c.ticketKeys,
    sessionIdContext: c.sessionIdContext,
    ticketCount: c.ticketCount,
    maxEarlyData: c.maxEarlyData,
    cookieSecret: c.dtlsCookieSecret,
    sni: c.sniCertificates
      ? Object.entries(c.sniCertificates).map(([name, p]) => ({ name, cert: toBytes(p.cert), key: toBytes(p.key) }))
      : undefined,
  };
}

function clientContextOptions(c: TlsClientConfig): Record<string, unknown> {
  const verifyPeer = c.verifyPeer !== false;
  const o = commonOptions(c, false);
  // Same default trust as the node engine: Node's bundled root certificates.
  if (verifyPeer && o.ca === undefined) o.ca = rootCertificates.map((p) => enc.encode(p));
  o.verifyPeer = verifyPeer;
  return o;
}

/** A stable cache key: bytes as hex, functions dropped (they live on connections). */
function cacheKey(o: Record<string, unknown>): string {
  return JSON.stringify(o, (_k, v: unknown) => {
    if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
    return v;
  });
}

/**
 * SSL_CTX cache: creating a context and loading keys costs far more than a
 * handshake, so identical configurations share one (bounded, least recently used first out).
 */
const CONTEXT_CACHE_MAX = 64;
const contextCache = new Map<string, object>();
const configMemo = new WeakMap<object, { key: string; ctx: object }>();

function contextFor(addon: NativeAddon, config: object, options: () => Record<string, unknown>): object {
  // Same config object again: skip normalisation (configs are treated as immutable once used).
  const memo = configMemo.get(config);
  if (memo && contextCache.get(memo.key) === memo.ctx) return memo.ctx;
  const o = options();
  const key = cacheKey(o);
  let ctx = contextCache.get(key);
  if (ctx) {
    contextCache.delete(key);
    contextCache.set(key, ctx);
  } else {
    ctx = newNative(() => new addon.Context(o));
    contextCache.set(key, ctx);
    if (contextCache.size > CONTEXT_CACHE_MAX) {
      const oldest = contextCache.keys().next().value;
      if (oldest !== undefined) contextCache.delete(oldest);
    }
  }
  configMemo.set(config, { key, ctx });
  return ctx;
}

/** Empties the SSL_CTX cache (tests, key rotation). Live connections keep their context. */
export function clearOpensslContextCache(): void {
  contextCache.clear();
}

/** Runs a native constructor, turning its errors into AtlsError. */
function newNative<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    const code = (e as { atlsCode?: AtlsErrorCode }).atlsCode ?? 'INVALID_ARGUMENT';
    throw new AtlsError(code, e instanceof Error ? e.message : String(e), { source: 'local', cause: e });
  }
}

// ----------------------------------------------------- error translation

// OpenSSL X509_V_ERR_* values (include/openssl/x509_vfy.h).
const X509_V_ERR_CERT_NOT_YET_VALID = 9;
const X509_V_ERR_CERT_HAS_EXPIRED = 10;
const X509_V_ERR_HOSTNAME_MISMATCH = 62;
const X509_V_ERR_EMAIL_MISMATCH = 63;
const X509_V_ERR_IP_ADDRESS_MISMATCH = 64;
// OpenSSL SSL_R_* reasons (include/openssl/sslerr.h).
const SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE = 199;
const SSL_R_CERTIFICATE_VERIFY_FAILED = 134;
const SSL_R_WRONG_VERSION_NUMBER = 267;
const SSL_R_UNSUPPORTED_PROTOCOL = 258;
const SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC = 281;
const SSL_R_PACKET_LENGTH_TOO_LONG = 198;
const SSL_R_RECORD_LENGTH_MISMATCH = 213;
const SSL_R_LENGTH_MISMATCH = 159;
const SSL_R_HTTP_REQUEST = 156;
const SSL_R_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY = 1115;
const SSL_R_PSK_IDENTITY_NOT_FOUND = 223;
const SSL_R_NO_SHARED_CIPHER = 193;
const SSL_R_NO_SUITABLE_KEY_SHARE = 101;
const SSL_R_NO_APPLICATION_PROTOCOL = 235;
const SSL_R_UNEXPECTED_EOF_WHILE_READING = 294;

function verifyCode(v: number): AtlsErrorCode {
  if (v === X509_V_ERR_CERT_HAS_EXPIRED || v === X509_V_ERR_CERT_NOT_YET_VALID) return 'CERTIFICATE_EXPIRED';
  if (v === X509_V_ERR_HOSTNAME_MISMATCH || v === X509_V_ERR_IP_ADDRESS_MISMATCH || v === X509_V_ERR_EMAIL_MISMATCH) {
    return 'CERTIFICATE_NAME_MISMATCH';
  }
  return 'CERTIFICATE_UNTRUSTED';
}

function reasonCode(reason: number): AtlsErrorCode | undefined {
  switch (reason) {
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      return 'CERTIFICATE_REQUIRED';
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
    case SSL_R_LENGTH_MISMATCH:
    case SSL_R_HTTP_REQUEST:
      return 'MALFORMED_RECORD';
    case SSL_R_UNSUPPORTED_PROTOCOL:
      return 'PROTOCOL_VERSION';
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
      return 'BAD_RECORD_MAC';
    case SSL_R_TLSV1_ALERT_UNKNOWN_PSK_IDENTITY:
    case SSL_R_PSK_IDENTITY_NOT_FOUND:
      return 'PSK_UNKNOWN';
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
    case SSL_R_NO_APPLICATION_PROTOCOL:
      return 'HANDSHAKE_FAILED';
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
      return 'TRUNCATED_FLIGHT';
    default:
      return undefined;
  }
}

/** Maps a native failure to the same codes the node engine uses for the same failure. */
function translateError(e: NativeError, flight: Uint8Array, role: 'client' | 'server'): AtlsError {
  const detail = e.message || e.reasonString || `SSL error ${e.sslError}`;
  if (e.lookupThrew) {
    return new AtlsError('INTERNAL', 'pskLookup threw', { source: 'local', alertFlight: flight });
  }
  if (e.alertReceived !== undefined) {
    const err = receivedAlertError(e.alertReceived);
    return err.withAlertFlight(flight);
  }
  const alert = e.alertSent;
  // We verified the peer's certificate and it failed (RFC 8446 §4.4.2.4, RFC 5280 §6).
  if (e.reason === SSL_R_CERTIFICATE_VERIFY_FAILED && e.verifyResult !== 0) {
    const code = verifyCode(e.verifyResult);
    return new AtlsError(code, `${role}: peer certificate rejected: ${e.verifyError ?? detail}`, {
      source: 'remote',
      ...(alert !== undefined ? { alert } : {}),
      alertFlight: flight,
    });
  }
  const code = reasonCode(e.reason) ?? (alert !== undefined && alert !== 80 && alert !== 10 ? codeForAlert(alert) : undefined);
  return new AtlsError(code ?? 'HANDSHAKE_FAILED', `${role}: TLS failure: ${detail}`, {
    source: 'remote',
    ...(alert !== undefined ? { alert } : {}),
    alertFlight: flight,
  });
}

// ------------------------------------------------------------ connection

const MAX_INPUT = 16 * 1024 * 1024;
const MAX_EXPORT = 16384;

/** One native connection behind the {@link EngineConnection} interface. */
class OpensslConnection implements EngineConnection {
  private failed: AtlsError | undefined;
  private destroyed = false;

  constructor(
    private readonly native: NativeConnection,
    private readonly role: 'client' | 'server',
  ) {}

  private guard(): void {
    if (this.failed) throw this.failed;
    if (this.destroyed) throw new AtlsError('CLOSED', 'connection destroyed');
  }

  /** Converts a native result; a fatal error becomes sticky and is thrown. */
  private step(fn: () => NativeResult): EngineStep {
    this.guard();
    let r: NativeResult;
    try {
      r = fn();
    } catch (e) {
      const code = (e as { atlsCode?: AtlsErrorCode }).atlsCode ?? 'INTERNAL';
      throw new AtlsError(code, e instanceof Error ? e.message : String(e), { source: 'local', cause: e });
    }
    const events: EngineEvent[] = r.events.map((ev) =>
      ev.type === 'alert' ? { ...ev, name: alertName(ev.description) } : ev,
    );
    if (r.error) {
      this.failed = translateError(r.error, r.flight, this.role);
      this.destroyed = true;
      throw this.failed;
    }
    if (r.datagrams) {
      const datagrams: Uint8Array[] = [];
      let off = 0;
      for (const n of r.datagrams) {
        datagrams.push(r.flight.subarray(off, off + n));
        off += n;
      }
      return { flight: r.flight, events, datagrams };
    }
    return { flight: r.flight, events };
  }

  start(): Promise<EngineStep> {
    try {
      if (this.role !== 'client') throw new AtlsError('INVALID_STATE', 'start() is for clients');
      return Promise.resolve(this.step(() => this.native.start()));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  receive(flight: Uint8Array): Promise<EngineStep> {
    try {
      if (!(flight instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'flight must be bytes');
      if (flight.length > MAX_INPUT) throw new AtlsError('TOO_LARGE', `flight of ${flight.length} bytes`);
      return Promise.resolve(this.step(() => this.native.receive(flight)));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  write(data: Uint8Array): Promise<EngineStep> {
    try {
      if (!(data instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'data must be bytes');
      if (data.length > MAX_INPUT) throw new AtlsError('TOO_LARGE', `write of ${data.length} bytes`);
      return Promise.resolve(this.step(() => this.native.write(data)));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array {
    this.guard();
    if (!Number.isInteger(length) || length < 1 || length > MAX_EXPORT) {
      throw new AtlsError('INVALID_ARGUMENT', `export length must be 1..${MAX_EXPORT}`);
    }
    if (typeof label !== 'string' || label.length === 0) throw new AtlsError('INVALID_ARGUMENT', 'export label required');
    try {
      // RFC 5705 §4: `undefined` = no context; an empty array is a (different, in TLS 1.2) empty context.
      return context === undefined
        ? this.native.exportKeyingMaterial(length, label)
        : this.native.exportKeyingMaterial(length, label, context);
    } catch (e) {
      const code = (e as { atlsCode?: AtlsErrorCode }).atlsCode ?? 'INTERNAL';
      throw new AtlsError(code, e instanceof Error ? e.message : String(e), { source: 'local', cause: e });
    }
  }

  close(): Promise<EngineStep> {
    try {
      if (this.failed) throw this.failed;
      if (this.destroyed) return Promise.resolve({ flight: new Uint8Array(0), events: [] });
      const s = this.step(() => this.native.close());
      this.destroyed = true;
      return Promise.resolve(s);
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.native.destroy();
  }

  dtlsTimeout(): number | undefined {
    if (this.failed || this.destroyed) return undefined;
    return this.native.dtlsTimeout();
  }

  dtlsHandleTimeout(): Promise<EngineStep> {
    try {
      return Promise.resolve(this.step(() => this.native.dtlsHandleTimeout()));
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }
}

// ---------------------------------------------------------------- engine

/** Per-connection options the native engine understands beyond {@link TlsClientConfig}/{@link TlsServerConfig}. */
interface DtlsExtras {
  dtlsMtu?: number;
  dtlsInitialTimeoutMs?: number;
  dtlsPeer?: string;
}

const CAPABILITIES: EngineCapabilities = {
  exactFlights: true,
  dtls: true,
  earlyData: true,
  ticketCount: true,
  exporterContextControl: true,
};

function dtlsOptions(c: TlsCommonConfig & DtlsExtras, o: Record<string, unknown>): void {
  if (!c.dtls) return;
  if (c.dtlsMtu !== undefined) o.mtu = c.dtlsMtu;
  if (c.dtlsInitialTimeoutMs !== undefined) o.dtlsInitialTimeoutMs = c.dtlsInitialTimeoutMs;
}

function makeEngine(addon: NativeAddon): TlsEngine {
  return {
    name: 'openssl',
    capabilities: CAPABILITIES,
    createClient(config: TlsClientConfig): EngineConnection {
      const ctx = contextFor(addon, config, () => clientContextOptions(config));
      const o: Record<string, unknown> = { verifyPeer: config.verifyPeer !== false };
      if (config.serverName !== undefined) o.serverName = config.serverName;
      if (config.psk) {
        if (config.psk.key.length === 0 || config.psk.key.length > 256) {
          throw new AtlsError('INVALID_ARGUMENT', 'PSK key must be 1..256 bytes');
        }
        o.pskIdentity = config.psk.identity;
        o.pskKey = config.psk.key;
      }
      if (config.session !== undefined) o.session = config.session;
      if (config.earlyData !== undefined && config.earlyData.length > 0) o.earlyData = config.earlyData;
      dtlsOptions(config, o);
      return new OpensslConnection(
        newNative(() => new addon.Connection(ctx, o)),
        'client',
      );
    },
    createServer(config: TlsServerConfig): EngineConnection {
      const ctx = contextFor(addon, config, () => serverContextOptions(config));
      const o: Record<string, unknown> = {};
      if (config.pskLookup) o.pskLookup = config.pskLookup;
      if (config.dtlsPeer !== undefined) o.dtlsPeer = config.dtlsPeer;
      dtlsOptions(config, o);
      return new OpensslConnection(
        newNative(() => new addon.Connection(ctx, o)),
        'server',
      );
    },
  };
}

let engineSingleton: TlsEngine | undefined;

/**
 * The native engine, or the reason it cannot be used here (never throws).
 *
 * @example
 * ```ts
 * const { engine, reason } = loadOpensslEngine();
 * const tls = engine ?? nodeEngine; // fall back, telling the user `reason`
 * ```
 */
export function loadOpensslEngine(): { engine: TlsEngine; reason?: undefined } | { engine: undefined; reason: string } {
  const l = loadAddon();
  if (!l.addon) return { engine: undefined, reason: l.reason };
  engineSingleton ??= makeEngine(l.addon);
  return { engine: engineSingleton };
}

/**
 * The native engine; throws `ENGINE_UNAVAILABLE` when the addon is not built or not loadable.
 *
 * @example
 * ```ts
 * const server = opensslEngine().createServer({ cert, key, ticketCount: 0 });
 * ```
 */
export function opensslEngine(): TlsEngine {
  const r = loadOpensslEngine();
  if (!r.engine) throw new AtlsError('ENGINE_UNAVAILABLE', `openssl engine unavailable: ${r.reason}`);
  return r.engine;
}

/**
 * Splits a DTLS flight into its records (RFC 6347 §4.1), e.g. to send each as
 * a UDP datagram. A truncated tail is returned as a last, short element.
 */
export function splitDtlsRecords(flight: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let off = 0;
  while (off < flight.length) {
    if (flight.length - off < 13) {
      out.push(flight.subarray(off));
      break;
    }
    const len = (flight[off + 11]! << 8) | flight[off + 12]!;
    const end = Math.min(flight.length, off + 13 + len);
    out.push(flight.subarray(off, end));
    off = end;
  }
  return out;
}
