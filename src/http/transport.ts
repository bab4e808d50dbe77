/**
 * The client's outer HTTP transport: undici with its own trust settings
 * (kept apart from the ATLS trust settings: per draft §6.3 the transport may
 * even go unverified) and HTTP/HTTPS proxies from options or the environment
 * (HTTP_PROXY, HTTPS_PROXY, NO_PROXY). Through a plain HTTP proxy, http
 * targets are forwarded in absolute form; https targets use CONNECT.
 *
 * @example
 * ```ts
 * const t = new HttpTransport({ insecure: true }, { env: process.env });
 * const res = await t.post(new URL('https://svc.example/.well-known/atls'), flight, { 'content-type': MEDIA_TYPE_FLIGHT });
 * ```
 * @module
 */
import { Agent, ProxyAgent, fetch as undiciFetch, type Dispatcher } from 'undici';
import { AtlsError } from '../errors.js';
import type { PemInput } from '../engines/types.js';
import { readBody } from './wire.js';

/** Keep-alive connections per origin unless `connections` says otherwise. */
const DEFAULT_CONNECTIONS = 16;

/** Options of the outer transport (not of ATLS). */
export interface AtlsTransportOptions {
  /** Trust anchors for an https transport (default: Node's root store). */
  ca?: PemInput | PemInput[];
  /** Do not verify the transport's TLS certificate (ATLS still authenticates the service). */
  insecure?: boolean;
  /** Extra outer request headers (e.g. credentials for a gateway); never protected. */
  headers?: Record<string, string>;
  /** Most keep-alive connections to one origin (default 16); more concurrent requests wait for one. */
  connections?: number;
  /** Longest wait for a TCP (and TLS) connection, ms (default undici's, 10 s). */
  connectTimeoutMs?: number;
  /** Longest wait for a response's headers, and between two chunks of its body, ms (default undici's, 300 s). */
  responseTimeoutMs?: number;
  /** Use this undici dispatcher instead of building one (proxy settings are then ignored). */
  dispatcher?: Dispatcher;
  /**
   * Send requests with this function instead of the network, e.g. an ATLS
   * handler directly (tests without sockets). Proxy and trust settings are ignored.
   */
  fetch?: (request: Request) => Promise<Response>;
}

/** Where proxies come from. */
export interface ProxySettings {
  /** Proxy URL for every target, or `false` for none; default: the environment. */
  proxy?: string | false;
  /** Environment to read HTTP_PROXY / HTTPS_PROXY / NO_PROXY from (default `process.env`). */
  env?: Record<string, string | undefined>;
}

/** An outer response whose body is still arriving. */
export interface StreamedTransportResponse {
  status: number;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
}

/** What the client needs of an outer response. */
export interface TransportResponse {
  status: number;
  headers: Headers;
  body: Uint8Array;
}

function envGet(env: Record<string, string | undefined>, name: string): string | undefined {
  // curl's convention: the lower-case name first (upper-case HTTP_PROXY is ignored by CGI-safe tools).
  const v = env[name.toLowerCase()] ?? env[name.toUpperCase()];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/**
 * True when NO_PROXY exempts `target`: `*`, a host name (matching it and its
 * subdomains; a leading `.` or `*.` is ignored), an IP literal, each optionally
 * with `:port`. Entries are separated by commas or spaces.
 */
export function noProxyMatches(target: URL, noProxy: string | undefined): boolean {
  if (!noProxy) return false;
  const host = target.hostname.toLowerCase().replace(/^\[|\]$/g, '');
  const port = target.port || (target.protocol === 'https:' ? '443' : '80');
  for (const raw of noProxy.split(/[\s,]+/)) {
    let entry = raw.trim().toLowerCase();
    if (entry === '') continue;
    if (entry === '*') return true;
    let entryPort: string | undefined;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry.startsWith('[') ? entry.replace(/^\[(.*)\](:\d+)?$/, '$1$2') : entry);
    if (m && m[2] !== undefined && !m[1]!.includes(':')) {
      entry = m[1]!;
      entryPort = m[2];
    }
    if (entryPort !== undefined && entryPort !== port) continue;
    entry = entry.replace(/^\*?\./, '');
    if (host === entry || host.endsWith(`.${entry}`)) return true;
  }
  return false;
}

