/**
 * The CoAP side of `atls serve --coap HOST:PORT`: the same credentials and the
 * same `--echo` / `--upstream` behaviour as the HTTP endpoint. Inner CoAP
 * requests for an upstream are translated to HTTP (RFC 8075 code mapping);
 * inner Binary HTTP requests go to the upstream as they are.
 */
import type { TlsEngine, TlsServerConfig } from '../engines/types.js';
import type { Mode } from '../session/types.js';
import type { SessionStateStore } from '../store/index.js';
import { AtlsCoapServer, echoCoapHandler, type AtlsCoapServerEvent, type HttpApp } from '../coap/server.js';
import { httpAppAsCoapHandler } from '../coap/http-map.js';
import { echoApp, upstreamApp } from '../http/apps.js';
import { parseHostPort } from './options.js';

export interface CoapServiceOptions {
  listen: string;
  tls: TlsServerConfig;
  mode: Mode;
  echo: boolean;
  upstream: string | undefined;
  engine?: TlsEngine;
  limits?: { maxSessions?: number; maxHalfOpen?: number; handshakeTtlMs?: number; sessionTtlMs?: number };
  onEvent?: (e: AtlsCoapServerEvent) => void;
  /** `--address-check`: verify addresses with Echo before an amplifying answer (default true). */
  addressCheck?: boolean;
  /** Key of the Echo values; every process given the same key verifies the others' values. */
  echoKey?: Uint8Array;
  /** Where established sessions live (`--store`; default: in this process's memory). */
  store?: SessionStateStore;
}

/** Starts the CoAP endpoint; resolves once bound. */
export async function startCoapService(
  opts: CoapServiceOptions,
): Promise<{ url: string; close: () => Promise<void>; sessions: () => number }> {
  const { host, port } = parseHostPort(opts.listen, '--coap');
  const app = opts.echo ? echoApp : upstreamApp(opts.upstream!);
  // The HTTP apps' second argument is the HTTP binding's peer, which they do
  // not read for echo or forwarding; the request is all they need here.
  const httpApp: HttpApp = (request) => app(request, undefined as never, { outer: request });
  const server = await AtlsCoapServer.listen({
    tls: opts.tls,
    mode: opts.mode,
    host,
    port,
    handler: opts.echo ? echoCoapHandler : httpAppAsCoapHandler(httpApp),
    httpApp,
    ...(opts.engine ? { engine: opts.engine } : {}),
    ...opts.limits,
    ...(opts.onEvent ? { onEvent: opts.onEvent } : {}),
    ...(opts.store ? { store: opts.store } : {}),
    ...(opts.addressCheck !== undefined ? { addressCheck: opts.addressCheck } : {}),
    ...(opts.echoKey ? { echoKey: opts.echoKey } : {}),
  });
  return { url: server.url, close: () => server.close(), sessions: () => server.handler.sessionCount };
}
