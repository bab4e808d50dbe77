/**
 * The ATLS client over CoAP (docs/protocol.md §6): runs the handshake by
 * POSTing flights to `/.well-known/atls` and then to the session resource the
 * server named in Location-Path, and sends inner CoAP requests (or Binary
 * HTTP requests) in protected messages. Optionally through a CoAP forward
 * proxy (Proxy-Uri, RFC 7252 §5.10.2), such as libcoap's `coap-server -P`.
 *
 * @example
 * ```ts
 * const client = new AtlsCoapClient({ url: 'coap://127.0.0.1:5684', tls: { ca, serverName: 'localhost' } });
 * const res = await client.request({ method: 'POST', pathname: '/echo', payload: 'hi' });
 * console.log(res.code, new TextDecoder().decode(res.payload)); // "2.05 hi"
 * await client.close();
 *
 * // one shot:
 * const r = await coapFetch('coap://127.0.0.1:5684/echo', { method: 'POST', payload: 'hi', tls: { ca } });
 * ```
 * @module
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { AtlsError } from '../errors.js';
import { isIdempotent } from '../http/wire.js';
import { resolveUnavailableRetry, retryDelayMs, type UnavailableRetryOptions } from '../retry.js';
import type { HandshakeInfo, TlsClientConfig, TlsEngine } from '../engines/types.js';
import { AtlsClientSession } from '../session/session.js';
import type { FlightResult, Mode } from '../session/types.js';
import type { ProtectedChannelOptions } from '../protect/index.js';
import { bhttpToResponse, requestToBhttp } from '../bhttp/index.js';
import { concatBytes } from '../bytes.js';
import { CoapCode, DEFAULT_COAP_PORT, METHOD_CODES, OptionNumber, codeToString, type TransmissionParameters } from './constants.js';
import { getLocationPath, getOption, getUintOption, pathOptions, queryOptions, stringOption, uintOption, type CoapOption } from './packet.js';
import { blockwiseRequest, type AssembledResponse, type OutgoingRequest, type Peer } from './blockwise.js';
import { CoapEndpoint, type EndpointOptions } from './endpoint.js';
import { decodeInner, encodeInner } from './inner.js';
import { DEFAULT_ATLS_COAP_FORMATS, type AtlsCoapFormats } from './server.js';

/** Options of {@link AtlsCoapClient}. */
export interface AtlsCoapClientOptions {
  /** `coap://host:port` of the ATLS server (a path is ignored; the endpoint is `/.well-known/atls`). */
  url: string | URL;
  tls: TlsClientConfig;
  engine?: TlsEngine;
  /** Default `exported` (architecture b). Must match the server's. */
  mode?: Mode;
  /** A CoAP forward proxy, `coap://host:port`: every message goes there with Proxy-Uri. */
  proxy?: string | URL;
  /** Block size for flights and messages, 16..1024 (default 1024). */
  blockSize?: number;
  contentFormats?: Partial<AtlsCoapFormats>;
  /** Send Non-confirmable messages (e.g. for DTLS sessions, which retransmit themselves). */
  nonConfirmable?: boolean;
  /**
   * NON mode with DTLS: how many times a handshake flight is resent when the
   * engine's retransmission timer fires before an answer came (default 5).
   */
  dtlsMaxRetransmissions?: number;
  /** Per-message timeout (default MAX_TRANSMIT_WAIT). */
  timeoutMs?: number;
  transmission?: Partial<TransmissionParameters>;
  /** Largest response body (default 64 KiB). */
  maxBodyBytes?: number;
  protection?: ProtectedChannelOptions;
  /** Share an endpoint (socket) between clients; the client then does not close it. */
  endpoint?: CoapEndpoint;
  /** Called each time a Confirmable message is sent again for want of an ACK (`--verbose`). */
  onRetransmit?: EndpointOptions['onRetransmit'];
  /**
   * Resend a flight or protected message answered 5.03 with Max-Age
   * (RFC 7252 §5.9.3.4) after that many seconds plus jitter: at most
   * `retries` times (default 3), only when Max-Age is at most `maxWaitMs`
   * (default 5000). Only when resending is safe: a handshake flight, an
   * idempotent inner method (GET, PUT, DELETE, FETCH, iPATCH), or a 5.03
   * whose diagnostic is `LIMIT_REACHED` (refused before any processing).
   * A 5.03 without Max-Age surfaces at once. `{ retries: 0 }` turns it off.
   */
  unavailableRetry?: UnavailableRetryOptions;
  /** Called with every CoAP exchange the client makes (tests, `--verbose`). */
  onExchange?: (e: { path: string; request: OutgoingRequest; response: AssembledResponse }) => void;
}

