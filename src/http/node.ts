/**
 * `node:http` adapter: serve any Web-standard handler (the ATLS handler, an
 * app, a forward sidecar) on a Node HTTP or HTTPS server.
 *
 * @example
 * ```ts
 * const server = createAtlsServer({ tls: { cert, key }, app: (req) => new Response('hi') });
 * server.listen(8080);
 * // or: http.createServer(toNodeListener(handler)).listen(8080);
 * ```
 * @module
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { AtlsError } from '../errors.js';
import { createAtlsHandler, type AtlsHandler, type AtlsHandlerOptions } from './server.js';
import { errorResponse } from './wire.js';

/** A fetch-style handler. */
export type WebHandler = (request: Request) => Response | Promise<Response>;

/** Options of {@link toNodeListener}. */
export interface NodeListenerOptions {
  /** Treat requests as https even on a plain socket (behind a TLS terminator). Default: the socket's own state. */
  https?: boolean;
  /** Called when the handler itself throws (a bug); the client gets a 500. */
  onError?: (error: unknown) => void;
}

/** Builds the `Request` a Node request stands for; the body is streamed, not buffered. */
function toRequest(req: IncomingMessage, https: boolean, signal: AbortSignal): Request {
  const host = req.headers.host ?? 'localhost';
  const url = new URL(req.url ?? '/', `${https ? 'https' : 'http'}://${host}`);
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (name.startsWith(':')) continue; // HTTP/2 pseudo-headers
    headers.append(name, req.rawHeaders[i + 1]!);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  return new Request(url, {
    method: req.method ?? 'GET',
    headers,
    signal,
    ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: 'half' } : {}),
  } as RequestInit);
}

async function writeResponse(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string | string[]> = {};
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value;
  });
  const cookies = response.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  res.writeHead(response.status, headers);
  if (!response.body) {
    res.end();
    return;
  }
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!res.write(value)) await new Promise<void>((r) => res.once('drain', r));
      if (res.destroyed) break;
    }
  } finally {
    reader.releaseLock();
    res.end();
  }
}

/**
 * Turns a Web handler into a `node:http` request listener. Malformed request
 * heads become 400; a handler bug becomes 500 (and `onError`).
 */
export function toNodeListener(handler: WebHandler, options: NodeListenerOptions = {}) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const https = options.https ?? (req.socket as TLSSocket).encrypted === true;
    const abort = new AbortController();
    // Only a client that left early aborts: aborting after every finished
    // response built a DOMException per request (about 5% of the CPU profile).
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    let request: Request;
    try {
      request = toRequest(req, https, abort.signal);
    } catch (e) {
      // An unparsable Host or a header value fetch refuses: the peer's doing.
      req.resume();
      void writeResponse(res, errorResponse(new AtlsError('INVALID_ARGUMENT', 'malformed request head', { source: 'remote', cause: e })));
      return;
    }
    void (async () => {
      let response: Response;
      try {
        response = await handler(request);
      } catch (e) {
        options.onError?.(e);
        response = errorResponse(e);
      }
      try {
        await writeResponse(res, response);
      } catch (e) {
        options.onError?.(e);
        res.destroy();
      }
    })();
  };
}

/** Options of {@link createAtlsServer}: the handler's, plus what else the server answers. */
export interface AtlsServerOptions extends AtlsHandlerOptions {
  /** Requests to other paths (default: 404). */
  fallback?: WebHandler;
  /** See {@link NodeListenerOptions.https}. */
  https?: boolean;
}

/** A `node:http` server answering the ATLS endpoints; `handler` is exposed for stats. */
export interface AtlsNodeServer extends Server {
  atls: AtlsHandler;
}

/**
 * A `node:http` server for the ATLS endpoints (and `fallback` for anything
 * else). Call `listen()` on it. Closing the server forgets the sessions.
 */
export function createAtlsServer(options: AtlsServerOptions): AtlsNodeServer {
  const handler = createAtlsHandler(options);
  const fallback = options.fallback;
  const web: WebHandler = (request) => {
    if (fallback && !handler.matches(new URL(request.url).pathname)) return fallback(request);
    return handler(request);
  };
  const server = createHttpServer(toNodeListener(web, options.https === undefined ? {} : { https: options.https }));
  server.on('close', () => void handler.close());
  return Object.assign(server, { atls: handler });
}
