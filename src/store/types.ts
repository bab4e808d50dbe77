/**
 * The session store the HTTP and CoAP bindings keep their sessions in, keyed
 * by session id (see `ids.ts`). Asynchronous so that shared stores (Redis and
 * the like) fit behind the same interface.
 *
 * @example
 * ```ts
 * async function lookup(store: SessionStore<Session>, id: string) {
 *   if (isSyncStore(store)) return store.getSync(id); // no promise on the hot path
 *   return store.get(id);
 * }
 * ```
 * @module
 */

/** A key-value store with a time to live per entry. */
export interface SessionStore<V> {
  /** The value, or undefined when absent or expired. */
  get(id: string): Promise<V | undefined>;
  /** Inserts or replaces; the entry expires `ttlMs` milliseconds from now (setting again extends it). */
  set(id: string, value: V, ttlMs: number): Promise<void>;
  /** Removes the entry if present. */
  delete(id: string): Promise<void>;
  /** Releases timers and connections; optional. */
  close?(): void | Promise<void>;
}

/**
 * A store that can also answer synchronously (an in-process store). Bindings
 * use it to avoid a promise per request, and, more importantly, to look up and
 * update a session with no `await` in between, so two concurrent requests for
 * one session cannot interleave there.
 */
export interface SyncSessionStore<V> extends SessionStore<V> {
  getSync(id: string): V | undefined;
  setSync(id: string, value: V, ttlMs: number): void;
  /** True when a live (unexpired) entry was removed. */
  deleteSync(id: string): boolean;
}

/** True when `store` offers the synchronous methods of {@link SyncSessionStore}. */
export function isSyncStore<V>(store: SessionStore<V>): store is SyncSessionStore<V> {
  const s = store as Partial<SyncSessionStore<V>>;
  return typeof s.getSync === 'function' && typeof s.setSync === 'function' && typeof s.deleteSync === 'function';
}
