/**
 * The transport-neutral ATLS endpoint: the session registry every binding
 * (HTTP, CoAP) sits on, and the two operations they all need, "a handshake
 * flight for session id (or none)" and "a protected message for session id".
 * The bindings only translate: cookies, media types and status codes;
 * Location-Path, Content-Formats and response codes.
 *
 * Two kinds of session, two places (docs/protocol.md §5.9):
 * - {@link LiveSession}: a half-open handshake, or an established records-mode
 *   (a) session. It holds a live TLS engine, so it lives in this process's
 *   local table and cannot move (a load balancer routes its flights here by
 *   the routing tag of its id). Counted against `maxHalfOpen` while half-open.
 * - {@link EstablishedSession}: an established exported-mode (b) session. At
 *   establishment its engine is released and its state (keys, next send
 *   number, replay window, usage counters, the peer's handshake summary) goes
 *   to the {@link SessionStateStore} (in memory by default, or shared, e.g.
 *   Redis). Any process sharing the store answers it; each caches the keys.
 *
 * What unauthenticated input can do: nothing here ends or replaces an
 * established exported session on the strength of a cookie or an id alone.
 * Only a message that authenticates under its keys touches its state; a new
 * ClientHello that names it starts a new session beside it; a flight sent to
 * it is refused and it goes on. (A binding may still offer an explicit
 * DELETE; see the CoAP server.)
 *
 * @example
 * ```ts
 * const core = new EndpointCore({ tls: { cert, key } });
 * const live = core.admit();                              // 503 LIMIT_REACHED beyond the caps
 * const step = await core.exclusive(live, () => core.flight(live, clientHello));
 * // ... later, with the id from a cookie or a Location-Path:
 * const s = await core.find(id);
 * if (s instanceof EstablishedSession) {
 *   const { plaintext, sendSeq } = await core.accept(s, body);
 *   const sealed = await core.seal(s, sendSeq, answer(plaintext));
 * }
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { concatBytes } from '../bytes.js';
import type { HandshakeInfo, TlsEngine, TlsServerConfig } from '../engines/types.js';
import { checkServerCredentials } from '../engines/credentials.js';
import { defaultEngine } from '../engines/index.js';
import { AtlsServerSession } from '../session/session.js';
import type { Mode, SessionOptions } from '../session/types.js';
import { ProtectedChannel, type BodySealer, type ProtectedChannelOptions } from '../protect/index.js';
import { ContentType, HELLO_RETRY_REQUEST_RANDOM, HandshakeType } from '../records.js';
import {
  MAX_RESERVE,
  MemoryStateStore,
  MemoryStore,
  isSyncStateStore,
  isValidRoutingTag,
  newSessionId,
  isSessionId,
  type CommitResult,
  type IdOwner,
  type ReserveResult,
  type SessionStateStore,
  type StoredSession,
  type SyncSessionStateStore,
} from '../store/index.js';
import { FairShareLedger } from '../store/fair-shares.js';
import { ENDPOINT_DEFAULTS } from './defaults.js';
import { peerFromHandshake, type AtlsPeer } from './peer.js';

/** Why a session left the registry. */
export type EndReason = 'closed' | 'failed' | 'expired' | 'evicted' | 'deleted';

/**
 * A limit was hit (`limit`), a half-open handshake gave way for a newcomer
 * (`evicted`), or a newcomer was turned away (`refused`). `peer` is the
 * fairness group (an address, a /64 for IPv6: `peerGroup`).
 */
export type EndpointLimitEvent =
  | { type: 'limit'; limit: 'half-open' | 'sessions'; peer: string }
  | { type: 'evicted'; what: 'half-open'; peer: string; reason: 'expired' | 'half-open' }
  | { type: 'evicted'; what: 'session'; peer: string; reason: 'sessions' }
  | { type: 'refused'; what: 'session'; peer: string; reason: 'sessions' };

