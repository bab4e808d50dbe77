/**
 * The `node` TLS engine: Node's own `node:tls` (OpenSSL inside) driven over an
 * in-memory duplex, so TLS flights become byte buffers (draft §6.1).
 *
 * How it is driven, and why:
 * - Client: `tls.connect({ socket: duplex })`. Server: a `tls.TLSSocket` in
 *   server mode per connection over a cached SecureContext (a `tls.Server`
 *   per connection would cost ~1.1 ms more; a shared one loses the link
 *   between socket and duplex). The server verifies client certificates with
 *   the same OpenSSL verify result `tls.Server` uses.
 * - Node has no "wants to read" signal: a step is complete when the output
 *   and the events have stopped changing for `quietTurns` (2) setImmediate
 *   turns. Flights are therefore not exact (`capabilities.exactFlights` false).
 * - Certificate rejections that Node cannot turn into an alert (client-side
 *   checks run in JS; a server rejecting a client certificate just destroys
 *   the socket) are answered with a synthesised plaintext alert record, and
 *   a plaintext fatal alert in a peer flight is read here before the stack
 *   sees it (see docs/decisions.md, section engines).
 *
 * @example
 * ```ts
 * const client = nodeEngine.createClient({ ca, serverName: 'localhost' });
 * const server = nodeEngine.createServer({ cert, key });
 * let c = await client.start();
 * let s = await server.receive(c.flight);
 * c = await client.receive(s.flight);   // events: handshake
 * const key = client.exportKeyingMaterial(32, 'application-layer-tls');
 * ```
 * @module
 */
import tls from 'node:tls';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { AlertDescription as A, AtlsError, type AtlsErrorCode, type ErrorSource } from '../errors.js';
import type {
  EngineCapabilities,
  EngineConnection,
  EngineEvent,
  EngineStep,
  HandshakeInfo,
  PeerSecret,
  TlsClientConfig,
  TlsEngine,
  TlsServerConfig,
} from './types.js';
import { DEFAULT_MAX_FLIGHT_BYTES, WrappedConnection, plaintextAlert, plaintextAlerts, unknownPskError } from './connection.js';
import { tls13AlertRecord } from './tls13-alert.js';
import { parseClientHello, scanRecords } from '../records.js';
import { certificateFailure, classifyStackError } from './node-errors.js';
import { ContextCache, clientContext, serverContexts, type ServerContexts } from './node-context.js';
import { checkClientConfig, checkServerConfig, type EngineTraits } from './config.js';

/** Tuning of the node engine. Defaults suit ATLS handshakes. */
export interface NodeEngineOptions {
  /** Largest peer flight `receive()` accepts, in bytes (default 256 KiB); larger ones fail with TOO_LARGE. */
  maxFlightBytes?: number;
  /** Longest one step may run, in ms (default 10 000); longer fails with LIMIT_REACHED. */
  stepTimeoutMs?: number;
  /** setImmediate turns without new output or events before a flight counts as complete (default 2). */
  quietTurns?: number;
  /** Secure contexts kept for reuse (default 64); 0 disables the cache (and ticket resumption with it). */
  contextCacheSize?: number;
}

/** What the node engine can do: no DTLS, no 0-RTT, no ticket count; exporter contexts verified (docs/decisions.md). */
export const NODE_CAPABILITIES: EngineCapabilities = Object.freeze({
  exactFlights: false,
  dtls: false,
  earlyData: false,
  ticketCount: false,
  exporterContextControl: true,
  server: true,
  tlsVersions: ['TLSv1.2', 'TLSv1.3'] as const,
  clientCertificates: true,
});

const TRAITS: EngineTraits = { name: 'node', capabilities: NODE_CAPABILITIES, keyLog: true };

const DEFAULTS = { maxFlightBytes: DEFAULT_MAX_FLIGHT_BYTES, stepTimeoutMs: 10_000, quietTurns: 2, contextCacheSize: 64 };
const EMPTY = new Uint8Array(0);

interface Runtime {
  cache: ContextCache;
  maxFlightBytes: number;
  stepTimeoutMs: number;
  quietTurns: number;
}

