/**
 * Session stores for the bindings: the interface, the in-memory default, and session ids.
 *
 * @example
 * ```ts
 * import { MemoryStore, newSessionId, parseSessionId } from './store/index.js';
 * ```
 * @module
 */
export { isSyncStore, type SessionStore, type SyncSessionStore } from './types.js';
export { MemoryStore, type MemoryStoreOptions, type RemoveReason } from './memory.js';
export { isValidRoutingTag, newSessionId, parseSessionId, SESSION_ID_RANDOM_BYTES, type ParsedSessionId } from './ids.js';