/** An inner request. */
export interface CoapClientRequest {
  /** Default GET; `GET`, `POST`, `PUT`, `DELETE`, `FETCH`, `PATCH`, `iPATCH` or a code number. */
  method?: string | number;
  /** Default `/`. May carry `?query`. */
  pathname?: string;
  query?: string;
  payload?: Uint8Array | string;
  contentFormat?: number;
  /** Further options of the inner request. */
  options?: CoapOption[];
}

/** An inner response. */
export interface CoapClientResponse {
  code: number;
  /** `"2.05"`. */
  codeText: string;
  contentFormat: number | undefined;
  payload: Uint8Array;
  options: CoapOption[];
}

/** Byte counts of everything the client sent and received (bodies only). */
export interface CoapClientStats {
  handshakeBytesSent: number;
  handshakeBytesReceived: number;
  flights: number;
  messages: number;
  /** DTLS handshake flights resent because the retransmission timer fired (NON mode). */
  dtlsRetransmissions: number;
}

const enc = new TextEncoder();

/** RFC 7252 §5.8.1 / RFC 8132: the methods whose repetition has no further effect. */
const IDEMPOTENT_CODES = new Set<number>([CoapCode.GET, CoapCode.PUT, CoapCode.DELETE, CoapCode.FETCH, CoapCode.iPATCH]);

/** The Max-Age of a 5.03 as `retryAfter` seconds (RFC 7252 §5.9.3.4); nothing when absent. */
function maxAgeOf(res: AssembledResponse): { retryAfter?: number } {
  const seconds = res.code === CoapCode.ServiceUnavailable ? getUintOption(res, OptionNumber.MaxAge) : undefined;
  return seconds === undefined ? {} : { retryAfter: seconds };
}

function responseCode(code: number): string {
  return codeToString(code);
}

