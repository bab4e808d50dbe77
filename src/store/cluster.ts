/**
 * The session state store of `atls serve --workers N` without `--store`: one
 * {@link MemoryStateStore} held by the cluster's primary process, reached by
 * every worker over IPC with the same contract as Redis. The primary runs
 * each call to completion before the next (one JS thread), so commits are
 * atomic across workers exactly as a Lua script is in Redis.
 *
 * A protected request costs one IPC round trip, the commit (the endpoint
 * core caches each session's immutable part per process after one load).
 *
 * @example
 * ```ts
 * // primary
 * const shared = new MemoryStateStore();
 * const peer = new IpcPeer((m) => worker.send(m), stateStoreHandlers(shared));
 * // worker
 * const store = new IpcStateStore(new IpcPeer((m) => process.send!(m), {}));
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { IpcHandler, IpcPeer } from './ipc.js';
import type { CommitResult, ReserveResult, SessionState, SessionStateStore, StoredSession, UsageCounters } from './state-store.js';

/** Names of the store's calls on the IPC channel. */
const CALL = {
  create: 'store.create',
  load: 'store.load',
  commit: 'store.commit',
  charge: 'store.charge',
  reserve: 'store.reserve',
  snapshot: 'store.snapshot',
  delete: 'store.delete',
} as const;

function field<T>(payload: unknown, name: string, check: (v: unknown) => v is T): T {
  const v = (payload as Record<string, unknown> | null)?.[name];
  if (!check(v)) throw new AtlsError('INVALID_ARGUMENT', `IPC store call: bad ${name}`);
  return v;
}
const isString = (v: unknown): v is string => typeof v === 'string';
const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/** The primary's side: answers the workers' store calls from `store`. */
export function stateStoreHandlers(store: SessionStateStore): Record<string, IpcHandler> {
  return {
    [CALL.create]: (p) => store.create(field(p, 'state', isObject) as unknown as SessionState, field(p, 'ttlMs', isNumber)),
    [CALL.load]: (p) => store.load(field(p, 'id', isString)),
    [CALL.commit]: (p) => store.commit(field(p, 'id', isString), field(p, 'seq', isNumber), field(p, 'ttlMs', isNumber)),
    [CALL.charge]: (p) => store.charge(field(p, 'id', isString), field(p, 'units', isObject) as { sent?: number; failed?: number }),
    [CALL.reserve]: (p) => store.reserve(field(p, 'id', isString), field(p, 'count', isNumber), field(p, 'ttlMs', isNumber)),
    [CALL.snapshot]: (p) => store.snapshot(field(p, 'id', isString)),
    [CALL.delete]: (p) => store.delete(field(p, 'id', isString)),
  };
}

/** A worker's {@link SessionStateStore}: every call goes to the primary's store over IPC. */
export class IpcStateStore implements SessionStateStore {
  constructor(private readonly primary: IpcPeer) {}

  async create(state: SessionState, ttlMs: number): Promise<boolean> {
    return (await this.primary.call(CALL.create, { state, ttlMs })) as boolean;
  }

  async load(id: string): Promise<StoredSession | undefined> {
    return (await this.primary.call(CALL.load, { id })) as StoredSession | undefined;
  }

  async commit(id: string, receivedSeq: number, ttlMs: number): Promise<CommitResult> {
    return (await this.primary.call(CALL.commit, { id, seq: receivedSeq, ttlMs })) as CommitResult;
  }

  async charge(id: string, units: { sent?: number; failed?: number }): Promise<UsageCounters | undefined> {
    return (await this.primary.call(CALL.charge, { id, units })) as UsageCounters | undefined;
  }

  async reserve(id: string, count: number, ttlMs: number): Promise<ReserveResult | undefined> {
    return (await this.primary.call(CALL.reserve, { id, count, ttlMs })) as ReserveResult | undefined;
  }

  async snapshot(id: string): Promise<SessionState | undefined> {
    return (await this.primary.call(CALL.snapshot, { id })) as SessionState | undefined;
  }

  async delete(id: string): Promise<boolean> {
    return (await this.primary.call(CALL.delete, { id })) as boolean;
  }

  /** Held by the primary: not known here. */
  get size(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    // The primary's store outlives any one worker.
  }
}
