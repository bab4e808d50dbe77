/**
 * `atls proxy`: a forward sidecar. Local plain-HTTP clients (curl, a browser)
 * talk to it; every request travels ATLS-protected to the service.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAtlsClient, forwardHandler, httpServerTimeouts, limitConnections, toNodeListener } from '../http/index.js';
import { clientTlsFrom, clientTransportFrom } from './client-options.js';
import { engineFrom, httpUrlFrom, modeFrom, parseHostPort, parseSize, positiveFlag, untilStopped } from './options.js';
import type { CliIo } from './io.js';
import { observerFrom } from './observe.js';

export async function runProxy(opts: Record<string, unknown>, io: CliIo): Promise<void> {
  const { host, port } = parseHostPort(opts.listen as string);
  const to = new URL(httpUrlFrom(opts.to as string, '--to'));
  const maxBody = typeof opts.maxBody === 'string' ? parseSize(opts.maxBody, '--max-body') : undefined;
  const observer = await observerFrom(opts);
  const client = createAtlsClient({
    tls: clientTlsFrom(opts),
    onEvent: observer.client(),
    ...(maxBody !== undefined ? { maxBodyBytes: maxBody } : {}),
    mode: modeFrom(opts),
    ...engineFrom(opts),
    ...(typeof opts.proxy === 'string' ? { proxy: opts.proxy } : {}),
    ...clientTransportFrom(opts),
  });
  const forward = forwardHandler(client, to, maxBody !== undefined ? { maxBodyBytes: maxBody } : {});
  const timed = async (req: Request): Promise<Response> => {
    const start = performance.now();
    try {
      return await forward(req);
    } finally {
      observer.metrics?.latency.observe({ transport: 'proxy' }, (performance.now() - start) / 1000);
    }
  };
  const requestTimeout = positiveFlag(opts.requestTimeout, '--request-timeout');
  const server = createServer(
    httpServerTimeouts(requestTimeout === undefined ? {} : { requestTimeoutMs: Math.max(1, Math.round(requestTimeout * 1000)) }),
    toNodeListener(timed),
  );
  limitConnections(server, {}, (e) => observer.http('proxy')(e));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const a = server.address() as AddressInfo;
  const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  const metricsNote = observer.metricsUrl ? `, metrics at ${observer.metricsUrl}` : '';
  io.stdout.write(`atls: forward proxy at http://${shown}:${a.port}/ -> ${to.origin} (ATLS)${metricsNote}\n`);
  await untilStopped(io);
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await client.close();
  await observer.close();
}
