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
import { attachFront } from './front.js';
import { createAtlsHandler, wholeBodyCap, type AtlsHandler, type AtlsHandlerOptions, type AtlsRawRequest } from './server.js';
import { errorReply, errorResponse, type HttpReply } from './wire.js';
import { httpServerTimeouts, limitConnections, type ConnectionLimits, type ConnectionStats } from './connections.js';
import { TrustedProxies } from '../peers.js';
import { drainedOrClosed } from '../streams.js';

/** What a handler may know about the connection a request came on. */
export interface ConnectionInfo {
  /** The peer's address (the client, or the last proxy). */
  remoteAddress: string | undefined;
}

/** A fetch-style handler; `toNodeListener` also passes the connection's details. */
export type WebHandler = (request: Request, connection?: ConnectionInfo) => Response | Promise<Response>;

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
      if (!res.write(value)) await drainedOrClosed(res);
      if (res.destroyed) {
        await reader.cancel().catch(() => undefined); // the client left: stop the producer
        return;
      }
    }
  } catch (e) {
    // A body that fails half-way must not look complete: cut the connection instead of ending the body.
    res.destroy();
    throw e;
  } finally {
    reader.releaseLock();
  }
  res.end();
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
        response = await handler(request, { remoteAddress: req.socket.remoteAddress });
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

/** Options of {@link atlsNodeListener}. */
export interface AtlsNodeListenerOptions extends NodeListenerOptions {
  /** Requests to other paths (default: the handler's 404). */
  fallback?: WebHandler;
}

/** State of one body being read; listeners are shared functions that find it on the request. */
interface BodyRead {
  /** Keeps the body for `context.outer`. */
  owner: NodeRawRequest;
  max: number;
  chunks: Buffer[];
  total: number;
  resolve: (body: Uint8Array) => void;
  reject: (e: AtlsError) => void;
}

const BODY = Symbol('atls body read');
type ReadingRequest = IncomingMessage & { [BODY]?: BodyRead };

function stopReading(req: ReadingRequest): BodyRead | undefined {
  const st = req[BODY];
  req[BODY] = undefined;
  req.off('data', onBodyData);
  req.off('end', onBodyEnd);
  req.off('error', onBodyError);
  req.off('close', onBodyClose);
  return st;
}

function onBodyData(this: ReadingRequest, chunk: Buffer): void {
  const st = this[BODY];
  if (!st) return;
  st.total += chunk.length;
  if (st.total > st.max) {
    stopReading(this);
    st.chunks.length = 0;
    this.resume(); // discard the rest; the answer is 413 (memory stays bounded)
    st.reject(new AtlsError('TOO_LARGE', `body exceeds ${st.max} bytes`, { source: 'remote' }));
    return;
  }
  st.chunks.push(chunk);
}

function onBodyEnd(this: ReadingRequest): void {
  const st = stopReading(this);
  if (!st) return;
  const body = st.chunks.length === 1 ? st.chunks[0]! : Buffer.concat(st.chunks, st.total);
  st.owner.read = body;
  st.resolve(body);
}

function onBodyError(this: ReadingRequest, e: unknown): void {
  const st = stopReading(this);
  // The transport broke mid-body (client went away): the peer's doing.
  st?.reject(new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source: 'remote', cause: e }));
}

function onBodyClose(this: ReadingRequest): void {
  if (!this.complete) onBodyError.call(this, new Error('connection closed before the body ended'));
}

/**
 * Reads a Node request body into one buffer (kept in `owner.read`), refusing more than `max` bytes
 * (TOO_LARGE, remote) without buffering them; a declared Content-Length above
 * `max` is refused before reading.
 */
function readNodeBody(owner: NodeRawRequest, req: IncomingMessage, max: number): Promise<Uint8Array> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) > max) {
    return Promise.reject(new AtlsError('TOO_LARGE', `body of ${declared} bytes exceeds ${max}`, { source: 'remote' }));
  }
  return new Promise((resolve, reject) => {
    (req as ReadingRequest)[BODY] = { owner, max, chunks: [], total: 0, resolve, reject };
    req.on('data', onBodyData);
    req.on('end', onBodyEnd);
    req.on('error', onBodyError);
    req.on('close', onBodyClose);
  });
}

/** One `node:http` request as the handler's core sees it; methods on the prototype, no closures per request. */
class NodeRawRequest implements AtlsRawRequest {
  readonly method: string;
  readonly authority: string;
  read: Uint8Array | undefined = undefined;

  constructor(
    private readonly req: IncomingMessage,
    readonly pathname: string,
    readonly https: boolean,
  ) {
    this.method = req.method ?? 'GET';
    this.authority = req.headers.host ?? 'localhost';
  }

  get remoteAddress(): string | undefined {
    return this.req.socket.remoteAddress;
  }