/** The duplex node:tls writes its records into and reads the peer's from. */
class FlightPipe extends Duplex {
  private chunks: Buffer[] = [];
  constructor(private readonly onOutput: () => void) {
    // The TLS socket inherits allowHalfOpen from its transport: false makes
    // node:tls answer the peer's close_notify with its own (RFC 5246 §7.2.1).
    super({ allowHalfOpen: false });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.chunks.push(chunk);
    this.onOutput();
    callback();
  }

  override _read(): void {
    // Peer bytes are pushed by receive(); nothing to pull.
  }

  /** Everything written since the last call, as one buffer. */
  takeOutput(): Buffer {
    const out = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    return out;
  }
}

/** A failure noticed during a step, turned into an AtlsError when the step ends. */
type Pending =
  | { kind: 'stack'; error: unknown }
  | {
      kind: 'policy';
      code: AtlsErrorCode;
      message: string;
      source: ErrorSource;
      /** The alert to send in place of whatever the stack produced (undefined: send nothing). */
      alert: number | undefined;
      /** The alert as records, when not a plaintext alert record (see reject()). */
      alertFlight?: Uint8Array;
      cause?: unknown;
    };

/** The private handle node:tls uses itself (tls.Server, tls.connect) to read OpenSSL's verify result. */
interface VerifyHandle {
  verifyError?: () => (Error & { code?: string }) | null | undefined;
}

/** OpenSSL's chain verification result for the peer, as node:tls reads it. */
function verifyResult(socket: tls.TLSSocket): { ok: true } | { ok: false; code: string | undefined; message: string } {
  const handle = (socket as unknown as { ssl?: VerifyHandle | null }).ssl;
  if (!handle || typeof handle.verifyError !== 'function') {
    throw new AtlsError('ENGINE_UNAVAILABLE', 'this Node version does not expose the TLS verify result; the node engine cannot verify peers');
  }
  const err = handle.verifyError();
  return err ? { ok: false, code: err.code, message: err.message } : { ok: true };
}

/**
 * The chain in a node:tls peer certificate object, DER, leaf first (it may end
 * at the local trust anchor that verified it).
 */
function chainOf(peer: tls.DetailedPeerCertificate | undefined): Uint8Array[] {
  const chain: Uint8Array[] = [];
  const seen = new Set<string>();
  let cert = peer;
  while (cert?.raw && chain.length < 16 && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(new Uint8Array(cert.raw));
    cert = cert.issuerCertificate;
  }
  return chain;
}

function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The step machinery both roles share: flights in, flights and events out. */
abstract class NodeConnection extends WrappedConnection {
  protected socket: tls.TLSSocket | undefined;
  protected readonly pipe: FlightPipe;
  /** Bumped by every output write, event and error: the flight heuristic watches it. */
  private activity = 0;
  private events: EngineEvent[] = [];
  private pending: Pending | undefined;

  constructor(
    role: 'client' | 'server',
    protected readonly rt: Runtime,
  ) {
    super(role, rt.maxFlightBytes);
    this.pipe = new FlightPipe(() => this.activity++);
    this.pipe.on('error', () => undefined); // surfaced through the TLS socket
  }

  protected stackReceive(flight: Uint8Array, garbage: boolean): Promise<EngineStep> {
    return this.step(() => {
      if (flight.length > 0) {
        const copy = Buffer.from(flight); // the caller may reuse its buffer
        this.onFlight(copy);
        this.pipe.push(copy);
      }
    }, garbage);
  }

  protected stackWrite(data: Uint8Array): Promise<EngineStep> {
    return this.step(() => {
      this.socket!.write(data);
    });
  }

  protected stackClose(): Promise<EngineStep> {
    return this.step(() => {
      this.socket!.end(); // RFC 8446 §6.1: close_notify
    });
  }