/** Options of an {@link EndpointCore}. Limits default to {@link ENDPOINT_DEFAULTS}. */
export interface EndpointCoreOptions {
  /** TLS configuration of every session. */
  tls: TlsServerConfig;
  /** `exported` (architecture b, default) or `records` (a). */
  mode?: Mode;
  engine?: TlsEngine;
  /** Further session options (flight cap, protection limits and window). */
  session?: Omit<SessionOptions, 'engine' | 'mode'>;
  /**
   * Where established exported sessions live (default: in this process's
   * memory, sized by `maxSessions`). A shared store lets other processes
   * answer them. The core does not close a store it was given.
   */
  store?: SessionStateStore;
  /** Prefix of new session ids (`<tag>.<random>`), for load balancers. */
  routingTag?: string;
  /** This process among several minting ids (`sessionOwner` tells which one holds a handshake). */
  idOwner?: IdOwner;
  /**
   * Sessions held, half-open or established (local table plus the in-memory
   * store; with a shared store, those this process started). At the cap the
   * heaviest peer's least recently used established session gives way for a
   * newcomer (`FairShareLedger`); LIMIT_REACHED only when none can.
   */
  maxSessions?: number;
  /**
   * Handshakes in progress. At the cap a newcomer is never refused: the
   * heaviest peer's oldest handshake gives way (`FairShareLedger`).
   */
  maxHalfOpen?: number;
  /** A half-open handshake is forgotten after this long. */
  handshakeTtlMs?: number;
  /** Idle lifetime of an established session, refreshed by each request. */
  sessionTtlMs?: number;
  /**
   * A flight for a live session that is processing one already: `refuse`
   * (INVALID_STATE: TLS records are sequenced; HTTP answers 409) or `queue`
   * (run after it; CoAP, whose retransmissions and NON resends overlap).
   */
  whenBusy?: 'refuse' | 'queue';
  /** Told when a session ends (not for sessions a shared store expires on its own). Must not throw. */
  onEnd?: (id: string, reason: EndReason) => void;
  /** Told when a limit is hit, a handshake gives way, or a newcomer is refused. Must not throw. */
  onLimit?: (event: EndpointLimitEvent) => void;
}

/** A session with a live TLS engine in this process: half-open, or established in mode `records`. */
export class LiveSession {
  /** Set when the handshake completed (mode `records`). */
  handshake: HandshakeInfo | undefined;
  /** A flight of this session is being processed. */
  busy = false;
  /** Tail of the queue of flights (`whenBusy: 'queue'`). */
  queue: Promise<unknown> = Promise.resolve();
  /** The last flight sent was a HelloRetryRequest: the client's second ClientHello belongs to this session. */
  awaitingHello = false;
  /** The fairness group that started it (`peerGroup`): its established session counts against that group's share. */
  group = '';
  /** TLS 1.3 early data taken with the ClientHello (mode `records`), held until the handshake completes. */
  early: Uint8Array[] | undefined;
  private peerRecord: AtlsPeer | undefined;

  constructor(
    readonly id: string,
    readonly session: AtlsServerSession,
  ) {}

  /** The peer, once established. */
  get peer(): AtlsPeer | undefined {
    if (!this.handshake) return undefined;
    return (this.peerRecord ??= peerFromHandshake(this.id, this.session.mode, this.handshake));
  }
}

/**
 * An established exported-mode session as this process sees it: the
 * immutable part of its stored state and a channel keyed from it (cached per
 * process). Its counters live in the store, never here.
 */
export class EstablishedSession {
  /** The store no longer has it (expired, deleted, lost): forget the cookie. */
  gone = false;
  private peerRecord: AtlsPeer | undefined;

  constructor(
    readonly stored: StoredSession,
    readonly channel: ProtectedChannel,
  ) {}

  get id(): string {
    return this.stored.id;
  }

  get handshake(): HandshakeInfo {
    return this.stored.handshake;
  }

  /** The peer as applications see it (the certificate's subject parsed on first read). */
  get peer(): AtlsPeer {
    if (!this.peerRecord) {
      this.peerRecord = peerFromHandshake(this.stored.id, 'exported', this.stored.handshake);
      viewOfPeer.set(this.peerRecord, this);
    }
    return this.peerRecord;
  }
}

/** The view whose peer record this is: {@link EndpointCore.keepPeer} keeps the view that holds what was added to it. */
const viewOfPeer = new WeakMap<AtlsPeer, EstablishedSession>();

/** What a session id names. */
export type FoundSession = LiveSession | EstablishedSession;

/** The result of one handshake flight. */
export interface FlightStep {
  /** The flight to send back (possibly empty: send it anyway). */
  flight: Uint8Array;
  /** Application data records (mode `records`): one inner request. */
  data: Uint8Array[];
  /**
   * Mode `records`: the inner request that came as accepted TLS 1.3 early
   * data, handed over by the flight that completed the handshake (RFC 8470
   * §3: processed only once the handshake completes; a replay whose
   * handshake never completes is never served). Replayable on another
   * connection: mark it for the application (`Early-Data: 1`).
   */
  early: Uint8Array | undefined;
  /** The session ended cleanly (close_notify); it is gone from the registry. */
  closed: boolean;
  /** Set when this flight completed the handshake. */
  handshake: HandshakeInfo | undefined;
  /** Mode `exported`: the session as now stored, when this flight completed the handshake. */
  established: EstablishedSession | undefined;
}

/** An authenticated, fresh protected message and the send number reserved for its answer. */
export interface AcceptedMessage {
  plaintext: Uint8Array;
  sendSeq: number;
}

/**
 * The flight starts with a HelloRetryRequest (RFC 8446 §4.1.4): a handshake
 * record whose first message is a ServerHello with the HRR random. Read from
 * the fixed offsets of our own engine's output (record header 5, handshake
 * header 4, legacy_version 2, then the 32-byte random), not by parsing the
 * whole ServerHello flight on every handshake.
 */
