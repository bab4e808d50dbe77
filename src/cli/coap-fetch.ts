/** The CoAP side of `atls fetch coap://...`. */
import { STATUS_CODES } from 'node:http';
import { AtlsError } from '../errors.js';
import type { TlsClientConfig, TlsEngine } from '../engines/types.js';
import type { Mode } from '../session/types.js';
import { AtlsCoapClient, type AtlsCoapClientOptions } from '../coap/client.js';
import type { CliIo } from './io.js';

export interface CoapFetchArgs {
  tls: TlsClientConfig;
  mode: Mode;
  method: string;
  body: Uint8Array | undefined;
  opts: Record<string, unknown>;
  engine?: TlsEngine;
  /** No answer at all from the peer within this long fails with TIMEOUT (nothing listening). */
  connectTimeoutMs: number;
  /** The whole exchange, handshake included. */
  maxTimeMs?: number;
  /** Where `-v` writes. */
  stderr: CliIo['stderr'];
}

/** The inner response as `atls fetch` prints it. */
export interface CoapFetchResult {
  /** The inner response failed (CoAP 4.xx/5.xx, HTTP 400 or more): `--fail` exits 22. */
  failed: boolean;
  codeText: string;
  /** What `-i` prints before the body. */
  head: string;
  payload: Uint8Array;
}

const codeText = (code: number): string => `${code >> 5}.${String(code & 31).padStart(2, '0')}`;

/** Sends one inner CoAP request (or, with `--inner http`, an HTTP request through a gateway). */
export async function fetchCoap(target: URL, a: CoapFetchArgs): Promise<CoapFetchResult> {
  let blockSize: number | undefined;
  if (a.opts.blockSize !== undefined) {
    blockSize = Number(a.opts.blockSize);
    // RFC 7959 §2.2: SZX 0..6, sizes 16..1024, powers of two.
    if (![16, 32, 64, 128, 256, 512, 1024].includes(blockSize)) {
      throw new AtlsError('INVALID_ARGUMENT', '--block-size must be a power of two from 16 to 1024');
    }
  }
  const verbose = a.opts.verbose === true;
  let answered = false;
  const options: AtlsCoapClientOptions = {
    url: `coap://${target.host}`,
    tls: { ...a.tls, serverName: a.tls.serverName ?? target.hostname.replace(/^\[|\]$/g, '') },
    mode: a.mode,
    ...(blockSize !== undefined ? { blockSize } : {}),
    ...(typeof a.opts.coapProxy === 'string' ? { proxy: a.opts.coapProxy } : {}),
    ...(a.engine ? { engine: a.engine } : {}),
    ...(a.maxTimeMs !== undefined ? { timeoutMs: a.maxTimeMs } : {}),
    onExchange: (e) => {
      answered = true;
      if (verbose) {
        a.stderr.write(
          `* CoAP POST ${e.path}: sent ${e.request.payload.length} B, received ${codeText(e.response.code)} ${e.response.payload.length} B\n`,
        );
      }
    },
    ...(verbose
      ? {
          onRetransmit: (e) =>
            a.stderr.write(
              `* CoAP retransmission ${e.attempt} of message ${e.peer.address}:${e.peer.port} #${e.messageId}, next wait ${(e.nextWaitMs / 1000).toFixed(1)} s\n`,
            ),
        }
      : {}),
  };
  const client = new AtlsCoapClient(options);
  if (verbose) a.stderr.write(`* CoAP to ${target.host}${options.proxy ? ` via ${String(options.proxy)}` : ''}, mode ${a.mode}\n`);
  let timer: NodeJS.Timeout | undefined;
  const deadline = (ms: number, why: string): Promise<never> =>
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new AtlsError('TIMEOUT', why, { source: 'remote' })), ms);
    });
  const exchange = async (): Promise<CoapFetchResult> => {
    if (a.opts.inner === 'http') {
      // Binary HTTP inside protected messages: what an HTTP service behind a
      // CoAP-to-HTTP gateway understands (docs/protocol.md §6.8).
      const inner = new URL(`${target.pathname}${target.search}`, `http://${target.host}`);
      const res = await client.fetch(new Request(inner, { method: a.method, ...(a.body !== undefined ? { body: a.body } : {}) }));
      if (verbose) a.stderr.write(`* inner response: ${res.status}\n`);
      let head = `HTTP/1.1 ${res.status} ${res.statusText || (STATUS_CODES[res.status] ?? '')}\r\n`;
      res.headers.forEach((v, k) => (head += `${k}: ${v}\r\n`));
      return { failed: res.status >= 400, codeText: String(res.status), head: head + '\r\n', payload: new Uint8Array(await res.arrayBuffer()) };
    }
    const res = await client.request({
      method: a.method as never,
      pathname: target.pathname || '/',
      query: target.search.slice(1),
      ...(a.body !== undefined ? { payload: a.body } : {}),
    });
    if (verbose) a.stderr.write(`* inner response: ${res.codeText}\n`);
    const format = res.contentFormat !== undefined ? `Content-Format: ${res.contentFormat}\n` : '';
    return { failed: res.code >= 0x80, codeText: res.codeText, head: `CoAP ${res.codeText}\n${format}\n`, payload: res.payload };
  };
  try {
    const first = new Promise<never>((_, reject) => {
      // Nothing answered the first message: nothing listens there (UDP has no refusal to wait for).
      const check = setTimeout(() => {
        if (!answered) reject(new AtlsError('TIMEOUT', `no CoAP answer from ${target.host} within --connect-timeout ${a.connectTimeoutMs / 1000} s`, { source: 'remote' }));
      }, a.connectTimeoutMs);
      check.unref();
    });
    const racers: Promise<CoapFetchResult>[] = [exchange(), first];
    if (a.maxTimeMs !== undefined) racers.push(deadline(a.maxTimeMs, `no complete answer within --max-time ${a.maxTimeMs / 1000} s`));
    return await Promise.race(racers);
  } finally {
    clearTimeout(timer);
    await client.close();
  }
}
