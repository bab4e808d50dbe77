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
import { decodeRequestStream, decodeResponseStream, encodeRequestStream, encodeResponseStream } from './stream.js';
import { authorityStringValid } from './fields.js';

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
  const m = decodeRequest(bytes, options);
  const { url, method } = requestTarget(m, base);
  if ((method === 'GET' || method === 'HEAD') && m.content.length > 0) {
    throw new AtlsError('UNSUPPORTED', `${REQUEST}: ${method} with content cannot be represented by fetch`, { source: 'remote' });
  }
  const declared = declaredLength(m.headers);
  // RFC 9110 §8.6 with RFC 9113 §8.1.1: a content-length that disagrees with the content is malformed.
  if (declared !== undefined && declared !== String(m.content.length)) throw lengthMismatch(declared, m.content.length);
  return newRequest(url, m.method, toHeaders(m.headers, REQUEST), m.content.length > 0 ? m.content : null);
}

const REQUEST = 'binary HTTP request';
const RESPONSE = 'binary HTTP response';

/** The URL of a decoded request head (see {@link bhttpToRequest}); refuses what fetch cannot represent. */
function requestTarget(m: { method: string; scheme: string; authority: string; path: string; headers: FieldLine[] }, base?: BhttpBase): { url: URL; method: string } {
  const method = m.method.toUpperCase();
  if (method === 'CONNECT' || method === 'TRACE' || method === 'TRACK') {
    throw new AtlsError('UNSUPPORTED', `${REQUEST}: method ${m.method} cannot be represented by fetch`, { source: 'remote' });
  }
  const scheme = m.scheme || base?.scheme || '';
  let authority = m.authority;
  if (authority === '') {
    const hosts = m.headers.filter(([n]) => n === 'host');
    if (hosts.length > 1) throw new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: several host fields`, { source: 'remote' });
    const host = hosts[0]?.[1];
    // The host field was only checked as a field value: hold it to the authority rules before it
    // becomes part of a URL, or "evil.example/x?" would rewrite the path.
    if (host !== undefined && (host === '' || !authorityStringValid(host))) {
      throw new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: invalid host field`, { source: 'remote' });
    }
    authority = host ?? base?.authority ?? '';
  }
  if (scheme === '' || authority === '') {
    throw new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: no scheme or authority, and no base to supply it`, { source: 'remote' });
  }
  try {
    return { url: new URL(`${scheme}://${authority}${m.path === '*' ? '/' : m.path}`), method };
  } catch (e) {
    throw new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: invalid target`, { source: 'remote', cause: e });
  }
}

/** The request's content-length value (RFC 9110 §8.6); undefined when there is none. */
function declaredLength(headers: FieldLine[]): string | undefined {
  let declared: string | undefined;
  for (const [n, v] of headers) {
    if (n !== 'content-length') continue;
    if (declared !== undefined && v !== declared) throw new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: content-length fields disagree`, { source: 'remote' });
    declared = v;
  }
  return declared;
}

