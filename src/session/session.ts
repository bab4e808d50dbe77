/**
 * ATLS client and server sessions: flights in, flights out, no I/O
 * (draft §8, Figure 9). A session drives one TLS engine connection, checks
 * that every peer flight is made of whole records before the stack sees it,
 * and, in mode `exported`, derives the protected-message channel from the
 * RFC 5705 exporter (draft §7) and then releases the TLS engine.
 *
 * @example
 * ```ts
 * const client = new AtlsClientSession({ tls: { serverName: 'localhost', ca } });
 * const server = new AtlsServerSession({ tls: { cert, key } });
 * let out = await client.start();
 * while (client.state !== 'established') {
 *   const back = await server.receive(out.flight);
 *   out = await client.receive(back.flight);
 * }
 * const msg = client.protect(new TextEncoder().encode('hello'));
 * server.unprotect(msg);
 * ```
 * @module
 */
import { AtlsError, receivedAlertError } from '../errors.js';
import { defaultEngine } from '../engines/index.js';
import { DEFAULT_MAX_FLIGHT_BYTES } from '../engines/connection.js';
import type {
  EngineConnection,
  EngineStep,
  HandshakeInfo,
  TlsClientConfig,
  TlsServerConfig,
} from '../engines/types.js';
import { parseServerHello, splitRecords, type TlsRecord } from '../records.js';
import { concatBytes, fromHex } from '../bytes.js';
import { RecordGuard } from './record-guard.js';
import { EXPORTER_LABEL, ProtectedChannel, aeadForSuite, keyBlockLength } from '../protect/index.js';
import type { FlightResult, Mode, SessionEvent, SessionOptions, SessionState } from './types.js';


/** Application data written to the engine at once in mode `records` (below every engine's bound). */
const MAX_SEND_PIECE = 128 * 1024;
const ALERT_CONTENT_TYPE = 21;
/** The extended_master_secret extension (RFC 7627 §5.1). */
const EXTENDED_MASTER_SECRET = 23;
/** Server flights kept until the handshake ends: HelloVerifyRequest, ServerHello, and one more. */
const MAX_HELLO_FLIGHTS = 3;

type Operation = 'start' | 'receive' | 'send' | 'protect' | 'unprotect' | 'export' | 'close';

/**
 * Which operations each state allows; everything else is an INVALID_STATE
 * (or NOT_ESTABLISHED) misuse. `confirming` allows sending: the client may
 * let its first data ride with its final flight (the server reads it only
 * after it has accepted that flight).
 */
const ALLOWED: Record<SessionState, readonly Operation[]> = {
  idle: ['start', 'receive', 'close'],
  handshaking: ['receive', 'close'],
  confirming: ['receive', 'send', 'protect', 'unprotect', 'export', 'close'],
  established: ['receive', 'send', 'protect', 'unprotect', 'export', 'close'],
  closed: [],
  failed: [],
};

/** Common machinery of client and server sessions. */
abstract class AtlsSession {
  readonly mode: Mode;
  protected readonly options: SessionOptions;
  protected conn: EngineConnection | undefined;
  protected channel: ProtectedChannel | undefined;
  private _state: SessionState = 'idle';
  private _info: HandshakeInfo | undefined;
  private _error: AtlsError | undefined;
  private _ticket: Uint8Array | undefined;
  /** The ServerHello carried extended_master_secret (RFC 7627 §5.2); undefined until looked for. */
  private serverHelloEms: boolean | undefined;
  /** The ServerHello's random (TLS 1.2 record guard, RFC 5246 §6.3); read with {@link serverHelloEms}. */
  private serverRandom: Uint8Array | undefined;
  /**
   * Server-to-client flights of the handshake, kept unparsed: only a TLS 1.2
   * handshake needs its ServerHello read (RFC 7627), so TLS 1.3 never parses them.
   */
  private serverFlights: Array<Uint8Array | readonly TlsRecord[]> = [];
  private busy = false;
  /** Mode `records`: authenticates the peer's records before the engine reads them (TLS 1.3, TLS 1.2 AEAD). */
  private guard: RecordGuard | undefined;

