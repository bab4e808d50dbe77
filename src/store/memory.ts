/**
 * The default, in-process session store: a Map plus a min-heap ordered by
 * expiry time, so expiry and eviction are O(log n) and never scan the store.
 *
 * Eviction policy: when the store is full, a new entry first pushes out
 * expired ones, then the entry that would expire soonest (ties: the oldest
 * write). A write never fails. Compared with least-recently-used, this keeps
 * long-lived established sessions when a flood of short-lived half-open
 * handshakes fills the store: those expire soonest and so evict one another.
 * Setting an entry again extends its life, so active sessions that the binding
 * refreshes move to the back of the line, much as with LRU.
 *
 * @example
 * ```ts
 * const store = new MemoryStore<Session>({ maxEntries: 50_000, onRemove: (id, s, why) => s.close() });
 * store.setSync(id, session, 30_000);
 * const s = store.getSync(id);
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { SyncSessionStore } from './types.js';

/** Why an entry left the store, as told to {@link MemoryStoreOptions.onRemove}. */
export type RemoveReason = 'expired' | 'evicted' | 'deleted' | 'replaced' | 'closed';

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions<V> {
  /** Entries kept at most; default 10 000. */
  maxEntries?: number;
  /** Period of the background sweep of expired entries in ms; 0 turns it off; default 30 000. The timer is unref'd. */
  sweepIntervalMs?: number;
  /** Clock in ms; default `Date.now`. Tests inject their own. */
  now?: () => number;
  /**
   * Called when a value leaves the store other than by being read, e.g. to
   * release a TLS engine. Must not throw (exceptions are swallowed, since it
   * may run from a timer). For 'replaced', only when the new value differs.
   */
  onRemove?: (id: string, value: V, reason: RemoveReason) => void;
}

interface Entry<V> {
  id: string;
  value: V;
  expiresAt: number;
  /** Write order, to break ties between equal expiry times. */
  seq: number;
  /** Position in the heap. */
  index: number;
}

/** In-memory {@link SyncSessionStore} with TTL expiry and a maximum size. */
export class MemoryStore<V> implements SyncSessionStore<V> {
  private readonly map = new Map<string, Entry<V>>();
  private readonly heap: Entry<V>[] = [];
  private seq = 0;
  private closed = false;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly onRemove: MemoryStoreOptions<V>['onRemove'];

  constructor(options: MemoryStoreOptions<V> = {}) {
    this.maxEntries = options.maxEntries ?? 10_000;
    if (!Number.isSafeInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new AtlsError('INVALID_ARGUMENT', 'maxEntries must be a positive integer');
    }
    this.now = options.now ?? Date.now;
    this.onRemove = options.onRemove;
    const every = options.sweepIntervalMs ?? 30_000;
    if (every > 0) {
      this.timer = setInterval(() => this.sweep(), every);
      this.timer.unref(); // never keep the process alive for housekeeping
    }
  }

  /** Live entries (expired ones are swept first). */
  get size(): number {
    this.sweep();
    return this.map.size;
  }

  getSync(id: string): V | undefined {
    this.open();
    const e = this.map.get(id);
    if (e === undefined) return undefined;
    if (e.expiresAt <= this.now()) {
      this.remove(e, 'expired'); // lazy expiry
      return undefined;
    }
    return e.value;
  }

  setSync(id: string, value: V, ttlMs: number): void {
    this.open();
    if (typeof id !== 'string') throw new AtlsError('INVALID_ARGUMENT', 'session id must be a string');
    if (typeof ttlMs !== 'number' || !Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new AtlsError('INVALID_ARGUMENT', `ttlMs must be a positive finite number, got ${String(ttlMs)}`);
    }
    const expiresAt = this.now() + ttlMs;
    const old = this.map.get(id);
    if (old !== undefined) {
      const previous = old.value;
      old.value = value;
      old.expiresAt = expiresAt;
      old.seq = this.seq++;
      this.fix(old.index);
      if (previous !== value) this.notify(id, previous, 'replaced');
      return;
    }
    if (this.map.size >= this.maxEntries) {
      this.sweep();
      while (this.map.size >= this.maxEntries) this.remove(this.heap[0]!, 'evicted');
    }
    const e: Entry<V> = { id, value, expiresAt, seq: this.seq++, index: this.heap.length };
    this.map.set(id, e);
    this.heap.push(e);
    this.up(e.index);
  }

  deleteSync(id: string): boolean {
    this.open();
    const e = this.map.get(id);
    if (e === undefined) return false;
    const live = e.expiresAt > this.now();
    this.remove(e, live ? 'deleted' : 'expired');
    return live;
  }

  async get(id: string): Promise<V | undefined> {
    return this.getSync(id);
  }

  async set(id: string, value: V, ttlMs: number): Promise<void> {
    this.setSync(id, value, ttlMs);
  }

  async delete(id: string): Promise<void> {
    this.deleteSync(id);
  }

  /** Removes every expired entry now; returns how many. Runs by itself on a timer. */
  sweep(): number {
    const now = this.now();
    let n = 0;
    while (this.heap.length > 0 && this.heap[0]!.expiresAt <= now) {
      this.remove(this.heap[0]!, 'expired');
      n++;
    }
    return n;
  }

  /** Stops the timer and drops every entry (reason 'closed'). Later calls throw `CLOSED`. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    const entries = [...this.map.values()];
    this.map.clear();
    this.heap.length = 0;
    for (const e of entries) this.notify(e.id, e.value, 'closed');
  }

  private open(): void {
    if (this.closed) throw new AtlsError('CLOSED', 'session store is closed');
  }

  private notify(id: string, value: V, reason: RemoveReason): void {
    if (!this.onRemove) return;
    try {
      this.onRemove(id, value, reason);
    } catch {
      // Documented: a throwing callback must not break the store or crash the sweep timer.
    }
  }

  private remove(e: Entry<V>, reason: RemoveReason): void {
    this.map.delete(e.id);
    const last = this.heap.pop()!;
    if (last !== e) {
      this.heap[e.index] = last;
      last.index = e.index;
      this.fix(last.index);
    }
    this.notify(e.id, e.value, reason);
  }

  // Binary min-heap on (expiresAt, seq).

  private less(a: Entry<V>, b: Entry<V>): boolean {
    return a.expiresAt < b.expiresAt || (a.expiresAt === b.expiresAt && a.seq < b.seq);
  }

  private swap(i: number, j: number): void {
    const a = this.heap[i]!;
    const b = this.heap[j]!;
    this.heap[i] = b;
    this.heap[j] = a;
    b.index = i;
    a.index = j;
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(this.heap[i]!, this.heap[parent]!)) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(i: number): void {
    const n = this.heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(this.heap[l]!, this.heap[m]!)) m = l;
      if (r < n && this.less(this.heap[r]!, this.heap[m]!)) m = r;
      if (m === i) return;
      this.swap(i, m);
      i = m;
    }
  }

  private fix(i: number): void {
    this.up(i);
    this.down(i);
  }
}