/** An ATLS session to one server over CoAP. */
export class AtlsCoapClient {
  readonly formats: AtlsCoapFormats;
  readonly stats: CoapClientStats = { handshakeBytesSent: 0, handshakeBytesReceived: 0, flights: 0, messages: 0, dtlsRetransmissions: 0 };
  private readonly target: URL;
  private readonly proxy: URL | undefined;
  private readonly retry: ReturnType<typeof resolveUnavailableRetry>;
  private endpoint: CoapEndpoint | undefined;
  private session: AtlsClientSession | undefined;
  private sessionPath: string[] | undefined;
  /** The server's last Echo value (RFC 9175): it proves our address, so new handshakes send it at once. */
  private echo: Uint8Array | undefined;
  private connecting: Promise<HandshakeInfo> | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: AtlsCoapClientOptions) {
    this.target = new URL(options.url);
    if (this.target.protocol !== 'coap:') throw new AtlsError('INVALID_ARGUMENT', `not a coap:// URL: ${this.target.href}`);
    this.proxy = options.proxy ? new URL(options.proxy) : undefined;
    if (this.proxy && this.proxy.protocol !== 'coap:') throw new AtlsError('INVALID_ARGUMENT', 'the proxy must be a coap:// URL');
    this.formats = { ...DEFAULT_ATLS_COAP_FORMATS, ...options.contentFormats };
    this.retry = resolveUnavailableRetry(options.unavailableRetry);
    this.endpoint = options.endpoint;
  }

  /** The session resource path (`/atls/<id>`) once the server created it. */
  get resource(): string | undefined {
    return this.sessionPath ? '/' + this.sessionPath.join('/') : undefined;
  }

  /** What the handshake established. */
  get handshakeInfo(): HandshakeInfo | undefined {
    return this.session?.handshakeInfo;
  }

  /** Runs the handshake (once); later calls resolve with the same result. */
  connect(): Promise<HandshakeInfo> {
    this.connecting ??= this.handshake();
    return this.connecting;
  }

  /** Sends one inner CoAP request in a protected message (or in records) and resolves with the inner response. */
  async request(req: CoapClientRequest): Promise<CoapClientResponse> {
    await this.connect();
    return this.serial(async () => {
      const message = buildInner(req);
      const plain = await this.exchangeProtected(encodeInner(message), this.formats.protected, IDEMPOTENT_CODES.has(message.code));
      const m = decodeInner(plain);
      return {
        code: m.code,
        codeText: responseCode(m.code),
        contentFormat: getUintOption(m, OptionNumber.ContentFormat),
        payload: m.payload,
        options: m.options,
      };
    });
  }

  /**
   * Sends one HTTP request as Binary HTTP in a protected message
   * (Content-Format `protectedHttp`): the way a CoAP device talks to an HTTP
   * ATLS service through the gateway.
   */
  async fetch(request: Request): Promise<Response> {
    await this.connect();
    if ((this.options.mode ?? 'exported') !== 'exported') throw new AtlsError('UNSUPPORTED', 'fetch() needs mode "exported"');
    const bytes = await requestToBhttp(request);
    return this.serial(async () => bhttpToResponse(await this.exchangeProtected(bytes, this.formats.protectedHttp, isIdempotent(request.method))));
  }

  /** Ends the session: DELETE of the session resource; forgets the keys. */
  async close(): Promise<void> {
    try {
      const s = this.session;
      if (s && this.sessionPath && s.state === 'established') {
        // The DELETE proves itself (src/coap/delete.ts): an empty protected message (exported), our
        // close_notify (records). A half-open handshake has nothing to prove it with: it idles out.
        const proof = s.mode === 'exported' ? s.protect(new Uint8Array(0)) : await s.close();
        await this.send(this.sessionPath, {
          code: CoapCode.DELETE,
          options: [uintOption(OptionNumber.ContentFormat, s.mode === 'exported' ? this.formats.protected : this.formats.records)],
          payload: proof,
        }).catch(() => undefined);
      }
    } finally {
      this.session?.destroy();
      this.session = undefined;
      if (!this.options.endpoint) await this.endpoint?.close();
      this.endpoint = undefined;
      this.connecting = undefined; // a later request handshakes again
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async exchangeProtected(plain: Uint8Array, cf: number, idempotent: boolean): Promise<Uint8Array> {
    const s = this.session!;
    const path = this.sessionPath!;
    if (s.mode === 'records') {
      const records = await s.send(plain);
      const res = await this.post(path, records, this.formats.records, idempotent);
      const out = await s.receive(res.payload);
      const data = out.events.filter((e) => e.type === 'data').map((e) => (e as { data: Uint8Array }).data);
      return concatBytes(data);
    }
    const sealed = s.protect(plain);
    this.stats.messages++;
    const res = await this.post(path, sealed, cf, idempotent);
    return s.unprotect(res.payload);
  }

  private async handshake(): Promise<HandshakeInfo> {
    if (!this.endpoint) {
      const v6 = this.proxy ? this.proxy.hostname.startsWith('[') : this.target.hostname.startsWith('[');
      this.endpoint = await CoapEndpoint.bind({
        host: v6 ? '::' : '0.0.0.0',
        ...(this.options.transmission ? { transmission: this.options.transmission } : {}),
        ...(this.options.onRetransmit ? { onRetransmit: this.options.onRetransmit } : {}),
      });
    }
    const session = new AtlsClientSession({
      tls: this.options.tls,
      ...(this.options.engine ? { engine: this.options.engine } : {}),
      mode: this.options.mode ?? 'exported',
      ...(this.options.protection ? { protection: this.options.protection } : {}),
    });
    this.session = session;
    let out: FlightResult = await session.start();
    let path: string[] = ['.well-known', 'atls'];
    for (let round = 0; session.state !== 'established'; round++) {
      if (round > 8) throw new AtlsError('HANDSHAKE_FAILED', 'handshake does not converge', { source: 'remote' });
      this.stats.handshakeBytesSent += out.flight.length;
      this.stats.flights++;
      const res = await this.postFlight(session, path, out.flight);
      if (round === 0) {
        if (res.code !== CoapCode.Created) throw this.failure(session, res);
        const loc = getLocationPath(res);
        if (loc.length === 0) throw new AtlsError('MALFORMED_MESSAGE', '2.01 Created without Location-Path', { source: 'remote' });
        path = loc;
        this.sessionPath = loc;
      } else if (res.code !== CoapCode.Changed) {
        throw this.failure(session, res);
      }
      this.stats.handshakeBytesReceived += res.payload.length;
      this.stats.flights++;
      out = await session.receive(res.payload);
      if ((session.state as string) === 'established' && out.flight.length > 0) {
        // A flight after establishment (TLS 1.2 with tickets): deliver it, its answer carries nothing we need.
        this.stats.handshakeBytesSent += out.flight.length;
        await this.postFlight(session, path, out.flight);
      }
    }
    return session.handshakeInfo!;
  }

  /**
   * POSTs one handshake flight. In NON mode with DTLS nothing else resends a
   * lost datagram, so when the engine's retransmission timer fires before an
   * answer came, the flight the engine produces goes out again as a new NON
   * request to the same resource (RFC 6347 §4.2.4; the engine doubles its
   * timer). The first answer to any copy wins; later ones are dropped.
   */
  private postFlight(session: AtlsClientSession, path: string[], flight: Uint8Array): Promise<AssembledResponse> {
    const cf = this.formats.records;
    const first = this.options.nonConfirmable ? session.dtlsTimeout() : undefined;
    if (first === undefined) return this.post(path, flight, cf, true);
    const max = this.options.dtlsMaxRetransmissions ?? 5;
    return new Promise<AssembledResponse>((resolve, reject) => {
      let settled = false;
      let pending = 0;
      let resent = 0;
      let timer: NodeJS.Timeout | undefined;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        timer = undefined;
        fn();
      };
      const attempt = (body: Uint8Array): void => {
        pending++;
        this.post(path, body, cf, true).then(
          (res) => finish(() => resolve(res)),
          (e: unknown) => {
            pending--;
            // A lost copy times out; keep waiting while another copy or the timer may still answer.
            const lost = e instanceof AtlsError && e.code === 'TIMEOUT';
            if (!lost || (pending === 0 && timer === undefined)) finish(() => reject(e as Error));
          },
        );
      };
      const arm = (ms: number | undefined): void => {
        if (settled || ms === undefined || resent >= max) {
          timer = undefined;
          return;
        }
        timer = setTimeout(() => void fire(), ms);
      };
      const fire = async (): Promise<void> => {
        if (settled) return;
        let again: FlightResult;
        try {
          again = await session.dtlsRetransmit();
        } catch (e) {
          finish(() => reject(e as Error));
          return;
        }
        if (settled) return;
        if (again.flight.length > 0) {
          resent++;
          this.stats.dtlsRetransmissions++;
          this.stats.handshakeBytesSent += again.flight.length;
          attempt(again.flight);
        }
        arm(session.dtlsTimeout());
        if (timer === undefined && pending === 0) finish(() => reject(new AtlsError('TIMEOUT', 'no answer to a DTLS flight after retransmissions')));
      };
      attempt(flight);
      arm(first);
    });
  }

  private failure(session: AtlsClientSession, res: AssembledResponse): AtlsError {
    const cf = getUintOption(res, OptionNumber.ContentFormat);
    const fallback = new AtlsError(
      res.code === CoapCode.RequestEntityTooLarge ? 'TOO_LARGE' : res.code === CoapCode.ServiceUnavailable ? 'LIMIT_REACHED' : 'HANDSHAKE_FAILED',
      `server answered ${responseCode(res.code)}${cf === undefined && res.payload.length ? `: ${new TextDecoder().decode(res.payload.subarray(0, 200))}` : ''}`,
      { source: 'remote', ...maxAgeOf(res) },
    );
    return session.peerFailed(cf === this.formats.records ? res.payload : new Uint8Array(0), fallback);
  }

  /**
   * One POST; a 5.03 with Max-Age is sent again (bounded, with jitter) when
   * `resendable` (a second delivery is harmless) or when the server refused
   * before any processing (diagnostic LIMIT_REACHED).
   */
  private async post(path: string[], body: Uint8Array, cf: number, resendable: boolean): Promise<AssembledResponse> {
    let res: AssembledResponse;
    for (let attempt = 0; ; attempt++) {
      res = await this.send(path, { code: CoapCode.POST, options: [uintOption(OptionNumber.ContentFormat, cf)], payload: body });
      if (res.code !== CoapCode.ServiceUnavailable) break;
      const unprocessed = getUintOption(res, OptionNumber.ContentFormat) === undefined && new TextDecoder().decode(res.payload) === 'LIMIT_REACHED';
      if (!resendable && !unprocessed) break;
      const wait = retryDelayMs(maxAgeOf(res).retryAfter, attempt, this.retry);
      if (wait === undefined) break;
      await sleep(wait);
    }
    if (res.code >> 5 !== 2) {
      // 4.04: the session resource is gone (expired, evicted, server restarted).
      const text = getUintOption(res, OptionNumber.ContentFormat) === undefined ? new TextDecoder().decode(res.payload.subarray(0, 200)) : '';
      if (path[0] !== '.well-known') {
        const code = res.code === CoapCode.NotFound ? 'CLOSED' : res.code === CoapCode.RequestEntityTooLarge ? 'TOO_LARGE' : 'MALFORMED_MESSAGE';
        const err = new AtlsError(code, `server answered ${responseCode(res.code)}${text ? `: ${text}` : ''}`, { source: 'remote', ...maxAgeOf(res) });
        if (getUintOption(res, OptionNumber.ContentFormat) === this.formats.records && this.session) throw this.session.peerFailed(res.payload, err);
        throw err;
      }
    }
    return res;
  }

  /** One request with block-wise transfer, to the server or through the proxy. */
  private async send(path: string[], req: OutgoingRequest): Promise<AssembledResponse> {
    const endpoint = this.endpoint;
    if (!endpoint) throw new AtlsError('CLOSED', 'client closed');
    const via = this.proxy ?? this.target;
    const peer: Peer = { address: await resolveHost(via.hostname), port: Number(via.port || DEFAULT_COAP_PORT) };
    const route: CoapOption[] = this.proxy
      ? // RFC 7252 §5.10.2: the absolute URI of the target in Proxy-Uri.
        [stringOption(OptionNumber.ProxyUri, `coap://${this.target.host}/${path.map(encodeURIComponent).join('/')}`)]
      : path.map((s) => stringOption(OptionNumber.UriPath, s));
    const withEcho = (echo: Uint8Array | undefined): OutgoingRequest => ({
      ...req,
      options: [...route, ...req.options, ...(echo ? [{ number: OptionNumber.Echo, value: echo }] : [])],
    });
    const exchange = async (full: OutgoingRequest): Promise<AssembledResponse> => {
      const res = await blockwiseRequest(
        (r) =>
          endpoint.request(peer, r, {
            ...(this.options.nonConfirmable ? { nonConfirmable: true } : {}),
            ...(this.options.timeoutMs !== undefined ? { timeoutMs: this.options.timeoutMs } : {}),
          }),
        full,
        { blockSize: this.options.blockSize ?? 1024, maxBodyBytes: this.options.maxBodyBytes ?? 64 * 1024 },
      );
      this.options.onExchange?.({ path: '/' + path.join('/'), request: full, response: res });
      return res;
    };
    // A ClientHello carries the Echo value we hold, so a verified address skips the extra round trip.
    let res = await exchange(withEcho(path[0] === '.well-known' ? this.echo : undefined));
    // RFC 9175 §2.3: a 4.01 with Echo asks for the same request again with the value (twice at most:
    // a value from one server of a group may not be good at the next).
    for (let i = 0; i < 2 && res.code === CoapCode.Unauthorized; i++) {
      const echo = getOption(res, OptionNumber.Echo)?.value;
      if (!echo || echo.length === 0 || echo.length > 40) break;
      this.echo = echo;
      res = await exchange(withEcho(echo));
    }
    return res;
  }
}

