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
import { rootCertificates } from 'node:tls';
import { AtlsError, alertName, type AtlsErrorCode } from '../errors.js';
import { DEFAULT_MAX_FLIGHT_BYTES, WrappedConnection, plaintextAlert, unknownPskError } from './connection.js';
import { certificateFailure, classifyStackError } from './node-errors.js';
import { checkClientConfig, checkServerConfig, type CheckedClient, type CheckedCommon, type CheckedServer, type EngineTraits } from './config.js';
import type {
  EngineCapabilities,
  EngineConnection,
  EngineEvent,
  EngineStep,
  HandshakeInfo,
  PemInput,
  PeerSecret,
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
  /** TLS 1.3 was negotiated (or offered and not yet refused). */
  tls13: boolean;
}

/**
 * The addon's handshake summary, in this order (native/atls_openssl.cc
 * `HandshakeInfo`; absent entries are holes): an array costs less to make
 * through Node-API than an object's named properties.
 */
type NativeInfo = [
  version: HandshakeInfo['version'],
  cipherSuite: string,
  alpn: string | undefined,
  serverName: string | undefined,
  peerCertificates: Uint8Array[],
  pskIdentity: string | undefined,
  resumed: boolean,
  earlyData: HandshakeInfo['earlyData'],
  peerVerified: boolean | undefined,
  verifyError: string | undefined,
  verifiedChain: Uint8Array[] | undefined,
];

type NativeEvent =
  | { type: 'handshake'; info: NativeInfo }
  | { type: 'data'; data: Uint8Array; early?: boolean }
  | { type: 'ticket'; session: Uint8Array }
  | { type: 'alert'; level: number; description: number }
  | { type: 'closed' };

/** What a native step returns: the flight alone when there is nothing else to report. */
type NativeStep = Uint8Array | NativeResult;

interface NativeResult {
  flight: Uint8Array;
  /** DTLS: sizes of the datagrams that make up `flight`. */
  datagrams?: number[];
  events: NativeEvent[];
  error?: NativeError;
}

interface NativeConnection {
  start(): NativeStep;
  receive(flight: Uint8Array): NativeStep;
  write(data: Uint8Array): NativeStep;
  close(): NativeStep;
  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array;
  dtlsTimeout(): number | undefined;
  dtlsHandleTimeout(): NativeStep;
  destroy(): void;
  /** Absent in addons built before records were authenticated ahead of the engine. */
  keepPeerTrafficSecret?(): void;
  /** Client random (32 bytes) then the secret of the kept key log line. */
  peerTrafficSecret?(): Uint8Array | undefined;
}

/**
 * One AEAD key and direction held in an OpenSSL `EVP_CIPHER_CTX` (see
 * {@link nativeAead}). The caller supplies every nonce.
 */
export interface NativeAead {
  /** Writes ciphertext || tag into `out` at `at` (room for plaintext + tag needed); throws on misuse. */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, out: Uint8Array, at: number): void;
  /** Writes the plaintext into `out` at `at`; false (and `out` zeroed there) when the tag does not verify. */
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, out: Uint8Array, at: number, tag: Uint8Array): boolean;
  /**
   * For a context made with an IV: seals the protected message `message` (header || plaintext || tag,
   * exactly) where it stands, the header as AAD, under the nonce IV XOR the sequence number `hi`:`lo`
   * (two 32-bit halves); `plaintext`, when given, is copied into place first. Throws on misuse.
   */
  sealAt(hi: number, lo: number, message: Uint8Array, headerLength: number, plaintext?: Uint8Array): void;
  /**
   * For a context made with an IV: opens `message` (header || ciphertext || tag), the header as AAD,
   * under the nonce of `hi`:`lo`, into the start of `out`; false (and those bytes zeroed) when the tag does not verify.
   */
  openAt(hi: number, lo: number, message: Uint8Array, headerLength: number, out: Uint8Array): boolean;
  /** Frees the context now (the finalizer does it otherwise). Idempotent; later calls throw. */
  free(): void;
}

interface NativeAddon {
  Context: new (options: Record<string, unknown>) => object;
  Connection: new (context: object, options: Record<string, unknown>) => NativeConnection;
  /** Absent in addons built before the AEAD was added. */
  Aead?: new (algorithm: string, key: Uint8Array, tagLength: number, encrypt: boolean, iv?: Uint8Array) => NativeAead;
  opensslVersion(): { text: string; number: number; headers: string };
  liveObjects(): { contexts: number; connections: number; aeads?: number };
  threadCpuNs(): number;
  /** Absent in addons built before these were added, and empty where the C library is not glibc. */
  mallocInfo?(): Partial<NativeMallocInfo>;
  mallocTrim?(): boolean;
}

