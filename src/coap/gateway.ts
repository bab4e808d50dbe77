/**
 * A CoAP-to-HTTP gateway for ATLS (draft Figures 3 and 7): CoAP in, HTTP out
 * to an ATLS HTTP service (docs/protocol.md §5). It forwards every flight and
 * protected message unchanged, mapping Content-Format to media type and the
 * per-session CoAP resource (`atls/<id>`) to the service's session cookie.
 * It holds no keys and can read none of the application data.
 *
 * | CoAP Content-Format | HTTP media type |
 * |---|---|
 * | `records` (65000) | `application/atls+octet-stream` |
 * | `protectedHttp` (65002) | `application/atls-protected` (inner Binary HTTP) |
 * | `protected` (65001, inner CoAP) | none: 4.15 (an HTTP service reads Binary HTTP) |
 *
 * @example
 * ```ts
 * const gw = await AtlsCoapGateway.listen({ host: '0.0.0.0', port: 5683, to: 'https://service.example/' });
 * // devices: new AtlsCoapClient({ url: 'coap://gateway', tls }).fetch(new Request('https://service.example/x'))
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { newSessionId, parseSessionId } from '../store/index.js';
import { FairShareLedger } from '../store/fair-shares.js';
import { peerGroup } from '../peers.js';
import { ENDPOINT_DEFAULTS } from '../endpoint/defaults.js';
import { COOKIE_NAME, MEDIA_TYPE_FLIGHT, MEDIA_TYPE_FLIGHT_LATER, MEDIA_TYPE_PROTECTED, WELL_KNOWN_ENDPOINT } from '../http/constants.js';
import { mediaType, readBody, startsWithClientHello } from '../http/wire.js';
import { parseSetCookie } from '../http/cookie.js';
import { CoapCode, OptionNumber, SESSION_PATH_PREFIX, WELL_KNOWN_PATH, makeCode, type TransmissionParameters } from './constants.js';
import { getPath, getUintOption, stringOption, uintOption, type CoapMessage, type CoapOption } from './packet.js';
import { BlockwiseServer, type AnswerShape, type CoapResponse, type Peer } from './blockwise.js';
import { deleteRefusal } from './delete.js';
import { EchoVerifier } from './echo.js';
import { CoapEndpoint } from './endpoint.js';
import { DEFAULT_ATLS_COAP_FORMATS, type AtlsCoapFormats } from './server.js';

/** A fetch function (the global `fetch`, or undici's with a dispatcher for private CAs). */
export type FetchLike = (input: string | URL, init: RequestInit) => Promise<Response>;

/** One forwarded message, as the gateway saw it: sizes and formats, never plaintext (it has none). */
export interface GatewayEvent {
  direction: 'to-service' | 'to-device';
  /** Gateway session id (the CoAP resource), once known. */
  sessionId: string | undefined;
  contentFormat: number | undefined;
  mediaType: string;
  /** HTTP status (to-device) or method (to-service). */
  status?: number;
  coapCode?: string;
  bytes: number;
  /** The forwarded body itself (opaque records or protected messages). */
  body: Uint8Array;
}

/** Options of {@link AtlsCoapGateway.listen}. */
export interface AtlsCoapGatewayOptions {
  /** The ATLS HTTP service: its origin, or the full URL of its ATLS endpoint. */
  to: string | URL;
  host?: string;
  port?: number;
  contentFormats?: Partial<AtlsCoapFormats>;
  fetch?: FetchLike;
  /**
   * Sessions mapped at once (default 10000). Beyond, a fair share gives way (src/store/fair-shares.ts): the
   * least recently used mapping of the device address (or IPv6 /64) holding the most, so that a flood of
   * handshakes from one address displaces its own mappings, not other devices' sessions.
   */
  maxSessions?: number;
  /** Idle lifetime of a mapping (default 1 h). */
  sessionTtlMs?: number;
  /** Largest body either way (default 64 KiB). */
  maxBodyBytes?: number;
  /** HTTP request timeout (default 30 s). */
  timeoutMs?: number;
  transmission?: Partial<TransmissionParameters>;
  /** Verify a device's address with Echo before forwarding a ClientHello whose answer could amplify (default true; see AtlsCoapServerOptions). */
  addressCheck?: boolean;
  onEvent?: (e: GatewayEvent) => void;
}