  protected constructor(
    readonly role: 'client' | 'server',
    options: SessionOptions,
    conn: EngineConnection,
  ) {
    this.options = options;
    this.mode = options.mode ?? 'exported';
    this.conn = conn;
  }

  /** Where the session is in its life cycle. */
  get state(): SessionState {
    return this._state;
  }

  /** What the handshake established; undefined until it completed locally. */
  get handshakeInfo(): HandshakeInfo | undefined {
    return this._info;
  }

  /** The fatal error, once the session failed. */
  get error(): AtlsError | undefined {
    return this._error;
  }

  /** Client: the latest resumption state received (also reported as a `ticket` event). */
  get resumptionTicket(): Uint8Array | undefined {
    return this._ticket;
  }

  /** Bytes the next protected message adds to its plaintext (mode `exported`). */
  get protectedOverhead(): number | undefined {
    return this.channel?.overhead;
  }

  /**
   * Inject one whole peer flight. Resolves with the next flight to send
   * (possibly empty) and events. A flight that is not made of whole TLS
   * records is rejected before the stack sees it (TRUNCATED_FLIGHT,
   * MALFORMED_RECORD).
   */
  async receive(flight: Uint8Array): Promise<FlightResult> {
    this.check('receive');
    if (this.role === 'client' && this._state === 'idle') {
      throw new AtlsError('INVALID_STATE', 'call start() before receive()');
    }
    const max = this.options.maxFlightBytes ?? DEFAULT_MAX_FLIGHT_BYTES;
    // Application data of mode `records` is bounded by the binding (its body limit), not as a flight.
    const data = this._state === 'established' && this.mode === 'records';
    if (flight.length > max && !data) {
      throw this.fail(new AtlsError('TOO_LARGE', `flight of ${flight.length} bytes exceeds ${max}`));
    }
    if (flight.length === 0 && this._state === 'idle') {
      throw this.fail(new AtlsError('MALFORMED_RECORD', 'an empty first flight carries no ClientHello'));
    }
    if (flight.length === 0) {
      // An empty flight is the peer's "nothing to add": for a confirming
      // client it is the server's acceptance of its final flight.
      return this.absorb({ flight: new Uint8Array(0), events: [] }, true);
    }
    let checked: TlsRecord[] | undefined;
    if (data) {
      // Refused here, before the engine, a body that is not whole records or a record that
      // does not authenticate leaves the session as it was (decisions.md, "Records are
      // authenticated before the engine"). DTLS drops a bad record itself (RFC 6347 §4.1.2.7).
      checked = splitRecords(flight, { dtls: this.isDtls(), maxRecords: 2 ** 31 });
      this.guard?.authenticate(checked);
    }
    const wasEstablished = this._state === 'established';
    return this.run(async (conn) => {
      // draft §9.1: a body is whole records.
      const records = checked ?? splitRecords(flight, { dtls: this.isDtls(), ...(data ? { maxRecords: 2 ** 31 } : {}) });
      if (this.role === 'client') this.noteServerHello(records);
      if (flight.length <= MAX_SEND_PIECE) {
        const step = await conn.receive(flight, records); // parsed once: the engine takes our records
        if (this.role === 'server') this.noteServerHello(step.flight);
        return this.guarded(this.absorb(step, true), wasEstablished, records);
      }
      // More than an engine takes at once: whole records in pieces, their results joined.
      const flights: Uint8Array[] = [];
      const events: EngineStep['events'] = [];
      for (let i = 0; i < records.length; ) {
        const from = records[i]!.offset;
        let to = from;
        while (i < records.length && (to === from || records[i]!.offset + records[i]!.headerLength + records[i]!.length - from <= MAX_SEND_PIECE)) {
          to = records[i]!.offset + records[i]!.headerLength + records[i]!.length;
          i++;
        }
        const step = await conn.receive(flight.subarray(from, to));
        flights.push(step.flight);
        events.push(...step.events);
      }
      const out = concatBytes(flights);
      if (this.role === 'server') this.noteServerHello(out);
      return this.guarded(this.absorb({ flight: out, events }, true), wasEstablished, records);
    });
  }