  protected stackExport(length: number, label: string, context: Uint8Array | undefined): Uint8Array {
    if (!this.socket || this.socket.destroyed) throw new AtlsError('CLOSED', 'the connection is closed');
    try {
      // Passing no context (undefined) makes node:tls call SSL_export_keying_material
      // with use_context = 0: "no context", which differs from an empty one in TLS 1.2.
      // (@types/node marks the context as required; node:tls treats undefined as absent.)
      const ctx = context === undefined ? (undefined as unknown as Buffer) : Buffer.from(context);
      const out = this.socket.exportKeyingMaterial(length, label, ctx);
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    } catch (e) {
      throw new AtlsError('INVALID_ARGUMENT', `key export failed: ${(e as Error).message}`, { cause: e });
    }
  }

  // ---- hooks for the roles -------------------------------------------------

  /** Server: keep the first flight (the ClientHello) until the handshake ends. */
  protected onFlight(_flight: Buffer): void {}
  /** Client: verify the server certificate as soon as it has arrived. */
  protected afterStep(): void {}
  /** Server: replace a stack failure by a sharper one (unknown PSK). */
  protected refine(error: AtlsError, _output: Buffer): AtlsError {
    return error;
  }

  // ---- shared machinery ---------------------------------------------------

  /** Wires the socket events every role needs. */
  protected wire(socket: tls.TLSSocket): void {
    this.socket = socket;
    socket.on('data', (data: Buffer) => this.emit({ type: 'data', data }));
    socket.on('end', () => {
      // The peer's close_notify (RFC 8446 §6.1); node:tls answers with ours.
      this.peerClosed = true;
      this.emit({ type: 'closed' });
    });
    const onError = (error: unknown): void => {
      this.activity++;
      if (!this.pending && !this.failure && !this.destroyed) this.pending = { kind: 'stack', error };
    };
    socket.on('error', onError);
    // node:tls reports TLS errors of a server socket that no tls.Server has
    // "released" only as '_tlsError' (e.g. a bad record after the handshake).
    socket.on('_tlsError', onError);
  }

  /**
   * Wraps a socket event handler: an exception thrown inside node:tls'
   * callbacks would be uncaught, so it becomes the step's failure instead.
   */
  protected guard<Args extends unknown[]>(fn: (...args: Args) => void): (...args: Args) => void {
    return (...args: Args) => {
      try {
        fn(...args);
      } catch (e) {
        const code = e instanceof AtlsError ? e.code : 'INTERNAL';
        this.policy(code, `node engine: ${(e as Error).message ?? String(e)}`, A.internal_error, 'local', e);
      }
    };
  }

  /** Queues an event for the current step. */
  protected emit(event: EngineEvent): void {
    if (this.failure || this.destroyed) return;
    this.activity++;
    this.events.push(event);
  }

  /** Records a failure decided by the engine's own policy (the first one wins). */
  protected policy(code: AtlsErrorCode, message: string, alert: number | undefined, source: ErrorSource = 'remote', cause?: unknown): void {
    this.activity++;
    if (!this.pending) this.pending = { kind: 'policy', code, message, source, alert, ...(cause === undefined ? {} : { cause }) };
  }

  /**
   * Refuses the peer's certificate in the step that revealed it: whatever the
   * stack wrote in this step (our Finished, or tickets) is withheld and the
   * alert goes out instead, protected with the traffic secret of that very
   * output in TLS 1.3 (RFC 8446 §5.1), so at sequence number 0.
   */
  protected reject(code: AtlsErrorCode, message: string, alert: number, cause?: unknown): void {
    if (this.pending) return;
    const suite = this.tls13() ? this.socket?.getCipher()?.standardName : undefined;
    const record = suite && this.secret ? tls13AlertRecord(suite, this.secret, alert) : undefined;
    this.activity++;
    this.pending = {
      kind: 'policy',
      code,
      message,
      source: 'remote',
      alert,
      ...(record ? { alertFlight: record } : {}),
      ...(cause === undefined ? {} : { cause }),
    };
    this.forgetSecret();
  }

  /** The peer certificate object with its chain, once read (see peer()). */
  protected peerCache: tls.DetailedPeerCertificate | undefined;

