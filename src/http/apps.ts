/**
 * Ready-made inner applications and sidecars, so that `atls serve --echo`,
 * `atls serve --upstream URL` and `atls proxy --to URL` are thin wrappers.
 *
 * @example
 * ```ts
 * createAtlsServer({ tls, app: upstreamApp('http://127.0.0.1:3000') }).listen(8443); // reverse sidecar
 * http.createServer(toNodeListener(forwardHandler(client, 'https://svc.example'))).listen(8080); // forward sidecar
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { AtlsApp, AtlsRawApp } from './server.js';
import type { AtlsClient } from './client.js';
import { DEFAULT_ENDPOINTS } from './constants.js';

/**
 * Fields that belong to one hop only (RFC 9110 §7.6.1), plus Host and
 * Content-Length, which the next hop's fetch sets itself (undici refuses a
 * second Content-Length).
 */
const HOP_BY_HOP = [
  'connection', 'keep-alive', 'proxy-connection', 'proxy-authorization', 'proxy-authenticate',
  'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'content-length',
];

function forwardableHeaders(src: Headers): Headers {
  const h = new Headers(src);
  for (const token of (src.get('connection') ?? '').split(',')) {
    if (token.trim()) h.delete(token.trim());
  }
  for (const name of HOP_BY_HOP) h.delete(name);
  return h;
}

/** Answers every inner request 200 with its own body and Content-Type. */
export const echoApp: AtlsApp = async (request) => {
  const body = new Uint8Array(await request.arrayBuffer());
  const headers = new Headers();
  const type = request.headers.get('content-type');
  if (type) headers.set('content-type', type);
  return new Response(body, { status: 200, headers });
};

/**
 * {@link echoApp} as a raw app (no fetch objects): 200 with the request's own
 * content and Content-Type. Give it as `rawApp` next to `app: echoApp`.
 *
 * @example
 * ```ts
 * createAtlsServer({ tls, app: echoApp, rawApp: echoRawApp }).listen(8443);
 * ```
 */
export const echoRawApp: AtlsRawApp = (request) => {
  let type: string | undefined;
  for (const [name, value] of request.headers) {
    // Repeated fields join with ", " as fetch's Headers.get does (RFC 9110 §5.3).
    if (name === 'content-type') type = type === undefined ? value : `${type}, ${value}`;
  }
  return {
    status: 200,
    headers: type === undefined ? [] : [['content-type', type]],
    // A view into the decrypted request: the handler encodes the response before it lets go of it.
    content: request.content,
  };
};

/** Options of {@link upstreamApp}. */
export interface UpstreamOptions {
  /** Add these headers to each forwarded request (e.g. the peer's identity, computed per request). */
  peerHeaders?: (peer: Parameters<AtlsApp>[1]) => Record<string, string>;
  /** The fetch used to reach the upstream (default: global fetch). */
  fetch?: (request: Request) => Promise<Response>;
}

/**
 * A reverse sidecar: forwards each inner request to `upstream` (same path
 * and query, upstream's origin), hop-by-hop fields removed. An unreachable
 * upstream becomes an inner 502.
 */
export function upstreamApp(upstream: string | URL, options: UpstreamOptions = {}): AtlsApp {
  const base = new URL(upstream);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new AtlsError('INVALID_ARGUMENT', `upstream must be an http(s) URL, not ${base.protocol}`);
  }
  const send = options.fetch ?? ((r: Request) => fetch(r));
  const prefix = base.pathname.replace(/\/$/, '');
  return async (request, peer) => {
    const inner = new URL(request.url);
    const target = new URL(`${prefix}${inner.pathname}${inner.search}`, base.origin);
    const headers = forwardableHeaders(request.headers);
    for (const [k, v] of Object.entries(options.peerHeaders?.(peer) ?? {})) headers.set(k, v);
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
    try {
      const res = await send(
        new Request(target, {
          method: request.method,
          headers,
          redirect: 'manual',
          ...(hasBody ? { body: await request.arrayBuffer() } : {}),
        }),
      );
      return new Response(res.status === 204 || res.status === 304 ? null : await res.arrayBuffer(), {
        status: res.status,
        headers: forwardableHeaders(res.headers),
      });
    } catch (e) {
      return new Response(`upstream ${base.origin} unreachable: ${e instanceof Error ? e.message : String(e)}\n`, {
        status: 502,
        headers: { 'content-type': 'text/plain; charset=utf-8' },
      });
    }
  };
}

/**
 * A forward sidecar: any local plain-HTTP request is sent through `client`
 * to the same path on `to`'s origin, ATLS-protected; the inner response comes
 * back as is. ATLS failures become a local 502 with a one-line reason.
 */
export function forwardHandler(client: AtlsClient, to: string | URL): (request: Request) => Promise<Response> {
  const base = new URL(to);
  // `to` may name the service's ATLS endpoint rather than its origin: the endpoint is not a prefix.
  const path = base.pathname.replace(/\/$/, '');
  const prefix = (DEFAULT_ENDPOINTS as readonly string[]).includes(path) ? '' : path;
  return async (request) => {
    const local = new URL(request.url);
    const target = new URL(`${prefix}${local.pathname}${local.search}`, base.origin);
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
    try {
      return await client.fetch(target, {
        method: request.method,
        headers: forwardableHeaders(request.headers),
        ...(hasBody ? { body: await request.arrayBuffer() } : {}),
      });
    } catch (e) {
      const reason = e instanceof AtlsError ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e);
      return new Response(`atls proxy: ${reason}\n`, { status: 502, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    }
  };
}
