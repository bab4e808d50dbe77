/**
 * `atls serve`: an ATLS endpoint over HTTP (and CoAP with `--coap`), in front
 * of an upstream HTTP service (`--upstream`, a reverse sidecar) or an echo.
 */
import type { AddressInfo } from 'node:net';
import { AtlsError } from '../errors.js';
import type { TlsServerConfig } from '../engines/types.js';
import { createAtlsServer, echoApp, echoRawApp, upstreamApp } from '../http/index.js';
import {
  cipherFlags,
  engineFrom,
  modeFrom,
  parseHostPort,
  parseSize,
  pskFrom,
  readPem,
  untilSignal,
  versionRange,
} from './options.js';

/** The server-side TLS configuration named by the flags of `serve`. */
export function serverTlsFrom(opts: Record<string, unknown>): TlsServerConfig {
  const psk = pskFrom(opts);
  if (!psk && (opts.cert === undefined || opts.key === undefined)) {
    throw new AtlsError('INVALID_ARGUMENT', 'give --cert and --key (or --psk-identity and --psk)');
  }
  if (opts.requireClientCert && opts.ca === undefined) {
    throw new AtlsError('INVALID_ARGUMENT', '--require-client-cert needs --ca to verify client certificates');
  }
  return {
    ...versionRange(opts.tlsVersion),
    ...(opts.cert !== undefined ? { cert: readPem(opts.cert as string, '--cert') } : {}),
    ...(opts.key !== undefined ? { key: readPem(opts.key as string, '--key') } : {}),
    ...(opts.ca !== undefined ? { ca: readPem(opts.ca as string, '--ca'), requestClientCert: true } : {}),
    ...(opts.requireClientCert ? { requireClientCert: true } : {}),
    ...(psk ? { pskLookup: (id: string) => (id === psk.identity ? psk.key : undefined) } : {}),
    ...cipherFlags(opts, psk !== undefined),
  };
}

/** The demo page's handler; it trusts --demo-ca, else the last certificate of --cert (pinned). */
async function demoPage(opts: Record<string, unknown>): Promise<(request: Request) => Promise<Response>> {
  const { demoPageHandler } = await import('./demo-page.js');
  let trust: string;
  if (typeof opts.demoCa === 'string') {
    trust = readPem(opts.demoCa, '--demo-ca');
  } else if (typeof opts.cert === 'string') {
    const chain = readPem(opts.cert, '--cert').match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
    if (!chain) throw new AtlsError('INVALID_ARGUMENT', '--cert holds no PEM certificate');
    trust = `${chain[chain.length - 1]!}\n`;
  } else {
    throw new AtlsError('INVALID_ARGUMENT', '--demo-page needs --cert or --demo-ca (the page has no PSK to offer)');
  }
  return demoPageHandler(trust);
}

export async function runServe(opts: Record<string, unknown>): Promise<void> {
  const { host, port } = parseHostPort(opts.listen as string);
  if (!opts.echo && opts.upstream === undefined) {
    throw new AtlsError('INVALID_ARGUMENT', 'give --upstream URL (reverse sidecar) or --echo');
  }
  const app = opts.echo ? echoApp : upstreamApp(opts.upstream as string);
  const tls = serverTlsFrom(opts);
  const mode = modeFrom(opts);
  const engine = engineFrom(opts);
  const fallback = opts.demoPage ? await demoPage(opts) : undefined;
  const server = createAtlsServer({
    ...(fallback ? { fallback } : {}),
    tls,
    app,
    // The echo needs no fetch objects: the raw app skips them (about 1 ms per request on Node 20).
    ...(opts.echo ? { rawApp: echoRawApp } : {}),
    mode,
    ...engine,
    ...(typeof opts.routingTag === 'string' ? { routingTag: opts.routingTag } : {}),
    ...(typeof opts.maxBody === 'string' ? { limits: { maxBodyBytes: parseSize(opts.maxBody, '--max-body') } } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as AddressInfo;
  const shownHost = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  const closers: Array<() => Promise<void>> = [
    () => new Promise<void>((resolve) => server.close(() => resolve())),
  ];
  let coapLine = '';
  if (typeof opts.coap === 'string') {
    const { startCoapService } = await import('./coap-serve.js');
    const coap = await startCoapService({ listen: opts.coap, tls, mode, echo: opts.echo === true, upstream: opts.upstream as string | undefined, ...engine });
    closers.push(coap.close);
    coapLine = ` and ${coap.url}`;
  }
  process.stdout.write(
    `atls: serving ATLS at http://${shownHost}:${bound.port}/.well-known/atls${coapLine} ` +
      `(mode ${mode}, ${opts.echo ? 'echo' : `upstream ${String(opts.upstream)}`})` +
      `${fallback ? `; demo page at http://${shownHost}:${bound.port}/` : ''}\n`,
  );
  await untilSignal();
  server.closeAllConnections();
  await Promise.all(closers.map((c) => c()));
}
