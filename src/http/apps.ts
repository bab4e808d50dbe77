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
import { Readable } from 'node:stream';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { request as undiciRequest, type Dispatcher } from 'undici';
import { DEFAULT_ENDPOINTS, DEFAULT_MAX_BODY_BYTES } from './constants.js';
import { nodeBodyStream, type ConnectionInfo } from './node.js';

/**
 * Fields that belong to one hop only (RFC 9110 §7.6.1), and the proxy's own
 * credentials (RFC 9110 §11.7.1, §11.7.2: consumed by the proxy they are for).
 * Fields named by Connection go too.
 */
const HOP_BY_HOP = [
  'connection', 'proxy-connection', 'keep-alive', 'te', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate',
];

/**
 * Also not forwarded with a request: Host (the next hop's own) and Expect
 * (RFC 9110 §10.1.1: 100-continue is answered hop by hop, and this hop has
 * the body already; undici refuses the field).
 */
const REQUEST_ONLY_HOP = ['host', 'expect'];

/** The fields of `src` that travel on to the next hop, in order (`set-cookie` kept apart). */
function forwardableFields(src: Headers, drop: readonly string[] = []): Array<[string, string]> {
  const gone = new Set([...HOP_BY_HOP, ...drop]);
  for (const token of (src.get('connection') ?? '').split(',')) {
    if (token.trim()) gone.add(token.trim().toLowerCase());
  }
  const out: Array<[string, string]> = [];
  for (const [name, value] of src) if (!gone.has(name) && name !== 'set-cookie') out.push([name, value]);
  if (!gone.has('set-cookie')) for (const c of src.getSetCookie()) out.push(['set-cookie', c]);
  return out;
}

/** RFC 7239 §6: a node is an IPv4 address, or a bracketed IPv6 address (quoted, below). */
function forwardedNode(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1]!;
  return address.includes(':') ? `[${address}]` : address;
}

