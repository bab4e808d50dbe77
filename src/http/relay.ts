/**
 * Flights relayed between the worker processes of one `atls serve --workers
 * N`. A handshake in progress (and a records-mode session) lives in one
 * process's TLS engine and cannot move; the node:cluster primary hands each
 * TCP connection to any worker. So a worker that receives a flight for a
 * session another worker minted ({@link sessionOwner} of the cookie's id)
 * passes the request to that worker and answers with its reply. Protected
 * messages are never relayed: every worker answers them from the shared store.
 *
 * The relay is HTTP/1.1 over a Unix socket of the owner's, in a directory
 * only the server's user can enter: the body goes on as it arrives and the
 * answer comes back as it is produced, each way with the sockets'
 * backpressure, so a relayed records-mode upload or download of any size
 * holds one piece at a time in each process.
 *
 * @example
 * ```ts
 * // in the owner:
 * const relayServer = await listenForRelays(handler, `${dir}/0.sock`);
 * // in every worker:
 * const relaying = relayingHandler(handler, { self: 1, count: 2, socketOf: (w) => `${dir}/${w}.sock`, maxBodyBytes });
 * http.createServer(atlsNodeListener(relaying)).listen(8080);
 * ```
 * @module
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import { rmSync } from 'node:fs';
import { AtlsError } from '../errors.js';
import { parseSessionId, sessionOwner } from '../store/index.js';
import { COOKIE_NAME, HEADER_FLIGHT_LENGTH } from './constants.js';
import { readCookie, setCookie } from './cookie.js';
import { httpServerTimeouts, type ConnectionLimits } from './connections.js';
import { atlsNodeListener, nodeBodyStream } from './node.js';
import type { AtlsHandler, AtlsRawReply, AtlsRawRequest } from './server.js';
import { bodyKind, errorReply } from './wire.js';
import { drainedOrClosed, readLimited } from '../streams.js';

/** Where this worker stands among its siblings, and how to reach one. */
export interface FlightRelay {
  /** This worker's index, 0..count-1. */
  self: number;
  count: number;
  /** The Unix socket on which worker `index` takes relayed requests. */
  socketOf(index: number): string;
  /** Largest body relayed from a front that cannot stream it (read whole, 413 above); streamed bodies are the owner's to limit. */
  maxBodyBytes: number;
}

/** The fields a relayed flight carries: all the endpoint reads of an outer request. */
const RELAYED_FIELDS = ['content-type', 'content-length', 'cookie', 'host', 'forwarded', 'x-forwarded-for', HEADER_FLIGHT_LENGTH];

/** What the relaying worker knew of the outer request and the owner cannot see on its own socket. */
const RELAY_HTTPS = 'atls-relay-https';
const RELAY_ADDRESS = 'atls-relay-address';

/**
 * Connections to the siblings, kept open between relays. Not one per
 * request: with `Connection: close` the owner closes as soon as its answer
 * is sent, which can cut a request body still being written (EPIPE). An
 * idle connection is dropped after 10 s, before the owner's keep-alive
 * timeout (60 s) could close it under a new request.
 */
const RELAY_AGENT = new Agent({ keepAlive: true, timeout: 10_000 });
const RELAY_KEEP_ALIVE_MS = 60_000;

/** Fields of the owner's answer that belong to its hop only (RFC 9110 §7.6.1), not to the client's. */
const HOP_FIELDS = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'date']);

/**
 * A handler that answers like `handler`, except that handshake flights of
 * sessions minted by another worker go to that worker.
 */
export function relayingHandler(handler: AtlsHandler, relay: FlightRelay): AtlsHandler {
  const serve = async (x: AtlsRawRequest): Promise<AtlsRawReply> => {
    const flight = x.method === 'POST' && handler.matches(x.pathname) && bodyKind(x.header('content-type')) === 'flight';
    const to = flight ? ownerOf(x, relay) : undefined;
    if (to === undefined) return handler.serve(x);
    try {
      return await relayTo(relay.socketOf(to), x, relay.maxBodyBytes);
    } catch (err) {
      // The owner is gone (its handshakes with it): the client drops the cookie and starts again.
      const lost = err instanceof AtlsError && err.code === 'CLOSED';
      const extra: Array<[string, string]> = lost ? [['set-cookie', setCookie(COOKIE_NAME, '', { path: x.pathname, secure: x.https, maxAge: 0 })]] : [];
      return errorReply(err, extra);
    }
  };
  // serveHeld too: the front calls it first, and the one inherited from `handler` would skip the relay.
  // Only protected messages take the held path, and they are never relayed (any worker has their keys).
  const serveHeld = (x: AtlsRawRequest, body: Uint8Array): AtlsRawReply | Promise<AtlsRawReply> =>
    bodyKind(x.header('content-type')) === 'protected' ? handler.serveHeld(x, body) : serve(x);
  return Object.assign((request: Request) => handler(request), handler, { serve, serveHeld });
}

