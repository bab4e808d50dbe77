/**
 * A lean ATLS-over-HTTP client for load generation: the same wire protocol as
 * `createAtlsClient` (docs/protocol.md §5: flight media type, session cookie,
 * `atls-flight-length` piggy-backing, protected messages) driven over one
 * {@link H1Connection}, without fetch objects. It also keeps the TLS 1.3
 * ticket, which the HTTP client does not expose, so resumed handshakes can be
 * measured through the HTTP endpoint.
 *
 * @example
 * ```ts
 * const conn = await H1Connection.connect({ port });
 * const d = new AtlsDriver(conn, { tls: { serverName: 'localhost', ca }, mode: 'exported' });
 * const first = await d.handshake(innerRequest);   // the request rides with the final flight
 * const next = await d.request(innerRequest);
 * ```
 * @module
 */
import { AtlsClientSession } from '../../src/session/session.js';
import type { Mode } from '../../src/session/types.js';
import type { TlsClientConfig, TlsEngine } from '../../src/engines/types.js';
import { concatBytes } from '../../src/bytes.js';
import { StreamOpener, startsChunkStream } from '../../src/protect/stream.js';
import {
  COOKIE_NAME,
  DEFAULT_ENDPOINT,
  HEADER_FLIGHT_LENGTH,
  MEDIA_TYPE_FLIGHT,
  MEDIA_TYPE_PROTECTED,
} from '../../src/http/constants.js';
import type { H1Connection, H1Response } from './h1.js';

/** Options of {@link AtlsDriver}. */
export interface AtlsDriverOptions {
  /** Client TLS configuration; reuse one object across drivers (engines cache contexts by it). */
  tls: TlsClientConfig;
  mode?: Mode;
  engine?: TlsEngine;
  endpoint?: string;
}

/** Sizes of one handshake on the wire (bodies only; outer HTTP heads counted apart). */
export interface HandshakeTrace {
  /** Body bytes of each POST and each answer, in order: sent, received, sent, ... */
  bodies: number[];
  /** TLS flight bytes in the same order (without piggy-backed protected messages). */
  flights: number[];
  resumed: boolean;
}

/** One client session over one connection. */
export class AtlsDriver {
  readonly session: AtlsClientSession;
  cookie: string | undefined;
  trace: HandshakeTrace = { bodies: [], flights: [], resumed: false };
  private readonly endpoint: string;
  private readonly mode: Mode;

  constructor(
    private readonly conn: H1Connection,
    options: AtlsDriverOptions,
  ) {
    this.mode = options.mode ?? 'exported';
    this.endpoint = options.endpoint ?? DEFAULT_ENDPOINT;
    this.session = new AtlsClientSession({
      mode: this.mode,
      tls: options.tls,
      ...(options.engine ? { engine: options.engine } : {}),
    });
  }

  /** The newest resumption ticket (TLS 1.3 NewSessionTicket), once received. */
  get ticket(): Uint8Array | undefined {
    return this.session.resumptionTicket;
  }

  private async post(body: Uint8Array, type: string, extra?: Record<string, string>): Promise<H1Response> {
    const headers: Record<string, string> = { 'content-type': type, ...extra };
    if (this.cookie) headers.cookie = `${COOKIE_NAME}=${this.cookie}`;
    const res = await this.conn.request('POST', this.endpoint, headers, body);
    const sc = res.headers.get('set-cookie');
    if (sc !== undefined) {
      const m = /atls-session=([^;]*)/.exec(sc);
      if (m) this.cookie = m[1] === '' ? undefined : m[1];
    }
    if (res.status !== 200) throw new Error(`ATLS server answered ${res.status}: ${res.body.toString('latin1', 0, 200)}`);
    return res;
  }

  /**
   * Runs the handshake; with `first`, that inner request rides with the
   * client's final flight and its inner response is returned.
   */
  async handshake(first?: Uint8Array): Promise<Uint8Array | undefined> {
    let out = await this.session.start();
    let answer: Uint8Array | undefined;
    for (let round = 0; round < 8; round++) {
      const rider = this.session.state === 'confirming' ? first : undefined;
      const ride = rider !== undefined;
      let body = out.flight;
      const extra: Record<string, string> = {};
      if (rider && this.mode === 'exported') {
        body = concatBytes([out.flight, this.session.protect(rider)]);
        extra[HEADER_FLIGHT_LENGTH] = String(out.flight.length);
      } else if (rider) {
        body = concatBytes([out.flight, await this.session.send(rider)]);
      }
      this.trace.bodies.push(body.length);
      this.trace.flights.push(out.flight.length);
      const res = await this.post(body, MEDIA_TYPE_FLIGHT, extra);
      let flight: Uint8Array = res.body;
      let sealed: Uint8Array | undefined;
      const split = res.headers.get(HEADER_FLIGHT_LENGTH);
      if (split !== undefined) {
        flight = res.body.subarray(0, Number(split));
        sealed = res.body.subarray(Number(split));
      }
      this.trace.bodies.push(res.body.length);
      this.trace.flights.push(flight.length);
      out = await this.session.receive(flight);
      for (const e of out.events) if (e.type === 'handshake') this.trace.resumed = e.info.resumed;
      if (ride) {
        first = undefined;
        if (sealed) answer = this.session.unprotect(sealed);
        else answer = concatBytes(out.events.flatMap((e) => (e.type === 'data' ? [e.data] : [])));
      }
      if (this.session.state === 'established' && out.flight.length === 0) return answer;
      if (this.session.state !== 'handshaking' && this.session.state !== 'confirming' && this.session.state !== 'established') {
        throw this.session.error ?? new Error(`handshake ended in state ${this.session.state}`);
      }
    }
    throw new Error('handshake did not finish in 8 round trips');
  }

  /** One inner request over the established session; resolves with the inner response bytes. */
  async request(inner: Uint8Array): Promise<Uint8Array> {
    if (this.mode === 'exported') {
      const res = await this.post(this.session.protect(inner), MEDIA_TYPE_PROTECTED);
      if (res.body.length === 0 || !startsChunkStream(res.body[0]!)) return this.session.unprotect(res.body);
      // An answer above 16 KiB comes as a chunk stream (docs/protocol.md §4.1).
      const opener = new StreamOpener(this.session.protectedChannel);
      const plain = opener.push(res.body);
      opener.end();
      return concatBytes(plain);
    }
    const res = await this.post(await this.session.send(inner), MEDIA_TYPE_FLIGHT);
    const step = await this.session.receive(res.body);
    return concatBytes(step.events.flatMap((e) => (e.type === 'data' ? [e.data] : [])));
  }
}