/** glibc's malloc figures for the whole process (`mallinfo2`), in bytes. */
export interface NativeMallocInfo {
  /** Bytes the arenas took from the system. */
  arena: number;
  /** Bytes of large chunks mapped on their own. */
  mmapped: number;
  /** Bytes allocated. */
  inUse: number;
  /** Bytes freed but kept by the arenas (resident until trimmed or reused). */
  free: number;
  /** Free bytes at the top of the main heap (what an automatic trim would give back). */
  releasable: number;
}

let loaded: { addon: NativeAddon; version: string } | { addon: undefined; reason: string } | undefined;

/**
 * Where the addon is looked for, in order: `ATLS_NATIVE_ADDON`; a local build
 * (build/Release, next to src/ or dist/); the prebuilt addon the package ships
 * for this platform (prebuilds/<platform>-<arch>, docs/decisions.md "Packaging").
 */
function addonPaths(): string[] {
  const override = process.env.ATLS_NATIVE_ADDON;
  if (override) return [override];
  const at = (rel: string): string => fileURLToPath(new URL(`../../${rel}`, import.meta.url));
  return [at('build/Release/atls_openssl.node'), at(`prebuilds/${process.platform}-${process.arch}/atls_openssl.node`)];
}

/** Loads the addon at `path`; never throws. */
function loadAddonFrom(path: string): { addon: NativeAddon; version: string } | { addon: undefined; reason: string } {
  try {
    const addon = createRequire(import.meta.url)(path) as NativeAddon;
    const v = addon.opensslVersion();
    // The addon must resolve against node's own OpenSSL, never another libssl.
    if (!v.text.includes(process.versions.openssl ?? '?')) {
      return { addon: undefined, reason: `addon runs ${v.text}, node has OpenSSL ${process.versions.openssl}` };
    }
    return { addon, version: v.text };
  } catch (e) {
    return { addon: undefined, reason: `native addon failed to load: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}` };
  }
}