async function resolveHost(host: string): Promise<string> {
  const h = host.startsWith('[') ? host.slice(1, -1) : host;
  if (isIP(h)) return h;
  try {
    return (await lookup(h)).address;
  } catch (e) {
    throw new AtlsError('INVALID_ARGUMENT', `cannot resolve ${h}`, { cause: e });
  }
}

/** The inner message of a client request. */
export function buildInner(req: CoapClientRequest): { code: number; options: CoapOption[]; payload: Uint8Array } {
  const m = req.method ?? 'GET';
  const code = typeof m === 'number' ? m : METHOD_CODES[m.toUpperCase()];
  if (code === undefined) throw new AtlsError('INVALID_ARGUMENT', `unknown CoAP method ${String(m)}`);
  let pathname = req.pathname ?? '/';
  let query = req.query ?? '';
  const q = pathname.indexOf('?');
  if (q >= 0) {
    query = query || pathname.slice(q + 1);
    pathname = pathname.slice(0, q);
  }
  const options = [...pathOptions(pathname), ...queryOptions(query), ...(req.options ?? [])];
  if (req.contentFormat !== undefined) options.push(uintOption(OptionNumber.ContentFormat, req.contentFormat));
  const payload = typeof req.payload === 'string' ? enc.encode(req.payload) : (req.payload ?? new Uint8Array(0));
  return { code, options, payload };
}