function isHelloRetryRequest(flight: Uint8Array): boolean {
  const RANDOM_AT = 5 + 4 + 2;
  if (flight.length < RANDOM_AT + 32 || flight[0] !== ContentType.handshake || flight[5] !== HandshakeType.server_hello) return false;
  for (let i = 0; i < 32; i++) if (flight[RANDOM_AT + i] !== HELLO_RETRY_REQUEST_RANDOM[i]) return false;
  return true;
}

/**
 * The endpoint's TLS configuration with {@link ENDPOINT_DEFAULTS.ticketCount} tickets unless the
 * caller chose a count or the engine cannot (node:tls always issues two). One object per endpoint,
 * so the engines' per-configuration memo still hits.
 */
function withTicketCount(tls: TlsServerConfig, engine: TlsEngine): TlsServerConfig {
  if (tls.ticketCount !== undefined || !engine.capabilities.ticketCount) return tls;
  return { ...tls, ticketCount: ENDPOINT_DEFAULTS.ticketCount };
}

function positive(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new AtlsError('INVALID_ARGUMENT', `${name} must be a positive number`);
  return v;
}

const EMPTY = new Uint8Array(0);

/** Largest block of send numbers a streamed answer reserves at once (256 chunks, 4 MiB). */
export const MAX_RESERVE_BLOCK = 256;

const gone = (): AtlsError => new AtlsError('CLOSED', 'unknown or expired ATLS session: handshake again', { source: 'remote' });

/** The session registry and the two operations of every binding. */
export class EndpointCore {
  readonly mode: Mode;
  readonly sessionTtlMs: number;
  readonly handshakeTtlMs: number;
  readonly maxSessions: number;
  readonly maxHalfOpen: number;
  private readonly routingTag: string | undefined;
  private readonly idOwner: IdOwner | undefined;
  private readonly onLimit: EndpointCoreOptions['onLimit'];
  private readonly whenBusy: 'refuse' | 'queue';
  private readonly onEnd: EndpointCoreOptions['onEnd'];
  private readonly sessionOptions: SessionOptions & { tls: TlsServerConfig };
  private readonly protection: Omit<ProtectedChannelOptions, 'replayWindow' | 'initialSequence'>;
  /** Live sessions (engines): half-open and records-mode. */
  private readonly local: MemoryStore<LiveSession>;
  /** Half-open handshakes by peer, oldest first. */
  private readonly halfOpenIds: FairShareLedger<LiveSession>;
  /** Established sessions this process started, by peer, least recently used first. */
  private readonly established: FairShareLedger<undefined>;
  private readonly store: SessionStateStore;
  private readonly syncStore: SyncSessionStateStore | undefined;
  private readonly ownsStore: boolean;
  /** Sync store: the established view per stored record (dies with the record). */
  private readonly byRecord = new WeakMap<StoredSession, EstablishedSession>();
  /** Shared store: the established views this process keeps ready (LRU by insertion). */
  private readonly cache = new Map<string, EstablishedSession>();
  private readonly cacheLimit: number;

  constructor(options: EndpointCoreOptions) {
    checkServerCredentials(options.tls); // a key that does not match would fail every handshake, silently
    this.mode = options.mode ?? 'exported';
    if (this.mode !== 'exported' && this.mode !== 'records') throw new AtlsError('INVALID_ARGUMENT', 'mode must be "exported" or "records"');
    if (this.mode === 'exported' && (options.tls.maxEarlyData ?? 0) > 0) {
      // Architecture (b) carries requests as protected messages, never as TLS application data (decisions.md O5).
      throw new AtlsError('INVALID_ARGUMENT', 'maxEarlyData needs mode "records": in mode "exported" requests are protected messages, never TLS early data');
    }
    if (options.routingTag !== undefined && !isValidRoutingTag(options.routingTag)) {
      throw new AtlsError('INVALID_ARGUMENT', 'routingTag must be 1..32 characters of [A-Za-z0-9_-]');
    }
    this.routingTag = options.routingTag;
    this.idOwner = options.idOwner;
    this.onLimit = options.onLimit;
    this.maxSessions = positive(options.maxSessions, ENDPOINT_DEFAULTS.maxSessions, 'maxSessions');
    this.maxHalfOpen = positive(options.maxHalfOpen, ENDPOINT_DEFAULTS.maxHalfOpen, 'maxHalfOpen');
    this.handshakeTtlMs = positive(options.handshakeTtlMs, ENDPOINT_DEFAULTS.handshakeTtlMs, 'handshakeTtlMs');
    this.sessionTtlMs = positive(options.sessionTtlMs, ENDPOINT_DEFAULTS.sessionTtlMs, 'sessionTtlMs');
    this.halfOpenIds = new FairShareLedger<LiveSession>(this.maxHalfOpen, this.handshakeTtlMs);
    // Its cap is counted by held(); its own expiry only matters for a shared store, which expires silently.
    this.established = new FairShareLedger<undefined>(Number.POSITIVE_INFINITY, this.sessionTtlMs);
    this.whenBusy = options.whenBusy ?? 'refuse';
    this.onEnd = options.onEnd;
    // One options object shared by every session (a copy each cost ~60 B per session).
    this.sessionOptions = {
      ...options.session,
      mode: this.mode,
      ...(options.engine ? { engine: options.engine } : {}),
      tls: withTicketCount(options.tls, options.engine ?? defaultEngine()),
    };
    const { replayWindow: _w, initialSequence: _i, ...protection } = options.session?.protection ?? {};
    this.protection = protection;
    // The local table evicts only as a backstop: admit() answers LIMIT_REACHED first.
    this.local = new MemoryStore<LiveSession>({
      maxEntries: this.maxSessions + 1,
      onRemove: (id, live, reason) => {
        if (reason === 'replaced') return;
        this.halfOpenIds.delete(id);
        live.session.destroy();
        if (reason === 'expired' || reason === 'evicted') this.ended(id, reason);
      },
    });
    this.ownsStore = options.store === undefined;
    this.store =
      options.store ??
      new MemoryStateStore({
        maxEntries: this.maxSessions + 1,
        onRemove: (id, reason) => {
          if (reason === 'expired' || reason === 'evicted') this.ended(id, reason);
        },
      });
    this.syncStore = isSyncStateStore(this.store) ? this.store : undefined;
    this.cacheLimit = this.syncStore ? 0 : Math.min(ENDPOINT_DEFAULTS.keyCacheEntries, this.maxSessions);
  }