  /**
   * Mode `records`: encrypt application data into TLS records (draft Figure 5).
   * Resolves with the records to carry to the peer.
   */
  async send(data: Uint8Array): Promise<Uint8Array> {
    this.check('send');
    if (this.mode !== 'records') {
      throw new AtlsError('INVALID_STATE', 'send() is for mode "records"; use protect() in mode "exported"');
    }
    // Engines bound one write (the native engine's memory BIO); larger data goes in pieces.
    const pieces: Uint8Array[] = [];
    for (let at = 0; at < data.length || at === 0; at += MAX_SEND_PIECE) {
      const piece = data.subarray(at, at + MAX_SEND_PIECE);
      pieces.push((await this.run(async (conn) => this.absorb(await conn.write(piece), false))).flight);
    }
    return pieces.length === 1 ? pieces[0]! : concatBytes(pieces);
  }

  /** Mode `exported`: seal one application message (docs/protocol.md §4). */
  protect(plaintext: Uint8Array): Uint8Array {
    this.check('protect');
    return this.requireChannel().seal(plaintext);
  }

  /**
   * Mode `exported`: the protected channel, to seal or open a body as a
   * chunk stream (docs/protocol.md §4.1) with protectBody / unprotectBody.
   */
  get protectedChannel(): ProtectedChannel {
    this.check('protect');
    return this.requireChannel();
  }

  /**
   * Mode `exported`: open one protected message. A forged, replayed or too old
   * message throws for that message only; the session goes on. Reaching the
   * AEAD usage limits fails the session (KEY_LIMIT_REACHED: handshake again).
   */
  unprotect(message: Uint8Array): Uint8Array {
    this.check('unprotect');
    const channel = this.requireChannel();
    try {
      return channel.open(message);
    } catch (e) {
      if (e instanceof AtlsError && e.code === 'KEY_LIMIT_REACHED') throw this.fail(e);
      throw e;
    }
  }

  /**
   * RFC 5705 exporter of the TLS session. `context === undefined` is "no
   * context", which TLS 1.2 distinguishes from an empty context. In mode
   * `exported` it is available until the engine is released.
   */
  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array {
    if (this._state === 'idle' || this._state === 'handshaking') {
      throw new AtlsError('NOT_ESTABLISHED', 'no keys to export before the handshake completes');
    }
    this.check('export');
    if (!Number.isInteger(length) || length <= 0) {
      throw new AtlsError('INVALID_ARGUMENT', 'export length must be a positive integer');
    }
    if (!this.conn) {
      throw new AtlsError('INVALID_STATE', 'the TLS engine was released after key export (set retainEngine)');
    }
    this.requireExtendedMasterSecret();
    return this.conn.exportKeyingMaterial(length, label, context);
  }

  /**
   * Close the session. Mode `records`: resolves with close_notify records to
   * deliver. Mode `exported`: forgets the keys; resolves with an empty flight.
   */
  async close(): Promise<Uint8Array> {
    if (this._state === 'closed') return new Uint8Array(0);
    this.check('close');
    let flight: Uint8Array = new Uint8Array(0);
    if (this.conn && this._state !== 'idle') {
      try {
        flight = (await this.conn.close()).flight;
      } catch {
        // Closing a session whose peer already went away is not an error.
      }
    }
    this.release();
    this._state = 'closed';
    return flight;
  }

  /** Free everything now, without telling the peer. */
  destroy(): void {
    this.release();
    if (this._state !== 'failed') this._state = 'closed';
  }