  /**
   * The peer's certificate with its chain, read once: node:tls builds this
   * object afresh on each call, at about ten times the cost of the leaf alone
   * (an issuer lookup in the trust store). Not getPeerX509Certificate(): on a
   * Node 20 client it removes the leaf from the peer chain it reads.
   */
  protected peer(): tls.DetailedPeerCertificate | undefined {
    if (this.peerCache === undefined && this.socket) {
      const cert = this.socket.getPeerCertificate(true);
      if (cert && cert.raw) this.peerCache = cert;
    }
    return this.peerCache;
  }

  /** The TLS 1.3 traffic secret reject() protects its alert with (from node:tls' keylog). */
  private secret: Buffer | undefined;

  /** Keeps the keylog secret called `label` (NSS key log format: label, client random, secret). */
  protected watchSecret(socket: tls.TLSSocket, label: string): void {
    socket.on('keylog', (line: Buffer) => {
      if (this.established || this.failure) return;
      const [name, , hex] = line.toString('latin1').trim().split(' ');
      if (name === label && hex) {
        this.forgetSecret();
        this.secret = Buffer.from(hex, 'hex');
      }
    });
  }

  protected forgetSecret(): void {
    this.secret?.fill(0);
    this.secret = undefined;
  }

  protected get failed(): boolean {
    return this.pending !== undefined;
  }

  /** Runs one step: act, wait for the stack to go quiet, collect the flight and events. */
  protected async step(act: () => void, garbage = false): Promise<EngineStep> {
    this.busy = true;
    try {
      try {
        act();
      } catch (e) {
        if (e instanceof AtlsError && e.code === 'ENGINE_UNAVAILABLE') throw e;
        this.policy('INVALID_ARGUMENT', `node:tls rejected the call: ${(e as Error).message ?? String(e)}`, undefined, 'local', e);
      }
      if (!this.pending || this.pending.kind === 'stack') await this.settle();
      if (this.destroyed) throw new AtlsError('CLOSED', 'the connection was destroyed during the step');
      if (!this.pending) {
        try {
          this.afterStep();
        } catch (e) {
          if (e instanceof AtlsError && e.code === 'ENGINE_UNAVAILABLE') throw e;
          this.policy('INTERNAL', `node engine: ${(e as Error).message ?? String(e)}`, A.internal_error, 'local', e);
        }
      }
      if (!this.pending && garbage) {
        this.policy('MALFORMED_RECORD', 'the flight holds bytes that are not TLS records', A.unexpected_message);
      }
      if (this.pending) throw this.fail(this.errorOf(this.pending));
      return { flight: this.pipe.takeOutput(), events: this.events.splice(0) };
    } finally {
      this.busy = false;
    }
  }

  /** Waits until output and events have not changed for `quietTurns` turns (Node has no "wants read"). */
  private async settle(): Promise<void> {
    const deadline = performance.now() + this.rt.stepTimeoutMs;
    let seen = -1;
    let quiet = 0;
    while (quiet < this.rt.quietTurns) {
      await turn();
      if (this.destroyed) return;
      if (this.activity !== seen) {
        seen = this.activity;
        quiet = 0;
      } else {
        quiet++;
      }
      if (performance.now() > deadline) {
        this.pending = undefined; // whatever the stack was doing, the step is abandoned
        this.policy('LIMIT_REACHED', `a TLS step ran longer than ${this.rt.stepTimeoutMs} ms`, A.internal_error, 'local');
        return;
      }
    }
  }