  /** Sessions held by this process (local table plus the store when it can tell). */
  get size(): number {
    return this.local.size + (this.store.size ?? 0);
  }

  /** Handshakes in progress. */
  get halfOpen(): number {
    return this.halfOpenIds.size;
  }

  /** The peer holding the most half-open handshakes and the one holding the most established sessions (metrics). */
  heaviestPeers(): { halfOpen: { peer: string; held: number } | undefined; sessions: { peer: string; held: number } | undefined } {
    return { halfOpen: this.halfOpenIds.heaviest(), sessions: this.established.heaviest() };
  }

  /**
   * The session `id` names, or undefined (malformed id, unknown, expired, or
   * lost by the store). Synchronous for local sessions and in-process stores.
   * Rejects with STORE_UNAVAILABLE when a shared store cannot be reached.
   */
  /** True when {@link find} never returns a promise (the store answers at once). */
  get findsAtOnce(): boolean {
    return this.syncStore !== undefined;
  }

  find(id: string): FoundSession | undefined | Promise<FoundSession | undefined> {
    if (!isSessionId(id)) return undefined;
    const live = this.local.getSync(id);
    if (live) return live;
    if (this.syncStore) {
      const stored = this.syncStore.loadSync(id);
      return stored ? this.viewOf(stored) : undefined;
    }
    const cached = this.cache.get(id);
    if (cached) return cached;
    return this.store.load(id).then((stored) => (stored ? this.viewOf(stored) : undefined));
  }

  /**
   * Admits a new half-open handshake of `peer` (its fairness group,
   * `peerGroup(address)`). At the half-open cap older handshakes give way
   * (the heaviest peer's oldest first); at the session cap the heaviest
   * peer's least recently used established session gives way (the
   * newcomer's own when it is the heaviest), so one peer's completed
   * handshakes never lock others out. LIMIT_REACHED (503) only when nothing
   * can give way. The caller runs its first flight with {@link flight}.
   */
  admit(peer = ''): LiveSession {
    if (this.held() >= this.maxSessions) this.makeRoom(peer);
    const live = new LiveSession(newSessionId(this.routingTag, this.idOwner), new AtlsServerSession(this.sessionOptions));
    live.group = peer;
    const displaced = this.halfOpenIds.admit(live.id, live, peer);
    if (displaced.length > 0) this.limitEvent({ type: 'limit', limit: 'half-open', peer });
    for (const d of displaced) {
      this.local.deleteSync(d.value.id); // releases its engine
      this.limitEvent({ type: 'evicted', what: 'half-open', peer: d.peer, reason: d.reason === 'expired' ? 'expired' : 'half-open' });
    }
    this.local.setSync(live.id, live, this.handshakeTtlMs);
    return live;
  }