  /**
   * The peer's binding reported a failure out of band (for example an HTTP
   * 403 whose body carries the alert records): fail the session with the
   * error those records explain, and return it.
   */
  peerFailed(body: Uint8Array, fallback: AtlsError): AtlsError {
    if (this._error) return this._error;
    let err = fallback;
    try {
      for (const rec of splitRecords(body, { dtls: this.isDtls() })) {
        // A plaintext fatal alert: level(1) description(1) (RFC 8446 §6).
        if (rec.contentType === ALERT_CONTENT_TYPE && rec.fragment.length === 2 && rec.fragment[0] === 2) {
          err = receivedAlertError(rec.fragment[1]!);
          break;
        }
      }
    } catch {
      // Not records: keep the fallback error.
    }
    return this.fail(err);
  }

  /**
   * DTLS: milliseconds until the engine's retransmission timer fires, or
   * undefined when none runs (no flight awaits an answer, or not DTLS).
   *
   * @example
   * ```ts
   * const ms = session.dtlsTimeout();
   * if (ms !== undefined) setTimeout(() => void session.dtlsRetransmit().then(send), ms);
   * ```
   */
  dtlsTimeout(): number | undefined {
    if (!this.isDtls() || !this.conn?.dtlsTimeout || this._error || this._state === 'closed') return undefined;
    return this.conn.dtlsTimeout();
  }

  /**
   * DTLS: the retransmission timer fired with no answer from the peer.
   * Resolves with the flight to send again (RFC 6347 §4.2.4; the engine
   * doubles its timer and gives up after its own limit). UNSUPPORTED for
   * TLS sessions and engines without DTLS timers.
   */
  async dtlsRetransmit(): Promise<FlightResult> {
    if (!this.isDtls()) throw new AtlsError('UNSUPPORTED', 'dtlsRetransmit() is for DTLS sessions');
    this.check('receive');
    if (this.conn && !this.conn.dtlsHandleTimeout) throw new AtlsError('UNSUPPORTED', 'the engine has no DTLS retransmission timer');
    return this.run(async (c) => {
      if (!c.dtlsHandleTimeout) throw new AtlsError('UNSUPPORTED', 'the engine has no DTLS retransmission timer');
      return this.absorb(await c.dtlsHandleTimeout(), false);
    });
  }

  /**
   * Mode `exported`, once established: hands the protected channel over to
   * the caller (an endpoint that keeps the session's state in a store) and
   * forgets it; the session can no longer protect or unprotect. The engine
   * is already released (unless `retainEngine`).
   */
  takeChannel(): ProtectedChannel {
    const channel = this.requireChannel();
    if (this._state !== 'established') throw new AtlsError('NOT_ESTABLISHED', 'the handshake is not complete');
    this.channel = undefined;
    return channel;
  }

  protected isDtls(): boolean {
    return false;
  }

  protected check(op: Operation): void {
    if (this._error) throw this._error;
    if (this._state === 'closed') throw new AtlsError('CLOSED', 'the session is closed');
    if (!ALLOWED[this._state].includes(op)) {
      const code = op === 'protect' || op === 'unprotect' || op === 'send' ? 'NOT_ESTABLISHED' : 'INVALID_STATE';
      throw new AtlsError(code, `${op}() is not allowed in state ${this._state}`);
    }
    if (this.busy && op !== 'protect' && op !== 'unprotect' && op !== 'export') {
      throw new AtlsError('INVALID_STATE', `${op}() while another flight is being processed`);
    }
  }

  /** Runs one engine step with the session's error discipline. */
  protected async run(fn: (conn: EngineConnection) => Promise<FlightResult>): Promise<FlightResult> {
    const conn = this.conn;
    if (!conn) throw new AtlsError('INVALID_STATE', 'the TLS engine was released (mode "exported")');
    this.busy = true;
    try {
      return await fn(conn);
    } catch (e) {
      throw this.fail(
        e instanceof AtlsError ? e : new AtlsError('INTERNAL', `TLS engine failed: ${String(e)}`, { cause: e }),
      );
    } finally {
      this.busy = false;
    }
  }