/** The worker that minted the session named by the request's cookie, when it is another one. */
function ownerOf(x: AtlsRawRequest, relay: FlightRelay): number | undefined {
  const id = readCookie(x.header('cookie'), COOKIE_NAME);
  if (id === undefined || !parseSessionId(id)) return undefined;
  const owner = sessionOwner(id, relay.count);
  return owner === relay.self ? undefined : owner;
}

/**
 * `x` sent to the owner listening on `socketPath`; its reply once the
 * owner's head has come (the body follows as the owner sends it). CLOSED
 * when the owner cannot be reached (it died; a restarted one does not hold
 * the session).
 */
async function relayTo(socketPath: string, x: AtlsRawRequest, maxBodyBytes: number): Promise<AtlsRawReply> {
  const headers: Record<string, string> = { [RELAY_HTTPS]: x.https ? '1' : '0', host: x.authority };
  for (const name of RELAYED_FIELDS) {
    const v = x.header(name);
    if (v !== null && v !== undefined) headers[name] = v;
  }
  if (x.remoteAddress !== undefined) headers[RELAY_ADDRESS] = x.remoteAddress;
  const body = x.stream ? x.stream() : await x.body(maxBodyBytes);
  const req = httpRequest({ socketPath, method: 'POST', path: x.pathname, headers, agent: RELAY_AGENT });
  const answered = new Promise<IncomingMessage>((resolve, reject) => {
    req.once('response', resolve);
    req.on('error', (e) => reject(new AtlsError('CLOSED', `the worker holding this session cannot be reached (${String(e)}): handshake again`, { source: 'remote', cause: e })));
  });
  void sendBody(req, body);
  const res = await answered;
  const reply: AtlsRawReply = { status: res.statusCode ?? 502, headers: [], body: new Uint8Array(0) };
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i]!.toLowerCase();
    if (!HOP_FIELDS.has(name)) reply.headers.push([name, res.rawHeaders[i + 1]!]);
  }
  // The owner sends a Content-Length for an answer it held whole (bounded by its limits): kept whole, sent the same way.
  const length = res.headers['content-length'];
  reply.body = length !== undefined ? await readLimited(nodeBodyStream(res), Number(length), 'local') : nodeBodyStream(res, 'destroy');
  return reply;
}

/** Writes the relayed body with backpressure; a body that fails cuts the relayed request (the owner sees it truncated). */
async function sendBody(req: ReturnType<typeof httpRequest>, body: Uint8Array | ReadableStream<Uint8Array>): Promise<void> {
  if (body instanceof Uint8Array) {
    req.end(body);
    return;
  }
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (req.destroyed) throw new Error('the relayed request ended');
      if (!req.write(value)) await drainedOrClosed(req);
    }
    req.end();
  } catch (e) {
    req.destroy(e instanceof Error ? e : new Error(String(e)));
    await reader.cancel(e).catch(() => undefined);
  }
}

/**
 * Serves relayed requests for `handler` on the Unix socket `path` (a stale
 * one from a predecessor is removed): the endpoint sees the outer request
 * as the relaying worker saw it (https, client address).
 */
export async function listenForRelays(handler: AtlsHandler, path: string, connections?: ConnectionLimits): Promise<Server> {
  const asRelayed: AtlsHandler = Object.assign((request: Request) => handler(request), handler, {
    serve: (x: AtlsRawRequest) => handler.serve(relayedView(x)),
    serveHeld: (x: AtlsRawRequest) => handler.serve(relayedView(x)),
  });
  const server = createServer({ ...httpServerTimeouts(connections), keepAliveTimeout: RELAY_KEEP_ALIVE_MS }, atlsNodeListener(asRelayed));
  rmSync(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // exclusive: this worker's own socket, not one shared through the cluster primary.
    server.listen({ path, exclusive: true }, () => resolve());
  });
  return server;
}

/** A relayed request as the relaying worker saw it. */
function relayedView(x: AtlsRawRequest): AtlsRawRequest {
  const https = x.header(RELAY_HTTPS) === '1';
  return {
    method: x.method,
    pathname: x.pathname,
    header: (name) => x.header(name),
    body: (max) => x.body(max),
    ...(x.stream ? { stream: () => x.stream!() } : {}),
    remoteAddress: x.header(RELAY_ADDRESS) ?? undefined,
    https,
    authority: x.authority,
    outer: () => {
      const outer = x.outer();
      return https ? new Request(outer.url.replace(/^http:/, 'https:'), outer) : outer;
    },
  };
}
