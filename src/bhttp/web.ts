/**
 * Converters between Binary HTTP (RFC 9292) and the Web-standard `Request` and
 * `Response` of fetch, so that bindings and handlers never see the wire format.
 *
 * Lost in conversion, because fetch has no place for them: trailers,
 * informational responses, extension pseudo-fields. Connection-specific fields
 * (RFC 9110 §7.6.1) are removed in both directions (RFC 9292 §3.6 says they
 * SHOULD be removed when constructing a message; dropping them on the way in
 * keeps a handler that forwards the request from smuggling them onward).
 *
 * @example
 * ```ts
 * const inner = await requestToBhttp(new Request('https://api.example/v1', { method: 'POST', body: 'hi' }));
 * const req = bhttpToRequest(inner);            // on the server
 * const bytes = await responseToBhttp(await handler(req));
 * const res = bhttpToResponse(bytes);           // back on the client
 * ```
 * @module
 */
import { STATUS_CODES } from 'node:http';
import { readLimited } from '../streams.js';
import { AtlsError } from '../errors.js';
import {
  BHTTP_DEFAULT_LIMITS,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type BhttpEncodeOptions,
  type BhttpLimits,
  type FieldLine,
} from './codec.js';
import { authorityValid, latin1Bytes } from './fields.js';

/** Options of the converters: decoding bounds plus encoding choices. */
export interface BhttpWebOptions extends BhttpLimits, BhttpEncodeOptions {}

/** Where a request goes when the message itself does not say (see {@link bhttpToRequest}). */
export interface BhttpBase {
  /** Used when the message's scheme is empty. */
  scheme: string;
  /** Used when the message has neither an authority nor a `host` field. */
  authority: string;
}

/** Connection-specific fields (RFC 9110 §7.6.1; RFC 9113 §8.2.2 lists the same). */
const CONNECTION_FIELDS = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

/** Statuses whose responses have no content (RFC 9110 §15.3.5, §15.3.6, §15.4.5). */
const NULL_BODY_STATUS = new Set([204, 205, 304]);

/** Drops connection-specific fields, including those the Connection field names; TE survives only as "trailers". */
function withoutConnectionFields(fields: Iterable<[string, string]>): FieldLine[] {
  const all = [...fields];
  const named = new Set(CONNECTION_FIELDS);
  for (const [n, v] of all) {
    if (n.toLowerCase() === 'connection') {
      for (const token of v.split(',')) named.add(token.trim().toLowerCase());
    }
  }
  return all.filter(([n, v]) => {
    const lower = n.toLowerCase();
    if (lower === 'te') return v.trim().toLowerCase() === 'trailers'; // RFC 9113 §8.2.2
    return !named.has(lower);
  });
}

/** Reads a body stream, refusing more than `max` bytes. */
function readBody(body: ReadableStream<Uint8Array> | null, max: number): Promise<Uint8Array> {
  return readLimited(body, max, 'local');
}

function bodyOf(r: Request | Response): ReadableStream<Uint8Array> | null {
  if (r.bodyUsed) throw new AtlsError('INVALID_ARGUMENT', 'body already used', { source: 'local' });
  return r.body;
}

/**
 * Encodes a fetch `Request` as a known-length Binary HTTP request. The target
 * comes from `request.url` (no userinfo, no fragment, RFC 9113 §8.3.1).
 *
 * @example
 * ```ts
 * const bytes = await requestToBhttp(new Request('https://a.example/x?y=1'));
 * ```
 */
export async function requestToBhttp(request: Request, options: BhttpWebOptions = {}): Promise<Uint8Array> {
  const url = new URL(request.url);
  const path = url.pathname + url.search;
  const content = await readBody(bodyOf(request), options.maxContent ?? BHTTP_DEFAULT_LIMITS.maxContent);
  return encodeRequest(
    {
      method: request.method,
      scheme: url.protocol.slice(0, -1),
      authority: url.host,
      path: path === '' ? '/' : path,
      headers: withoutConnectionFields(request.headers),
      content,
    },
    options,
  );
}

/**
 * Encodes a fetch `Response` as a known-length Binary HTTP response.
 * Each `set-cookie` stays its own field line.
 *
 * @example
 * ```ts
 * const bytes = await responseToBhttp(new Response('ok', { headers: { 'content-type': 'text/plain' } }));
 * ```
 */
export async function responseToBhttp(response: Response, options: BhttpWebOptions = {}): Promise<Uint8Array> {
  if (response.type === 'error' || response.status < 200) {
    throw new AtlsError('INVALID_ARGUMENT', `cannot encode a response of type ${response.type}, status ${response.status}`);
  }
  const content = await readBody(bodyOf(response), options.maxContent ?? BHTTP_DEFAULT_LIMITS.maxContent);
  return encodeResponse(
    { status: response.status, headers: withoutConnectionFields(response.headers), content },
    options,
  );
}