  /**
   * Turns an engine step into session state and events. `fromPeer`: the step
   * processed a peer flight (only that can confirm a client's final flight).
   */
  protected absorb(step: EngineStep, fromPeer: boolean): FlightResult {
    const events: SessionEvent[] = [];
    const wasConfirming = fromPeer && this._state === 'confirming';
    if (this._state === 'idle') this._state = 'handshaking';
    for (const ev of step.events) {
      switch (ev.type) {
        case 'handshake':
          this._info = ev.info;
          // The kept ServerHello flights serve only the TLS 1.2 EMS check: a records-mode
          // session never exports, so without this it would hold its first flight for life.
          if (ev.info.version === 'TLSv1.3') this.serverFlights = [];
          // Client: complete locally; established only once the server has
          // answered a final flight of ours (the flight returned now).
          this._state = this.role === 'client' && step.flight.length > 0 ? 'confirming' : 'established';
          if (this.mode === 'exported') this.deriveChannel(ev.info);
          if (this._state === 'established') events.push({ type: 'handshake', info: ev.info });
          break;
        case 'data':
          events.push(ev);
          break;
        case 'ticket':
          this._ticket = ev.session;
          events.push(ev);
          break;
        case 'alert':
          events.push({ type: 'alert', alert: { level: ev.level, description: ev.description, name: ev.name } });
          break;
        case 'closed':
          events.push(ev);
          this._state = 'closed';
          break;
      }
    }
    if (wasConfirming && this._state === 'confirming') {
      // The server answered our final flight without an alert: it accepted it.
      this._state = 'established';
      events.unshift({ type: 'handshake', info: this._info! });
    }
    if (this.mode === 'exported' && this._state === 'established' && !this.options.retainEngine) {
      // Architecture (b): once keys are exported the TLS state is dead weight.
      // The flight produced now (e.g. TLS 1.3 tickets) is already in hand.
      this.conn?.destroy();
      this.conn = undefined;
    }
    if (this._state === 'closed') this.release();
    return { flight: step.flight, events };
  }

  /**
   * Mode `records`: once the handshake completes, a guard on the peer's
   * write key, caught up with the records of the completing flight the
   * engine has read already. TLS 1.2 derives the key from the master secret
   * and both randoms (the server's from the ServerHello this session sent).
   * Without the engine's secret (DTLS, an engine that cannot tell) or an
   * AEAD suite the engine stays the only judge.
   */
  private guarded(result: FlightResult, wasEstablished: boolean, records: readonly TlsRecord[]): FlightResult {
    if (wasEstablished || this._state !== 'established' || this.mode !== 'records') return result;
    const peer = this.conn?.peerTrafficSecret?.();
    const suite = this._info?.cipherSuite;
    const version = this._info?.version;
    let guard: RecordGuard | undefined;
    try {
      if (peer && suite !== undefined && version === 'TLSv1.3') guard = new RecordGuard(suite, peer.secret);
      if (peer && suite !== undefined && version === 'TLSv1.2') {
        const serverRandom = this.readServerHello().random;
        this.serverRandom = undefined; // used once
        if (serverRandom) guard = new RecordGuard(suite, peer.secret, { clientRandom: peer.clientRandom, serverRandom });
      }
    } catch {
      guard = undefined; // a suite without an AEAD the guard knows
    }
    peer?.secret.fill(0);
    if (guard && !guard.catchUp(records)) {
      guard.destroy();
      guard = undefined;
    }
    this.guard = guard;
    return result;
  }

  /** Keeps a server-to-client handshake flight for {@link requireExtendedMasterSecret}. */
  private noteServerHello(flight: Uint8Array | readonly TlsRecord[]): void {
    if (this.serverHelloEms !== undefined || flight.length === 0 || this._info || this.serverFlights.length >= MAX_HELLO_FLIGHTS) return;
    this.serverFlights.push(flight);
  }

