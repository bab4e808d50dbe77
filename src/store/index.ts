/**
 * Session stores: the state store of established architecture-(b) sessions
 * (the contract, the in-memory default, the JSON codec), the TTL map the
 * endpoint's local table uses, and session ids.
 *
 * @example
 * ```ts
 * import { MemoryStateStore, newSessionId, parseSessionId } from './store/index.js';
 * ```
 * @module
 */
export { isSyncStore, type SessionStore, type SyncSessionStore } from './types.js';
export { MemoryStore, type MemoryStoreOptions, type RemoveReason } from './memory.js';
export {
  isValidRoutingTag,
  MAX_ID_OWNERS,
  newSessionId,
  isSessionId,
  parseSessionId,
  sessionOwner,
  SESSION_ID_RANDOM_BYTES,
  type IdOwner,
  type ParsedSessionId,
} from './ids.js';
export {
  checkReserveCount,
  isSyncStateStore,
  MAX_RESERVE,
  storeUnavailable,
  storedSessionOf,
  type CommitResult,
  type CommitVerdict,
  type ReserveResult,
  type SessionState,
  type SessionStateStore,
  type StoredSession,
  type SyncSessionStateStore,
  type UsageCounters,
} from './state-store.js';
export { MemoryStateStore, type MemoryStateStoreOptions } from './memory-state.js';
export { decodeSessionState, encodeSessionState, SESSION_STATE_FORMAT } from './state-codec.js';