  /** Turns the pending failure into an AtlsError with the records the peer must still get. */
  private errorOf(p: Pending): AtlsError {
    const output = this.pipe.takeOutput();
    let error: AtlsError;
    if (p.kind === 'policy') {
      error = new AtlsError(p.code, p.message, {
        source: p.source,
        ...(p.alert === undefined ? {} : { alert: p.alert }),
        alertFlight: p.alertFlight ?? (p.alert === undefined ? EMPTY : plaintextAlert(p.alert)),
        ...(p.cause === undefined ? {} : { cause: p.cause }),
      });
    } else {
      const own = plaintextAlerts(scanRecords(output).records).at(-1);
      const c = classifyStackError(p.error, { tls13: this.tls13(), established: this.established, ownAlert: own?.description });
      const message = (p.error as Error)?.message?.split('\n')[0] ?? String(p.error);
      // The stack's own alert goes out as it wrote it; if it wrote nothing
      // (and the failure is not the peer's alert), send one so the peer is not left waiting.
      const alertFlight = c.received ? EMPTY : output.length > 0 ? output : c.alert !== undefined ? plaintextAlert(c.alert) : EMPTY;
      error = new AtlsError(c.code, `TLS ${c.received ? 'peer alert' : 'failure'}: ${message}`, {
        source: 'remote',
        ...(c.alert === undefined ? {} : { alert: c.alert }),
        alertFlight,
        cause: p.error,
      });
      if (!c.received) error = this.refine(error, output);
    }
    this.pending = undefined;
    return error;
  }

  /** The negotiated version is 1.3 (undefined before the ServerHello). */
  protected tls13(): boolean | undefined {
    const v = this.socket?.getProtocol?.();
    return v === 'TLSv1.3' ? true : v === 'TLSv1.2' ? false : undefined;
  }

  /** Frees the socket and the pipe; later socket events are ignored. */
  protected teardown(): void {
    this.events = [];
    this.forgetSecret();
    this.socket?.destroy();
    this.pipe.destroy();
  }

  /** What the handshake established; role-specific parts come from the subclass. */
  protected info(serverName: string | undefined, pskIdentity: string | undefined, withPeer: boolean): HandshakeInfo {
    const s = this.socket!;
    const version = s.getProtocol() === 'TLSv1.3' ? 'TLSv1.3' : 'TLSv1.2';
    return {
      version,
      cipherSuite: s.getCipher().standardName,
      alpn: typeof s.alpnProtocol === 'string' ? s.alpnProtocol : undefined,
      serverName,
      peerCertificates: withPeer && pskIdentity === undefined ? chainOf(this.peer()) : [],
      pskIdentity,
      resumed: pskIdentity === undefined && s.isSessionReused(),
      earlyData: 'none',
    };
  }
}

/** True when the negotiated TLS 1.2 suite is a PSK one (RFC 4279, RFC 5489). */
function isPskSuite(socket: tls.TLSSocket): boolean {
  return /_PSK_/.test(socket.getCipher()?.standardName ?? '');
}

interface ClientSetup {
  context: tls.SecureContext;
  serverName: string | undefined;
  alpn: string[] | undefined;
  psk: { identity: string; key: Buffer } | undefined;
  session: Buffer | undefined;
  verifyPeer: boolean;
  /** TLS 1.3 may be negotiated. */
  tls13: boolean;
  keyLog: ((line: string) => void) | undefined;
}

class NodeClientConnection extends NodeConnection {
  private started = false;
  /** The server certificate has been checked (or needs no check). */
  private checked = false;

  constructor(
    rt: Runtime,
    private readonly setup: ClientSetup,
  ) {
    super('client', rt);
    this.checked = !setup.verifyPeer;
  }

  protected stackStart(): Promise<EngineStep> {
    if (this.started) throw new AtlsError('INVALID_STATE', 'start() was already called');
    this.started = true;
    return this.step(() => {
      const { setup } = this;
      const sni = setup.serverName !== undefined && net.isIP(setup.serverName) === 0 ? setup.serverName : undefined;
      const socket = tls.connect({
        socket: this.pipe,
        secureContext: setup.context,
        // RFC 6066 §3: SNI carries host names only, never IP literals.
        ...(sni === undefined ? {} : { servername: sni }),
        ...(setup.alpn ? { ALPNProtocols: setup.alpn } : {}),
        ...(setup.session ? { session: setup.session } : {}),
        ...(setup.psk ? { pskCallback: () => ({ psk: setup.psk!.key, identity: setup.psk!.identity }) } : {}),
        // The engine checks the chain and the name itself, before Node's
        // secureConnect (TLS 1.2) or instead of letting Node destroy the socket.
        rejectUnauthorized: false,
        // node:tls hands this hook the full peer certificate object it builds
        // anyway; keeping it saves building it a second time.
        checkServerIdentity: (_name: string, cert: tls.PeerCertificate) => {
          if (cert && cert.raw) this.peerCache = cert as tls.DetailedPeerCertificate;
          return undefined;
        },
      });
      this.wire(socket);
      logKeys(socket, setup.keyLog);
      // Our first records under the handshake keys are the ones a rejection withholds.
      if (setup.verifyPeer && setup.tls13) this.watchSecret(socket, 'CLIENT_HANDSHAKE_TRAFFIC_SECRET');
      socket.on('secureConnect', this.guard(() => this.onSecure()));
      socket.on('session', (session: Buffer) => this.emit({ type: 'ticket', session }));
    });
  }

