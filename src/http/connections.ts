/**
 * Timeouts and connection limits of a `node:http` server. Node's defaults
 * let anyone hold every descriptor (no connection cap, 60 s to send headers,
 * 300 s for a slow body); here a connection must send its headers within
 * `headersTimeoutMs`, its whole request within `requestTimeoutMs`, and may
 * sit idle between requests for `keepAliveTimeoutMs`. At the connection cap
 * the connection idle longest (no request in progress, including one still
 * trickling its headers) is closed to make room, so that idle connections,
 * however many, cannot lock out a client that sends a request; one peer
 * (an address, or a /64) holds at most `maxConnectionsPerPeer`.
 *
 * @example
 * ```ts
 * const server = http.createServer(listener);
 * limitConnections(server, { maxConnections: 4096 }, (e) => console.log(e));
 * ```
 * @module
 */
import type { Server, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { AtlsError } from '../errors.js';
import { peerGroup, type TrustedProxies } from '../peers.js';
import { emptyGroup, RecencyLists, type RecencyEntry, type RecencyGroup } from '../recency.js';

/** Connection limits and timeouts (defaults in {@link DEFAULT_CONNECTION_LIMITS}). */
export interface ConnectionLimits {
  /** Open connections at once; at the cap the longest-idle one is closed for a new one. */
  maxConnections?: number;
  /** Open connections of one peer (an address; a /64 for IPv6); trusted proxies are exempt. */
  maxConnectionsPerPeer?: number;
  /** From connecting (or the previous response) to the end of the request headers. */
  headersTimeoutMs?: number;
  /** From connecting to the end of the whole request, body included. */
  requestTimeoutMs?: number;
  /** Idle time allowed between requests on a kept-alive connection. */
  keepAliveTimeoutMs?: number;
}

/** The defaults (docs/security.md lists them with the reasons). */
export const DEFAULT_CONNECTION_LIMITS: Readonly<Required<ConnectionLimits>> = Object.freeze({
  maxConnections: 8192,
  maxConnectionsPerPeer: 1024,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
});

/** What the connection table reports: a limit was hit, a connection made room. */
export type ConnectionEvent =
  | { type: 'limit'; limit: 'connections' | 'connections-per-peer'; peer: string }
  | { type: 'evicted'; what: 'connection'; peer: string; reason: 'connections' | 'connections-per-peer' }
  | { type: 'refused'; what: 'connection'; peer: string; reason: 'connections' | 'connections-per-peer' }
  | { type: 'timeout'; what: 'request'; peer: string };

/** Counters of a guarded server. */
export interface ConnectionStats {
  open: number;
  idle: number;
}

/**
 * The `http.createServer` options that carry the timeouts. Node checks them
 * every `connectionsCheckingInterval` (30 s by default, which would let a
 * 10 s header timeout run to 40 s): here a quarter of the header timeout, at most 1 s.
 */
export function httpServerTimeouts(limits: ConnectionLimits = {}): {
  headersTimeout: number;
  requestTimeout: number;
  keepAliveTimeout: number;
  connectionsCheckingInterval: number;
} {
  const d = DEFAULT_CONNECTION_LIMITS;
  const headersTimeout = positiveInt(limits.headersTimeoutMs, d.headersTimeoutMs, 'headersTimeoutMs');
  const requestTimeout = positiveInt(limits.requestTimeoutMs, d.requestTimeoutMs, 'requestTimeoutMs');
  return {
    headersTimeout,
    requestTimeout: Math.max(requestTimeout, headersTimeout), // Node wants requestTimeout >= headersTimeout
    keepAliveTimeout: positiveInt(limits.keepAliveTimeoutMs, d.keepAliveTimeoutMs, 'keepAliveTimeoutMs'),
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(headersTimeout / 4))),
  };
}

function positiveInt(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v <= 0) throw new AtlsError('INVALID_ARGUMENT', `${name} must be a positive integer`);
  return v;
}

/** How a front that reads its sockets itself (src/http/front.ts) tells the connection table that a request started or ended. */
export interface ConnectionActivity {
  busy(socket: Socket): void;
  idle(socket: Socket): void;
}

const ACTIVITY = Symbol('atls connection activity');
type ActivityServer = Server & { [ACTIVITY]?: ConnectionActivity };

/** The connection table {@link limitConnections} keeps for `server`, if any. */
export function connectionActivity(server: Server): ConnectionActivity | undefined {
  return (server as ActivityServer)[ACTIVITY];
}

/** A peer's (an address, or a /64) open connections; its idle ones, oldest first, are the group's list. */
interface Peer extends RecencyGroup<Entry> {
  name: string;
  open: number;
}

/**
 * A connection in the table, in two recency lists while idle (src/recency.ts: a request starting or
 * ending moves its connection with a few pointer writes): all idle connections, and its peer's.
 */
interface Entry extends RecencyEntry<Entry> {
  socket: Socket;
  peer: Peer;
  /** Requests in progress. */
  active: number;
  idle: boolean;
}

