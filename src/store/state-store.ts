/**
 * The session state store: where established architecture-(b) sessions live
 * as plain data, so that any process sharing the store can answer them.
 *
 * What a stored session is (docs/protocol.md §5.9, decisions.md):
 * - an immutable part, written once when the handshake completes: the id, the
 *   AEAD suite, the keys and IVs of both directions, the replay window's size
 *   and a summary of the peer (the serialisable {@link HandshakeInfo}). A
 *   process may cache it for as long as the session lives;
 * - mutable counters, changed only by {@link SessionStateStore.commit} and
 *   {@link SessionStateStore.charge}: the next send sequence number, the
 *   receive replay window (top + bitmap) and the AEAD usage counters.
 *
 * What never goes in a store: half-open handshakes and records-mode (a)
 * sessions. Both hold a live TLS engine, which cannot be serialised or moved
 * to another process; they stay in the local table of the process that
 * created them (route their flights there: the routing tag).
 *
 * The hot path of one protected request is: open the message with the cached
 * keys (authentication FIRST, so a forger cannot burn window slots), then ONE
 * atomic {@link SessionStateStore.commit}, which marks the window, reserves
 * the send sequence number of the response and refreshes the TTL, then seal
 * the response under that number.
 *
 * Sequence numbers are JS safe integers here (below 2^53): the AEAD usage
 * limits end a key long before (RFC 8446 §5.5), and a Lua or SQL store keeps
 * them exactly as doubles.
 *
 * @example
 * ```ts
 * const stored = isSyncStateStore(store) ? store.loadSync(id) : await store.load(id);
 * if (!stored) return gone();
 * const { sequence, plaintext } = channel.authenticate(body);   // keys cached per process
 * const r = await store.commit(id, sequence, ttlMs);
 * if (r.verdict !== 'fresh') throw verdictError(r.verdict, sequence); // REPLAYED, TOO_OLD, or gone
 * return channel.sealAt(r.sendSeq, await app(plaintext));
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { HandshakeInfo } from '../engines/types.js';
import type { ProtectedChannelState } from '../protect/index.js';

/**
 * The whole state of one established architecture-(b) session, as created
 * once at establishment (and as {@link SessionStateStore.snapshot} returns it).
 * Plain data: `structuredClone`-able; {@link encodeSessionState} makes JSON of it.
 * It holds the session's keys: whoever reads it can read and forge the session.
 */
export interface SessionState {
  /** The session id (src/store/ids.ts), the store's key. */
  id: string;
  /** What the handshake established: version, suite, ALPN, SNI, the peer's certificates or PSK identity, resumption. */
  handshake: HandshakeInfo;
  /** Keys, IVs, next send number, replay window, usage counters (role `server` in a server's store). */
  channel: ProtectedChannelState;
  /** When the handshake completed, ms since the epoch. */
  establishedAt: number;
}

/** The immutable part of a stored session: what a process caches to open and seal its messages. */
export interface StoredSession {
  id: string;
  handshake: HandshakeInfo;
  /** IANA cipher suite name (`aeadForSuite`). */
  suite: string;
  role: 'client' | 'server';
  /** send key | receive key | send IV | receive IV, as in {@link ProtectedChannelState.secrets}. */
  secrets: Uint8Array;
  /** Size of the shared receive replay window. */
  windowSize: number;
  establishedAt: number;
}

/**
 * The store's verdict on a received sequence number:
 * - `fresh`: first time seen and inside the window: recorded, a send number reserved;
 * - `replayed`: already recorded (by this process or any other);
 * - `too-old`: left of the window (RFC 4303 §3.4.3);
 * - `missing`: no such session (never created, expired, deleted, or the store lost it).
 */
export type CommitVerdict = 'fresh' | 'replayed' | 'too-old' | 'missing';

/** What {@link SessionStateStore.commit} returns. */
export interface CommitResult {
  verdict: CommitVerdict;
  /** For `fresh`: the sequence number reserved for the response, never handed out again under this key. Otherwise -1. */
  sendSeq: number;
  /** Confidentiality units charged so far, including 1 for the number just reserved. */
  sentUnits: number;
  /** Integrity units of failed authentications so far. */
  failedUnits: number;
}

/** What {@link SessionStateStore.reserve} returns: the first of the numbers reserved, and the counters after it. */
export interface ReserveResult {
  /** The first reserved send number; the reservation is `first .. first + count - 1`, never handed out again under this key. */
  first: number;
  /** Confidentiality units charged so far, including the `count` just reserved. */
  sentUnits: number;
  failedUnits: number;
}

/** Most send numbers one {@link SessionStateStore.reserve} call takes. */
export const MAX_RESERVE = 65_536;

/** Usage counters after {@link SessionStateStore.charge}. */
export interface UsageCounters {
  sentUnits: number;
  failedUnits: number;
}