const enc = new TextEncoder();

/** One device session as the gateway knows it. */
interface GatewayMapping {
  /** The service's session cookie. */
  cookie: string;
}

/** HTTP status -> CoAP response code (RFC 8075 §7, closest codes). */
export function coapCodeForStatus(status: number): number {
  const table: Record<number, number> = {
    200: CoapCode.Changed,
    201: CoapCode.Created,
    204: CoapCode.Changed,
    400: CoapCode.BadRequest,
    401: CoapCode.Unauthorized,
    403: CoapCode.Forbidden,
    404: CoapCode.NotFound,
    405: CoapCode.MethodNotAllowed,
    406: CoapCode.NotAcceptable,
    409: makeCode(4, 9),
    410: CoapCode.NotFound,
    412: CoapCode.PreconditionFailed,
    413: CoapCode.RequestEntityTooLarge,
    415: CoapCode.UnsupportedContentFormat,
    429: makeCode(4, 29),
    500: CoapCode.InternalServerError,
    501: CoapCode.NotImplemented,
    502: CoapCode.BadGateway,
    503: CoapCode.ServiceUnavailable,
    504: CoapCode.GatewayTimeout,
  };
  const hit = table[status];
  if (hit !== undefined) return hit;
  if (status >= 200 && status < 300) return CoapCode.Changed;
  if (status >= 400 && status < 500) return CoapCode.BadRequest;
  return CoapCode.BadGateway;
}

function diag(code: number, text: string): CoapResponse {
  return { code, payload: enc.encode(text) };
}

/** The gateway logic without a socket: one whole CoAP request in, one response out. */
export class AtlsCoapGatewayHandler {
  readonly formats: AtlsCoapFormats;
  private readonly endpointUrl: URL;
  /** Gateway session id -> the service's session, in fair shares per device address; TTL refreshed on use. */
  private readonly sessions: FairShareLedger<GatewayMapping>;
  private readonly ttlMs: number;
  private readonly maxBody: number;
  private readonly fetch: FetchLike;
  /** Echo values for address verification (RFC 9175 §2.4); undefined when turned off. */
  private readonly echo: EchoVerifier | undefined;

  constructor(private readonly opts: AtlsCoapGatewayOptions) {
    this.echo = opts.addressCheck === false ? undefined : new EchoVerifier();
    this.formats = { ...DEFAULT_ATLS_COAP_FORMATS, ...opts.contentFormats };
    const to = new URL(opts.to);
    if (to.protocol !== 'http:' && to.protocol !== 'https:') throw new AtlsError('INVALID_ARGUMENT', `the service must be http(s): ${to.href}`);
    this.endpointUrl = to.pathname === '/' || to.pathname === '' ? new URL(WELL_KNOWN_ENDPOINT, to) : to;
    this.fetch = opts.fetch ?? ((input, init) => fetch(input, init));
    this.ttlMs = opts.sessionTtlMs ?? ENDPOINT_DEFAULTS.sessionTtlMs;
    this.maxBody = opts.maxBodyBytes ?? ENDPOINT_DEFAULTS.coapMaxBodyBytes;
    this.sessions = new FairShareLedger<GatewayMapping>(opts.maxSessions ?? ENDPOINT_DEFAULTS.gatewayMaxSessions, this.ttlMs);
  }

  /** The HTTP URL flights are POSTed to. */
  get serviceEndpoint(): string {
    return this.endpointUrl.href;
  }

  /** Sessions mapped now. */
  get sessionCount(): number {
    this.sessions.expired();
    return this.sessions.size;
  }

