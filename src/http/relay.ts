/**
 * Handshake flights relayed between the worker processes of one
 * `atls serve --workers N`. A handshake in progress (and a records-mode
 * session) lives in one process's TLS engine and cannot move; the node:cluster
 * primary hands each TCP connection to any worker. So a worker that receives
 * a flight for a session another worker minted ({@link sessionOwner} of the
 * cookie's id) passes the request to that worker and answers with its reply.
 * Protected messages are never relayed: every worker answers them from the
 * shared store.
 *
 * @example
 * ```ts
 * const relaying = relayingHandler(handler, {
 *   self: 0,
 *   count: 2,
 *   maxBodyBytes: 1 << 20,
 *   relay: (to, request) => primary.call('relay', { to, request }) as Promise<AtlsRawReply>,
 * });
 * http.createServer(atlsNodeListener(relaying)).listen(8080);
 * // in the owner, for each relayed request:
 * const reply = await serveRelayed(handler, request);
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { parseSessionId, sessionOwner } from '../store/index.js';
import { COOKIE_NAME, HEADER_FLIGHT_LENGTH } from './constants.js';
import { readCookie, setCookie } from './cookie.js';
import type { AtlsHandler, AtlsRawReply, AtlsRawRequest } from './server.js';
import { bodyKind, errorReply } from './wire.js';
import { readLimited } from '../streams.js';

/** A request as it crosses to the worker that holds its session: plain data, structured-clone safe. */
export interface RelayedRequest {
  method: string;
  pathname: string;
  /** The request fields the endpoint reads, lower-case names. */
  headers: Array<[string, string]>;
  body: Uint8Array;
  https: boolean;
  authority: string;
}

/** Where this worker stands among its siblings, and how to reach one. */
export interface FlightRelay {
  /** This worker's index, 0..count-1. */
  self: number;
  count: number;
  /** Largest body relayed (the handler's own limit, `--max-body`); larger ones get 413 here. */
  maxBodyBytes: number;
  /** Runs `request` in worker `to`; rejects (e.g. CLOSED) when it cannot be reached. */
  relay(to: number, request: RelayedRequest): Promise<AtlsRawReply>;
}

/** The fields a relayed flight carries: all the endpoint reads of an outer request. */
const RELAYED_FIELDS = ['content-type', 'content-length', 'cookie', 'host', HEADER_FLIGHT_LENGTH];

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
      const headers: Array<[string, string]> = [];
      for (const name of RELAYED_FIELDS) {
        const v = x.header(name);
        if (v !== null && v !== undefined) headers.push([name, v]);
      }
      const body = await x.body(relay.maxBodyBytes);
      return await relay.relay(to, { method: x.method, pathname: x.pathname, headers, body, https: x.https, authority: x.authority });
    } catch (err) {
      // The owner is gone (its handshakes with it): the client drops the cookie and starts again.
      const lost = err instanceof AtlsError && err.code === 'CLOSED';
      const extra: Array<[string, string]> = lost ? [['set-cookie', setCookie(COOKIE_NAME, '', { path: x.pathname, secure: x.https, maxAge: 0 })]] : [];
      return errorReply(err, extra);
    }
  };
  return Object.assign((request: Request) => handler(request), handler, { serve });
}

/** The worker that minted the session named by the request's cookie, when it is another one. */
function ownerOf(x: AtlsRawRequest, relay: FlightRelay): number | undefined {
  const id = readCookie(x.header('cookie'), COOKIE_NAME);
  if (id === undefined || !parseSessionId(id)) return undefined;
  const owner = sessionOwner(id, relay.count);
  return owner === relay.self ? undefined : owner;
}

/** Runs a relayed request through this worker's handler. */
export async function serveRelayed(handler: AtlsHandler, r: RelayedRequest): Promise<AtlsRawReply> {
  const fields = new Map(r.headers);
  const x: AtlsRawRequest = {
    method: r.method,
    pathname: r.pathname,
    header: (name) => fields.get(name),
    body: async (max) => {
      if (r.body.length > max) throw new AtlsError('TOO_LARGE', `body of ${r.body.length} bytes exceeds ${max}`, { source: 'remote' });
      return r.body;
    },
    https: r.https,
    authority: r.authority,
    outer: () =>
      new Request(`${r.https ? 'https' : 'http'}://${r.authority}${r.pathname}`, {
        method: r.method,
        headers: r.headers,
        ...(r.method !== 'GET' && r.method !== 'HEAD' ? { body: r.body } : {}),
      }),
  };
  const reply = await handler.serve(x);
  // The answer crosses the IPC channel as bytes: a streamed one is gathered here (bounded like its request).
  if (!(reply.body instanceof Uint8Array)) reply.body = await readLimited(reply.body, MAX_RELAYED_REPLY, 'local');
  return reply;
}

/** Largest streamed answer a relayed request may get (relayed flights are handshakes and records-mode requests). */
const MAX_RELAYED_REPLY = 64 * 1024 * 1024;
