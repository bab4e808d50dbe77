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

const PEER = Symbol('atls connection peer');
const ACTIVE = Symbol('atls requests in progress');
type Tracked = Socket & { [PEER]?: string; [ACTIVE]?: number };

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
  /** Idle connections, longest idle first (a Map keeps insertion order). */
  const idle = new Map<Tracked, true>();
  /** The same per peer, and each peer's count of open connections. */
  const idleOf = new Map<string, Map<Tracked, true>>();
  const openOf = new Map<string, number>();
  const emit = (e: ConnectionEvent): void => {
    try {
      onEvent?.(e);
    } catch {
      // A logging hook must not break serving.
    }
  };

  /** A peer's idle map lives while the peer has open connections (not rebuilt on every request). */
  const setIdle = (s: Tracked, yes: boolean): void => {
    const peer = s[PEER]!;
    idle.delete(s);
    const mine = idleOf.get(peer);
    mine?.delete(s);
    if (yes) {
      idle.set(s, true);
      if (mine) mine.set(s, true);
      else idleOf.set(peer, new Map([[s, true]]));
    }
  };

  const evictOldest = (from: Map<Tracked, true> | undefined): boolean => {
    const oldest = from?.keys().next();
    if (!oldest || oldest.done) return false;
    setIdle(oldest.value, false);
    oldest.value.destroy();
    return true;
  };

  server.on('connection', (socket: Tracked) => {
    if (socket.destroyed) return;
    const peer = peerGroup(socket.remoteAddress);
    const exempt = trusted?.trusts(socket.remoteAddress) === true;
    if (!exempt && (openOf.get(peer) ?? 0) >= maxPerPeer) {
      emit({ type: 'limit', limit: 'connections-per-peer', peer });
      if (evictOldest(idleOf.get(peer))) emit({ type: 'evicted', what: 'connection', peer, reason: 'connections-per-peer' });
      else {
        emit({ type: 'refused', what: 'connection', peer, reason: 'connections-per-peer' });
        socket.destroy();
        return;
      }
    }
    if (open >= maxConnections) {
      emit({ type: 'limit', limit: 'connections', peer });
      const victim = idle.keys().next();
      if (!victim.done && evictOldest(idle)) emit({ type: 'evicted', what: 'connection', peer: victim.value[PEER]!, reason: 'connections' });
      else {
        emit({ type: 'refused', what: 'connection', peer, reason: 'connections' });
        socket.destroy();
        return;
      }
    }
    socket[PEER] = peer;
    socket[ACTIVE] = 0;
    open++;
    openOf.set(peer, (openOf.get(peer) ?? 0) + 1);
    setIdle(socket, true);
    socket.once('close', () => {
      setIdle(socket, false);
      open--;
      const n = (openOf.get(peer) ?? 1) - 1;
      if (n === 0) {
        openOf.delete(peer);
        idleOf.delete(peer);
      } else openOf.set(peer, n);
    });
  });

  const activity: ConnectionActivity = {
    busy(s: Tracked): void {
      if (s[PEER] === undefined) return;
      s[ACTIVE] = (s[ACTIVE] ?? 0) + 1;
      setIdle(s, false);
    },
    idle(s: Tracked): void {
      if (s[PEER] === undefined) return;
      s[ACTIVE] = (s[ACTIVE] ?? 1) - 1;
      if (s[ACTIVE] === 0 && !s.destroyed) setIdle(s, true); // idle again: the newest, last to go
    },
  };
  (server as ActivityServer)[ACTIVITY] = activity;

  /** One listener for every response (no closure per request): its request's socket is idle again when none is in progress. */
  function onResponseClose(this: ServerResponse): void {
    activity.idle(this.req.socket as Tracked);
  }

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if ((req.socket as Tracked)[PEER] === undefined) return;
    activity.busy(req.socket as Tracked);
    res.once('close', onResponseClose);
  });

  // Node answers a malformed or timed-out request itself unless someone listens; the same answers here, and a timeout event.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Tracked) => {
    const timedOut = err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    if (timedOut) emit({ type: 'timeout', what: 'request', peer: socket[PEER] ?? peerGroup(socket.remoteAddress) });
    // As Node does: answer only when no response of ours has started on this socket.
    const current = (socket as Tracked & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (err.code !== 'ECONNRESET' && socket.writable && !current?.headersSent) {
      const status = timedOut ? '408 Request Timeout' : err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    }
    socket.destroySoon();
  });

  return () => ({ open, idle: idle.size });
}
