/**
 * Maps between inner CoAP requests and Web `Request`/`Response` (RFC 8075
 * style), so an HTTP application (`echoApp`, `upstreamApp` of src/http) can
 * answer inner CoAP requests: `atls serve --coap ... --upstream URL`.
 *
 * @example
 * ```ts
 * const handler = httpAppAsCoapHandler((req) => fetch(new URL(new URL(req.url).pathname, upstream), req));
 * await AtlsCoapServer.listen({ tls, handler });
 * ```
 * @module
 */
import { CoapCode, ContentFormat } from './constants.js';
import type { CoapReply, CoapRequest } from './inner.js';
import type { AtlsCoapPeer, CoapRequestHandler } from './server.js';

/** Content-Format <-> media type for the registered formats we map (RFC 7252 §12.3, RFC 8949). */
export const CONTENT_FORMAT_MEDIA_TYPES: Readonly<Record<number, string>> = {
  [ContentFormat.TextPlain]: 'text/plain;charset=utf-8',
  [ContentFormat.LinkFormat]: 'application/link-format',
  [ContentFormat.Xml]: 'application/xml',
  [ContentFormat.OctetStream]: 'application/octet-stream',
  [ContentFormat.Json]: 'application/json',
  [ContentFormat.Cbor]: 'application/cbor',
};

/** The media type of a Content-Format, or undefined. */
export function mediaTypeForContentFormat(cf: number | undefined): string | undefined {
  return cf === undefined ? undefined : CONTENT_FORMAT_MEDIA_TYPES[cf];
}

/** The Content-Format of a Content-Type (parameters ignored, text/plain in any charset -> 0), or undefined. */
export function contentFormatForMediaType(contentType: string | null | undefined): number | undefined {
  if (!contentType) return undefined;
  const t = contentType.split(';')[0]!.trim().toLowerCase();
  for (const [cf, type] of Object.entries(CONTENT_FORMAT_MEDIA_TYPES)) {
    if (type.split(';')[0] === t) return Number(cf);
  }
  return undefined;
}

/** HTTP status -> CoAP response code for inner responses (RFC 8075 §7). */
export function coapCodeForHttpStatus(status: number): number {
  const map: Record<number, number> = {
    200: CoapCode.Content,
    201: CoapCode.Created,
    204: CoapCode.Changed,
    304: CoapCode.Valid,
    400: CoapCode.BadRequest,
    401: CoapCode.Unauthorized,
    403: CoapCode.Forbidden,
    404: CoapCode.NotFound,
    405: CoapCode.MethodNotAllowed,
    406: CoapCode.NotAcceptable,
    412: CoapCode.PreconditionFailed,
    413: CoapCode.RequestEntityTooLarge,
    415: CoapCode.UnsupportedContentFormat,
    500: CoapCode.InternalServerError,
    501: CoapCode.NotImplemented,
    502: CoapCode.BadGateway,
    503: CoapCode.ServiceUnavailable,
    504: CoapCode.GatewayTimeout,
  };
  return map[status] ?? (status < 300 ? CoapCode.Content : status < 500 ? CoapCode.BadRequest : CoapCode.InternalServerError);
}

/** Options of {@link httpAppAsCoapHandler}. */
export interface HttpMapOptions {
  /** Origin of the synthesized request URLs (default `http://localhost`). */
  origin?: string;
}

/**
 * A CoAP request handler that answers through an HTTP application: the inner
 * request becomes `Request(method, origin + path + query, content-type from
 * Content-Format, body)`; the `Response` becomes a CoAP reply.
 */
export function httpAppAsCoapHandler(
  app: (request: Request, peer: AtlsCoapPeer) => Promise<Response> | Response,
  options: HttpMapOptions = {},
): CoapRequestHandler {
  const origin = options.origin ?? 'http://localhost';
  return async (req: CoapRequest, peer: AtlsCoapPeer): Promise<CoapReply> => {
    const url = new URL(req.path + (req.query.length ? `?${req.query.join('&')}` : ''), origin);
    const method = /^[A-Za-z]+$/.test(req.method) ? req.method.toUpperCase() : 'POST';
    const headers = new Headers();
    const type = mediaTypeForContentFormat(req.contentFormat);
    if (type) headers.set('content-type', type);
    const hasBody = method !== 'GET' && method !== 'HEAD';
    const res = await app(new Request(url, { method, headers, ...(hasBody ? { body: req.payload } : {}) }), peer);
    const payload = new Uint8Array(await res.arrayBuffer());
    const cf = contentFormatForMediaType(res.headers.get('content-type'));
    return { code: coapCodeForHttpStatus(res.status), payload, ...(cf !== undefined ? { contentFormat: cf } : {}) };
  };
}