  /**
   * Runs `fn` as the only flight of `live` in progress: refused with
   * INVALID_STATE while another runs (`whenBusy: 'refuse'`), or queued behind it.
   * `holdUntil` may keep the session busy after `fn` returned, until the
   * promise it gives settles (an answer still being sent; `refuse` only).
   */
  async exclusive<T>(live: LiveSession, fn: () => Promise<T>, holdUntil?: (result: T) => Promise<void> | undefined): Promise<T> {
    if (this.whenBusy === 'queue') {
      const run = live.queue.then(async () => {
        live.busy = true;
        try {
          return await fn();
        } finally {
          live.busy = false;
        }
      });
      live.queue = run.catch(() => undefined);
      return run;
    }
    if (live.busy) {
      // One flight per session at a time: TLS records are sequenced (decisions.md: 409, not a queue).
      throw new AtlsError('INVALID_STATE', 'another request of this ATLS session is in progress', { source: 'remote' });
    }
    live.busy = true;
    let held = false;
    try {
      const result = await fn();
      // A streamed answer: the session stays busy until it has been sent.
      const until = holdUntil?.(result);
      if (until) {
        held = true;
        void until.finally(() => (live.busy = false));
      }
      return result;
    } finally {
      if (!held) live.busy = false;
    }
  }

  /**
   * One handshake flight (or, in mode `records`, records) of a live session.
   * When it completes an exported-mode handshake, the session's state goes to
   * the store and the session leaves the local table (engine released). A
   * fatal failure ends the session and rethrows.
   */
  async flight(live: LiveSession, body: Uint8Array): Promise<FlightStep> {
    if (this.local.getSync(live.id) !== live) throw gone();
    let step;
    try {
      step = await live.session.receive(body);
    } catch (err) {
      const s = live.session.state;
      if (s === 'failed' || s === 'closed') this.endLive(live, 'failed');
      throw err;
    }
    const data: Uint8Array[] = [];
    let closed = false;
    let handshake: HandshakeInfo | undefined;
    for (const ev of step.events) {
      if (ev.type === 'handshake') handshake = ev.info;
      else if (ev.type === 'data') (ev.early ? (live.early ??= []) : data).push(ev.data);
      else if (ev.type === 'closed') closed = true;
    }
    let early: Uint8Array | undefined;
    if (handshake && live.early) {
      early = concatBytes(live.early);
      live.early = undefined;
    }
    let established: EstablishedSession | undefined;
    if (closed || live.session.state === 'closed') {
      this.endLive(live, 'closed');
      closed = true;
    } else if (handshake && this.mode === 'exported') {
      established = await this.promote(live, handshake);
    } else {
      if (handshake) {
        live.handshake = handshake;
        this.halfOpenIds.delete(live.id);
        this.established.admit(live.id, undefined, live.group);
      } else if (live.handshake) this.established.touch(live.id);
      this.local.setSync(live.id, live, live.handshake ? this.sessionTtlMs : this.handshakeTtlMs);
    }
    if (!live.handshake && !established) live.awaitingHello = isHelloRetryRequest(step.flight);
    return { flight: step.flight, data, early, closed, handshake, established };
  }

  /**
   * Mode `records`: encrypts the answer to the data of the last flight into
   * TLS records. A failure ends the session.
   */
  async sendRecords(live: LiveSession, data: Uint8Array): Promise<Uint8Array> {
    try {
      return await live.session.send(data);
    } catch (err) {
      this.endLive(live, 'failed');
      throw err;
    }
  }

  /**
   * The first half of "a protected message for session id": authenticates
   * `body` with the cached keys (FIRST: a forgery never reaches the store's
   * window), then ONE atomic commit marks the window, reserves the answer's
   * send number and refreshes the TTL. Throws per message (DECRYPT_FAILED,
   * REPLAYED, TOO_OLD, MALFORMED_MESSAGE, TOO_LARGE; the session goes on),
   * CLOSED when the store no longer has the session, KEY_LIMIT_REACHED when
   * an AEAD limit is reached (the session ends), STORE_UNAVAILABLE.
   * Synchronous with an in-process store.
   */
  accept(s: EstablishedSession, body: Uint8Array): AcceptedMessage | Promise<AcceptedMessage> {
    this.established.touch(s.id); // least recently used gives way first under pressure
    let sequence: number;
    let plaintext: Uint8Array;
    try {
      ({ sequence, plaintext } = s.channel.authenticate(body));
    } catch (err) {
      if (err instanceof AtlsError && (err.code === 'DECRYPT_FAILED' || err.code === 'KEY_LIMIT_REACHED')) {
        return this.chargeFailure(s, body.length, err);
      }
      throw err;
    }
    if (this.syncStore) return this.judge(s, sequence, plaintext, this.syncStore.commitSync(s.id, sequence, this.sessionTtlMs));
    return this.store.commit(s.id, sequence, this.sessionTtlMs).then((r) => this.judge(s, sequence, plaintext, r));
  }

  /**
   * The second half: seals the answer under the number {@link accept}
   * reserved. An answer above one usage unit (16 KiB) charges the rest to
   * the store (a second call, only for large answers).
   */
  seal(s: EstablishedSession, sendSeq: number, answer: Uint8Array): Uint8Array | Promise<Uint8Array> {
    const sealed = s.channel.sealAt(sendSeq, answer);
    const extra = ProtectedChannel.unitsOf(answer.length) - 1;
    if (extra <= 0) return sealed;
    if (this.syncStore) {
      this.syncStore.chargeSync(s.id, { sent: extra });
      return sealed;
    }
    return this.store.charge(s.id, { sent: extra }).then(() => sealed);
  }

