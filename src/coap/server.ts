/**
 * The ATLS server over CoAP (docs/protocol.md §6): flights POSTed to
 * `/.well-known/atls`, the first answered 2.01 Created with
 * `Location-Path: atls/<id>` (the -05 per-session resource model); later
 * flights and protected messages POSTed to that path. Architecture (b) by
 * default: each protected message carries one inner CoAP request
 * (Content-Format `protected`, 65001) or one Binary HTTP request
 * (`protectedHttp`, 65002), dispatched to `handler` / `httpApp`.
 *
 * @example
 * ```ts
 * const server = await AtlsCoapServer.listen({
 *   host: '127.0.0.1', port: 5684,
 *   tls: { cert, key },
 *   handler: (req) => ({ code: '2.05', payload: req.payload }),
 * });
 * console.log(server.url); // coap://127.0.0.1:5684
 * await server.close();
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { HandshakeInfo, TlsEngine, TlsServerConfig } from '../engines/types.js';
import type { Mode } from '../session/types.js';
import type { ProtectedChannelOptions } from '../protect/index.js';
import type { SessionStateStore } from '../store/index.js';
import { EndpointCore, LiveSession, type EndReason, type EstablishedSession, type FoundSession } from '../endpoint/core.js';
import { ENDPOINT_DEFAULTS } from '../endpoint/defaults.js';
import { peerGroup } from '../peers.js';
import { bhttpToRequest, responseToBhttp } from '../bhttp/index.js';
import { concatBytes } from '../bytes.js';
import {
  CoapCode,
  DEFAULT_CONTENT_FORMATS,
  OptionNumber,
  SESSION_PATH_PREFIX,
  WELL_KNOWN_PATH,
  type TransmissionParameters,
} from './constants.js';
import { getPath, getUintOption, stringOption, uintOption, type CoapMessage } from './packet.js';
import { EchoVerifier } from './echo.js';
import { deleteRefusal, type DeleteTarget } from './delete.js';
import { BlockwiseServer, codeFromHint, type AnswerShape, type CoapResponse, type Peer } from './blockwise.js';
import { ClientHelloRecord } from '../store/hello-record.js';
import { startsWithClientHello } from '../http/wire.js';
import { LastFlights } from './last-flight.js';
import { CoapEndpoint } from './endpoint.js';
import { decodeInner, encodeInner, fromCoapReply, toCoapRequest, type CoapReply, type CoapRequest } from './inner.js';

/** Content-Formats of an ATLS CoAP server or client (all from 65000-65535, configurable). */
export interface AtlsCoapFormats {
  /** A TLS flight (records), also application data records in mode `records`. Default 65000. */
  records: number;
  /** A protected message carrying one inner CoAP message. Default 65001. */
  protected: number;
  /** A protected message carrying one Binary HTTP message (RFC 9292). Default 65002. */
  protectedHttp: number;
}

/** Default Content-Formats (docs/protocol.md §6.2). */
export const DEFAULT_ATLS_COAP_FORMATS: Readonly<AtlsCoapFormats> = Object.freeze({
  records: DEFAULT_CONTENT_FORMATS.records,
  protected: DEFAULT_CONTENT_FORMATS.protected,
  protectedHttp: 65002,
});

/** Who sent an inner request. */
export interface AtlsCoapPeer {
  sessionId: string;
  address: string;
  port: number;
  handshake: HandshakeInfo | undefined;
}

/** Answers one inner CoAP request. */
export type CoapRequestHandler = (req: CoapRequest, peer: AtlsCoapPeer) => Promise<CoapReply> | CoapReply;

/** Answers one inner HTTP request (Binary HTTP inside protected messages). */
export type HttpApp = (request: Request, peer: AtlsCoapPeer) => Promise<Response> | Response;

/** What the server reports (logging, tests). */
export type AtlsCoapServerEvent =
  | { type: 'session'; sessionId: string; peer: Peer }
  | { type: 'established'; sessionId: string; info: HandshakeInfo }
  | { type: 'request'; sessionId: string; method: string; path: string; code: string }
  | { type: 'error'; sessionId: string | undefined; error: AtlsError; code: string; peer?: Peer }
  | { type: 'limit'; limit: string; peer: string }
  | { type: 'evicted'; what: 'half-open' | 'session' | 'transfer' | 'cached-response'; peer: string; reason: string }
  | { type: 'refused'; what: 'session' | 'transfer'; peer: string; reason: string }
  /** A ClientHello from an address not yet verified got 4.01 + Echo (RFC 9175 §2.4). `peer` is the address. */
  | { type: 'address-check'; peer: string }
  | { type: 'closed'; sessionId: string; reason: 'deleted' | 'expired' | 'failed' | 'evicted' | 'peer' };

