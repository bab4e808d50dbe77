/**
 * Test helper: a small client that speaks the streaming wire format of the
 * HTTP binding with the library's own pieces (AtlsClientSession for the
 * handshake, protectBody / unprotectBody for exported chunk streams, the
 * session's send / receive for records, the Binary HTTP stream codec), so
 * the server's streaming can be tested over any transport: the Web handler
 * directly, or fetch over real sockets.
 */
import { AtlsClientSession } from '../../src/session/session.js';
import type { TlsClientConfig } from '../../src/engines/types.js';
import type { Mode } from '../../src/session/types.js';
import type { ProtectedChannel } from '../../src/protect/index.js';
import { protectBody, unprotectBody } from '../../src/protect/index.js';
import { decodeResponseStream, type BhttpStreamedResponse } from '../../src/bhttp/stream.js';
import { requestToBhttpStream } from '../../src/bhttp/web.js';
import { wholeRecordsLength } from '../../src/records.js';
import { concatBytes } from '../../src/bytes.js';
import { EngineQueue } from '../../src/http/streaming.js';
import { COOKIE_NAME, MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';

/** Sends one outer POST to the ATLS endpoint. */
export type Poster = (body: Uint8Array | ReadableStream<Uint8Array>, headers: Record<string, string>) => Promise<Response>;

/** A Poster for a Web handler (no sockets). */
export function handlerPoster(handler: (r: Request) => Promise<Response>, url = 'http://localhost/.well-known/atls'): Poster {
  return (body, headers) => handler(new Request(url, { method: 'POST', body, headers, duplex: 'half' } as RequestInit));
}

/** A Poster over real sockets (undici's fetch). */
export function fetchPoster(url: string): Poster {
  return (body, headers) => fetch(url, { method: 'POST', body, headers, duplex: 'half' } as RequestInit);
}

/** An inner response whose content streams; `outer` is the HTTP response that carried it. */
export interface StreamedAnswer {
  outer: Response;
  inner: BhttpStreamedResponse;
}

export class StreamingTestClient {
  private readonly queue = new EngineQueue();

  private constructor(
    private readonly post: Poster,
    readonly mode: Mode,
    readonly cookie: string,
    private readonly session: AtlsClientSession,
    readonly channel: ProtectedChannel | undefined,
  ) {}

  /** Handshakes over `post` (one flight per outer request). */
  static async connect(post: Poster, tls: TlsClientConfig, mode: Mode): Promise<StreamingTestClient> {
    const session = new AtlsClientSession({ tls, mode });
    let out = await session.start();
    let cookie: string | undefined;
    for (let i = 0; i < 6 && (session.state !== 'established' || out.flight.length > 0); i++) {
      const res = await post(out.flight, { 'content-type': MEDIA_TYPE_FLIGHT, ...(cookie ? { cookie: `${COOKIE_NAME}=${cookie}` } : {}) });
      if (res.status !== 200) throw new Error(`handshake step answered ${res.status}: ${await res.text()}`);
      for (const sc of res.headers.getSetCookie()) {
        const m = new RegExp(`^${COOKIE_NAME}=([^;]*)`).exec(sc);
        if (m) cookie = m[1];
      }
      out = await session.receive(new Uint8Array(await res.arrayBuffer()));
    }
    if (!cookie) throw new Error('no cookie');
    return new StreamingTestClient(post, mode, cookie, session, mode === 'exported' ? session.takeChannel() : undefined);
  }

  /** The outer body that carries `request` (exported: a chunk stream or one message; records: records). */
  wire(request: Request): ReadableStream<Uint8Array> {
    const bhttp = requestToBhttpStream(request);
    if (this.channel) return protectBody(this.channel, bhttp);
    const reader = bhttp.getReader();
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          const r = await reader.read();
          if (r.done) controller.close();
          else controller.enqueue(await this.queue.run(() => this.session.send(r.value)));
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }

  /** Sends an outer body as this session's request; the outer response as it came. */
  send(body: Uint8Array | ReadableStream<Uint8Array>): Promise<Response> {
    return this.post(body, {
      'content-type': this.channel ? MEDIA_TYPE_PROTECTED : MEDIA_TYPE_FLIGHT,
      cookie: `${COOKIE_NAME}=${this.cookie}`,
    });
  }

  /** One inner request; resolves once the inner response's head arrived (throws on a non-200 outer status). */
  async fetch(request: Request): Promise<StreamedAnswer> {
    const outer = await this.send(this.wire(request));
    if (outer.status !== 200) throw new Error(`outer ${outer.status} ${outer.headers.get('atls-error')}: ${await outer.text()}`);
    return { outer, inner: await decodeResponseStream(this.open(outer.body!), { maxContent: 2 ** 40 }) };
  }

  /** The plaintext of a response body. */
  open(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
    if (this.channel) return unprotectBody(this.channel, body, 1 << 24);
    const reader = body.getReader();
    let pending: Uint8Array = new Uint8Array(0);
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          for (;;) {
            const r = await reader.read();
            if (r.done) {
              if (pending.length > 0) throw new Error('records cut short');
              controller.close();
              return;
            }
            const buf = pending.length ? concatBytes([pending, r.value]) : r.value;
            const n = wholeRecordsLength(buf);
            pending = buf.slice(n);
            if (n === 0) continue;
            const step = await this.queue.run(() => this.session.receive(buf.subarray(0, n)));
            let any = false;
            for (const e of step.events) {
              if (e.type === 'data') {
                controller.enqueue(e.data);
                any = true;
              }
            }
            if (any) return;
          }
        },
        cancel: (reason) => reader.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }
}