  protected override beforeReceive(): void {
    if (!this.started) throw new AtlsError('INVALID_STATE', 'a client calls start() before receive()');
  }

  /** TLS 1.2: the certificate arrives a flight before the handshake ends; refuse it there, before our key exchange leaves. */
  protected override afterStep(): void {
    if (this.checked || this.established || !this.socket) return;
    // TLS 1.3 delivers the certificate with the server Finished (checked in onSecure).
    if (this.socket.getProtocol() !== 'TLSv1.2' || !this.socket.getCipher() || isPskSuite(this.socket)) return;
    if (this.socket.getPeerCertificate(false)?.raw) this.checkServer();
  }

  private onSecure(): void {
    if (this.failed) return;
    if (!this.checked && !this.checkServer()) return;
    this.established = true;
    this.forgetSecret();
    this.emit({ type: 'handshake', info: this.info(this.setup.serverName, this.pskIdentity(), true) });
  }

  private pskIdentity(): string | undefined {
    const s = this.socket!;
    if (!this.setup.psk) return undefined;
    if (s.getProtocol() === 'TLSv1.3') {
      // RFC 8446 §2.2: an external PSK shows as a resumed session; a ticket we offered takes precedence.
      return s.isSessionReused() && !this.setup.session ? this.setup.psk.identity : undefined;
    }
    return isPskSuite(s) ? this.setup.psk.identity : undefined;
  }

  /** Chain (OpenSSL's verify result) then name (RFC 6125 via tls.checkServerIdentity). */
  private checkServer(): boolean {
    this.checked = true;
    const s = this.socket!;
    const v = verifyResult(s);
    if (!v.ok) {
      const f = certificateFailure(v.code);
      this.reject(f.code, `server certificate rejected: ${v.code ?? v.message}`, f.alert);
      return false;
    }
    const name = this.setup.serverName;
    // The leaf is enough for the name; the chain object may not exist yet (TLS 1.2).
    const cert = this.peerCache ?? s.getPeerCertificate(false);
    if (name !== undefined && cert?.raw) {
      const err = tls.checkServerIdentity(name, cert) as (Error & { code?: string }) | undefined;
      if (err) {
        const f = certificateFailure(err.code ?? 'ERR_TLS_CERT_ALTNAME_INVALID');
        this.reject(f.code, `server certificate rejected: ${err.message}`, f.alert, err);
        return false;
      }
    }
    return true;
  }
}

/** Hands node:tls' key log lines to the caller's hook; a throwing hook is ignored. */
function logKeys(socket: tls.TLSSocket, keyLog: ((line: string) => void) | undefined): void {
  if (!keyLog) return;
  socket.on('keylog', (line: Buffer) => {
    try {
      keyLog(line.toString('latin1').trim());
    } catch {
      // a logging hook must not break the handshake
    }
  });
}

interface ServerSetup {
  contexts: ServerContexts;
  config: TlsServerConfig;
  alpn: string[] | undefined;
  requestCert: boolean;
  requireCert: boolean;
  /** TLS 1.3 may be negotiated. */
  tls13: boolean;
  keyLog: ((line: string) => void) | undefined;
}

class NodeServerConnection extends NodeConnection {
  private sni: string | undefined;
  /** The first flight, for the SNI of a resumed TLS 1.2 session (node:tls reports none). */
  private hello: Buffer | undefined;
  private flights = 0;
  private pskUsed: string | undefined;
  private pskUnknown = false;
  /** Records mode: keep the client's secret from the key log. */
  private keepPeer = false;
  private peerSecret: PeerSecret | undefined;