/** Options of {@link AtlsCoapServer.listen} and {@link createAtlsCoapHandler}. */
export interface AtlsCoapServerOptions {
  /** TLS configuration of every session (certificates, PSK lookup, DTLS...). */
  tls: TlsServerConfig;
  engine?: TlsEngine;
  /** Default `exported` (architecture b); `records` carries inner messages in TLS records. */
  mode?: Mode;
  /** Inner CoAP request handler. Default: 4.04 for everything. */
  handler?: CoapRequestHandler;
  /** Inner HTTP handler for Binary HTTP protected messages. Default: those get 4.15. */
  httpApp?: HttpApp;
  contentFormats?: Partial<AtlsCoapFormats>;
  /** Bind address (default 127.0.0.1) and port (default 0: any; 5683 is CoAP's). */
  host?: string;
  port?: number;
  /** Largest flight or message body (default 64 KiB). */
  maxBodyBytes?: number;
  /** Largest block the server sends (default 1024). */
  maxBlockSize?: number;
  /**
   * Verify a client's address with the Echo option (RFC 9175 §2.4) before
   * answering a ClientHello whose answer could exceed 3 times its size
   * (default true): a spoofed source then gets a 4.01 of a few bytes, not
   * the certificate flight. Turn off only behind something that verifies
   * addresses already.
   */
  addressCheck?: boolean;
  /**
   * Key of the Echo values (32 bytes; default random per server). Servers
   * given the same key verify each other's values (workers, a restarted
   * process); see {@link echoKeyFrom}.
   */
  echoKey?: Uint8Array;
  /** Sessions, half-open or established (default 100000). */
  maxSessions?: number;
  /** Half-open handshakes (default 1000). */
  maxHalfOpen?: number;
  /** Idle lifetime of an established session (default 1 h). */
  sessionTtlMs?: number;
  /** Lifetime of a half-open handshake (default 30 s). */
  handshakeTtlMs?: number;
  /** Concurrent block-wise transfers per peer and overall (defaults 16 and 256). */
  maxTransfersPerPeer?: number;
  maxTransfers?: number;
  protection?: ProtectedChannelOptions;
  /**
   * Where established exported sessions live (default: in memory). A shared
   * store lets several servers answer one session; half-open handshakes and
   * records-mode sessions stay in the process that holds their engine.
   */
  store?: SessionStateStore;
  /** Prefix of session ids (`<tag>.<random>`), for load balancers that route on the Uri-Path. */
  routingTag?: string;
  transmission?: Partial<TransmissionParameters>;
  /** Event sink. */
  onEvent?: (e: AtlsCoapServerEvent) => void;
}

const enc = new TextEncoder();

function diag(code: number, text: string, options: CoapResponse['options'] = []): CoapResponse {
  return { code, options, payload: enc.encode(text) }; // diagnostic payload (RFC 7252 §5.5.2)
}