function lengthMismatch(declared: string, actual: number): AtlsError {
  return new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: content-length ${declared} but ${actual} bytes of content`, { source: 'remote' });
}

function newRequest(url: URL, method: string, headers: Headers, body: Uint8Array | ReadableStream<Uint8Array> | null): Request {
  try {
    // duplex 'half' (Fetch standard): a stream body is sent while it is produced.
    return new Request(url, { method, headers, body, duplex: 'half' } as RequestInit);
  } catch (e) {
    throw new AtlsError('MALFORMED_MESSAGE', `${REQUEST}: refused by Request`, { source: 'remote', cause: e });
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
  const m = decodeResponse(bytes, options);
  const nullBody = NULL_BODY_STATUS.has(m.status);
  if (nullBody && m.content.length > 0) {
    throw new AtlsError('MALFORMED_MESSAGE', `${RESPONSE}: status ${m.status} with content`, { source: 'remote' });
  }
  return newResponse(m.status, toHeaders(m.headers, RESPONSE), nullBody ? null : m.content);
}

function newResponse(status: number, headers: Headers, body: Uint8Array | ReadableStream<Uint8Array> | null): Response {
  try {
    // RFC 9292 carries no reason phrase: the standard one, as a Node server would send it.
    return new Response(body, { status, statusText: STATUS_CODES[status] ?? '', headers });
  } catch (e) {
    throw new AtlsError('MALFORMED_MESSAGE', `${RESPONSE}: refused by Response`, { source: 'remote', cause: e });
  }
}

// ---------------------------------------------------------------------------
// Streaming converters

/** Content up to this size, complete and at hand, keeps the known-length form (see {@link BhttpStreamWebOptions}). */
export const KNOWN_LENGTH_MAX = 16 * 1024;

/** Options of the streaming encoders. */
export interface BhttpStreamWebOptions extends BhttpEncodeOptions {
  /**
   * A body that is complete and at hand within this many bytes is encoded in
   * the known-length form, byte for byte as {@link requestToBhttp} /
   * {@link responseToBhttp} would; a larger or slower one in the
   * indeterminate-length form, its head sent at once. Default
   * {@link KNOWN_LENGTH_MAX}; 0 streams every body.
   */
  knownLengthMax?: number;
}

/**
 * Encodes a fetch `Request` as a Binary HTTP stream: the head as soon as it
 * is known, the body as it is produced (RFC 9292 §3.2), or one known-length
 * message for a small body at hand. Backpressure passes through: the body is
 * read as the output is read.
 *
 * @example
 * ```ts
 * const wire = requestToBhttpStream(new Request(url, { method: 'POST', body: stream, duplex: 'half' }));
 * ```
 */
export function requestToBhttpStream(request: Request, options: BhttpStreamWebOptions = {}): ReadableStream<Uint8Array> {
  const url = new URL(request.url);
  const path = url.pathname + url.search;
  const head = {
    method: request.method,
    scheme: url.protocol.slice(0, -1),
    authority: url.host,
    path: path === '' ? '/' : path,
    headers: withoutConnectionFields(request.headers),
  };
  return encodeRequestStream(head, bodyOf(request), { ...options, knownLengthMax: options.knownLengthMax ?? KNOWN_LENGTH_MAX });
}

/** Encodes a fetch `Response` as a Binary HTTP stream; see {@link requestToBhttpStream}. */
export function responseToBhttpStream(response: Response, options: BhttpStreamWebOptions = {}): ReadableStream<Uint8Array> {
  if (response.type === 'error' || response.status < 200) {
    throw new AtlsError('INVALID_ARGUMENT', `cannot encode a response of type ${response.type}, status ${response.status}`);
  }
  const head = { status: response.status, headers: withoutConnectionFields(response.headers) };
  return encodeResponseStream(head, bodyOf(response), { ...options, knownLengthMax: options.knownLengthMax ?? KNOWN_LENGTH_MAX });
}

/** Waits for the end of content that must be empty; `problem` names the error when it is not. */
async function expectEmpty(content: ReadableStream<Uint8Array>, code: 'UNSUPPORTED' | 'MALFORMED_MESSAGE', problem: string): Promise<void> {
  try {
    await readLimited(content, 0, 'remote');
  } catch (e) {
    if (e instanceof AtlsError && e.code === 'TOO_LARGE') throw new AtlsError(code, problem, { source: 'remote' });
    throw e;
  }
}

/** The content, erroring with MALFORMED_MESSAGE as soon as it disagrees with the declared length. */
function lengthChecked(content: ReadableStream<Uint8Array>, declared: string): ReadableStream<Uint8Array> {
  const reader = content.getReader();
  const expected = Number(declared);
  let total = 0;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = await reader.read();
        if (r.done) {
          if (String(total) !== declared) throw lengthMismatch(declared, total);
          controller.close();
          return;
        }
        total += r.value.length;
        if (total > expected) {
          await reader.cancel().catch(() => undefined);
          throw lengthMismatch(declared, total);
        }
        controller.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/**
 * Decodes a Binary HTTP request as it arrives into a fetch `Request` whose
 * body streams (`duplex: 'half'`): resolves once the head is complete. The
 * rules of {@link bhttpToRequest} apply; a `content-length` that disagrees
 * with the content errors the body stream (`MALFORMED_MESSAGE`), as does
 * anything wrong found later in the message. A GET or HEAD is resolved only
 * after its (empty) content has ended.
 *
 * @example
 * ```ts
 * const req = await bhttpStreamToRequest(plaintextStream, { scheme: 'https', authority: 'api.example' }, { maxContent: 1 << 30 });
 * ```
 */
export async function bhttpStreamToRequest(body: ReadableStream<Uint8Array>, base?: BhttpBase, options: BhttpLimits = {}): Promise<Request> {
  const m = await decodeRequestStream(body, options);
  try {
    const { url, method } = requestTarget(m, base);
    const declared = declaredLength(m.headers);
    const headers = toHeaders(m.headers, REQUEST);
    if (method === 'GET' || method === 'HEAD') {
      await expectEmpty(m.content, 'UNSUPPORTED', `${REQUEST}: ${method} with content cannot be represented by fetch`);
      if (declared !== undefined && declared !== '0') throw lengthMismatch(declared, 0);
      return newRequest(url, m.method, headers, null);
    }
    return newRequest(url, m.method, headers, declared === undefined ? m.content : lengthChecked(m.content, declared));
  } catch (e) {
    await m.content.cancel(e).catch(() => undefined);
    throw e;
  }
}

/**
 * Decodes a Binary HTTP response as it arrives into a fetch `Response` whose
 * body streams: resolves once the head is complete. The rules of
 * {@link bhttpToResponse} apply (a 204, 205 or 304 is resolved after its
 * content has ended, which must be empty); a failure later in the message
 * errors the body stream with its `AtlsError`.
 *
 * @example
 * ```ts
 * const res = await bhttpStreamToResponse(plaintextStream, { maxContent: 1 << 30 });
 * for await (const piece of res.body!) use(piece);
 * ```
 */
export async function bhttpStreamToResponse(body: ReadableStream<Uint8Array>, options: BhttpLimits = {}): Promise<Response> {
  const m = await decodeResponseStream(body, options);
  try {
    const headers = toHeaders(m.headers, RESPONSE);
    if (NULL_BODY_STATUS.has(m.status)) {
      await expectEmpty(m.content, 'MALFORMED_MESSAGE', `${RESPONSE}: status ${m.status} with content`);
      return newResponse(m.status, headers, null);
    }
    return newResponse(m.status, headers, m.content);
  } catch (e) {
    await m.content.cancel(e).catch(() => undefined);
    throw e;
  }
}
