/**
 * The redirect rules of the Fetch standard ("HTTP-redirect fetch", §4.4),
 * as undici applies them, for the client's inner requests: which statuses
 * redirect, how method and body change, which credentials stay behind when
 * the origin changes, and the `url` / `redirected` a response reports.
 *
 * @example
 * ```ts
 * const next = redirectStep(hop, response);   // undefined: not a redirect to follow
 * ```
 * @module
 */

/** Statuses that redirect (Fetch "redirect status"). */
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);

/** Fetch's limit on redirects per request (Fetch §4.4 step 6). */
export const MAX_REDIRECTS = 20;

/** Fetch "request-body-header name": dropped with the body when the method becomes GET. */
const REQUEST_BODY_HEADERS = ['content-encoding', 'content-language', 'content-location', 'content-type'];

/**
 * Dropped when a redirect leaves the origin: Fetch drops Authorization
 * (CORS non-wildcard request-header name); undici also drops these others,
 * and so do we: they are the first origin's credentials.
 */
const CROSS_ORIGIN_DROPPED = ['authorization', 'proxy-authorization', 'cookie', 'host'];

/** One request of a redirect chain. */
export interface Hop {
  url: URL;
  method: string;
  headers: Headers;
  /** The body: bytes, or a stream (sent once: a 307/308 then fails); null for none. */
  body: Uint8Array | ReadableStream<Uint8Array> | null;
}

/** True for 301, 302, 303, 307 and 308. */
export function isRedirectStatus(status: number): boolean {
  return REDIRECT_STATUSES.has(status);
}

/**
 * The Location of a redirect response resolved against the request URL,
 * keeping the request's fragment when Location has none (Fetch "location URL").
 * Undefined when there is no Location field; throws TypeError when it does not parse.
 */
export function locationOf(response: Response, requestUrl: URL): URL | undefined {
  const value = response.headers.get('location');
  if (value === null) return undefined;
  const next = new URL(value, requestUrl); // TypeError on garbage, as in fetch
  if (next.hash === '' && requestUrl.hash !== '') next.hash = requestUrl.hash;
  return next;
}

/** The network error fetch rejects with (undici: TypeError "fetch failed" with the reason as cause). */
export function networkError(reason: string): TypeError {
  return new TypeError('fetch failed', { cause: new Error(reason) });
}

/**
 * The request that follows `hop` when it was answered by a redirect to
 * `location` with `status` (Fetch §4.4 steps 7 to 13): 303 (unless GET or
 * HEAD), and 301/302 of a POST, become a GET without body or body headers;
 * leaving the origin drops the first origin's credentials.
 */
export function followRedirect(hop: Hop, status: number, location: URL): Hop {
  const headers = new Headers(hop.headers);
  let method = hop.method;
  let body = hop.body;
  if (((status === 301 || status === 302) && method === 'POST') || (status === 303 && method !== 'GET' && method !== 'HEAD')) {
    method = 'GET';
    body = null;
    for (const name of REQUEST_BODY_HEADERS) headers.delete(name);
  }
  if (location.origin !== hop.url.origin) {
    for (const name of CROSS_ORIGIN_DROPPED) headers.delete(name);
  }
  return { url: location, method, headers, body };
}

/**
 * Gives `response` the `url` (the last URL of the chain, without fragment)
 * and `redirected` that fetch reports; the Response constructor cannot set them.
 */
export function withFinalUrl(response: Response, urls: readonly URL[]): Response {
  const last = new URL(urls[urls.length - 1]!);
  last.hash = '';
  Object.defineProperty(response, 'url', { value: last.href, enumerable: true, configurable: true });
  Object.defineProperty(response, 'redirected', { value: urls.length > 1, enumerable: true, configurable: true });
  return response;
}
