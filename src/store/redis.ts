/**
 * A {@link SessionStateStore} in Redis (`atls serve --store redis://HOST:PORT[/DB]`),
 * through ioredis: every process pointed at one Redis serves every
 * established architecture-(b) session.
 *
 * Layout: one hash per session, `atls:s:<id>`, with the PEXPIRE of the session:
 * - `st`: the state as written at establishment (src/store/state-codec.ts JSON),
 *   wrapped with the store key when one is given (src/store/key-wrap.ts);
 *   never changed afterwards;
 * - `ns` next send number, `su`/`fu` usage units, `ws` window size, `wh`/`wl`/`wb`
 *   the replay window (src/store/redis-scripts.ts), changed only by Lua scripts.
 *
 * Round trips: a protected request costs one EVALSHA (commit). The endpoint
 * core caches the immutable part per process after the first load (it never
 * changes), so that load happens once per session and process.
 *
 * Redis down, restarting or too slow: every call rejects at once with
 * STORE_UNAVAILABLE (no offline queue, no resend after a reconnect: a resent
 * commit would judge its own number a replay); ioredis reconnects in the
 * background. A Redis that lost its data makes sessions `missing`.
 *
 * @example
 * ```ts
 * const store = new RedisStateStore({ url: 'redis://127.0.0.1:6379/0', storeKey: StoreKey.fromFile('store.key') });
 * await store.ready(2000);
 * const r = await store.commit(id, 7, 3_600_000);
 * ```
 * @module
 */
import { Redis } from 'ioredis';
import { AtlsError } from '../errors.js';
import type { ReplayWindowState } from '../protect/index.js';
import type { StoreKey } from './key-wrap.js';
import { CHARGE_SCRIPT, COMMIT_SCRIPT, CREATE_SCRIPT, RESERVE_SCRIPT, type RedisScript } from './redis-scripts.js';
import { parseRedisUrl } from './redis-url.js';
import { decodeSessionState, encodeSessionState } from './state-codec.js';
import {
  checkReserveCount,
  storeUnavailable,
  storedSessionOf,
  type CommitResult,
  type ReserveResult,
  type SessionState,
  type SessionStateStore,
  type StoredSession,
  type UsageCounters,
} from './state-store.js';

/** Options of {@link RedisStateStore}. */
export interface RedisStateStoreOptions {
  /** `redis://[[user]:password@]HOST[:PORT][/DB]` (see {@link parseRedisUrl}). */
  url: string;
  /** Wrap records at rest with this key-encryption key (`--store-key`). */
  storeKey?: StoreKey;
  /** Prefix of the session keys (default `atls:s:`), to share one Redis database with other data. */
  keyPrefix?: string;
  /** A command not answered in this time fails with STORE_UNAVAILABLE (default 2000 ms). */
  commandTimeoutMs?: number;
  /** Connection news (ready, error, end), e.g. for logs. Must not throw. */
  onEvent?: (event: { type: 'ready' } | { type: 'error'; error: Error } | { type: 'end' }) => void;
}

/** Redis replies that mean "not now" rather than "wrong": the store is unavailable, not broken. */
const TRANSIENT_REPLY = /^(LOADING|READONLY|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|OOM|NOREPLICAS)\b/;

