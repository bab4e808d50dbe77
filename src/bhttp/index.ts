/**
 * Binary HTTP (RFC 9292): the inner message format of the HTTP binding.
 *
 * @example
 * ```ts
 * import { encodeRequest, decodeRequest, bhttpToRequest } from './bhttp/index.js';
 * ```
 * @module
 */
export {
  BHTTP_DEFAULT_LIMITS,
  decodeMessage,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type BhttpEncodeOptions,
  type BhttpInformational,
  type BhttpLimits,
  type BhttpMessage,
  type BhttpRequest,
  type BhttpRequestInit,
  type BhttpResponse,
  type BhttpResponseInit,
  type FieldLine,
  type FieldLinesInit,
} from './codec.js';
export { bhttpToRequest, bhttpToResponse, requestToBhttp, responseToBhttp, type BhttpBase, type BhttpWebOptions } from './web.js';
export { MAX_VARINT, readVarint, varintLength, writeVarint } from './varint.js';