/** RFC 7239 §4: a value is a token or a quoted-string. */
function forwardedValue(v: string): string {
  return /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/**
 * The request's fields plus this hop's Forwarded element (RFC 7239: for =
 * the client's address, host = the Host it asked for, proto) and
 * X-Forwarded-For, each appended to what earlier proxies wrote.
 */
function withForwarded(fields: Array<[string, string]>, hop: { for: string | undefined; host: string; proto: string }): Array<[string, string]> {
  const node = hop.for === undefined ? 'unknown' : forwardedNode(hop.for);
  const element = `for=${forwardedValue(node)};host=${forwardedValue(hop.host)};proto=${hop.proto}`;
  const out = fields.filter(([n]) => n !== 'forwarded' && n !== 'x-forwarded-for');
  const prior = (name: string): string | undefined => {
    const v = fields.filter(([n]) => n === name).map(([, x]) => x);
    return v.length > 0 ? v.join(', ') : undefined;
  };
  const f = prior('forwarded');
  const x = prior('x-forwarded-for');
  out.push(['forwarded', f === undefined ? element : `${f}, ${element}`]);
  const xff = hop.for === undefined ? undefined : node.replace(/^\[|\]$/g, '');
  if (xff !== undefined || x !== undefined) out.push(['x-forwarded-for', [x, xff].filter((v) => v !== undefined).join(', ')]);
  return out;
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

/** Reverse sidecar: the transport the client reported was intercepted (`?1`) or not (`?0`) (draft §6.2). */
export const HEADER_UPSTREAM_INTERCEPTED = 'atls-transport-intercepted';
/** Reverse sidecar: the issuer of the transport certificate the client was shown, RDNs joined by `, `. */
export const HEADER_UPSTREAM_ISSUER = 'atls-transport-issuer';

/** Node prints one RDN per line; a header value is one line of visible ASCII. */
function oneLine(dn: string): string {
  return dn.split('\n').join(', ').replace(/[^\x20-\x7e]/g, '?');
}

/** Options of {@link upstreamApp}. */
export interface UpstreamOptions {
  /** Add these headers to each forwarded request (e.g. the peer's identity, computed per request). */
  peerHeaders?: (peer: Parameters<AtlsApp>[1]) => Record<string, string>;
  /**
   * Reach the upstream with this fetch instead of undici's `request` (note:
   * a fetch adds fields of its own, such as `sec-fetch-mode` and `accept-encoding`;
   * and a Fetch-standard fetch clones a request whose redirect mode is not
   * `error`, teeing its body, so a streamed upload is held whole while it is sent).
   */
  fetch?: (request: Request) => Promise<Response>;
  /** The undici dispatcher for the upstream (default: undici's global one). */
  dispatcher?: Dispatcher;
}

/** Statuses whose responses have no content (RFC 9110 §15.3.5, §15.4.5). */
const NO_CONTENT = new Set([204, 205, 304]);

function badGateway(what: string, e: unknown): Response {
  return new Response(`${what}: ${e instanceof Error ? e.message : String(e)}\n`, {
    status: 502,
    headers: { 'content-type': 'text/plain; charset=utf-8' },
  });
}

/**
 * A reverse sidecar: forwards each inner request to `upstream` (same path
 * and query, upstream's origin) as it came: its method, fields and body,
 * minus the hop-by-hop fields (RFC 9110 §7.6.1), plus Forwarded and
 * X-Forwarded-For naming the ATLS client's address. It uses undici's
 * `request`, which adds no fields but Host (the upstream's) and the body's
 * framing. The upstream's answer comes back likewise, redirects and
 * content codings untouched. The client's transport report goes along as
 * `atls-transport-intercepted` and `atls-transport-issuer` when it sent one
 * (any such fields of its own are dropped). An unreachable upstream becomes
 * an inner 502.
 */
export function upstreamApp(upstream: string | URL, options: UpstreamOptions = {}): AtlsApp {
  const base = new URL(upstream);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new AtlsError('INVALID_ARGUMENT', `upstream must be an http(s) URL, not ${base.protocol}`);
  }
  const prefix = base.pathname.replace(/\/$/, '');
  return async (request, peer, context) => {
    const inner = new URL(request.url);
    const target = new URL(`${prefix}${inner.pathname}${inner.search}`, base.origin);
    const fields = withForwarded(forwardableFields(request.headers, REQUEST_ONLY_HOP), {
      for: context?.remoteAddress,
      host: inner.host,
      proto: inner.protocol.slice(0, -1),
    });
    // The client's transport report, as two fields the upstream can trust; the CoAP service calls HTTP apps without a peer.
    const report = (peer as Parameters<AtlsApp>[1] | undefined)?.transport;
    const own = (name: string): boolean => name === HEADER_UPSTREAM_INTERCEPTED || name === HEADER_UPSTREAM_ISSUER;
    for (let i = fields.length - 1; i >= 0; i--) if (own(fields[i]![0].toLowerCase())) fields.splice(i, 1);
    if (report) {
      fields.push([HEADER_UPSTREAM_INTERCEPTED, report.intercepted ? '?1' : '?0']);
      if (report.issuer !== undefined) fields.push([HEADER_UPSTREAM_ISSUER, oneLine(report.issuer)]);
    }
    for (const [k, v] of Object.entries(options.peerHeaders?.(peer) ?? {})) fields.push([k.toLowerCase(), v]);
    const hasBody = request.body !== null && request.method !== 'GET' && request.method !== 'HEAD';
    if (options.fetch) {
      try {
        const res = await options.fetch(
          new Request(target, { method: request.method, headers: fields, redirect: 'manual', ...(hasBody ? { body: request.body, duplex: 'half' } : {}) } as RequestInit),
        );
        return new Response(NO_CONTENT.has(res.status) ? null : res.body, { status: res.status, headers: forwardableFields(res.headers) });
      } catch (e) {
        return badGateway(`upstream ${base.origin} unreachable`, e);
      }
    }
    try {
      const res = await undiciRequest(target, {
        method: request.method as Dispatcher.HttpMethod,
        headers: fields.flat(),
        ...(hasBody ? { body: Readable.fromWeb(request.body as NodeReadableStream<Uint8Array>) } : {}),
        ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      });
      const headers = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
      }
      const empty = NO_CONTENT.has(res.statusCode) || request.method === 'HEAD';
      if (empty) res.body.resume();
      const body = empty ? null : nodeBodyStream(res.body, 'destroy');
      return new Response(body, { status: res.statusCode, headers: forwardableFields(headers) });
    } catch (e) {
      return badGateway(`upstream ${base.origin} unreachable`, e);
    }
  };
}

/** A local body declared this small is read whole (it can then ride with a handshake and be resent). */
const WHOLE_LOCAL_BODY_MAX = 64 * 1024;

/**
 * A local client's body, at most `max` bytes, else TOO_LARGE: read whole
 * when its content-length says it is small, otherwise passed on as a stream
 * as it arrives (`tooLarge()` then tells whether the stream failed for its
 * size). The local stream is left alone rather than cancelled: cancelling
 * destroys the connection before the 413 is written, and the client (curl
 * after its 100-continue) never sees it; the server discards the rest after
 * the answer.
 */