/** The AtlsError for a failed Redis call: STORE_UNAVAILABLE unless Redis judged the command itself wrong. */
function redisError(e: unknown, what: string): AtlsError {
  if (e instanceof AtlsError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  if (err.name === 'ReplyError' && !TRANSIENT_REPLY.test(err.message)) {
    return new AtlsError('INTERNAL', `redis refused ${what}: ${err.message}`, { cause: err });
  }
  return storeUnavailable(`session store (redis) unavailable during ${what}: ${err.message}`, 1, err);
}

/** Smallest ring (a power of two, at least 32 as in ReplayWindow) that holds a window of `size`. */
function ringBits(size: number): number {
  let cap = 32;
  while (cap < size) cap *= 2;
  return cap;
}

/** A window as the contract carries it (bit i = top - i) -> the ring the Lua script keeps (bit = seq mod capacity). */
export function windowToRing(w: ReplayWindowState): { hi: string; lo: string; ring: Buffer } {
  const cap = ringBits(w.size);
  const ring = Buffer.alloc(cap / 8);
  if (w.top === undefined) return { hi: '', lo: '', ring };
  for (let i = 0; i < w.size && BigInt(i) <= w.top; i++) {
    if (((w.bits[i >>> 3]! >>> (i & 7)) & 1) === 0) continue;
    const slot = Number((w.top - BigInt(i)) % BigInt(cap));
    ring[slot >>> 3]! |= 1 << (slot & 7);
  }
  return { hi: String(Number(w.top >> 32n)), lo: String(Number(w.top & 0xffff_ffffn)), ring };
}

/** The inverse of {@link windowToRing}. */
export function ringToWindow(size: number, hi: string | undefined, lo: string | undefined, ring: Buffer): ReplayWindowState {
  const bits = new Uint8Array(Math.ceil(size / 8));
  if (hi === undefined || lo === undefined) return { size, top: undefined, bits };
  const top = (BigInt(hi) << 32n) | BigInt(lo);
  const cap = ringBits(size);
  for (let i = 0; i < size && BigInt(i) <= top; i++) {
    const slot = Number((top - BigInt(i)) % BigInt(cap));
    if (((ring[slot >>> 3] ?? 0) >>> (slot & 7)) & 1) bits[i >>> 3]! |= 1 << (i & 7);
  }
  return { size, top, bits };
}

const MISSING: CommitResult = Object.freeze({ verdict: 'missing', sendSeq: -1, sentUnits: 0, failedUnits: 0 });
const VERDICTS = ['fresh', 'replayed', 'too-old'] as const;
const TWO32 = 0x1_0000_0000;

/** Redis-backed {@link SessionStateStore}. */
export class RedisStateStore implements SessionStateStore {
  /** The connection (exposed for tests and the benchmark's round-trip count). */
  readonly redis: Redis;
  private readonly prefix: string;
  private readonly storeKey: StoreKey | undefined;
  private closed = false;

  constructor(options: RedisStateStoreOptions) {
    const addr = parseRedisUrl(options.url);
    this.prefix = options.keyPrefix ?? 'atls:s:';
    this.storeKey = options.storeKey;
    const tell = options.onEvent;
    const u = new URL(options.url);
    this.redis = new Redis({
      host: addr.host,
      port: addr.port,
      db: addr.db,
      ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
      ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
      // Fail fast instead of queueing while disconnected: the client gets a 503 now, not a timeout later.
      enableOfflineQueue: false,
      // A commit resent after a reconnect would find its own number recorded and answer REPLAYED.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2000,
      connectTimeout: options.commandTimeoutMs ?? 2000,
      // Reconnect forever, at most once a second.
      retryStrategy: (times) => Math.min(50 * times, 1000),
    });
    // Without a listener ioredis prints every connection error; with one, they reach onEvent only.
    this.redis.on('error', (error: Error) => tell?.({ type: 'error', error }));
    this.redis.on('ready', () => tell?.({ type: 'ready' }));
    this.redis.on('end', () => tell?.({ type: 'end' }));
  }

  /** Resolves once connected, or after `timeoutMs` anyway (calls answer STORE_UNAVAILABLE until Redis is there). True when connected. */
  async ready(timeoutMs = 2000): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.redis.once('ready', onReady);
    });
  }

  private key(id: string): string {
    return this.prefix + id;
  }

  private async run(script: RedisScript, id: string, args: Array<string | number | Buffer>, what: string): Promise<unknown> {
    if (this.closed) throw new AtlsError('CLOSED', 'session store is closed');
    try {
      return await script.run(this.redis, [this.key(id)], args);
    } catch (e) {
      throw redisError(e, what);
    }
  }

  async create(state: SessionState, ttlMs: number): Promise<boolean> {
    const c = state.channel;
    if (typeof c.nextSend !== 'bigint' || c.nextSend < 0n || c.nextSend > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new AtlsError('INVALID_ARGUMENT', 'nextSend must be a bigint in 0..2^53-1');
    }
    const text = encodeSessionState(state);
    const record = this.storeKey ? Buffer.from(this.storeKey.wrap(state.id, new TextEncoder().encode(text))) : text;
    const w = windowToRing(c.window);
    const created = await this.run(
      CREATE_SCRIPT,
      state.id,
      [record, String(c.nextSend), c.sentUnits, c.failedUnits, c.window.size, w.hi, w.lo, w.ring, Math.max(1, Math.ceil(ttlMs))],
      'create',
    );
    return Number(created) === 1;
  }

  /** The stored record -> state (unwrapped, decoded); a record that does not decode is this deployment's fault: INTERNAL. */
  private decode(id: string, raw: Buffer): SessionState {
    try {
      const text = this.storeKey ? new TextDecoder().decode(this.storeKey.unwrap(id, raw)) : raw.toString('utf8');
      if (!this.storeKey && raw[0] !== 0x7b) {
        throw new AtlsError('INTERNAL', `session record of ${id} is wrapped: give the same --store-key as the process that wrote it`);
      }
      const state = decodeSessionState(text);
      if (state.id !== id) throw new AtlsError('INTERNAL', `session record under ${id} names another session`);
      return state;
    } catch (e) {
      if (e instanceof AtlsError && e.code === 'INTERNAL') throw e;
      throw new AtlsError('INTERNAL', `session record of ${id} is damaged: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
  }

  async load(id: string): Promise<StoredSession | undefined> {
    if (this.closed) throw new AtlsError('CLOSED', 'session store is closed');
    let raw: Buffer | null;
    try {
      raw = await this.redis.hgetBuffer(this.key(id), 'st');
    } catch (e) {
      throw redisError(e, 'load');
    }
    if (raw === null) return undefined;
    return storedSessionOf(this.decode(id, raw));
  }

  async commit(id: string, receivedSeq: number, ttlMs: number): Promise<CommitResult> {
    if (!Number.isSafeInteger(receivedSeq) || receivedSeq < 0) {
      throw new AtlsError('INVALID_ARGUMENT', `sequence number ${receivedSeq} is not a non-negative safe integer`);
    }
    const hi = Math.floor(receivedSeq / TWO32);
    const r = (await this.run(COMMIT_SCRIPT, id, [hi, receivedSeq - hi * TWO32, Math.max(1, Math.ceil(ttlMs))], 'commit')) as number[];
    if (r[0] === -1) return MISSING;
    return { verdict: VERDICTS[r[0]!]!, sendSeq: r[1]!, sentUnits: r[2]!, failedUnits: r[3]! };
  }

  async charge(id: string, units: { sent?: number; failed?: number }): Promise<UsageCounters | undefined> {
    const r = (await this.run(CHARGE_SCRIPT, id, [units.sent ?? 0, units.failed ?? 0], 'charge')) as number[] | null;
    if (r === null) return undefined;
    return { sentUnits: r[0]!, failedUnits: r[1]! };
  }

  async reserve(id: string, count: number, ttlMs: number): Promise<ReserveResult | undefined> {
    checkReserveCount(count);
    const r = (await this.run(RESERVE_SCRIPT, id, [count, Math.max(1, Math.ceil(ttlMs))], 'reserve')) as number[] | null;
    if (r === null) return undefined;
    return { first: r[0]!, sentUnits: r[1]!, failedUnits: r[2]! };
  }

  async snapshot(id: string): Promise<SessionState | undefined> {
    if (this.closed) throw new AtlsError('CLOSED', 'session store is closed');
    let h: Record<string, Buffer>;
    try {
      h = await this.redis.hgetallBuffer(this.key(id));
    } catch (e) {
      throw redisError(e, 'snapshot');
    }
    if (!h.st) return undefined;
    const state = this.decode(id, h.st);
    const size = Number(h.ws?.toString());
    return {
      ...state,
      channel: {
        ...state.channel,
        nextSend: BigInt(h.ns?.toString() ?? '0'),
        sentUnits: Number(h.su?.toString()),
        failedUnits: Number(h.fu?.toString()),
        window: ringToWindow(size, h.wh?.toString(), h.wl?.toString(), h.wb ?? Buffer.alloc(0)),
      },
    };
  }

  async delete(id: string): Promise<boolean> {
    if (this.closed) throw new AtlsError('CLOSED', 'session store is closed');
    try {
      return (await this.redis.del(this.key(id))) === 1;
    } catch (e) {
      throw redisError(e, 'delete');
    }
  }

  /** Sessions held cannot be told cheaply (the database may hold other keys). */
  get size(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.redis.disconnect();
  }
}
