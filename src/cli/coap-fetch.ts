/** The CoAP side of `atls fetch coap://...`. */
import { AtlsError } from '../errors.js';
import type { TlsClientConfig, TlsEngine } from '../engines/types.js';
import type { Mode } from '../session/types.js';
import { coapFetch } from '../coap/client.js';

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
  const res = await coapFetch(target, {
    tls: { ...a.tls, serverName: a.tls.serverName ?? target.hostname.replace(/^\[|\]$/g, '') },
    mode: a.mode,
    method: a.method as never,
    ...(a.body !== undefined ? { payload: a.body } : {}),
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
  });
  if (verbose) process.stderr.write(`* inner response: ${res.codeText}\n`);
  return res.payload;
}
