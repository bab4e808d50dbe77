/**
 * The transport-neutral ATLS endpoint core: session registry, defaults, peer records.
 *
 * @example
 * ```ts
 * import { EndpointCore, ENDPOINT_DEFAULTS } from './endpoint/index.js';
 * ```
 * @module
 */
export {
  EndpointCore,
  EstablishedSession,
  LiveSession,
  type AcceptedMessage,
  type EndReason,
  type EndpointCoreOptions,
  type FlightStep,
  type FoundSession,
} from './core.js';
export { ENDPOINT_DEFAULTS } from './defaults.js';
export { peerFromHandshake, type AtlsPeer } from './peer.js';
