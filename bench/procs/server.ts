/**
 * The server process of the benchmark (pinned to one core by the
 * orchestrator): starts the requested server on an ephemeral port and reports
 * its own CPU time on request, so every rate can also be given per server
 * CPU-second.
 * @module
 */
import { fileURLToPath } from 'node:url';
import { createServer as createHttp, type Server } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createAtlsServer, echoRawApp, toNodeListener } from '../../src/http/index.js';
import { threadCpuNs } from '../../src/engines/openssl.js';
import { getEngine } from '../../src/engines/index.js';
import type { TlsServerConfig } from '../../src/engines/types.js';
import { OhttpGateway, ohttpGatewayServer } from '../lib/ohttp.js';
import { nodeEcho, webEcho, type BenchPki, type FromChild, type ServerSpec, type ToChild } from '../lib/scenarios.js';

function send(m: FromChild): void {
  process.send?.(m);
}

/** Builds the server a spec names. */
export async function buildServer(spec: ServerSpec, pki: BenchPki): Promise<Server> {
  switch (spec.kind) {
    case 'ohttp':
      return ohttpGatewayServer(await OhttpGateway.create(1));
    case 'atls': {
      const tls: TlsServerConfig = {
        cert: pki.server.cert,
        key: pki.server.key,
        ...(spec.tls12 ? { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } : { minVersion: 'TLSv1.3' }),
        ...(spec.mutual ? { ca: pki.ca.cert, requireClientCert: true } : {}),
      };
      return createAtlsServer({
        tls,
        app: webEcho,
        ...(spec.app === 'web' ? {} : { rawApp: echoRawApp }),
        mode: spec.mode,
        ...(spec.engine ? { engine: getEngine(spec.engine) } : {}),
        limits: { maxSessions: 1_000_000, maxHalfOpen: 10_000 },
        ...(spec.front === false ? { front: false } : {}),
      });
    }
    case 'https':
      return createHttps(
        {
          cert: pki.server.cert,
          key: pki.server.key,
          minVersion: 'TLSv1.3',
          ...(spec.mutual ? { ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true } : {}),
        },
        nodeEcho,
      );
    case 'http':
      return createHttp(nodeEcho);
    case 'http-web':
      return createHttp(toNodeListener(webEcho));
  }
}

const isMain = process.send !== undefined && process.argv[1] === fileURLToPath(import.meta.url);
let server: Server | undefined;
if (isMain) process.on('message', (m: ToChild) => {
  if (m.type === 'start-server') {
    buildServer(m.spec, m.pki).then(
      (s) => {
        server = s;
        s.keepAliveTimeout = 60_000;
        s.listen(0, '127.0.0.1', () => send({ type: 'ready', port: (s.address() as AddressInfo).port }));
      },
      (e: unknown) => send({ type: 'error', message: String(e) }),
    );
  } else if (m.type === 'cpu') {
    const c = process.cpuUsage();
    send({ type: 'cpu', cpuUs: c.user + c.system, mainUs: threadCpuNs() / 1000, rss: process.memoryUsage.rss() });
  } else if (m.type === 'stop') {
    server?.closeAllConnections();
    server?.close();
    process.disconnect();
  }
});
if (isMain) process.on('disconnect', () => process.exit(0));
