/**
 * The default {@link SessionStateStore}: established sessions in this
 * process's memory (a {@link MemoryStore} underneath: TTL heap, size cap).
 * It answers synchronously, so an in-memory protected request costs no
 * promise; its async methods wrap the same code. It is shared by nothing but
 * this process: several processes need a shared store (Redis) or routing.
 *
 * @example
 * ```ts
 * const store = new MemoryStateStore({ maxEntries: 100_000 });
 * store.createSync(state, 3_600_000);
 * const r = store.commitSync(state.id, 0, 3_600_000); // { verdict: 'fresh', sendSeq: 0, sentUnits: 1, failedUnits: 0 }
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { ReplayVerdict, ReplayWindow } from '../protect/index.js';
import { MemoryStore, type RemoveReason } from './memory.js';
import {
  checkReserveCount,
  storedSessionOf,
  type CommitResult,
  type ReserveResult,
  type SessionState,
  type StoredSession,
  type SyncSessionStateStore,
  type UsageCounters,
} from './state-store.js';

/** Options of {@link MemoryStateStore}. */
export interface MemoryStateStoreOptions {
  /** Sessions kept at most (the soonest to expire gives way beyond); default 100 000. */
  maxEntries?: number;
  /** Period of the expiry sweep in ms (0: off); default 30 000. */
  sweepIntervalMs?: number;
  /** Clock in ms; default `Date.now`. */
  now?: () => number;
  /** Told when a session leaves other than by {@link MemoryStateStore.delete} (expired, evicted, closed). Must not throw. */
  onRemove?: (id: string, reason: RemoveReason) => void;
}

/** One session: its immutable part and its counters. */
interface Slot {
  readonly stored: StoredSession;
  readonly window: ReplayWindow;
  nextSend: number;
  sentUnits: number;
  failedUnits: number;
}

const TWO32 = 0x1_0000_0000;
const MISSING: CommitResult = Object.freeze({ verdict: 'missing', sendSeq: -1, sentUnits: 0, failedUnits: 0 });

/** In-memory {@link SyncSessionStateStore}. */
export class MemoryStateStore implements SyncSessionStateStore {
  private readonly map: MemoryStore<Slot>;

  constructor(options: MemoryStateStoreOptions = {}) {
    const onRemove = options.onRemove;
    this.map = new MemoryStore<Slot>({
      maxEntries: options.maxEntries ?? 100_000,
      ...(options.sweepIntervalMs !== undefined ? { sweepIntervalMs: options.sweepIntervalMs } : {}),
      ...(options.now ? { now: options.now } : {}),
      onRemove: (id, slot, reason) => {
        slot.stored.secrets.fill(0);
        if (reason !== 'deleted' && reason !== 'replaced') onRemove?.(id, reason);
      },
    });
  }

  /** Live sessions. */
  get size(): number {
    return this.map.size;
  }

  createSync(state: SessionState, ttlMs: number): boolean {
    if (this.map.getSync(state.id) !== undefined) return false; // an established session is never replaced
    const c = state.channel;
    if (typeof c.nextSend !== 'bigint' || c.nextSend < 0n || c.nextSend > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new AtlsError('INVALID_ARGUMENT', 'nextSend must be a bigint in 0..2^53-1');
    }
    const window = ReplayWindow.fromState(c.window);
    const stored = storedSessionOf(state);
    // The store keeps its own copy of the secrets: the caller may zero its state.
    const slot: Slot = {
      stored: { ...stored, secrets: new Uint8Array(stored.secrets) },
      window,
      nextSend: Number(c.nextSend),
      sentUnits: c.sentUnits,
      failedUnits: c.failedUnits,
    };
    this.map.setSync(state.id, slot, ttlMs);
    return true;
  }

  loadSync(id: string): StoredSession | undefined {
    return this.map.getSync(id)?.stored;
  }

  commitSync(id: string, receivedSeq: number, ttlMs: number): CommitResult {
    const slot = this.map.getSync(id);
    if (slot === undefined) return MISSING;
    const hi = Math.floor(receivedSeq / TWO32);
    const lo = receivedSeq - hi * TWO32;
    const v = slot.window.test(hi, lo);
    if (v !== ReplayVerdict.Fresh) {
      return { verdict: v === ReplayVerdict.Replayed ? 'replayed' : 'too-old', sendSeq: -1, sentUnits: slot.sentUnits, failedUnits: slot.failedUnits };
    }
    slot.window.mark(hi, lo);
    const sendSeq = slot.nextSend++;
    slot.sentUnits++;
    this.map.setSync(id, slot, ttlMs); // refresh the TTL (same object: no 'replaced')
    return { verdict: 'fresh', sendSeq, sentUnits: slot.sentUnits, failedUnits: slot.failedUnits };
  }

  chargeSync(id: string, units: { sent?: number; failed?: number }): UsageCounters | undefined {
    const slot = this.map.getSync(id);
    if (slot === undefined) return undefined;
    slot.sentUnits += units.sent ?? 0;
    slot.failedUnits += units.failed ?? 0;
    return { sentUnits: slot.sentUnits, failedUnits: slot.failedUnits };
  }

  reserveSync(id: string, count: number, ttlMs: number): ReserveResult | undefined {
    checkReserveCount(count);
    const slot = this.map.getSync(id);
    if (slot === undefined) return undefined;
    const first = slot.nextSend;
    slot.nextSend += count;
    slot.sentUnits += count;
    this.map.setSync(id, slot, ttlMs); // refresh the TTL: a long stream keeps its session
    return { first, sentUnits: slot.sentUnits, failedUnits: slot.failedUnits };
  }

  deleteSync(id: string): boolean {
    return this.map.deleteSync(id);
  }

  /** The full state, with a copy of the secrets. */
  snapshotSync(id: string): SessionState | undefined {
    const slot = this.map.getSync(id);
    if (slot === undefined) return undefined;
    const s = slot.stored;
    return {
      id: s.id,
      handshake: s.handshake,
      establishedAt: s.establishedAt,
      channel: {
        suite: s.suite,
        role: s.role,
        secrets: new Uint8Array(s.secrets),
        nextSend: BigInt(slot.nextSend),
        window: slot.window.exportState(),
        sentUnits: slot.sentUnits,
        failedUnits: slot.failedUnits,
      },
    };
  }

  async create(state: SessionState, ttlMs: number): Promise<boolean> {
    return this.createSync(state, ttlMs);
  }

  async load(id: string): Promise<StoredSession | undefined> {
    return this.loadSync(id);
  }

  async commit(id: string, receivedSeq: number, ttlMs: number): Promise<CommitResult> {
    return this.commitSync(id, receivedSeq, ttlMs);
  }

  async charge(id: string, units: { sent?: number; failed?: number }): Promise<UsageCounters | undefined> {
    return this.chargeSync(id, units);
  }

  async reserve(id: string, count: number, ttlMs: number): Promise<ReserveResult | undefined> {
    return this.reserveSync(id, count, ttlMs);
  }

  async snapshot(id: string): Promise<SessionState | undefined> {
    return this.snapshotSync(id);
  }

  async delete(id: string): Promise<boolean> {
    return this.deleteSync(id);
  }

  /** Drops every session (their secrets zeroed) and stops the sweep timer. */
  async close(): Promise<void> {
    this.map.close();
  }
}