/**
 * A shared store of established architecture-(b) sessions. Every method is
 * atomic with respect to every other call on the same id, from any process.
 * A store that cannot reach its backend rejects with {@link storeUnavailable}
 * (AtlsError STORE_UNAVAILABLE: HTTP 503 + Retry-After, CoAP 5.03 + Max-Age),
 * never with anything else; a session it lost is simply `missing`/undefined
 * (the client gets the usual 410 / 4.04 and handshakes again).
 */
export interface SessionStateStore {
  /**
   * Writes a new session, expiring `ttlMs` from now. Returns false, changing
   * nothing, when the id exists: an established session is never replaced.
   */
  create(state: SessionState, ttlMs: number): Promise<boolean>;
  /** The immutable part, or undefined when missing or expired. Does not refresh the TTL. */
  load(id: string): Promise<StoredSession | undefined>;
  /**
   * The one call per protected request, atomic: judges `receivedSeq` against
   * the shared replay window; when `fresh`, records it, reserves the next send
   * sequence number (and charges it 1 confidentiality unit) and refreshes the
   * TTL to `ttlMs`. Otherwise changes nothing.
   */
  commit(id: string, receivedSeq: number, ttlMs: number): Promise<CommitResult>;
  /**
   * Adds usage the commit could not know: `sent` extra confidentiality units
   * of a response larger than one unit (16 KiB), `failed` integrity units of a
   * message that failed authentication. Undefined when missing.
   */
  charge(id: string, units: { sent?: number; failed?: number }): Promise<UsageCounters | undefined>;
  /**
   * Atomic: reserves `count` (1..{@link MAX_RESERVE}) consecutive send numbers
   * for the chunks of a streamed answer (docs/protocol.md §4.1, §7.3), charges
   * `count` confidentiality units (a chunk carries at most one unit) and
   * refreshes the TTL. Undefined when the session is missing.
   */
  reserve(id: string, count: number, ttlMs: number): Promise<ReserveResult | undefined>;
  /** The whole current state (immutable part and counters); for tests, migration and inspection. */
  snapshot(id: string): Promise<SessionState | undefined>;
  /** Removes the session; true when a live one was removed. */
  delete(id: string): Promise<boolean>;
  /** Sessions held, when the store can tell cheaply (the memory store can). */
  readonly size?: number | undefined;
  /** Releases connections and timers. Idempotent. */
  close(): Promise<void>;
}

/**
 * A store that also answers synchronously (in-process). The endpoint core
 * uses these methods so that an in-memory request costs no promise and no
 * turn of the event loop. Each must behave exactly as its async twin.
 */
export interface SyncSessionStateStore extends SessionStateStore {
  createSync(state: SessionState, ttlMs: number): boolean;
  loadSync(id: string): StoredSession | undefined;
  commitSync(id: string, receivedSeq: number, ttlMs: number): CommitResult;
  chargeSync(id: string, units: { sent?: number; failed?: number }): UsageCounters | undefined;
  reserveSync(id: string, count: number, ttlMs: number): ReserveResult | undefined;
  deleteSync(id: string): boolean;
}

/** True when `store` offers the synchronous methods of {@link SyncSessionStateStore}. */
export function isSyncStateStore(store: SessionStateStore): store is SyncSessionStateStore {
  const s = store as Partial<SyncSessionStateStore>;
  return typeof s.commitSync === 'function' && typeof s.loadSync === 'function' && typeof s.createSync === 'function';
}

/**
 * The error a store rejects with when its backend cannot be reached or
 * answered badly: STORE_UNAVAILABLE, mapped to HTTP 503 with Retry-After and
 * CoAP 5.03 with Max-Age (`retryAfter` seconds, default 1).
 *
 * @example
 * ```ts
 * redis.on('error', () => {}); // and in every call:
 * try { ... } catch (e) { throw storeUnavailable('redis: connection refused', 2, e); }
 * ```
 */
export function storeUnavailable(message: string, retryAfter = 1, cause?: unknown): AtlsError {
  return new AtlsError('STORE_UNAVAILABLE', message, { retryAfter, ...(cause === undefined ? {} : { cause }) });
}

/** Checks the `count` of a reservation: a positive integer up to {@link MAX_RESERVE} (INVALID_ARGUMENT). */
export function checkReserveCount(count: number): void {
  if (!Number.isSafeInteger(count) || count < 1 || count > MAX_RESERVE) {
    throw new AtlsError('INVALID_ARGUMENT', `a reservation takes 1..${MAX_RESERVE} send numbers, not ${count}`);
  }
}

/** The immutable part of a full state. */
export function storedSessionOf(state: SessionState): StoredSession {
  return {
    id: state.id,
    handshake: state.handshake,
    suite: state.channel.suite,
    role: state.channel.role,
    secrets: state.channel.secrets,
    windowSize: state.channel.window.size,
    establishedAt: state.establishedAt,
  };
}
