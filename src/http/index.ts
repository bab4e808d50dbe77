/**
 * The HTTP binding of ATLS (draft §9, docs/protocol.md §5): a Web-standard
 * server handler, a `node:http` adapter, Hono middleware, and a
 * fetch-compatible client.
 *
 * @example
 * ```ts
 * import { createAtlsServer, createAtlsClient } from 'atls/http';
 * createAtlsServer({ tls: { cert, key }, app: () => new Response('hi') }).listen(8080);
 * const res = await createAtlsClient({ tls: { ca } }).fetch('http://localhost:8080/');
 * ```
 * @module
 */
export * from './constants.js';
export { createAtlsHandler } from './server.js';
export type {
  AtlsApp,
  AtlsAppContext,
  AtlsHandler,
  AtlsHandlerLimits,
  AtlsHandlerOptions,
  AtlsHandlerStats,
  AtlsRawApp,
  AtlsRawReply,
  AtlsRawRequest,
  AtlsLimitEvent,
  AtlsServerEvent,
} from './server.js';
export { limitConnections, httpServerTimeouts, DEFAULT_CONNECTION_LIMITS } from './connections.js';
export type { ConnectionEvent, ConnectionLimits, ConnectionStats } from './connections.js';
export type { AtlsPeer } from './peer.js';
export { MemoryStateStore, storeUnavailable } from '../store/index.js';
export type { CommitResult, SessionStateStore, StoredSession, SyncSessionStateStore } from '../store/index.js';
export { ENDPOINT_DEFAULTS } from '../endpoint/defaults.js';
export { toNodeListener, createAtlsServer, atlsNodeListener } from './node.js';
export type { AtlsNodeListenerOptions, AtlsNodeServer, AtlsServerOptions, ConnectionInfo, NodeListenerOptions, WebHandler } from './node.js';
export { atls } from './hono.js';
export type { AtlsMiddleware, AtlsMiddlewareOptions, AtlsVariables, FetchApp } from './hono.js';
export { atlsFetch, createAtlsClient } from './client.js';
export type {
  AtlsClient,
  AtlsClientEvent,
  AtlsClientOptions,
  AtlsClientSessionInfo,
  AtlsClientTls,
  AtlsFlightEvent,
  AtlsPolicy,
  AtlsRequestInit,
} from './client.js';
export { observeTransport, parseTransportReport, transportReportFields, HEADER_TRANSPORT_CHAIN, HEADER_TRANSPORT_VERIFIED } from './transport-report.js';
export type { TransportObservation, TransportReport } from './transport-report.js';
export { noProxyMatches, proxyFor } from './transport.js';
export type { AtlsTransportOptions, ProxySettings } from './transport.js';
export { echoApp, echoRawApp, upstreamApp, forwardHandler, HEADER_UPSTREAM_INTERCEPTED, HEADER_UPSTREAM_ISSUER } from './apps.js';
export type { ForwardOptions, UpstreamOptions } from './apps.js';