const ENTRY = Symbol('atls connection entry');
type Tracked = Socket & { [ENTRY]?: Entry };

/**
 * Applies timeouts and connection limits to `server` (before `listen`);
 * create it with {@link httpServerTimeouts} so that the timeouts are checked
 * often enough. Returns live counters.
 */
export function limitConnections(
  server: Server,
  limits: ConnectionLimits = {},
  onEvent?: (e: ConnectionEvent) => void,
  trusted?: TrustedProxies,
): () => ConnectionStats {
  const d = DEFAULT_CONNECTION_LIMITS;
  const maxConnections = positiveInt(limits.maxConnections, d.maxConnections, 'maxConnections');
  const maxPerPeer = positiveInt(limits.maxConnectionsPerPeer, d.maxConnectionsPerPeer, 'maxConnectionsPerPeer');
  const t = httpServerTimeouts(limits);
  server.headersTimeout = t.headersTimeout;
  server.requestTimeout = t.requestTimeout;
  server.keepAliveTimeout = t.keepAliveTimeout;

  let open = 0;
  /** Idle connections, longest idle first. */
  const idle = new RecencyLists<Entry>();
  /** Peers with open connections. */
  const peers = new Map<string, Peer>();
  const emit = (e: ConnectionEvent): void => {
    try {
      onEvent?.(e);
    } catch {
      // A logging hook must not break serving.
    }
  };

  /** Appends `e` to both idle lists (the newest, last to go). */
  const link = (e: Entry): void => {
    e.idle = true;
    idle.append(e, e.peer);
  };

  const unlink = (e: Entry): void => {
    if (!e.idle) return;
    e.idle = false;
    idle.unlink(e, e.peer);
  };

  const evict = (victim: Entry | undefined): boolean => {
    if (!victim) return false;
    unlink(victim);
    victim.socket.destroy();
    return true;
  };

  server.on('connection', (socket: Tracked) => {
    if (socket.destroyed) return;
    const name = peerGroup(socket.remoteAddress);
    const exempt = trusted?.trusts(socket.remoteAddress) === true;
    let peer = peers.get(name);
    if (!exempt && peer !== undefined && peer.open >= maxPerPeer) {
      emit({ type: 'limit', limit: 'connections-per-peer', peer: name });
      if (evict(peer.oldest)) emit({ type: 'evicted', what: 'connection', peer: name, reason: 'connections-per-peer' });
      else {
        emit({ type: 'refused', what: 'connection', peer: name, reason: 'connections-per-peer' });
        socket.destroy();
        return;
      }
    }
    if (open >= maxConnections) {
      emit({ type: 'limit', limit: 'connections', peer: name });
      const victim = idle.oldest;
      if (evict(victim)) emit({ type: 'evicted', what: 'connection', peer: victim!.peer.name, reason: 'connections' });
      else {
        emit({ type: 'refused', what: 'connection', peer: name, reason: 'connections' });
        socket.destroy();
        return;
      }
    }
    if (peer === undefined) {
      peer = { name, open: 0, ...emptyGroup<Entry>() };
      peers.set(name, peer);
    }
    const entry: Entry = { socket, peer, active: 0, idle: false, older: undefined, newer: undefined, groupOlder: undefined, groupNewer: undefined };
    socket[ENTRY] = entry;
    open++;
    peer.open++;
    link(entry);
    socket.once('close', () => {
      unlink(entry);
      open--;
      if (--entry.peer.open === 0) peers.delete(entry.peer.name);
    });
  });

  const activity: ConnectionActivity = {
    busy(s: Tracked): void {
      const e = s[ENTRY];
      if (e === undefined) return;
      e.active++;
      unlink(e);
    },
    idle(s: Tracked): void {
      const e = s[ENTRY];
      if (e === undefined) return;
      e.active = e.active > 0 ? e.active - 1 : 0;
      if (e.active === 0 && !s.destroyed) {
        unlink(e);
        link(e); // idle again: the newest, last to go
      }
    },
  };
  (server as ActivityServer)[ACTIVITY] = activity;

  /** One listener for every response (no closure per request): its request's socket is idle again when none is in progress. */
  function onResponseClose(this: ServerResponse): void {
    activity.idle(this.req.socket as Tracked);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if ((req.socket as Tracked)[ENTRY] === undefined) return;
    activity.busy(req.socket as Tracked);
    res.once('close', onResponseClose);
  });

  // Node answers a malformed or timed-out request itself unless someone listens; the same answers here, and a timeout event.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Tracked) => {
    const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timedOut) emit({ type: 'timeout', what: 'request', peer: socket[ENTRY]?.peer.name ?? peerGroup(socket.remoteAddress) });
    // As Node does: answer only when no response of ours has started on this socket.
    const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (err.code !== 'ECONNRESET' && socket.writable && !current?.headersSent) {
      const status = timedOut ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    }
    socket.destroySoon();
  });

  return () => ({ open, idle: idle.size });
}