/** The proxy URL for `target`, or undefined for a direct connection. */
export function proxyFor(target: URL, settings: ProxySettings): string | undefined {
  if (settings.proxy === false) return undefined;
  if (typeof settings.proxy === 'string') return settings.proxy;
  const env = settings.env ?? process.env;
  const p = envGet(env, target.protocol === 'https:' ? 'https_proxy' : 'http_proxy');
  if (!p || noProxyMatches(target, envGet(env, 'no_proxy'))) return undefined;
  return p;
}

/** Sends the client's POSTs; one instance per client, dispatchers cached per proxy. */
export class HttpTransport {
  private readonly dispatchers = new Map<string, Dispatcher>();

  constructor(
    private readonly options: AtlsTransportOptions = {},
    private readonly proxies: ProxySettings = {},
  ) {}

  /** POSTs `body` to `url`; resolves with the whole response body (at most `maxBytes`). */
  async post(
    url: URL,
    body: Uint8Array,
    headers: Record<string, string>,
    maxBytes: number,
    signal?: AbortSignal,
  ): Promise<TransportResponse> {
    const res = await this.postStream(url, body, headers, signal);
    const data = await readBody(res.body, maxBytes, res.headers.get('content-length'));
    return { status: res.status, headers: res.headers, body: data };
  }