/** Loads the first addon found that works; never throws. */
function loadAddon(): { addon: NativeAddon; version: string } | { addon: undefined; reason: string } {
  if (loaded) return loaded;
  const found = addonPaths().filter((path) => existsSync(path));
  for (const path of found) {
    loaded = loadAddonFrom(path);
    if (loaded.addon) return loaded;
  }
  loaded ??= {
    addon: undefined,
    reason:
      `no native addon for ${process.platform}-${process.arch} (build one with a C++ compiler: ` +
      `node ${fileURLToPath(new URL('../../scripts/build-native.mjs', import.meta.url))})`,
  };
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

/** Live native objects (contexts, connections, AEAD contexts), for leak tests. Zeros when the addon is absent. */
export function nativeLiveObjects(): { contexts: number; connections: number; aeads: number } {
  const l = loadAddon();
  if (!l.addon) return { contexts: 0, connections: 0, aeads: 0 };
  const o = l.addon.liveObjects();
  return { contexts: o.contexts, connections: o.connections, aeads: o.aeads ?? 0 };
}

/**
 * The process's malloc figures (glibc `mallinfo2`), for memory measurements:
 * native memory (OpenSSL objects, buffers) is invisible to V8's heap figures.
 * `undefined` without the addon or on another C library.
 */
export function nativeMallocInfo(): NativeMallocInfo | undefined {
  const m = loadAddon().addon?.mallocInfo?.();
  if (m?.inUse === undefined) return undefined;
  return { arena: m.arena ?? 0, mmapped: m.mmapped ?? 0, inUse: m.inUse, free: m.free ?? 0, releasable: m.releasable ?? 0 };
}

/**
 * glibc `malloc_trim(0)`: gives freed-but-kept malloc pages back to the system.
 * False without the addon, on another C library, or when nothing was released.
 */
export function nativeMallocTrim(): boolean {
  return loadAddon().addon?.mallocTrim?.() ?? false;
}

/**
 * A native AEAD for one key and one direction (`encrypt` true to seal,
 * false to open): an `EVP_CIPHER_CTX` keyed once, re-initialised with only
 * the nonce per message; with the 12-byte `iv` it can also build each nonce
 * itself from a sequence number (`sealAt`, `openAt`). `undefined` when the addon (or its AEAD) is missing,
 * or when `ATLS_NATIVE_AEAD=0`. Throws INVALID_ARGUMENT for an unknown
 * algorithm, a wrong key length or a tag length other than 16 (8 for CCM).
 *
 * @example
 * ```ts
 * const s = nativeAead('aes-128-gcm', key, 16, true);
 * if (s) s.seal(nonce, aad, plaintext, out, 0); // out: plaintext.length + 16 bytes
 * ```
 */
export function nativeAead(algorithm: string, key: Uint8Array, tagLength: number, encrypt: boolean, iv?: Uint8Array): NativeAead | undefined {
  if (process.env.ATLS_NATIVE_AEAD === '0') return undefined;
  const Aead = loadAddon().addon?.Aead;
  // With an IV the caller means sealAt/openAt, which addons built before them lack.
  if (!Aead || (iv !== undefined && typeof (Aead.prototype as Partial<NativeAead>).sealAt !== 'function')) return undefined;
  try {
    return new Aead(algorithm, key, tagLength, encrypt, iv);
  } catch (e) {
    throw new AtlsError('INVALID_ARGUMENT', `native AEAD: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
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

/** RFC 7301 §3.1: ProtocolNameList (names checked by config.ts). */
function alpnWire(list: string[] | undefined): Uint8Array | undefined {
  if (!list || list.length === 0) return undefined;
  const parts = list.map((p) => enc.encode(p));
  const out = new Uint8Array(parts.reduce((n, p) => n + 1 + p.length, 0));
  let o = 0;
  for (const p of parts) {
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

/** Settings both roles share, from the checked configuration (config.ts). */
function commonOptions(c: TlsCommonConfig, checked: CheckedCommon, server: boolean): Record<string, unknown> {
  const { cipherList, cipherSuites } = splitCiphers(checked.ciphers);
  const ca = c.ca === undefined ? undefined : (Array.isArray(c.ca) ? c.ca : [c.ca]).map(toBytes);
  return {
    server,
    dtls: c.dtls === true,
    minVersion: VERSION_NUMBERS[checked.minVersion],
    maxVersion: VERSION_NUMBERS[checked.maxVersion],
    cert: c.cert === undefined ? undefined : toBytes(c.cert),
    key: c.key === undefined ? undefined : toBytes(c.key),
    ca,
    alpn: alpnWire(checked.alpn),
    // Only TLS 1.3 names given: keep OpenSSL's TLS 1.2 defaults rather than none.
    cipherList: cipherList.length > 0 ? cipherList : undefined,
    cipherSuites: cipherSuites.length > 0 ? cipherSuites : undefined,
    groups: c.groups,
    sigalgs: c.sigalgs,
  };
}

function serverContextOptions(c: TlsServerConfig, checked: CheckedServer): Record<string, unknown> {
  return {
    ...commonOptions(c, checked, true),
    requestCert: checked.requestCert,
    requireCert: checked.requireCert,
    psk: checked.psk,
    pskHint: c.pskHint,
    ticketKeys: c.ticketKeys,
    sessionIdContext: checked.sessionIdContext,
    ticketCount: c.ticketCount,
    maxEarlyData: c.maxEarlyData,
    cookieSecret: c.dtlsCookieSecret,
    sni: c.sniCertificates
      ? Object.entries(c.sniCertificates).map(([name, p]) => ({ name, cert: toBytes(p.cert), key: toBytes(p.key) }))
      : undefined,
  };
}

function clientContextOptions(c: TlsClientConfig, checked: CheckedClient): Record<string, unknown> {
  const o = commonOptions(c, checked, false);
  // Same default trust as the node engine: Node's bundled root certificates.
  if (checked.verifyPeer && o.ca === undefined) o.ca = rootCertificates.map((p) => enc.encode(p));
  o.verifyPeer = checked.verifyPeer;
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

/**
 * OpenSSL X509_V_ERR_* numbers (include/openssl/x509_vfy.h) to the names
 * node:tls reports, so that {@link certificateFailure} gives both engines the same codes.
 */
const VERIFY_NAMES: Record<number, string> = {
  2: 'UNABLE_TO_GET_ISSUER_CERT',
  7: 'CERT_SIGNATURE_FAILURE',
  9: 'CERT_NOT_YET_VALID',
  10: 'CERT_HAS_EXPIRED',
  18: 'DEPTH_ZERO_SELF_SIGNED_CERT',
  19: 'SELF_SIGNED_CERT_IN_CHAIN',
  20: 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  21: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  23: 'CERT_REVOKED',
  26: 'INVALID_PURPOSE',
  27: 'CERT_UNTRUSTED',
  62: 'HOSTNAME_MISMATCH',
  63: 'EMAIL_MISMATCH',
  64: 'IP_ADDRESS_MISMATCH',
};
const SSL_R_CERTIFICATE_VERIFY_FAILED = 134;

/**
 * Maps a native failure to the same code and alert the node engine gives the
 * same failure: OpenSSL's reason is spelt the way node:tls spells it
 * (`ERR_SSL_<REASON>`) and classified by the shared table (node-errors.ts).
 */
function translateError(e: NativeError, flight: Uint8Array, role: 'client' | 'server', tls13: boolean): AtlsError {
  if (e.lookupThrew) {
    return new AtlsError('INTERNAL', 'pskLookup threw', { source: 'local', alertFlight: flight });
  }
  const detail = e.message || e.reasonString || `SSL error ${e.sslError}`;
  if (e.alertReceived !== undefined) {
    // The peer's fatal alert: nothing to answer (RFC 8446 §6.2).
    const c = classifyStackError({ message: `SSL alert number ${e.alertReceived}` }, { tls13, established: e.handshakeDone });
    const name = alertName(e.alertReceived);
    return new AtlsError(c.code, `${role}: peer sent fatal alert ${name} (${e.alertReceived})`, {
      source: 'remote',
      alert: { level: 2, description: e.alertReceived, name },
    });
  }
  const own = e.alertSent;
  const withFlight = (alert: number | undefined): Uint8Array =>
    flight.length > 0 ? flight : alert !== undefined ? plaintextAlert(alert) : flight;
  // We verified the peer's certificate and it failed (RFC 8446 §4.4.2.4, RFC 5280 §6).
  if (e.reason === SSL_R_CERTIFICATE_VERIFY_FAILED && e.verifyResult !== 0) {
    const f = certificateFailure(VERIFY_NAMES[e.verifyResult]);
    const alert = own ?? f.alert;
    return new AtlsError(f.code, `${role}: peer certificate rejected: ${e.verifyError ?? detail}`, {
      source: 'remote',
      alert,
      alertFlight: withFlight(alert),
    });
  }
  const nodeCode = e.reasonString ? `ERR_SSL_${e.reasonString.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}` : '';
  const c = classifyStackError({ code: nodeCode, message: detail }, { tls13, established: e.handshakeDone, ownAlert: own });
  return new AtlsError(c.code, `${role}: TLS failure: ${detail}`, {
    source: 'remote',
    ...(c.alert === undefined ? {} : { alert: c.alert }),
    alertFlight: withFlight(c.alert),
  });
}

// ------------------------------------------------------------ connection


/** Canonical copies of the short strings every handshake repeats (at most {@link MAX_INTERNED}). */
const interned = new Map<string, string>();
const MAX_INTERNED = 256;

function intern<T extends string | undefined>(s: T): T {
  if (s === undefined) return s;
  const known = interned.get(s);
  if (known !== undefined) return known as T;
  if (interned.size < MAX_INTERNED) interned.set(s, s);
  return s;
}

/**
 * The addon's summary as a {@link HandshakeInfo}. The addon makes new strings
 * for every handshake; an established session keeps its handshake info for
 * life, so repeated names (version, suite, early-data status, a shared PSK
 * identity) would cost ~80 B per session. Share them instead.
 */
function handshakeInfo(a: NativeInfo): HandshakeInfo {
  const info: HandshakeInfo = {
    version: intern(a[0]),
    cipherSuite: intern(a[1]),
    alpn: intern(a[2]),
    serverName: a[3],
    peerCertificates: a[4],
    pskIdentity: intern(a[5]),
    resumed: a[6],
    earlyData: intern(a[7]),
  };
  if (a[8] !== undefined) info.peerVerified = a[8];
  if (a[9] !== undefined) info.verifyError = a[9];
  if (a[10] !== undefined) info.verifiedChain = a[10];
  return info;
}

/** One native connection behind the shared wrapper (connection.ts). */
class OpensslConnection extends WrappedConnection {
  /** Server: a pskLookup answered "unknown" and none was found (RFC 8446 §6.2: unknown_psk_identity). */
  pskUnknown = false;
  pskFound = false;

  constructor(
    private native: NativeConnection,
    role: 'client' | 'server',
    dtls: boolean,
  ) {
    super(role, DEFAULT_MAX_FLIGHT_BYTES, !dtls);
  }

  /** Converts a native result; a fatal error becomes sticky and is thrown. */
  private step(fn: () => NativeStep): Promise<EngineStep> {
    let r: NativeStep;
    try {
      r = fn();
    } catch (e) {
      const code = (e as { atlsCode?: AtlsErrorCode }).atlsCode ?? 'INTERNAL';
      throw new AtlsError(code, e instanceof Error ? e.message : String(e), { source: 'local', cause: e });
    }
    if (r instanceof Uint8Array) return Promise.resolve({ flight: r, events: [] });
    const events: EngineEvent[] = [];
    for (const ev of r.events) {
      if (ev.type === 'alert') events.push({ ...ev, name: alertName(ev.description) });
      else if (ev.type === 'handshake') {
        this.established = true;
        // An addon built before the summary became an array gives the object itself.
        events.push({ type: 'handshake', info: Array.isArray(ev.info) ? handshakeInfo(ev.info) : (ev.info as HandshakeInfo) });
      } else {
        if (ev.type === 'closed') this.peerClosed = true; // the engine answered with our close_notify (RFC 8446 §6.1)
        events.push(ev);
      }
    }
    if (r.error) throw this.fail(this.refine(translateError(r.error, r.flight, this.role, r.error.tls13), r.flight));
    if (!r.datagrams) return Promise.resolve({ flight: r.flight, events });
    const datagrams: Uint8Array[] = [];
    let off = 0;
    for (const n of r.datagrams) {
      datagrams.push(r.flight.subarray(off, off + n));
      off += n;
    }
    return Promise.resolve({ flight: r.flight, events, datagrams });
  }

  /**
   * An unknown PSK identity in TLS 1.3 makes OpenSSL fall back to certificates
   * and fail on something else; report it as unknown_psk_identity, as the node engine does.
   */
  private refine(error: AtlsError, output: Uint8Array): AtlsError {
    if (this.role !== 'server' || this.established || !this.pskUnknown || this.pskFound) return error;
    return unknownPskError(error, output);
  }

  protected stackStart(): Promise<EngineStep> {
    return this.step(() => this.native.start());
  }

  protected stackReceive(flight: Uint8Array): Promise<EngineStep> {
    return this.step(() => this.native.receive(flight));
  }

  protected stackWrite(data: Uint8Array): Promise<EngineStep> {
    return this.step(() => this.native.write(data));
  }

  protected stackClose(): Promise<EngineStep> {
    return this.step(() => this.native.close());
  }

  protected stackExport(length: number, label: string, context: Uint8Array | undefined): Uint8Array {
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

  protected teardown(): void {
    this.native.destroy();
  }

  keepPeerTrafficSecret(): void {
    this.native.keepPeerTrafficSecret?.();
  }

  peerTrafficSecret(): PeerSecret | undefined {
    const kept = this.unusable ? undefined : this.native.peerTrafficSecret?.();
    return kept && kept.length > 32 ? { clientRandom: kept.subarray(0, 32), secret: kept.subarray(32) } : undefined;
  }

  dtlsTimeout(): number | undefined {
    if (this.unusable) return undefined;
    return this.native.dtlsTimeout();
  }

  dtlsHandleTimeout(): Promise<EngineStep> {
    try {
      this.usable();
      return this.step(() => this.native.dtlsHandleTimeout());
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
  server: true,
  tlsVersions: ['TLSv1.2', 'TLSv1.3'],
  clientCertificates: true,
};

const TRAITS: EngineTraits = { name: 'openssl', capabilities: CAPABILITIES, keyLog: false };

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
      const checked = checkClientConfig(config, TRAITS);
      const ctx = contextFor(addon, config, () => clientContextOptions(config, checked));
      const o: Record<string, unknown> = { verifyPeer: checked.verifyPeer };
      if (config.serverName !== undefined) o.serverName = config.serverName;
      if (checked.psk) {
        o.pskIdentity = checked.psk.identity;
        o.pskKey = checked.psk.key;
      }
      if (config.session !== undefined) o.session = config.session;
      if (config.earlyData !== undefined && config.earlyData.length > 0) o.earlyData = config.earlyData;
      dtlsOptions(config, o);
      return new OpensslConnection(newNative(() => new addon.Connection(ctx, o)), 'client', config.dtls === true);
    },
    createServer(config: TlsServerConfig): EngineConnection {
      const checked = checkServerConfig(config, TRAITS);
      const ctx = contextFor(addon, config, () => serverContextOptions(config, checked));
      const o: Record<string, unknown> = {};
      let conn: OpensslConnection | undefined = undefined;
      const lookup = config.pskLookup;
      if (lookup) {
        // Track unknown identities so a TLS 1.3 fallback failure reads as PSK_UNKNOWN.
        o.pskLookup = (identity: string): Uint8Array | undefined => {
          const key = lookup(identity);
          if (conn) {
            if (key === undefined) conn.pskUnknown = true;
            else conn.pskFound = true;
          }
          return key;
        };
      }
      if (config.dtlsPeer !== undefined) o.dtlsPeer = config.dtlsPeer;
      dtlsOptions(config, o);
      conn = new OpensslConnection(newNative(() => new addon.Connection(ctx, o)), 'server', config.dtls === true);
      return conn;
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
