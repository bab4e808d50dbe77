/**
 * The authenticated ATLS peer as the inner application sees it (defined by
 * the endpoint core, src/endpoint/peer.ts; re-exported here for the HTTP binding).
 * @module
 */
export { peerFromHandshake, type AtlsPeer } from '../endpoint/peer.js';