  /**
   * The ServerHello's extended_master_secret (RFC 7627 §5.2) and random, read
   * from the kept flights on first use (the flights are then dropped).
   */
  private readServerHello(): { ems: boolean; random: Uint8Array | undefined } {
    for (const flight of this.serverFlights) {
      if (this.serverHelloEms !== undefined) break;
      try {
        const hello = parseServerHello(flight, { dtls: this.isDtls() });
        if (!hello.isHelloRetryRequest) {
          this.serverHelloEms = hello.extensions.some((e) => e.type === EXTENDED_MASTER_SECRET);
          this.serverRandom = fromHex(hello.random);
        }
      } catch {
        // No ServerHello in this flight (a HelloVerifyRequest, later flights).
      }
    }
    this.serverFlights = [];
    this.serverHelloEms ??= false;
    return { ems: this.serverHelloEms, random: this.serverRandom };
  }

  /**
   * RFC 7627 §5.4: no keying material may be exported from a TLS 1.2 master
   * secret made without Extended Master Secret (the triple handshake attack
   * lets a man in the middle share it with both ends).
   */
  private requireExtendedMasterSecret(): void {
    const v = this._info?.version;
    if (v === 'TLSv1.3') this.serverFlights = [];
    if ((v === 'TLSv1.2' || v === 'DTLSv1.2') && !this.readServerHello().ems) {
      throw new AtlsError(
        'HANDSHAKE_FAILED',
        `${v} handshake without Extended Master Secret: key export refused (RFC 7627 §5.4)`,
        { source: 'remote' },
      );
    }
  }

  private deriveChannel(info: HandshakeInfo): void {
    if (this.channel || !this.conn) return;
    this.requireExtendedMasterSecret();
    const spec = aeadForSuite(info.cipherSuite); // draft §7.2: the negotiated suite's AEAD
    const block = this.conn.exportKeyingMaterial(keyBlockLength(spec), EXPORTER_LABEL); // draft §7.1, no context
    try {
      this.channel = ProtectedChannel.fromKeyBlock(block, spec, this.role, this.options.protection);
    } finally {
      block.fill(0);
    }
  }

  private requireChannel(): ProtectedChannel {
    if (this.mode !== 'exported') {
      throw new AtlsError('INVALID_STATE', 'protect()/unprotect() are for mode "exported"; use send() in mode "records"');
    }
    if (!this.channel) throw new AtlsError('NOT_ESTABLISHED', 'no exported keys yet');
    return this.channel;
  }

  protected fail(e: AtlsError): AtlsError {
    if (this._error) return this._error;
    this._error = e;
    this._state = 'failed';
    this.release();
    return e;
  }

  private release(): void {
    this.guard?.destroy();
    this.guard = undefined;
    this.conn?.destroy();
    this.conn = undefined;
    this.channel?.destroy();
    this.channel = undefined;
  }
}

/** Options of a client session. */
export interface ClientSessionOptions extends SessionOptions {
  tls: TlsClientConfig;
}

/** Options of a server session. */
export interface ServerSessionOptions extends SessionOptions {
  tls: TlsServerConfig;
}

/** The client side of an ATLS session. */
export class AtlsClientSession extends AtlsSession {
  private readonly dtls: boolean;

  constructor(options: ClientSessionOptions) {
    const engine = options.engine ?? defaultEngine();
    super('client', options, engine.createClient(options.tls));
    this.dtls = options.tls.dtls === true;
  }

  /** Begin the handshake; resolves with the first flight (the ClientHello). */
  async start(): Promise<FlightResult> {
    this.check('start');
    return this.run(async (conn) => this.absorb(await conn.start(), false));
  }

  protected override isDtls(): boolean {
    return this.dtls;
  }
}

/** The server side of an ATLS session: created on the first client flight. */
export class AtlsServerSession extends AtlsSession {
  private readonly dtls: boolean;

  constructor(options: ServerSessionOptions) {
    const engine = options.engine ?? defaultEngine();
    super('server', options, engine.createServer(options.tls));
    this.dtls = options.tls.dtls === true;
    // DTLS drops a record that fails authentication by itself (RFC 6347 §4.1.2.7).
    if (this.mode === 'records' && !this.dtls) this.conn?.keepPeerTrafficSecret?.();
  }

  protected override isDtls(): boolean {
    return this.dtls;
  }
}
