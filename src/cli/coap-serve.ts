/**
 * The CoAP side of `atls serve --coap HOST:PORT`: the same credentials and the
 * same `--echo` / `--upstream` behaviour as the HTTP endpoint. An inner CoAP
 * request for an upstream is translated to HTTP with the RFC 8075 §7 code
 * mapping; inner Binary HTTP requests go to the upstream as they are.
 */
import type { TlsEngine, TlsServerConfig } from '../engines/types.js';
import type { Mode } from '../session/types.js';
import { AtlsCoapServer, echoCoapHandler, type CoapRequestHandler, type HttpApp } from '../coap/server.js';
import { echoApp, upstreamApp } from '../http/apps.js';
import { parseHostPort } from './options.js';

export interface CoapServiceOptions {
  listen: string;
  tls: TlsServerConfig;
  mode: Mode;
  echo: boolean;
  upstream: string | undefined;
  engine?: TlsEngine;
}

/** HTTP status -> CoAP response code (RFC 8075 §7 Table 2, common cases). */
function coapCodeFor(status: number): string {
  const table: Record<number, string> = {
    200: '2.05', 201: '2.01', 204: '2.04', 400: '4.00', 401: '4.01', 403: '4.03', 404: '4.04',
    405: '4.05', 406: '4.06', 412: '4.12', 413: '4.13', 415: '4.15', 500: '5.00', 501: '5.01',
    502: '5.02', 503: '5.03', 504: '5.04',
  };
  return table[status] ?? (status < 300 ? '2.05' : status < 500 ? '4.00' : '5.00');
}

/** Content-Formats with an obvious media type (RFC 7252 §12.3). */
const MEDIA: Record<number, string> = {
  0: 'text/plain; charset=utf-8',
  40: 'application/link-format',
  41: 'application/xml',
  42: 'application/octet-stream',
  50: 'application/json',
  60: 'application/cbor',
};

function upstreamCoapHandler(upstream: string): CoapRequestHandler {
  const base = new URL(upstream);
  const prefix = base.pathname.replace(/\/$/, '');
  return async (req) => {
    const target = new URL(`${prefix}${req.path}${req.query.length ? `?${req.query.join('&')}` : ''}`, base.origin);
    const headers: Record<string, string> = {};
    const type = req.contentFormat === undefined ? undefined : MEDIA[req.contentFormat];
    if (type) headers['content-type'] = type;
    const hasBody = req.method !== 'GET' && req.payload.length > 0;
    try {
      const res = await fetch(target, { method: req.method, headers, ...(hasBody ? { body: req.payload } : {}) });
      const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
      const format = Object.entries(MEDIA).find(([, m]) => m.split(';')[0] === mediaType)?.[0];
      return {
        code: coapCodeFor(res.status),
        payload: new Uint8Array(await res.arrayBuffer()),
        ...(format !== undefined ? { contentFormat: Number(format) } : {}),
      };
    } catch (e) {
      return { code: '5.02', payload: `upstream unreachable: ${e instanceof Error ? e.message : String(e)}` };
    }
  };
}

/** Starts the CoAP endpoint; resolves once bound. */
export async function startCoapService(
  opts: CoapServiceOptions,
): Promise<{ url: string; close: () => Promise<void> }> {
  const { host, port } = parseHostPort(opts.listen, '--coap');
  const handler: CoapRequestHandler = opts.echo ? echoCoapHandler : upstreamCoapHandler(opts.upstream!);
  const app = opts.echo ? echoApp : upstreamApp(opts.upstream!);
  // The HTTP apps take an HTTP-binding peer; over CoAP only the request matters to them.
  const httpApp: HttpApp = (request) => app(request, undefined as never, { outer: request });
  const server = await AtlsCoapServer.listen({
    tls: opts.tls,
    mode: opts.mode,
    host,
    port,
    handler,
    httpApp,
    ...(opts.engine ? { engine: opts.engine } : {}),
  });
  return { url: server.url, close: () => server.close() };
}