  header(name: string): string | undefined {
    const v = this.req.headers[name];
    return Array.isArray(v) ? v.join(', ') : v;
  }

  body(max: number): Promise<Uint8Array> {
    return readNodeBody(this, this.req, max); // sets `read` when the body is complete
  }

  stream(): ReadableStream<Uint8Array> {
    this.read = EMPTY; // read by the caller; nothing left to drain
    return nodeBodyStream(this.req);
  }

  outer(): Request {
    return outerRequest(this.req, this.https, this.read);
  }

  /** The whole request body arrived. */
  get complete(): boolean {
    return this.req.complete;
  }

  /** Discard an unread body. */
  drain(): void {
    this.req.resume();
  }
}

const EMPTY = new Uint8Array(0);

/**
 * The body of a Node request (or client response, or any byte Readable) as
 * a byte stream that reads only as fast as its consumer (the source is
 * paused in between), passing the source's chunks on as they are
 * (`Readable.toWeb` of Node 20 copies every chunk). A source that closes
 * before the body ended errors the stream (TRUNCATED_FLIGHT, remote).
 * Cancelling it reads and drops the rest (`discard`: the connection stays
 * usable) or closes the source (`destroy`).
 */
export function nodeBodyStream(req: IncomingMessage | Readable, onCancel: 'discard' | 'destroy' = 'discard'): ReadableStream<Uint8Array> {
  const complete = (): boolean => ('complete' in req ? req.complete : req.readableEnded);
  let failed: AtlsError | undefined;
  let wake: (() => void) | undefined;
  const queue: Buffer[] = [];
  let ended = false;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  let discarding = false;
  req.on('data', (chunk: Buffer) => {
    if (discarding) return; // cancelled: the rest is read and dropped, the connection stays usable
    queue.push(chunk);
    req.pause();
    notify();
  });
  req.on('end', () => {
    ended = true;
    notify();
  });
  const broken = (e: unknown): void => {
    failed ??= new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source: 'remote', cause: e });
    notify();
  };
  req.on('error', broken);
  req.on('close', () => {
    if (!complete()) broken(new Error('connection closed before the body ended'));
  });
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          const next = queue.shift();
          if (next) {
            controller.enqueue(new Uint8Array(next.buffer, next.byteOffset, next.length));
            return;
          }
          if (ended) {
            controller.close();
            return;
          }
          if (failed) throw failed;
          const waiting = new Promise<void>((r) => (wake = r));
          req.resume();
          await waiting;
        }
      },
      cancel() {
        discarding = true;
        queue.length = 0;
        if (onCancel === 'destroy') req.destroy();
        else req.resume(); // keeps the connection usable for the answer
      },
    },
    { highWaterMark: 0 },
  );
}

/** A Web `Request` for the outer request whose body was already read (for `context.outer`). */
function outerRequest(req: IncomingMessage, https: boolean, body: Uint8Array | undefined): Request {
  const url = new URL(req.url ?? '/', `${https ? 'https' : 'http'}://${req.headers.host ?? 'localhost'}`);
  const headers = new Headers();
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!;
    if (!name.startsWith(':')) headers.append(name, req.rawHeaders[i + 1]!);
  }
  const method = req.method ?? 'GET';
  return new Request(url, { method, headers, ...(body && method !== 'GET' && method !== 'HEAD' ? { body } : {}) });
}

function writeReply(res: ServerResponse, reply: HttpReply, keepAlive = true): void {
  const flat: string[] = [];
  for (const [k, v] of reply.headers) flat.push(k, v);
  const body = reply.body;
  if (!(body instanceof Uint8Array)) {
    if (!keepAlive) flat.push('connection', 'close');
    res.writeHead(reply.status, flat); // chunked: the length is not known yet
    void writeStream(res, body);
    return;
  }
  flat.push('content-length', String(body.length));
  if (!keepAlive) flat.push('connection', 'close');
  res.writeHead(reply.status, flat);
  res.end(body);
}

/**
 * Writes a streamed body as it is produced, reading only as fast as the
 * client takes it (backpressure: memory stays bounded). A body that fails
 * is cut: the connection is destroyed before the final chunk, so the
 * client sees an incomplete body, never a complete-looking one.
 */
async function writeStream(res: ServerResponse, body: ReadableStream<Uint8Array>): Promise<void> {
  const reader = body.getReader();
  const gone = new Promise<void>((resolve) => res.once('close', resolve));
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (res.destroyed) throw new Error('client went away');
      if (!res.write(value)) await Promise.race([new Promise<void>((r) => res.once('drain', r)), gone]);
    }
    res.end();
  } catch {
    res.destroy();
    await reader.cancel().catch(() => undefined);
  }
}