/** Options of {@link coapFetch}: the client's options without `url`, plus the inner request's. */
export interface CoapFetchOptions extends Omit<AtlsCoapClientOptions, 'url'>, Omit<CoapClientRequest, 'pathname' | 'query'> {}

/**
 * One-shot: handshake with the server of `url`, send one inner request for
 * `url`'s path and query, close, and resolve with the inner response.
 *
 * @example
 * ```ts
 * const r = await coapFetch('coap://127.0.0.1:5684/temp', { tls: { psk: { identity: 'dev', key } } });
 * ```
 */
export async function coapFetch(url: string | URL, options: CoapFetchOptions): Promise<CoapClientResponse> {
  const u = new URL(url);
  const client = new AtlsCoapClient({ ...options, url: `coap://${u.host}` });
  try {
    return await client.request({
      ...(options.method !== undefined ? { method: options.method } : {}),
      pathname: u.pathname || '/',
      query: u.search.slice(1),
      ...(options.payload !== undefined ? { payload: options.payload } : {}),
      ...(options.contentFormat !== undefined ? { contentFormat: options.contentFormat } : {}),
      ...(options.options ? { options: options.options } : {}),
    });
  } finally {
    await client.close();
  }
}

/**
 * A `coap`-package style request: `request({host, port, pathname, method, payload, tls})`.
 * Same as {@link coapFetch}.
 */
export function request(opts: CoapFetchOptions & { host: string; port?: number; pathname?: string; query?: string }): Promise<CoapClientResponse> {
  const host = opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host;
  const q = opts.query ? `?${opts.query}` : '';
  return coapFetch(`coap://${host}:${opts.port ?? DEFAULT_COAP_PORT}${opts.pathname ?? '/'}${q}`, opts);
}