  /**
   * Chunk 0 of a protected stream (docs/protocol.md §4.1) authenticated
   * (`channel.authenticateChunk`): its number goes through the store's
   * window as {@link accept} does for a message, and the answer's send
   * number is reserved. Throws as accept() does (REPLAYED, TOO_OLD, CLOSED,
   * KEY_LIMIT_REACHED, STORE_UNAVAILABLE); resolves with the send number.
   */
  acceptStream(s: EstablishedSession, sequence: number): number | Promise<number> {
    this.established.touch(s.id);
    const answer = (r: CommitResult): number | Promise<number> => {
      const a = this.judge(s, sequence, EMPTY, r);
      return a instanceof Promise ? a.then((x) => x.sendSeq) : a.sendSeq;
    };
    if (this.syncStore) return answer(this.syncStore.commitSync(s.id, sequence, this.sessionTtlMs));
    return this.store.commit(s.id, sequence, this.sessionTtlMs).then(answer);
  }

  /**
   * A chunk of a protected stream failed authentication: charged like a
   * message that failed (the integrity limit may end the session). Always throws.
   */
  rejectChunk(s: EstablishedSession, length: number, err: AtlsError): Promise<never> | never {
    return this.chargeFailure(s, length, err);
  }

  /**
   * What seals the answer to an accepted message of `s` (protectBody): one
   * protected message under `sendSeq` when the answer is small and
   * complete, otherwise a chunk stream whose chunk 0 takes `sendSeq` and
   * whose later chunks take numbers the store reserves in blocks of 4, 8,
   * ... {@link MAX_RESERVE_BLOCK} (decisions.md). A reservation that passes
   * the confidentiality limit ends the session and the stream.
   */
  answerSealer(s: EstablishedSession, sendSeq: number): BodySealer {
    const free: number[] = [sendSeq]; // pairs [next, end) flattened: start with the committed number
    free.push(sendSeq + 1);
    let block = 4;
    const available = (): number => {
      let n = 0;
      for (let i = 0; i < free.length; i += 2) n += free[i + 1]! - free[i]!;
      return n;
    };
    const take = (): number => {
      while (free.length > 0 && free[0] === free[1]) free.splice(0, 2);
      if (free.length === 0) throw new AtlsError('INTERNAL', 'a chunk was sealed without a reserved number');
      return free[0]!++;
    };
    const reserved = (r: ReserveResult | undefined, count: number): void => {
      if (r === undefined) {
        s.gone = true;
        this.cache.delete(s.id);
        throw gone();
      }
      if (r.sentUnits > s.channel.usageLimits.confidentiality || !Number.isSafeInteger(r.first + count)) {
        // RFC 8446 §5.5: stop using the key at its confidentiality limit; the cut stream tells the peer.
        void this.end(s, 'failed');
        throw new AtlsError('KEY_LIMIT_REACHED', `confidentiality limit of ${s.channel.usageLimits.confidentiality} reached; run a new handshake`);
      }
      free.push(r.first, r.first + count);
    };
    return {
      seal: (plaintext) => this.seal(s, sendSeq, plaintext),
      sealChunk: (plaintext, final, start, index, into) => s.channel.sealChunkAt(take(), plaintext, final, start, index, into),
      ready: (chunks) => {
        const short = chunks - available();
        if (short <= 0) return;
        const count = Math.min(MAX_RESERVE, Math.max(short, block));
        block = Math.min(block * 2, MAX_RESERVE_BLOCK);
        if (this.syncStore) return reserved(this.syncStore.reserveSync(s.id, count, this.sessionTtlMs), count);
        return this.store.reserve(s.id, count, this.sessionTtlMs).then((r) => reserved(r, count));
      },
    };
  }

  /**
   * Ends a session on the binding's word: a close_notify, an explicit DELETE,
   * a failure. Never call it for input that did not authenticate as the
   * session's peer when the session is established (see the module comment).
   */
  async end(s: FoundSession, reason: EndReason): Promise<void> {
    if (s instanceof LiveSession) {
      this.endLive(s, reason);
      return;
    }
    s.gone = true;
    this.cache.delete(s.id);
    const removed = this.syncStore ? this.syncStore.deleteSync(s.id) : await this.store.delete(s.id);
    if (removed) this.ended(s.id, reason);
  }

  /**
   * Ends `s` when `proof` is a protected message of it (an explicit DELETE's:
   * only a holder of the session's keys can make one) and says so; false,
   * and the session goes on, when it is not (forged, replayed, malformed).
   * A store failure or a key limit is thrown as it is.
   */
  async endIfProven(s: EstablishedSession, proof: Uint8Array): Promise<boolean> {
    try {
      const accepted = this.accept(s, proof);
      if (accepted instanceof Promise) await accepted;
    } catch (e) {
      if (e instanceof AtlsError && (e.code === 'KEY_LIMIT_REACHED' || e.code === 'STORE_UNAVAILABLE' || e.code === 'CLOSED')) throw e;
      return false;
    }
    await this.end(s, 'deleted');
    return true;
  }

