/**
 * ATLS over CoAP: codec, UDP endpoint, block-wise transfer, server, client
 * and CoAP-to-HTTP gateway (docs/protocol.md §6).
 *
 * @example
 * ```ts
 * import { AtlsCoapServer, echoCoapHandler, coapFetch } from './coap/index.js';
 * const server = await AtlsCoapServer.listen({ tls: { cert, key }, handler: echoCoapHandler, port: 5683 });
 * const res = await coapFetch(`${server.url}/echo`, { method: 'POST', payload: 'hi', tls: { ca } });
 * ```
 * @module
 */
export * from './constants.js';
export {
  decodeMessage,
  encodeMessage,
  getOption,
  getOptions,
  getUintOption,
  getPath,
  getQuery,
  getLocationPath,
  pathOptions,
  queryOptions,
  uintOption,
  stringOption,
  type CoapMessage,
  type CoapOption,
} from './packet.js';
export {
  BlockwiseServer,
  blockwiseRequest,
  blockOption,
  decodeBlock,
  encodeBlock,
  szxOf,
  blockSizeOf,
  type BlockValue,
  type BlockwiseServerOptions,
  type BlockwiseClientOptions,
  type CoapResponse,
  type Peer,
} from './blockwise.js';
export { CoapEndpoint, type EndpointOptions, type RequestOptions, type RequestHandler, type EndpointStats } from './endpoint.js';
export { encodeInner, decodeInner, type InnerMessage, type CoapRequest, type CoapReply } from './inner.js';
export {
  AtlsCoapServer,
  AtlsCoapHandler,
  echoCoapHandler,
  DEFAULT_ATLS_COAP_FORMATS,
  type AtlsCoapFormats,
  type AtlsCoapPeer,
  type AtlsCoapServerEvent,
  type AtlsCoapServerOptions,
  type CoapRequestHandler,
  type HttpApp,
} from './server.js';
export {
  AtlsCoapClient,
  coapFetch,
  request,
  type AtlsCoapClientOptions,
  type CoapClientRequest,
  type CoapClientResponse,
  type CoapFetchOptions,
} from './client.js';
export { AtlsCoapGateway, AtlsCoapGatewayHandler, coapCodeForStatus, type AtlsCoapGatewayOptions, type GatewayEvent, type FetchLike } from './gateway.js';
export { httpAppAsCoapHandler, coapCodeForHttpStatus, contentFormatForMediaType, mediaTypeForContentFormat } from './http-map.js';