/** The request target's path: the raw target when it is a plain endpoint path, else what URL parsing makes of it. */
function pathnameOf(target: string, handler: AtlsHandler): string | undefined {
  if (handler.matches(target)) return target;
  try {
    return new URL(target, 'http://localhost').pathname;
  } catch {
    return undefined;
  }
}

/**
 * The `node:http` fast path of the ATLS endpoints: the handler's byte-level
 * core straight from `IncomingMessage` (body read into one buffer under the
 * size cap) to `res.writeHead` + `res.end(bytes)`, with no outer fetch
 * `Request`/`Response`. Other paths go to `fallback` (through
 * {@link toNodeListener}) or get the handler's 404.
 *
 * @example
 * ```ts
 * const handler = createAtlsHandler({ tls: { cert, key }, rawApp: echoRawApp });
 * http.createServer(atlsNodeListener(handler)).listen(8080);
 * ```
 */
export function atlsNodeListener(handler: AtlsHandler, options: AtlsNodeListenerOptions = {}) {
  const fallback = options.fallback ? toNodeListener(options.fallback, options) : undefined;
  return (req: IncomingMessage, res: ServerResponse): void => {
    const target = req.url ?? '/';
    const pathname = pathnameOf(target, handler);
    if (pathname === undefined) {
      req.resume();
      writeReply(res, errorReply(new AtlsError('INVALID_ARGUMENT', 'malformed request head', { source: 'remote' })));
      return;
    }
    if (fallback && !handler.matches(pathname)) {
      fallback(req, res);
      return;
    }
    const https = options.https ?? (req.socket as TLSSocket).encrypted === true;
    void respond(handler, new NodeRawRequest(req, pathname, https), res, options.onError);
  };
}

/** Runs the core and writes its answer (one async function: no closures per request). */
async function respond(
  handler: AtlsHandler,
  x: NodeRawRequest,
  res: ServerResponse,
  onError: ((error: unknown) => void) | undefined,
): Promise<void> {
  let reply: HttpReply;
  try {
    reply = await handler.serve(x);
  } catch (e) {
    // serve() never rejects; this is a bug of ours.
    onError?.(e);
    reply = errorReply(e);
  }
  // An unread body (405, 415, 413) is read and discarded on a connection kept open: closing it
  // under a client still sending makes that client fail its write (EPIPE) before it reads the answer.
  if (x.read === undefined && !x.complete) x.drain();
  try {
    writeReply(res, reply);
  } catch (e) {
    onError?.(e);
    res.destroy();
  }
}

/** Options of {@link createAtlsServer}: the handler's, plus what else the server answers. */
export interface AtlsServerOptions extends AtlsHandlerOptions {
  /** Requests to other paths (default: 404). */
  fallback?: WebHandler;
  /** See {@link NodeListenerOptions.https}. */
  https?: boolean;
  /** Timeouts and connection limits (defaults: DEFAULT_CONNECTION_LIMITS; limit events go to `onEvent`). */
  connections?: ConnectionLimits;
  /** Wraps the handler the server runs, e.g. `atls serve --workers` relaying flights to the worker that holds them (`atls` stays the handler itself). */
  wrapHandler?: (handler: AtlsHandler) => AtlsHandler;
  /**
   * Serve the endpoints' common requests with the lean HTTP/1.1 front (src/http/front.ts), handing
   * anything else to `node:http`; false: `node:http` reads every request. Default true.
   */
  front?: boolean;
}

/** A `node:http` server answering the ATLS endpoints; `handler` is exposed for stats. */
export interface AtlsNodeServer extends Server {
  atls: AtlsHandler;
  /** Open and idle connections. */
  connectionStats(): ConnectionStats;
}

/**
 * A `node:http` server for the ATLS endpoints (and `fallback` for anything
 * else), on the {@link atlsNodeListener} fast path. Call `listen()` on it.
 * Closing the server forgets the sessions.
 */
export function createAtlsServer(options: AtlsServerOptions): AtlsNodeServer {
  const handler = createAtlsHandler(options);
  const serving = options.wrapHandler ? options.wrapHandler(handler) : handler;
  const server = createHttpServer(
    httpServerTimeouts(options.connections),
    atlsNodeListener(serving, {
      ...(options.fallback ? { fallback: options.fallback } : {}),
      ...(options.https === undefined ? {} : { https: options.https }),
    }),
  );
  const connectionStats = limitConnections(server, options.connections, options.onEvent, new TrustedProxies(options.trustedProxies));
  if (options.front !== false) {
    attachFront(server, serving, {
      maxBodyBytes: wholeBodyCap(options.limits),
      ...(options.https === undefined ? {} : { https: options.https }),
    });
  }
  server.on('close', () => void handler.close());
  return Object.assign(server, { atls: handler, connectionStats });
}