  constructor(
    rt: Runtime,
    private readonly setup: ServerSetup,
  ) {
    super('server', rt);
  }

  keepPeerTrafficSecret(): void {
    this.keepPeer = true;
  }

  peerTrafficSecret(): PeerSecret | undefined {
    const s = this.peerSecret;
    this.peerSecret = undefined;
    return this.established ? s : undefined;
  }

  protected stackStart(): Promise<EngineStep> {
    throw new AtlsError('INVALID_STATE', 'a server does not start; pass the client flight to receive()');
  }

  protected override beforeReceive(): void {
    if (this.socket) return;
    const { setup } = this;
    const cfg = setup.config;
    const options: tls.TLSSocketOptions & Pick<tls.TlsOptions, 'pskCallback' | 'pskIdentityHint'> = {
      isServer: true,
      secureContext: setup.contexts.main,
      requestCert: setup.requestCert,
      // Only makes OpenSSL refuse a missing certificate (SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
      // the chain itself is judged in onSecure().
      rejectUnauthorized: setup.requireCert,
      ...(setup.contexts.sni.size > 0
        ? {
            SNICallback: (name: string, cb: (err: Error | null, ctx?: tls.SecureContext) => void) => {
              this.sni = name;
              cb(null, setup.contexts.sni.get(name.toLowerCase()));
            },
          }
        : {}),
      ...(setup.alpn ? { ALPNProtocols: setup.alpn } : {}),
      ...(cfg.pskLookup ? { pskCallback: (_s: tls.TLSSocket, identity: string) => this.lookupPsk(identity) } : {}),
      ...(cfg.pskHint !== undefined ? { pskIdentityHint: cfg.pskHint } : {}),
    };
    const socket = new tls.TLSSocket(this.pipe, options);
    // As the native engine (SSL_OP_NO_RENEGOTIATION): a renegotiation would change the keys under the
    // records-mode guard, and RFC 5746 alone does not make it safe for an API without sockets.
    socket.disableRenegotiation();
    this.wire(socket);
    logKeys(socket, setup.keyLog);
    // The tickets after the client's Finished are our first records under this key.
    if (setup.requestCert && setup.tls13) this.watchSecret(socket, 'SERVER_TRAFFIC_SECRET_0');
    if (this.keepPeer) {
      socket.on('keylog', (line: Buffer) => {
        // NSS key log format: label, client random, secret (hex). TLS 1.3: the client's application
        // traffic secret; TLS 1.2: the master secret.
        const [name, random, hex] = line.toString('latin1').trim().split(' ');
        if ((name === 'CLIENT_TRAFFIC_SECRET_0' || name === 'CLIENT_RANDOM') && random && hex) {
          this.peerSecret = { clientRandom: Buffer.from(random, 'hex'), secret: Buffer.from(hex, 'hex') };
        }
      });
    }
    socket.on('secure', this.guard(() => this.onSecure()));
  }

  protected override onFlight(flight: Buffer): void {
    if (this.flights++ === 0 && flight.length <= 16384) this.hello = flight;
  }

  private lookupPsk(identity: string): Buffer | null {
    let key: Uint8Array | undefined;
    try {
      key = this.setup.config.pskLookup!(identity);
    } catch {
      key = undefined;
    }
    if (key instanceof Uint8Array && key.length > 0 && key.length <= 512) {
      this.pskUsed = identity;
      return Buffer.from(key);
    }
    this.pskUnknown = true;
    return null;
  }

