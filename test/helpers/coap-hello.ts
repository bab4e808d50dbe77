/**
 * A fresh ClientHello POSTed by hand to a CoAP ATLS endpoint's
 * `/.well-known/atls`, for tests of what the endpoint does before a
 * handshake (the Echo address check, RFC 9175 §2.4).
 *
 * @example
 * ```ts
 * const first = await postClientHello(ep, { address: '127.0.0.1', port });
 * const again = await postClientHello(ep, { address: '127.0.0.1', port }, [getOption(first, OptionNumber.Echo)!]);
 * ```
 */
import { AtlsClientSession } from '../../src/session/session.js';
import type { CoapEndpoint } from '../../src/coap/endpoint.js';
import type { Peer } from '../../src/coap/blockwise.js';
import { CoapCode, OptionNumber, WELL_KNOWN_PATH } from '../../src/coap/constants.js';
import { stringOption, uintOption, type CoapMessage, type CoapOption } from '../../src/coap/packet.js';
import { testPki } from './pki.js';

/** POSTs a new ClientHello with `extra` options; the response. */
export async function postClientHello(ep: CoapEndpoint, to: Peer, extra: CoapOption[] = [], timeoutMs?: number): Promise<CoapMessage> {
  const hello = (await new AtlsClientSession({ tls: { ca: (await testPki()).ca.cert, serverName: 'localhost' } }).start()).flight;
  return ep.request(
    to,
    {
      code: CoapCode.POST,
      options: [...WELL_KNOWN_PATH.map((s) => stringOption(OptionNumber.UriPath, s)), uintOption(OptionNumber.ContentFormat, 65000), ...extra],
      payload: hello,
    },
    timeoutMs === undefined ? {} : { timeoutMs },
  );
}