async function localBody(request: Request, max: number): Promise<{ body: Uint8Array | ReadableStream<Uint8Array>; tooLarge: () => boolean }> {
  const declared = request.headers.get('content-length');
  const length = declared !== null && /^\d+$/.test(declared) ? Number(declared) : undefined;
  if (length !== undefined && length > max) {
    throw new AtlsError('TOO_LARGE', `body of ${declared} bytes exceeds ${max}`, { source: 'remote' });
  }
  if (!request.body) return { body: new Uint8Array(0), tooLarge: () => false };
  const reader = request.body.getReader();
  let total = 0;
  let over = false;
  const next = async (): Promise<Uint8Array | undefined> => {
    let r: Awaited<ReturnType<typeof reader.read>>;
    try {
      r = await reader.read();
    } catch (e) {
      throw new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source: 'remote', cause: e });
    }
    if (r.done) return undefined;
    total += r.value.length;
    if (total > max) {
      over = true;
      reader.releaseLock();
      throw new AtlsError('TOO_LARGE', `body exceeds ${max} bytes`, { source: 'remote' });
    }
    return r.value;
  };
  if (length !== undefined && length <= WHOLE_LOCAL_BODY_MAX) {
    const parts: Uint8Array[] = [];
    for (let piece = await next(); piece; piece = await next()) parts.push(piece);
    reader.releaseLock();
    return { body: Buffer.concat(parts, total), tooLarge: () => over };
  }
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const piece = await next();
        if (piece) controller.enqueue(piece);
        else controller.close();
      },
    },
    { highWaterMark: 0 },
  );
  return { body, tooLarge: () => over };
}

/** Options of {@link forwardHandler}. */
export interface ForwardOptions {
  /** Largest request body taken from a local client (413 above; default 1 MiB, the server's default). */
  maxBodyBytes?: number;
}

/**
 * A forward sidecar: any local plain-HTTP request is sent through `client`
 * to the same path on `to`'s origin, ATLS-protected, as it came: method,
 * fields and body, minus the hop-by-hop fields, plus Forwarded and
 * X-Forwarded-For naming the local client. Redirects are passed back, not
 * followed. A body the service refuses as too large comes back as its 413;
 * other ATLS failures become a local 502 with a one-line reason.
 */
export function forwardHandler(
  client: AtlsClient,
  to: string | URL,
  options: ForwardOptions = {},
): (request: Request, connection?: ConnectionInfo) => Promise<Response> {
  const base = new URL(to);
  const max = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  // `to` may name the service's ATLS endpoint rather than its origin: the endpoint is not a prefix.
  const path = base.pathname.replace(/\/$/, '');
  const prefix = (DEFAULT_ENDPOINTS as readonly string[]).includes(path) ? '' : path;
  return async (request, connection) => {
    const local = new URL(request.url);
    const target = new URL(`${prefix}${local.pathname}${local.search}`, base.origin);
    const hasBody = request.method !== 'GET' && request.method !== 'HEAD';
    const fields = withForwarded(forwardableFields(request.headers, REQUEST_ONLY_HOP), {
      for: connection?.remoteAddress,
      host: local.host,
      proto: local.protocol.slice(0, -1),
    });
    let tooLarge = (): boolean => false;
    try {
      const local = hasBody ? await localBody(request, max) : undefined;
      if (local) tooLarge = local.tooLarge;
      // A stream body goes on as it arrives (the service's answer streams back the same way).
      return await client.fetch(target, {
        method: request.method,
        headers: fields,
        redirect: 'manual',
        ...(local ? { body: local.body, duplex: 'half' } : {}),
      } as RequestInit);
    } catch (e) {
      if (tooLarge() || (e instanceof AtlsError && e.code === 'TOO_LARGE')) {
        const message = e instanceof AtlsError ? e.message : `body exceeds ${max} bytes`;
        return new Response(`atls proxy: ${message}\n`, { status: 413, headers: { 'content-type': 'text/plain; charset=utf-8' } });
      }
      const reason = e instanceof AtlsError ? `${e.message} [${e.code}]` : e instanceof Error ? e.message : String(e);
      return new Response(`atls proxy: ${reason}\n`, { status: 502, headers: { 'content-type': 'text/plain; charset=utf-8' } });
    }
  };
}