function samePath(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

/**
 * The ATLS request logic without a socket: takes a whole (reassembled) CoAP
 * request and resolves with the response. {@link AtlsCoapServer} puts it
 * behind a UDP endpoint and the block-wise layer.
 */
export class AtlsCoapHandler {
  readonly formats: AtlsCoapFormats;
  private readonly core: EndpointCore;
  /** ClientHellos that started a handshake recently (RFC 8446 §8.2): replays cost a lookup. */
  private readonly hellos: ClientHelloRecord;
  private readonly opts: AtlsCoapServerOptions;
  private readonly maxBody: number;
  /** Echo values for address verification (RFC 9175 §2.4); undefined when turned off. */
  private readonly echo: EchoVerifier | undefined;
  /** The largest block the server sends. */
  private readonly maxBlockSize: number;
  /** Mode `exported`: each new session's last flight, for a copy of the client's final flight (RFC 6347 §4.2.4). */
  private readonly lastFlights: LastFlights | undefined;

  constructor(options: AtlsCoapServerOptions) {
    this.opts = options;
    this.formats = { ...DEFAULT_ATLS_COAP_FORMATS, ...options.contentFormats };
    this.maxBody = options.maxBodyBytes ?? ENDPOINT_DEFAULTS.coapMaxBodyBytes;
    if ((options.tls.maxEarlyData ?? 0) > 0) {
      // CoAP has no way to mark a replayable request for the handler (RFC 8470 is HTTP's); DTLS 1.2 has no 0-RTT.
      throw new AtlsError('INVALID_ARGUMENT', 'maxEarlyData: the CoAP binding takes no TLS early data');
    }
    this.core = new EndpointCore({
      tls: options.tls,
      mode: options.mode ?? 'exported',
      ...(options.engine ? { engine: options.engine } : {}),
      session: { maxFlightBytes: this.maxBody, ...(options.protection ? { protection: options.protection } : {}) },
      ...(options.store ? { store: options.store } : {}),
      ...(options.routingTag !== undefined ? { routingTag: options.routingTag } : {}),
      ...(options.maxSessions !== undefined ? { maxSessions: options.maxSessions } : {}),
      ...(options.maxHalfOpen !== undefined ? { maxHalfOpen: options.maxHalfOpen } : {}),
      ...(options.handshakeTtlMs !== undefined ? { handshakeTtlMs: options.handshakeTtlMs } : {}),
      ...(options.sessionTtlMs !== undefined ? { sessionTtlMs: options.sessionTtlMs } : {}),
      // DTLS retransmissions and NON resends of one flight overlap: queue them, one at a time.
      whenBusy: 'queue',
      onEnd: (sessionId, reason) => {
        this.lastFlights?.forget(sessionId);
        this.opts.onEvent?.({ type: 'closed', sessionId, reason: closeReason(reason) });
      },
      onLimit: (e) => this.opts.onEvent?.(e),
    });
    this.hellos = new ClientHelloRecord(options.handshakeTtlMs ?? ENDPOINT_DEFAULTS.handshakeTtlMs);
    this.echo = options.addressCheck === false ? undefined : new EchoVerifier(options.echoKey);
    this.maxBlockSize = options.maxBlockSize ?? 1024;
    // Mode records keeps its engine, which resends the last flight itself.
    this.lastFlights =
      (options.mode ?? 'exported') === 'exported'
        ? new LastFlights({
            max: options.maxHalfOpen ?? ENDPOINT_DEFAULTS.maxHalfOpen,
            ttlMs: options.handshakeTtlMs ?? ENDPOINT_DEFAULTS.handshakeTtlMs,
            dtls: options.tls.dtls === true,
          })
        : undefined;
  }

  /** Sessions held now (half-open and established). */
  get sessionCount(): number {
    return this.core.size;
  }

  /** Forgets every session. */
  closeAll(): void {
    this.lastFlights?.clear();
    void this.core.close();
  }

  /**
   * Handles one whole CoAP request. Never throws. `answer` says how large
   * the first datagram of the answer can be (default: one block of the
   * largest size): the amplification check weighs it against the request.
   */
  async handle(msg: CoapMessage, peer: Peer, answer?: AnswerShape): Promise<CoapResponse> {
    let path: string[];
    let cf: number | undefined;
    try {
      path = getPath(msg);
      cf = getUintOption(msg, OptionNumber.ContentFormat);
    } catch {
      return diag(CoapCode.BadOption, 'malformed Uri-Path or Content-Format');
    }
    if (samePath(path, WELL_KNOWN_PATH)) {
      if (msg.code !== CoapCode.POST) return diag(CoapCode.MethodNotAllowed, 'POST flights here');
      if (cf !== this.formats.records) return this.unsupported(cf);
      const check = this.addressCheck(msg, peer, answer?.firstBlockBytes ?? this.maxBlockSize);
      if (check) return check;
      return this.newSession(msg.payload, peer);
    }
    if (path.length === 2 && path[0] === SESSION_PATH_PREFIX) {
      const id = path[1]!;
      let found: FoundSession | undefined;
      try {
        const got = this.core.find(id);
        found = got instanceof Promise ? await got : got;
      } catch (e) {
        return this.errorResponse(e, id);
      }
      if (!found) return diag(CoapCode.NotFound, 'no such ATLS session'); // -05: unknown session resource
      if (msg.code === CoapCode.DELETE) return this.onDelete(found, cf, msg.payload, peer);
      if (msg.code !== CoapCode.POST) return diag(CoapCode.MethodNotAllowed, 'POST flights or protected messages here');
      return this.onSession(found, cf, msg.payload, peer);
    }
    return diag(CoapCode.NotFound, 'not an ATLS resource');
  }

  /**
   * DELETE ends a session only when it proves the session (src/coap/delete.ts):
   * a protected message (exported) or the peer's close_notify records
   * (records); a half-open handshake takes none. Anyone else gets 4.03.
   */
  private async onDelete(found: FoundSession, cf: number | undefined, body: Uint8Array, peer: Peer): Promise<CoapResponse> {
    try {
      const target: DeleteTarget =
        found instanceof LiveSession
          ? { proofFormats: found.handshake ? [this.formats.records] : [], prove: (records) => this.core.endIfClosed(found, records) }
          : { proofFormats: [this.formats.protected, this.formats.protectedHttp], prove: (m) => this.core.endIfProven(found, m) };
      const refusal = await deleteRefusal(target, { contentFormat: cf, payload: body });
      if (refusal) {
        this.opts.onEvent?.({ type: 'error', sessionId: found.id, error: new AtlsError('INVALID_STATE', refusal, { source: 'remote' }), code: '4.03', peer });
        return diag(CoapCode.Forbidden, refusal);
      }
    } catch (e) {
      return this.errorResponse(e, found.id, peer);
    }
    return { code: CoapCode.Deleted };
  }

  /**
   * RFC 9175 §2.4 item 3: a ClientHello whose answer (up to one block) could
   * be more than 3 times its size is answered only at a verified address; an
   * unverified one gets 4.01 with an Echo value to repeat (a response of a
   * few bytes, piggybacked or NON, never retransmitted). Undefined: go on.
   */
  private addressCheck(msg: CoapMessage, peer: Peer, firstBlockBytes: number): CoapResponse | undefined {
    const challenge = this.echo?.challenge(msg, peer.address, firstBlockBytes);
    if (challenge) this.opts.onEvent?.({ type: 'address-check', peer: peer.address });
    return challenge;
  }

  private unsupported(cf: number | undefined): CoapResponse {
    // RFC 7252 §5.10.3 / §5.9.2.10: 4.15 for a Content-Format the resource does not take.
    return diag(CoapCode.UnsupportedContentFormat, `Content-Format ${cf ?? 'missing'}; expected ${this.formats.records}, ${this.formats.protected} or ${this.formats.protectedHttp}`);
  }

  private errorResponse(e: unknown, sessionId: string | undefined, peer?: Peer): CoapResponse {
    const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', String(e), { cause: e });
    const code = codeFromHint(err.coapCode);
    this.opts.onEvent?.({ type: 'error', sessionId, error: err, code: err.coapCode, ...(peer ? { peer } : {}) });
    // The alert records, if any, ride in the error body so the client learns why (draft §9.3).
    if (err.alertFlight.length > 0) {
      return { code, options: [uintOption(OptionNumber.ContentFormat, this.formats.records)], payload: err.alertFlight };
    }
    // RFC 7252 §5.10.5: on 5.03, Max-Age says when to try again.
    const options = code === CoapCode.ServiceUnavailable ? [uintOption(OptionNumber.MaxAge, Math.max(0, Math.ceil(err.retryAfter ?? 1)))] : [];
    return diag(code, err.code, options);
  }

  private async newSession(flight: Uint8Array, peer: Peer): Promise<CoapResponse> {
    if (flight.length > this.maxBody) return this.errorResponse(new AtlsError('TOO_LARGE', 'flight too large', { source: 'remote' }), undefined);
    // Only a ClientHello starts a session: anything else would take a half-open slot (at the cap another peer's gives way) and an engine.
    if (!startsWithClientHello(flight)) return this.errorResponse(new AtlsError('MALFORMED_RECORD', 'a new session starts with a ClientHello', { source: 'remote' }), undefined, peer);
    if (!this.hellos.fresh(flight)) {
      return this.errorResponse(new AtlsError('REPLAYED', 'this ClientHello already started a handshake', { source: 'remote' }), undefined);
    }
    let live: LiveSession;
    try {
      live = this.core.admit(peerGroup(peer.address)); // at the half-open cap the heaviest peer's oldest gives way
    } catch (e) {
      this.hellos.forget(flight); // refused before any processing: the client may resend this ClientHello
      return this.errorResponse(e, undefined);
    }
    let out;
    try {
      out = await this.core.exclusive(live, () => this.core.flight(live, flight));
    } catch (e) {
      return this.errorResponse(e, undefined, peer);
    }
    this.opts.onEvent?.({ type: 'session', sessionId: live.id, peer });
    if (out.handshake) this.opts.onEvent?.({ type: 'established', sessionId: live.id, info: out.handshake });
    return {
      code: CoapCode.Created,
      options: [
        // -05: the session resource, as Location-Path segments (RFC 7252 §5.10.7).
        stringOption(OptionNumber.LocationPath, SESSION_PATH_PREFIX),
        stringOption(OptionNumber.LocationPath, live.id),
        uintOption(OptionNumber.ContentFormat, this.formats.records),
      ],
      payload: out.flight,
    };
  }

  private peerOf(id: string, handshake: HandshakeInfo | undefined, peer: Peer): AtlsCoapPeer {
    return { sessionId: id, address: peer.address, port: peer.port, handshake };
  }

  private async onSession(found: FoundSession, cf: number | undefined, body: Uint8Array, peer: Peer): Promise<CoapResponse> {
    if (cf === this.formats.records) {
      if (!(found instanceof LiveSession)) {
        // A copy of the final flight that completed the handshake: its answer was lost (RFC 6347 §4.2.4).
        const again = this.lastFlights?.answer(found.id, body);
        if (again) return { code: CoapCode.Changed, options: [uintOption(OptionNumber.ContentFormat, this.formats.records)], payload: again };
        // Any other flight: an established exported session takes no flights. Refusing it leaves
        // the session alone: a stray or replayed flight cannot end it. The
        // diagnostic names the mode, for a client of the other mode.
        const err = new AtlsError('INVALID_STATE', 'this session runs mode "exported": send protected messages', { source: 'remote' });
        this.opts.onEvent?.({ type: 'error', sessionId: found.id, error: err, code: err.coapCode, peer });
        return diag(codeFromHint(err.coapCode), `${err.code}: ${err.message}`);
      }
      const live = found;
      try {
        return await this.core.exclusive(live, async () => {
          const out = await this.core.flight(live, body);
          if (out.handshake) this.opts.onEvent?.({ type: 'established', sessionId: live.id, info: out.handshake });
          if (out.established) this.lastFlights?.keep(live.id, live.group, body, out.flight);
          const parts: Uint8Array[] = [out.flight];
          if (out.data.length > 0 && !out.closed && live.handshake) {
            // Mode records: the application data is one inner CoAP request; answer in records.
            const reply = await this.dispatchCoap(concatBytes(out.data), live.id, live.handshake, peer);
            parts.push(await this.core.sendRecords(live, reply));
          }
          return { code: CoapCode.Changed, options: [uintOption(OptionNumber.ContentFormat, this.formats.records)], payload: concatBytes(parts) };
        });
      } catch (e) {
        return this.errorResponse(e, live.id);
      }
    }
    if (cf === this.formats.protected || cf === this.formats.protectedHttp) {
      if (found instanceof LiveSession) {
        if (found.session.mode !== 'exported') return diag(CoapCode.UnsupportedContentFormat, 'this session runs mode "records"');
        return this.errorResponse(new AtlsError('NOT_ESTABLISHED', 'the handshake of this session is not complete', { source: 'remote' }), found.id);
      }
      return this.onProtected(found, cf, body, peer);
    }
    return this.unsupported(cf);
  }

  private async onProtected(s: EstablishedSession, cf: number, body: Uint8Array, peer: Peer): Promise<CoapResponse> {
    let sendSeq: number;
    let plain: Uint8Array;
    try {
      // A forged, replayed or too old message is dropped; the session goes on (decisions.md).
      const accepted = this.core.accept(s, body);
      ({ plaintext: plain, sendSeq } = accepted instanceof Promise ? await accepted : accepted);
      this.lastFlights?.forget(s.id); // the client has the last flight: it made this message
    } catch (e) {
      return this.errorResponse(e, s.id);
    }
    const reply = cf === this.formats.protected ? await this.dispatchCoap(plain, s.id, s.handshake, peer) : await this.dispatchHttp(plain, s.id, s.handshake, peer);
    try {
      const sealed = this.core.seal(s, sendSeq, reply);
      return { code: CoapCode.Changed, options: [uintOption(OptionNumber.ContentFormat, cf)], payload: sealed instanceof Promise ? await sealed : sealed };
    } catch (e) {
      return this.errorResponse(e, s.id);
    }
  }

  /** Runs the inner CoAP handler; any failure becomes an inner error response, never an outer one. */
  private async dispatchCoap(plain: Uint8Array, id: string, handshake: HandshakeInfo | undefined, peer: Peer): Promise<Uint8Array> {
    let req: CoapRequest;
    try {
      req = toCoapRequest(decodeInner(plain));
    } catch (e) {
      return encodeInner({ code: CoapCode.BadRequest, options: [], payload: enc.encode(e instanceof AtlsError ? e.message : 'bad inner message') });
    }
    let reply: CoapReply;
    try {
      reply = this.opts.handler ? await this.opts.handler(req, this.peerOf(id, handshake, peer)) : { code: CoapCode.NotFound };
      const inner = encodeInner(fromCoapReply(reply));
      this.opts.onEvent?.({ type: 'request', sessionId: id, method: req.method, path: req.path, code: codeText(inner[0]!) });
      return inner;
    } catch (e) {
      this.opts.onEvent?.({ type: 'error', sessionId: id, error: e instanceof AtlsError ? e : new AtlsError('INTERNAL', String(e)), code: '5.00' });
      return encodeInner({ code: CoapCode.InternalServerError, options: [], payload: new Uint8Array(0) });
    }
  }

  private async dispatchHttp(plain: Uint8Array, id: string, handshake: HandshakeInfo | undefined, peer: Peer): Promise<Uint8Array> {
    if (!this.opts.httpApp) return responseToBhttp(new Response('no HTTP application behind this CoAP server\n', { status: 415 }));
    let request: Request;
    try {
      request = bhttpToRequest(plain);
    } catch {
      return responseToBhttp(new Response('bad Binary HTTP request\n', { status: 400 }));
    }
    try {
      const res = await this.opts.httpApp(request, this.peerOf(id, handshake, peer));
      this.opts.onEvent?.({ type: 'request', sessionId: id, method: request.method, path: new URL(request.url).pathname, code: String(res.status) });
      return await responseToBhttp(res);
    } catch {
      return responseToBhttp(new Response('internal server error\n', { status: 500 }));
    }
  }

}

/** The CoAP server's name for why a session ended. */
function closeReason(reason: EndReason): 'deleted' | 'expired' | 'failed' | 'evicted' | 'peer' {
  return reason === 'closed' ? 'peer' : reason;
}

function codeText(code: number): string {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, '0')}`;
}

/** An ATLS server on a UDP CoAP endpoint. */
export class AtlsCoapServer {
  private constructor(
    readonly endpoint: CoapEndpoint,
    readonly handler: AtlsCoapHandler,
    readonly blockwise: BlockwiseServer,
  ) {}

  /** Binds the endpoint and starts serving. */
  static async listen(options: AtlsCoapServerOptions): Promise<AtlsCoapServer> {
    const handler = new AtlsCoapHandler(options); // checks the credentials before a socket is bound
    const endpoint = await CoapEndpoint.bind({
      ...(options.host !== undefined ? { host: options.host } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.transmission ? { transmission: options.transmission } : {}),
    });
    const blockwise = new BlockwiseServer({
      maxBodyBytes: options.maxBodyBytes ?? ENDPOINT_DEFAULTS.coapMaxBodyBytes,
      ...(options.maxBlockSize !== undefined ? { maxBlockSize: options.maxBlockSize } : {}),
      ...(options.maxTransfersPerPeer !== undefined ? { maxTransfersPerPeer: options.maxTransfersPerPeer } : {}),
      ...(options.maxTransfers !== undefined ? { maxTransfers: options.maxTransfers } : {}),
      ...(options.onEvent ? { onEvent: options.onEvent } : {}),
    });
    endpoint.handle((msg, peer) => blockwise.handle(msg, peer, (m, p, answer) => handler.handle(m, p, answer)));
    return new AtlsCoapServer(endpoint, handler, blockwise);
  }

  /** `coap://host:port` of this server. */
  get url(): string {
    const a = this.endpoint.address;
    return `coap://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  }

  get port(): number {
    return this.endpoint.port;
  }

  /** Stops serving and forgets every session. */
  async close(): Promise<void> {
    this.handler.closeAll();
    await this.endpoint.close();
  }
}

/** An inner CoAP handler that answers 2.05 Content with the request's own payload and Content-Format (`atls serve --echo`). */
export const echoCoapHandler: CoapRequestHandler = (req) => ({
  code: CoapCode.Content,
  payload: req.payload,
  ...(req.contentFormat !== undefined ? { contentFormat: req.contentFormat } : {}),
});
