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
export {
  bhttpStreamToRequest,
  bhttpStreamToResponse,
  bhttpToRequest,
  bhttpToResponse,
  KNOWN_LENGTH_MAX,
  requestToBhttp,
  requestToBhttpStream,
  responseToBhttp,
  responseToBhttpStream,
  type BhttpBase,
  type BhttpStreamWebOptions,
  type BhttpWebOptions,
} from './web.js';
export { MAX_VARINT, readVarint, varintLength, writeVarint } from './varint.js';
export {
  decodeRequestStream,
  decodeResponseStream,
  encodeContentChunks,
  encodeContentPiece,
  encodeEnd,
  encodeRequestHead,
  encodeRequestStream,
  encodeResponseHead,
  encodeResponseStream,
  MAX_CHUNK_CONTENT,
  type BhttpRequestHeadInit,
  type BhttpResponseHeadInit,
  type BhttpStreamEncodeOptions,
  type BhttpStreamedRequest,
  type BhttpStreamedResponse,
} from './stream.js';