  private onSecure(): void {
    if (this.failed) return;
    const s = this.socket!;
    const psk = this.pskIdentity();
    if (this.setup.requestCert && psk === undefined) {
      if (this.peer()) {
        const v = verifyResult(s);
        if (!v.ok) {
          // tls.Server would destroy the socket without an alert; answer with one.
          const f = certificateFailure(v.code);
          this.reject(f.code, `client certificate rejected: ${v.code ?? v.message}`, f.alert);
          s.destroy();
          return;
        }
      } else if (this.setup.requireCert) {
        const tls13 = s.getProtocol() === 'TLSv1.3';
        // RFC 8446 §4.4.2.4 / RFC 5246 §7.4.6
        this.reject('CERTIFICATE_REQUIRED', 'the client sent no certificate', tls13 ? A.certificate_required : A.handshake_failure);
        s.destroy();
        return;
      }
    }
    this.established = true;
    this.forgetSecret();
    this.emit({ type: 'handshake', info: this.info(this.serverName(), psk, this.setup.requestCert) });
  }

  private serverName(): string | undefined {
    const n = this.socket!.servername;
    const hello = this.hello;
    this.hello = undefined;
    if (typeof n === 'string' && n.length > 0) return n;
    if (this.sni !== undefined || !hello) return this.sni;
    try {
      return parseClientHello(hello).serverName; // RFC 6066 §3, read from our copy of the ClientHello
    } catch {
      return undefined;
    }
  }

  private pskIdentity(): string | undefined {
    const s = this.socket!;
    if (this.pskUsed === undefined) return undefined;
    return s.getProtocol() === 'TLSv1.3' ? (s.isSessionReused() ? this.pskUsed : undefined) : isPskSuite(s) ? this.pskUsed : undefined;
  }

  /** The client offered only PSK identities we do not know (see unknownPskError). */
  protected override refine(error: AtlsError, output: Buffer): AtlsError {
    if (this.established || !this.pskUnknown || this.pskUsed !== undefined) return error;
    return unknownPskError(error, output);
  }
}

/**
 * A node engine with its own context cache and limits.
 *
 * @example
 * ```ts
 * const engine = createNodeEngine({ maxFlightBytes: 64 * 1024 });
 * const conn = engine.createServer({ cert, key, requireClientCert: true, ca });
 * ```
 */
export function createNodeEngine(options: NodeEngineOptions = {}): TlsEngine & { clearContextCache(): void } {
  const num = (v: number | undefined, d: number, min: number): number => {
    const x = v ?? d;
    if (!Number.isFinite(x) || x < min) throw new AtlsError('INVALID_ARGUMENT', `node engine option out of range: ${x}`);
    return x;
  };
  const rt: Runtime = {
    cache: new ContextCache(num(options.contextCacheSize, DEFAULTS.contextCacheSize, 0)),
    maxFlightBytes: num(options.maxFlightBytes, DEFAULTS.maxFlightBytes, 1),
    stepTimeoutMs: num(options.stepTimeoutMs, DEFAULTS.stepTimeoutMs, 1),
    quietTurns: num(options.quietTurns, DEFAULTS.quietTurns, 1),
  };
  return {
    name: 'node',
    capabilities: NODE_CAPABILITIES,

    createClient(config: TlsClientConfig): EngineConnection {
      const checked = checkClientConfig(config, TRAITS);
      return new NodeClientConnection(rt, {
        context: clientContext(config, checked, rt.cache),
        serverName: config.serverName,
        alpn: checked.alpn,
        psk: checked.psk,
        session: config.session === undefined ? undefined : Buffer.from(config.session),
        verifyPeer: checked.verifyPeer,
        tls13: checked.tls13,
        keyLog: checked.keyLog,
      });
    },

    createServer(config: TlsServerConfig): EngineConnection {
      const checked = checkServerConfig(config, TRAITS);
      return new NodeServerConnection(rt, {
        contexts: serverContexts(config, checked, rt.cache),
        config,
        alpn: checked.alpn,
        requestCert: checked.requestCert,
        requireCert: checked.requireCert,
        tls13: checked.tls13,
        keyLog: checked.keyLog,
      });
    },

    clearContextCache(): void {
      rt.cache.clear();
    },
  };
}

/**
 * The shared node engine (default limits).
 *
 * @example
 * ```ts
 * import { nodeEngine } from './engines/node.js';
 * const conn = nodeEngine.createClient({ serverName: 'localhost', ca });
 * ```
 */
export const nodeEngine: TlsEngine & { clearContextCache(): void } = createNodeEngine();
