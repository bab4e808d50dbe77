/** The CoAP side of `atls fetch coap://...`. */
import { AtlsError } from '../errors.js';
import type { TlsClientConfig, TlsEngine } from '../engines/types.js';
import type { Mode } from '../session/types.js';
import { AtlsCoapClient, coapFetch, type AtlsCoapClientOptions } from '../coap/client.js';

export interface CoapFetchArgs {
  tls: TlsClientConfig;
  mode: Mode;
  method: string;
  body: Uint8Array | undefined;
  opts: Record<string, unknown>;
  engine?: TlsEngine;
}

/** Sends one inner CoAP request; resolves with the inner response payload. */
export async function fetchCoap(target: URL, a: CoapFetchArgs): Promise<Uint8Array> {
  let blockSize: number | undefined;
  if (a.opts.blockSize !== undefined) {
    blockSize = Number(a.opts.blockSize);
    // RFC 7959 §2.2: SZX 0..6, sizes 16..1024, powers of two.
    if (![16, 32, 64, 128, 256, 512, 1024].includes(blockSize)) {
      throw new AtlsError('INVALID_ARGUMENT', '--block-size must be a power of two from 16 to 1024');
    }
  }
  const verbose = a.opts.verbose === true;
  const common: Omit<AtlsCoapClientOptions, 'url'> = {
    tls: { ...a.tls, serverName: a.tls.serverName ?? target.hostname.replace(/^\[|\]$/g, '') },
    mode: a.mode,
    ...(blockSize !== undefined ? { blockSize } : {}),
    ...(typeof a.opts.coapProxy === 'string' ? { proxy: a.opts.coapProxy } : {}),
    ...(a.engine ? { engine: a.engine } : {}),
    ...(verbose
      ? {
          onExchange: (e: { path: string; request: { payload: Uint8Array }; response: { code: number; payload: Uint8Array } }) =>
            process.stderr.write(
              `* CoAP POST ${e.path}: sent ${e.request.payload.length} B, ` +
                `received ${e.response.code >> 5}.${String(e.response.code & 31).padStart(2, '0')} ${e.response.payload.length} B\n`,
            ),
        }
      : {}),
  };
  if (a.opts.inner === 'http') {
    // Binary HTTP inside protected messages: what an HTTP service behind a
    // CoAP-to-HTTP gateway understands (docs/protocol.md §6.8).
    const client = new AtlsCoapClient({ ...common, url: `coap://${target.host}` });
    try {
      const inner = new URL(`${target.pathname}${target.search}`, `http://${target.host}`);
      const res = await client.fetch(
        new Request(inner, { method: a.method, ...(a.body !== undefined ? { body: a.body } : {}) }),
      );
      if (verbose) process.stderr.write(`* inner response: ${res.status}\n`);
      return new Uint8Array(await res.arrayBuffer());
    } finally {
      await client.close();
    }
  }
  const res = await coapFetch(target, {
    ...common,
    method: a.method as never,
    ...(a.body !== undefined ? { payload: a.body } : {}),
  });
  if (verbose) process.stderr.write(`* inner response: ${res.codeText}\n`);
  return res.payload;
}