  /**
   * Mode `records`: ends `live` when `records` carry its peer's close_notify
   * (an explicit DELETE's proof: the engine authenticates the records before
   * it acts on them; a forged one is dropped, RFC 6347 §4.1.2.7, or refused
   * by the record guard) and says so; false, and the session goes on, when
   * they do not (records refused before the engine included). Application
   * data in them is dropped unanswered. A half-open session has no keys, so
   * nothing proves it: false without reading. A failure that ended the
   * session is thrown as {@link flight} throws it.
   */
  async endIfClosed(live: LiveSession, records: Uint8Array): Promise<boolean> {
    if (!live.handshake) return false;
    // Busy (another flight in progress, `whenBusy: 'refuse'`) is thrown as it is: the proof was not read.
    return this.exclusive(live, async () => {
      try {
        return (await this.flight(live, records)).closed;
      } catch (e) {
        if (this.isGone(live)) throw e; // the engine failed: the session ended, say why
        return false; // refused before the engine (forged, replayed, cut off): nothing changed
      }
    });
  }

  /** True when `s` is no longer in the registry (its id should be forgotten by the client). */
  isGone(s: FoundSession): boolean {
    if (s instanceof LiveSession) return this.local.getSync(s.id) !== s;
    return s.gone;
  }

  /**
   * Keeps the view of an established session whose peer record gained what
   * the store does not hold (the transport report, which is per process), so
   * that later requests of the session see the same peer.
   */
  keepPeer(peer: AtlsPeer): void {
    const view = viewOfPeer.get(peer);
    if (!view) return;
    if (this.syncStore) this.byRecord.set(view.stored, view);
    else this.remember(view);
  }

  /** Drops every live session and the cached keys; closes the store when the core made it. */
  async close(): Promise<void> {
    this.halfOpenIds.clear();
    this.established.clear();
    this.local.close();
    this.cache.clear();
    if (this.ownsStore) await this.store.close();
  }

  private viewOf(stored: StoredSession): EstablishedSession {
    if (this.syncStore) {
      let view = this.byRecord.get(stored);
      if (!view) {
        view = new EstablishedSession(stored, this.channelOf(stored));
        this.byRecord.set(stored, view);
      }
      return view;
    }
    const view = new EstablishedSession(stored, this.channelOf(stored));
    this.remember(view);
    return view;
  }

  private channelOf(stored: StoredSession): ProtectedChannel {
    return ProtectedChannel.fromState(
      {
        suite: stored.suite,
        role: stored.role,
        secrets: stored.secrets,
        nextSend: 0n, // unused: send numbers come from the store
        window: { size: stored.windowSize, top: undefined, bits: new Uint8Array(Math.ceil(stored.windowSize / 8)) },
        sentUnits: 0,
        failedUnits: 0,
      },
      this.protection,
    );
  }

  private remember(view: EstablishedSession): void {
    if (this.cacheLimit === 0) return;
    this.cache.delete(view.id);
    if (this.cache.size >= this.cacheLimit) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(view.id, view);
  }

  /** The handshake completed in mode `exported`: the state goes to the store, the engine goes away. */
  private async promote(live: LiveSession, handshake: HandshakeInfo): Promise<EstablishedSession> {
    const channel = live.session.takeChannel();
    const state = { id: live.id, handshake, channel: channel.exportState(), establishedAt: Date.now() };
    let created: boolean;
    try {
      created = this.syncStore ? this.syncStore.createSync(state, this.sessionTtlMs) : await this.store.create(state, this.sessionTtlMs);
    } catch (err) {
      channel.destroy();
      this.endLive(live, 'failed');
      throw err;
    } finally {
      state.channel.secrets.fill(0);
    }
    // The id is 128 random bits: a collision means a broken random source or store.
    if (!created) {
      channel.destroy();
      this.endLive(live, 'failed');
      throw new AtlsError('INTERNAL', 'session id already in the store');
    }
    this.halfOpenIds.delete(live.id);
    this.established.admit(live.id, undefined, live.group);
    this.local.deleteSync(live.id); // releases the session object (its engine is already gone)
    const stored = this.syncStore?.loadSync(live.id);
    const view = new EstablishedSession(
      stored ?? { id: live.id, handshake, suite: channel.spec.iana, role: 'server', secrets: new Uint8Array(0), windowSize: state.channel.window.size, establishedAt: state.establishedAt },
      channel,
    );
    // An in-process store keeps no view of a session that has not been asked for since its
    // handshake (find() makes one): an idle session costs its stored record only.
    if (!stored) this.remember(view);
    return view;
  }