function toHeaders(fields: FieldLine[], what: string): Headers {
  const h = new Headers();
  for (const [n, v] of withoutConnectionFields(fields)) {
    if (n.startsWith(':')) continue; // extension pseudo-fields have no place in fetch Headers
    try {
      h.append(n, v); // Headers joins repeated `cookie` with "; " (RFC 9292 §3.6, RFC 9113 §8.2.3)
    } catch (e) {
      throw new AtlsError('MALFORMED_MESSAGE', `${what}: field "${n}" refused by Headers`, { source: 'remote', cause: e });
    }
  }
  return h;
}

/**
 * Decodes a Binary HTTP request into a fetch `Request`.
 *
 * The URL is `scheme://authority path`. An empty authority falls back to the
 * `host` field (as in RFC 9292 §5.1's example), then to `base.authority`; an
 * empty scheme falls back to `base.scheme`. The server still has to check that
 * the target is one it serves: the peer chose it.
 *
 * Throws `MALFORMED_MESSAGE`/`TOO_LARGE` (remote) for bad messages, including a
 * `content-length` that disagrees with the content, and `UNSUPPORTED` (remote)
 * for requests fetch cannot represent (CONNECT, TRACE, a GET or HEAD with content).
 *
 * @example
 * ```ts
 * const req = bhttpToRequest(bytes, { scheme: 'https', authority: 'api.example' });
 * ```
 */
export function bhttpToRequest(bytes: Uint8Array, base?: BhttpBase, options: BhttpLimits = {}): Request {
  const what = 'binary HTTP request';
  const m = decodeRequest(bytes, options);
  const method = m.method.toUpperCase();
  if (method === 'CONNECT' || method === 'TRACE' || method === 'TRACK') {
    throw new AtlsError('UNSUPPORTED', `${what}: method ${m.method} cannot be represented by fetch`, { source: 'remote' });
  }
  if ((method === 'GET' || method === 'HEAD') && m.content.length > 0) {
    throw new AtlsError('UNSUPPORTED', `${what}: ${method} with content cannot be represented by fetch`, { source: 'remote' });
  }
  const scheme = m.scheme || base?.scheme || '';
  let authority = m.authority;
  if (authority === '') {
    const hosts = m.headers.filter(([n]) => n === 'host');
    if (hosts.length > 1) throw new AtlsError('MALFORMED_MESSAGE', `${what}: several host fields`, { source: 'remote' });
    const host = hosts[0]?.[1];
    // The host field was only checked as a field value: hold it to the authority rules before it
    // becomes part of a URL, or "evil.example/x?" would rewrite the path.
    if (host !== undefined && (host === '' || !authorityValid(latin1Bytes(host) ?? new Uint8Array([0])))) {
      throw new AtlsError('MALFORMED_MESSAGE', `${what}: invalid host field`, { source: 'remote' });
    }
    authority = host ?? base?.authority ?? '';
  }
  if (scheme === '' || authority === '') {
    throw new AtlsError('MALFORMED_MESSAGE', `${what}: no scheme or authority, and no base to supply it`, { source: 'remote' });
  }
  for (const [n, v] of m.headers) {
    // RFC 9110 §8.6 with RFC 9113 §8.1.1: a content-length that disagrees with the content is malformed.
    if (n === 'content-length' && v !== String(m.content.length)) {
      throw new AtlsError('MALFORMED_MESSAGE', `${what}: content-length ${v} but ${m.content.length} bytes of content`, { source: 'remote' });
    }
  }
  let url: URL;
  try {
    url = new URL(`${scheme}://${authority}${m.path === '*' ? '/' : m.path}`);
  } catch (e) {
    throw new AtlsError('MALFORMED_MESSAGE', `${what}: invalid target`, { source: 'remote', cause: e });
  }
  const headers = toHeaders(m.headers, what);
  try {
    return new Request(url, { method: m.method, headers, body: m.content.length > 0 ? m.content : null });
  } catch (e) {
    throw new AtlsError('MALFORMED_MESSAGE', `${what}: refused by Request`, { source: 'remote', cause: e });
  }
}

/**
 * Decodes a Binary HTTP response into a fetch `Response`. Informational
 * responses and trailers are dropped. Content on a 204, 205 or 304 is malformed.
 *
 * @example
 * ```ts
 * const res = bhttpToResponse(bytes);
 * console.log(res.status, await res.text());
 * ```
 */
export function bhttpToResponse(bytes: Uint8Array, options: BhttpLimits = {}): Response {
  const what = 'binary HTTP response';
  const m = decodeResponse(bytes, options);
  const nullBody = NULL_BODY_STATUS.has(m.status);
  if (nullBody && m.content.length > 0) {
    throw new AtlsError('MALFORMED_MESSAGE', `${what}: status ${m.status} with content`, { source: 'remote' });
  }
  const headers = toHeaders(m.headers, what);
  try {
    // RFC 9292 carries no reason phrase: the standard one, as a Node server would send it.
    return new Response(nullBody ? null : m.content, { status: m.status, statusText: STATUS_CODES[m.status] ?? '', headers });
  } catch (e) {
    throw new AtlsError('MALFORMED_MESSAGE', `${what}: refused by Response`, { source: 'remote', cause: e });
  }
}
