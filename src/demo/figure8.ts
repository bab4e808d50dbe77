/**
 * The draft's Figure 8 on one machine: a client reaches a service through a
 * TLS-intercepting middlebox. The service sits behind TLS (its terminator);
 * the middlebox terminates the client's TLS with a forged certificate, reads
 * every HTTP message and forwards it. The ATLS session runs end to end
 * inside the HTTP bodies, so the middlebox sees only labelled, opaque bytes.
 *
 * The scenario checks its own claim: no byte string of the inner requests or
 * responses appears in anything the middlebox intercepted.
 * @module
 */
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createDevPki } from '../pki.js';
import { inspectFlight } from '../records.js';
import { HEADER_FLIGHT_LENGTH, createAtlsClient, createAtlsHandler, toNodeListener } from '../http/index.js';
import type { Mode } from '../session/types.js';
import { startMiddlebox, type InterceptedRequest } from './middlebox.js';

/** One line of the demo's story, labelled by the hop that tells it. */
export type DemoLog = (hop: 'service' | 'middlebox' | 'client' | 'result', line: string) => void;

export interface DemoResult {
  /** Inner responses the client got, as text. */
  answers: string[];
  /** Everything the middlebox intercepted. */
  intercepted: InterceptedRequest[];
  /** True when no inner secret leaked into what the middlebox saw. */
  confidential: boolean;
}

const SECRET_REQUEST = 'meter-reading: 4711 kWh';
const SECRET_RESPONSE = 'account balance: 42.17 EUR';

function describe(body: Uint8Array, headers: IncomingHttpHeaders): string {
  const type = headers['content-type'];
  if (type?.startsWith('application/atls+octet-stream') || type?.startsWith('application/atls;') || type === 'application/atls') {
    if (body.length === 0) return 'empty flight';
    // A flight may carry the first protected message after it (docs/protocol.md §5).
    const flightLength = Number(headers[HEADER_FLIGHT_LENGTH] ?? body.length);
    const rider = flightLength < body.length ? ` + protected message of ${body.length - flightLength} B, opaque to me` : '';
    try {
      const s = inspectFlight(body.subarray(0, flightLength));
      const hs = s.handshake.map((m) => m.name).join(', ');
      const sni = s.clientHello?.serverName ? ` SNI=${s.clientHello.serverName}` : '';
      const alpn = s.clientHello?.alpn ? ` ALPN=${s.clientHello.alpn.join(',')}` : '';
      return `TLS flight: ${s.records.map((r) => r.contentTypeName).join(', ')}${hs ? ` (${hs})` : ''}${sni}${alpn}${rider}`;
    } catch {
      return 'ATLS flight (not parseable)';
    }
  }
  if (type?.startsWith('application/atls-protected')) return 'protected message: opaque to me';
  return `${type ?? 'no content type'}: ${Buffer.from(body.subarray(0, 60)).toString('utf8')}`;
}

function contains(haystack: Uint8Array, needle: string): boolean {
  return Buffer.from(haystack).includes(Buffer.from(needle));
}

/** Runs the scenario and reports each hop's view through `log`. */
export async function runFigure8(options: { mode?: Mode; log: DemoLog }): Promise<DemoResult> {
  const { log } = options;
  const mode = options.mode ?? 'exported';
  const pki = await createDevPki();

  // The service: an ordinary app, given ATLS by the handler, behind its TLS terminator.
  const handler = createAtlsHandler({
    tls: { cert: pki.server.cert, key: pki.server.key },
    mode,
    app: async (request, peer) => {
      const body = await request.text();
      log('service', `inner ${request.method} ${new URL(request.url).pathname} "${body}" over ${peer.version} ${peer.cipherSuite}`);
      return new Response(SECRET_RESPONSE, { headers: { 'content-type': 'text/plain' } });
    },
  });
  const service = https.createServer({ cert: pki.server.cert, key: pki.server.key }, toNodeListener(handler));
  await new Promise<void>((resolve) => service.listen(0, '127.0.0.1', resolve));
  const servicePort = (service.address() as AddressInfo).port;
  log('service', `ATLS endpoint at https://localhost:${servicePort}/.well-known/atls (mode ${mode})`);

  const intercepted: InterceptedRequest[] = [];
  const middlebox = await startMiddlebox({
    upstreamCa: pki.ca.cert,
    onIntercept: (seen) => {
      intercepted.push(seen);
      log('middlebox', `${seen.method} ${seen.url}: ${describe(seen.requestBody, seen.requestHeaders)}`);
      log('middlebox', `  -> ${seen.status} ${describe(seen.responseBody, seen.responseHeaders)}`);
    },
  });
  log('middlebox', `intercepting proxy at ${middlebox.url}, forging certificates from its own CA`);

  // The client: its transport goes through the middlebox, which it cannot
  // verify (draft §6.3); the ATLS layer trusts only the service's CA.
  const client = createAtlsClient({
    tls: { ca: pki.ca.cert, serverName: 'localhost' },
    mode,
    proxy: middlebox.url,
    transport: { insecure: true },
  });
  const answers: string[] = [];
  try {
    const url = `https://localhost:${servicePort}/meter`;
    log('client', `POST ${url} through the middlebox; ATLS trusts only the service CA`);
    for (let i = 0; i < 2; i++) {
      const res = await client.fetch(url, { method: 'POST', body: SECRET_REQUEST, headers: { 'content-type': 'text/plain' } });
      const text = await res.text();
      answers.push(text);
      log('client', `inner response ${res.status}: "${text}"`);
    }
  } finally {
    await client.close();
    await middlebox.close();
    service.closeAllConnections();
    await new Promise<void>((resolve) => service.close(() => resolve()));
    await handler.close();
  }

  const leaked = intercepted.some(
    (s) =>
      contains(s.requestBody, SECRET_REQUEST) ||
      contains(s.responseBody, SECRET_RESPONSE) ||
      contains(s.requestBody, SECRET_RESPONSE) ||
      contains(s.responseBody, SECRET_REQUEST),
  );
  const confidential = !leaked && intercepted.length > 0 && answers.every((a) => a === SECRET_RESPONSE);
  log(
    'result',
    confidential
      ? `end to end: the client got its answers; the middlebox intercepted ${intercepted.length} HTTP exchanges and could read none of the inner data`
      : 'FAILED: inner data was visible to the middlebox or the answers were wrong',
  );
  return { answers, intercepted, confidential };
}