  private judge(s: EstablishedSession, sequence: number, plaintext: Uint8Array, r: CommitResult): AcceptedMessage | Promise<AcceptedMessage> {
    if (r.verdict === 'fresh') {
      const limit = s.channel.confidentialityLimit;
      if (r.sentUnits > limit || !Number.isSafeInteger(r.sendSeq)) {
        // RFC 8446 §5.5 / RFC 9147 §4.5.3: stop using the key at its confidentiality limit.
        return this.endWith(s, new AtlsError('KEY_LIMIT_REACHED', `confidentiality limit of ${limit} reached; run a new handshake`));
      }
      return { plaintext, sendSeq: r.sendSeq };
    }
    if (r.verdict === 'missing') {
      s.gone = true;
      this.cache.delete(s.id);
      this.established.delete(s.id);
      throw gone();
    }
    if (r.verdict === 'replayed') throw new AtlsError('REPLAYED', `protected message ${sequence} was already received`, { source: 'remote' });
    throw new AtlsError('TOO_OLD', `protected message ${sequence} is older than the replay window of ${s.stored.windowSize}`, { source: 'remote' });
  }

  /** A message failed authentication: its units go to the store's integrity count; at the limit the session ends. */
  private chargeFailure(s: EstablishedSession, length: number, err: AtlsError): Promise<never> | never {
    const units = { failed: ProtectedChannel.unitsOf(length) };
    const check = (c: { failedUnits: number } | undefined): never => {
      if (c === undefined) {
        s.gone = true;
        this.cache.delete(s.id);
        this.established.delete(s.id);
        throw gone();
      }
      const limit = s.channel.usageLimits.integrity;
      if (err.code === 'KEY_LIMIT_REACHED' || c.failedUnits >= limit) {
        // RFC 9147 §4.5.3: stop using the key once the integrity limit is reached.
        void this.end(s, 'failed');
        throw new AtlsError('KEY_LIMIT_REACHED', `integrity limit of ${limit} failed decryptions reached; run a new handshake`);
      }
      throw err;
    };
    if (this.syncStore) return check(this.syncStore.chargeSync(s.id, units));
    return this.store.charge(s.id, units).then(check);
  }

  private endWith(s: EstablishedSession, err: AtlsError): Promise<never> {
    return this.end(s, 'failed').then(() => {
      throw err;
    });
  }

  private endLive(live: LiveSession, reason: EndReason): void {
    this.halfOpenIds.delete(live.id);
    if (this.local.getSync(live.id) === live) {
      this.local.deleteSync(live.id); // onRemove: 'deleted' destroys the session
      this.ended(live.id, reason);
    } else live.session.destroy();
  }

  /**
   * Sessions counted against `maxSessions`: the in-memory tables, or with a
   * shared store (whose size this process cannot see) the half-open
   * handshakes and the established sessions this process started.
   */
  private held(): number {
    return this.store.size === undefined ? this.local.size + this.established.size : this.size;
  }

  /**
   * At the session cap: established sessions give way, the heaviest peer's
   * least recently used first (`FairShareLedger.giveWay`), until there is
   * room; LIMIT_REACHED when none can. A few at most per admission: each
   * one frees a slot unless the books disagree, which must not turn into
   * clearing the table.
   */
  private makeRoom(peer: string): void {
    this.limitEvent({ type: 'limit', limit: 'sessions', peer });
    for (let i = 0; i < 4 && this.held() >= this.maxSessions; i++) {
      const d = this.established.giveWay(peer);
      if (!d) break;
      if (d.reason === 'pressure') {
        this.evict(d.key);
        this.limitEvent({ type: 'evicted', what: 'session', peer: d.peer, reason: 'sessions' });
      }
    }
    if (this.held() < this.maxSessions) return;
    this.limitEvent({ type: 'refused', what: 'session', peer, reason: 'sessions' });
    throw new AtlsError('LIMIT_REACHED', `session limit (${this.maxSessions}) reached`, { retryAfter: 1 });
  }

  /** Ends an established session that gave way under pressure. */
  private evict(id: string): void {
    const live = this.local.getSync(id);
    if (live) {
      this.endLive(live, 'evicted');
      return;
    }
    this.cache.delete(id);
    if (this.syncStore) {
      if (this.syncStore.deleteSync(id)) this.ended(id, 'evicted');
      return;
    }
    this.store.delete(id).then(
      (removed) => removed && this.ended(id, 'evicted'),
      () => undefined, // unreachable store: the session ages out there
    );
  }

  private limitEvent(e: EndpointLimitEvent): void {
    try {
      this.onLimit?.(e);
    } catch {
      // A logging hook must not break the registry.
    }
  }

  private ended(id: string, reason: EndReason): void {
    this.established.delete(id);
    try {
      this.onEnd?.(id, reason);
    } catch {
      // A logging hook must not break the registry.
    }
  }
}