  /**
   * POSTs `body` to `url`, a stream being sent as it is produced (Fetch
   * `duplex: 'half'`); resolves once the response's head has arrived, its
   * body still streaming.
   */
  async postStream(
    url: URL,
    body: Uint8Array | ReadableStream<Uint8Array>,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<StreamedTransportResponse> {
    const allHeaders = { ...this.options.headers, ...headers };
    // Fetch (HTTP-network-or-cache fetch, step 1) clones a request, teeing its body, unless its redirect
    // mode is "error": the branch never read would hold every byte of a streamed upload. A stream cannot
    // follow a redirect anyway (its bytes are gone), so it gets "error"; whole bodies keep "follow".
    const redirect = body instanceof Uint8Array ? {} : { redirect: 'error' as const };
    const init = { method: 'POST', headers: allHeaders, body, duplex: 'half' as const, ...redirect, ...(signal ? { signal } : {}) };
    let res: Response;
    try {
      if (this.options.fetch) {
        res = await this.options.fetch(new Request(url, init as RequestInit));
      } else {
        const r = await undiciFetch(url, { ...init, dispatcher: this.dispatcherFor(url) });
        res = r as unknown as Response; // undici's own Response class; the same shape as the global one
      }
    } catch (e) {
      throw transportError(e, url, signal);
    }
    return { status: res.status, headers: res.headers, body: res.body ? guardedBody(res.body, url, signal) : null };
  }

  /**
   * A plain HTTP(S) request, no ATLS (the policy layer, draft §6.2). With
   * `verify` the transport TLS is verified whatever `insecure` says. `body`
   * is the request's body as the caller holds it: bytes go with a
   * Content-Length, a stream as it is read.
   */
  async plain(
    request: Request,
    body: Uint8Array | ReadableStream<Uint8Array> | null,
    verify: boolean,
    signal?: AbortSignal,
  ): Promise<Response> {
    try {
      if (this.options.fetch) return await this.options.fetch(request);
      const url = new URL(request.url);
      // A stream is sent as it is read: with redirect 'manual' Fetch keeps no copy of it (the
      // client's own redirect handling resends bytes and refuses a stream on 307/308).
      const res = await undiciFetch(url, {
        method: request.method,
        headers: request.headers as unknown as Record<string, string>,
        body,
        duplex: 'half',
        redirect: 'manual',
        dispatcher: this.dispatcherFor(url, verify),
        ...(signal ? { signal } : {}),
      });
      return res as unknown as Response;
    } catch (e) {
      if (e instanceof AtlsError) throw e;
      if (signal?.aborted) throw signal.reason ?? e;
      throw new AtlsError('CLOSED', `transport to ${new URL(request.url).origin} failed: ${innermostMessage(e)}`, { source: 'remote', cause: e });
    }
  }

  /** The transport's own trust store, PEM (undefined: Node's root certificates). */
  get trustStore(): string[] | undefined {
    return this.options.ca === undefined ? undefined : pemList(this.options.ca);
  }

  /** A custom fetch or dispatcher hides the transport's TLS from us. */
  get opaque(): boolean {
    return this.options.fetch !== undefined || this.options.dispatcher !== undefined;
  }

  /** Which proxy a request to `url` would use (for logs). */
  proxyFor(url: URL): string | undefined {
    if (this.options.fetch || this.options.dispatcher) return undefined;
    return proxyFor(url, this.proxies);
  }

  private dispatcherFor(url: URL, verify = false): Dispatcher {
    if (this.options.dispatcher) return this.options.dispatcher;
    const proxy = proxyFor(url, this.proxies);
    const key = `${verify ? 'verify ' : ''}${proxy ?? ''}`;
    let d = this.dispatchers.get(key);
    if (!d) {
      const tls = {
        ...(this.options.ca !== undefined ? { ca: pemList(this.options.ca) } : {}),
        rejectUnauthorized: verify || this.options.insecure !== true,
      };
      const connections = this.options.connections ?? DEFAULT_CONNECTIONS;
      const timeouts = {
        ...(this.options.connectTimeoutMs !== undefined ? { connectTimeout: this.options.connectTimeoutMs } : {}),
        ...(this.options.responseTimeoutMs !== undefined
          ? { headersTimeout: this.options.responseTimeoutMs, bodyTimeout: this.options.responseTimeoutMs }
          : {}),
      };
      if (proxy === undefined) {
        d = new Agent({ connect: tls, connections, ...timeouts });
      } else {
        let proxyUrl: URL;
        try {
          proxyUrl = new URL(proxy);
        } catch {
          throw new AtlsError('INVALID_ARGUMENT', `proxy ${JSON.stringify(proxy)} is not a URL`);
        }
        // proxyTunnel false: http targets go in absolute form through a plain
        // HTTP proxy (undici would otherwise CONNECT); https targets still CONNECT.
        d = new ProxyAgent({ uri: proxyUrl.href, proxyTunnel: false, requestTls: tls, proxyTls: tls, connections, ...timeouts });
      }
      this.dispatchers.set(key, d);
    }
    return d;
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    const all = [...this.dispatchers.values()];
    this.dispatchers.clear();
    await Promise.all(all.map((d) => d.close().catch(() => undefined)));
  }
}

/** A failure of the transport as an AtlsError: TIMEOUT for an expired wait, CLOSED otherwise; an abort stays the abort, and an AtlsError of our own body stays itself. */
function transportError(e: unknown, url: URL, signal: AbortSignal | undefined): unknown {
  if (e instanceof AtlsError) return e;
  // Our own request body failed (e.g. TOO_LARGE past maxBodyBytes): that error, not the transport's.
  const cause = innermost(e);
  if (cause instanceof AtlsError) return cause;
  if (signal?.aborted) return signal.reason ?? e;
  if (TIMEOUT_CODES.has(innermostCode(e) ?? '')) {
    return new AtlsError('TIMEOUT', `transport to ${url.origin} timed out: ${innermostMessage(e)}`, { source: 'remote', cause: e });
  }
  return new AtlsError('CLOSED', `transport to ${url.origin} failed: ${innermostMessage(e)}`, { source: 'remote', cause: e });
}

/** The response body, its transport failures (a cut connection, a body timeout) turned into AtlsErrors; an abort by the caller's signal stays that abort, as in Fetch. */
function guardedBody(body: ReadableStream<Uint8Array>, url: URL, signal: AbortSignal | undefined): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let r: Awaited<ReturnType<typeof reader.read>>;
        try {
          r = await reader.read();
        } catch (e) {
          const err = transportError(e, url, signal);
          throw err instanceof AtlsError && err.code === 'CLOSED'
            ? new AtlsError('TRUNCATED_FLIGHT', `the body from ${url.origin} was cut short: ${innermostMessage(e)}`, { source: 'remote', cause: e })
            : err;
        }
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/**
 * The innermost message of an error's cause chain: undici wraps the real
 * reason (ECONNREFUSED, a proxy's 403 to CONNECT) in "fetch failed" and, for
 * a refused tunnel, in "Request was cancelled." as well.
 */
function innermostMessage(e: unknown): string {
  const cur = innermost(e);
  return cur instanceof Error ? cur.message : String(cur);
}

/** undici's codes for an expired wait. */
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

function innermostCode(e: unknown): string | undefined {
  const code = (innermost(e) as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function innermost(e: unknown): unknown {
  let cur = e;
  for (let depth = 0; depth < 8 && cur instanceof Error && cur.cause instanceof Error; depth++) cur = cur.cause;
  return cur;
}

function pemList(ca: PemInput | PemInput[]): string[] {
  const list = Array.isArray(ca) ? ca : [ca];
  return list.map((c) => (typeof c === 'string' ? c : Buffer.from(c).toString('latin1')));
}