  /** Handles one whole CoAP request. Never throws. */
  async handle(msg: CoapMessage, peer: Peer, answer?: AnswerShape): Promise<CoapResponse> {
    let path: string[];
    let cf: number | undefined;
    try {
      path = getPath(msg);
      cf = getUintOption(msg, OptionNumber.ContentFormat);
    } catch {
      return diag(CoapCode.BadOption, 'malformed Uri-Path or Content-Format');
    }
    const isNew = path.length === WELL_KNOWN_PATH.length && path.every((s, i) => s === WELL_KNOWN_PATH[i]);
    // RFC 9175 §2.4: the service's certificate flight goes only to a verified address.
    const challenge = isNew ? this.echo?.challenge(msg, peer.address, answer?.firstBlockBytes ?? 1024) : undefined;
    if (challenge) return challenge;
    let id: string | undefined;
    let mapping: GatewayMapping | undefined;
    if (!isNew) {
      if (path.length !== 2 || path[0] !== SESSION_PATH_PREFIX) return diag(CoapCode.NotFound, 'not an ATLS resource');
      id = path[1]!;
      mapping = parseSessionId(id) ? this.sessions.get(id) : undefined;
      if (mapping === undefined) return diag(CoapCode.NotFound, 'no such ATLS session');
      if (msg.code === CoapCode.DELETE) return this.onDelete(id, mapping, cf, msg.payload);
    }
    if (msg.code !== CoapCode.POST) return diag(CoapCode.MethodNotAllowed, 'POST flights or protected messages');
    // Only a ClientHello starts a session (the service would refuse anything else): no request to it for one.
    if (isNew && cf === this.formats.records && !startsWithClientHello(msg.payload)) return diag(CoapCode.BadRequest, 'a new session starts with a ClientHello');
    let type: string;
    if (cf === this.formats.records) type = MEDIA_TYPE_FLIGHT;
    else if (cf === this.formats.protectedHttp && !isNew) type = MEDIA_TYPE_PROTECTED;
    else if (cf === this.formats.protected && !isNew) {
      // The service speaks HTTP: an inner CoAP message means nothing to it (docs/protocol.md §6.8).
      return diag(CoapCode.UnsupportedContentFormat, `an HTTP service reads Binary HTTP: use Content-Format ${this.formats.protectedHttp}`);
    } else return diag(CoapCode.UnsupportedContentFormat, `Content-Format ${cf ?? 'missing'} not forwarded`);

    this.opts.onEvent?.({ direction: 'to-service', sessionId: id, contentFormat: cf, mediaType: type, bytes: msg.payload.length, body: msg.payload });
    const headers: Record<string, string> = { 'content-type': type, accept: `${MEDIA_TYPE_FLIGHT}, ${MEDIA_TYPE_PROTECTED}` };
    if (mapping !== undefined) headers.cookie = `${COOKIE_NAME}=${mapping.cookie}`;
    let res: Response;
    let body: Uint8Array;
    try {
      res = await this.fetch(this.endpointUrl, {
        method: 'POST',
        headers,
        body: msg.payload,
        redirect: 'manual',
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? ENDPOINT_DEFAULTS.gatewayTimeoutMs),
      });
      body = await readBody(res.body, this.maxBody, res.headers.get('content-length'));
    } catch (e) {
      const tooLarge = e instanceof AtlsError && e.code === 'TOO_LARGE';
      return diag(tooLarge ? CoapCode.BadGateway : CoapCode.GatewayTimeout, tooLarge ? 'service response too large' : 'service unreachable');
    }
    const rtype = mediaType(res.headers.get('content-type'));
    const rcf = rtype === MEDIA_TYPE_FLIGHT || rtype === MEDIA_TYPE_FLIGHT_LATER ? this.formats.records : rtype === MEDIA_TYPE_PROTECTED ? this.formats.protectedHttp : undefined;
    const options: CoapOption[] = rcf === undefined ? [] : [uintOption(OptionNumber.ContentFormat, rcf)];
    let code = coapCodeForStatus(res.status);
    // The service's cookie names the session: keep it behind a CoAP resource of our own.
    const cookie = res.headers.getSetCookie().map((h) => parseSetCookie(h, COOKIE_NAME)).find((v) => v !== undefined);
    if (res.ok && isNew) {
      if (!cookie) return diag(CoapCode.BadGateway, 'the service set no session cookie');
      id = newSessionId();
      this.sessions.admit(id, { cookie }, peerGroup(peer.address)); // what gave way idles out at the service
      code = CoapCode.Created;
      options.push(stringOption(OptionNumber.LocationPath, SESSION_PATH_PREFIX), stringOption(OptionNumber.LocationPath, id));
    } else if (id !== undefined) {
      if (cookie === '' || res.status === 410 || (!res.ok && res.status !== 400 && res.status !== 413 && res.status !== 415)) {
        this.sessions.delete(id); // the service dropped the session
      } else {
        if (cookie) mapping!.cookie = cookie;
        this.sessions.touch(id);
      }
    }
    this.opts.onEvent?.({ direction: 'to-device', sessionId: id, contentFormat: rcf, mediaType: rtype, status: res.status, coapCode: `${code >> 5}.${String(code & 31).padStart(2, '0')}`, bytes: body.length, body });
    return { code, options, payload: body };
  }

  /**
   * A DELETE forgets the mapping only when it proves the session
   * (src/coap/delete.ts): its proof (a protected message, or close_notify
   * records of a records-mode session) goes to the service as an HTTP
   * DELETE, which checks it and ends the session there (204). The gateway
   * holds no keys and no TLS state, so the service judges the proof and no
   * DELETE without one is taken, whatever its source address (a UDP source
   * proves nothing): a half-open mapping, which nothing can prove, stays
   * until it idles out, as its handshake does at the service.
   */
  private async onDelete(id: string, mapping: GatewayMapping, cf: number | undefined, payload: Uint8Array): Promise<CoapResponse> {
    let failed: CoapResponse | undefined;
    const prove = async (proof: Uint8Array, format: number): Promise<boolean> => {
      let res: Response;
      try {
        res = await this.fetch(this.endpointUrl, {
          method: 'DELETE',
          headers: { 'content-type': format === this.formats.records ? MEDIA_TYPE_FLIGHT : MEDIA_TYPE_PROTECTED, cookie: `${COOKIE_NAME}=${mapping.cookie}` },
          body: proof,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.opts.timeoutMs ?? ENDPOINT_DEFAULTS.gatewayTimeoutMs),
        });
        await res.body?.cancel();
      } catch {
        failed = diag(CoapCode.GatewayTimeout, 'service unreachable');
        return false;
      }
      if (res.status === 403 || res.status === 400) return false;
      if (!res.ok) {
        if (res.status === 410 || res.status === 404) this.sessions.delete(id); // the service no longer has it
        failed = diag(coapCodeForStatus(res.status), `service answered ${res.status}`);
        return false;
      }
      return true;
    };
    const refusal = await deleteRefusal(
      // The gateway cannot tell a session's mode or state: every proof format goes to the service.
      { proofFormats: [this.formats.records, this.formats.protected, this.formats.protectedHttp], prove },
      { contentFormat: cf, payload },
    );
    if (failed) return failed;
    if (refusal) return diag(CoapCode.Forbidden, refusal);
    this.sessions.delete(id);
    return { code: CoapCode.Deleted };
  }

  /** Forgets every mapping. */
  close(): void {
    this.sessions.clear();
  }
}

/** The gateway on a UDP CoAP endpoint. */
export class AtlsCoapGateway {
  private constructor(
    readonly endpoint: CoapEndpoint,
    readonly handler: AtlsCoapGatewayHandler,
  ) {}

  /** Binds and starts forwarding. */
  static async listen(options: AtlsCoapGatewayOptions): Promise<AtlsCoapGateway> {
    const handler = new AtlsCoapGatewayHandler(options);
    const endpoint = await CoapEndpoint.bind({
      ...(options.host !== undefined ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.transmission ? { transmission: options.transmission } : {}),
    });
    const blockwise = new BlockwiseServer({ maxBodyBytes: options.maxBodyBytes ?? ENDPOINT_DEFAULTS.coapMaxBodyBytes });
    endpoint.handle((msg, peer) => blockwise.handle(msg, peer, (m, p, answer) => handler.handle(m, p, answer)));
    return new AtlsCoapGateway(endpoint, handler);
  }

  /** `coap://host:port` of the gateway. */
  get url(): string {
    const a = this.endpoint.address;
    return `coap://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get port(): number {
    return this.endpoint.port;
  }

  async close(): Promise<void> {
    this.handler.close();
    await this.endpoint.close();
  }
}
