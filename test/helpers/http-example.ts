/**
 * Captures a real ATLS-over-HTTP exchange (TLS 1.3, external PSK, mode
 * `exported`, the first request piggy-backed on the final flight, then one
 * more request) and renders it as the worked example of docs/protocol.md §5.
 * Every run yields fresh randoms; the structure is fixed.
 *
 * Regenerate the doc's example:
 *   node --import tsx test/helpers/http-example.ts > /tmp/example.md
 */
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient } from '../../src/http/client.js';
import { requestToBhttp, responseToBhttp } from '../../src/bhttp/web.js';
import { inspectFlight } from '../../src/records.js';
import { toHex } from '../../src/bytes.js';
import { HEADER_FLIGHT_LENGTH } from '../../src/http/constants.js';
import { TEST_PSK } from './http.js';

export interface Captured {
  request: Request;
  requestBody: Uint8Array;
  response: Response;
  responseBody: Uint8Array;
}

/** Hex in lines of 32 bytes. */
function hexBlock(b: Uint8Array): string {
  const hex = toHex(b);
  const lines: string[] = [];
  for (let i = 0; i < hex.length; i += 64) lines.push(hex.slice(i, i + 64));
  return lines.join('\n') || '(empty)';
}

function recordsLine(b: Uint8Array): string {
  if (b.length === 0) return 'no records (empty flight)';
  const s = inspectFlight(b, { dtls: false });
  return s.records
    .map((r) => {
      const what = r.handshake?.length ? r.handshake.join('+') : r.encrypted ? 'encrypted' : r.contentTypeName;
      return `${r.contentTypeName}(${r.length}) ${what}`;
    })
    .join(', ');
}

function describeBody(headers: Headers, body: Uint8Array): string[] {
  const split = headers.get(HEADER_FLIGHT_LENGTH);
  const type = headers.get('content-type') ?? '';
  if (type === 'application/atls-protected') return [`body: one protected message, ${body.length} bytes`];
  if (split !== null) {
    const n = Number(split);
    return [
      `body: flight of ${n} bytes [${recordsLine(body.subarray(0, n))}]`,
      `      + protected message of ${body.length - n} bytes`,
    ];
  }
  return [`body: flight of ${body.length} bytes [${recordsLine(body)}]`];
}

function head(c: Captured): string {
  const url = new URL(c.request.url);
  const lines = [`POST ${url.pathname} HTTP/1.1`, `Host: ${url.host}`];
  c.request.headers.forEach((v, k) => lines.push(`${k}: ${v}`));
  lines.push(`content-length: ${c.requestBody.length}`);
  return lines.join('\n');
}

function responseHead(c: Captured): string {
  const lines = [`HTTP/1.1 ${c.response.status} OK`];
  c.response.headers.forEach((v, k) => {
    if (k !== 'set-cookie') lines.push(`${k}: ${v}`);
  });
  for (const sc of c.response.headers.getSetCookie()) lines.push(`set-cookie: ${sc}`);
  lines.push(`content-length: ${c.responseBody.length}`);
  return lines.join('\n');
}

/** Runs the exchange and returns the Markdown of the worked example. */
export async function captureHttpExample(): Promise<{ markdown: string; exchanges: Captured[] }> {
  const tls = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' } as const;
  const handler = createAtlsHandler({
    tls: { ...tls, pskLookup: (id) => (id === TEST_PSK.identity ? TEST_PSK.key : undefined) },
    app: (req) => new Response(`hello ${new URL(req.url).pathname}`, { headers: { 'content-type': 'text/plain' } }),
  });
  const exchanges: Captured[] = [];
  const client = createAtlsClient({
    tls: { ...tls, psk: TEST_PSK, serverName: 'localhost' },
    transport: {
      fetch: async (request) => {
        const requestBody = new Uint8Array(await request.clone().arrayBuffer());
        const response = await handler(request);
        const responseBody = new Uint8Array(await response.clone().arrayBuffer());
        exchanges.push({ request, requestBody, response, responseBody });
        return response;
      },
    },
  });
  const r1 = await client.fetch('http://localhost/a');
  await r1.text();
  const r2 = await client.fetch('http://localhost/b');
  await r2.text();
  await client.close();
  await handler.close();

  return { markdown: await renderHttpExample(exchanges), exchanges };
}

/** The Markdown of §5.10 for captured exchanges. */
export async function renderHttpExample(exchanges: Captured[]): Promise<string> {
  const innerReq = await requestToBhttp(new Request('http://localhost/a'));
  const innerRes = await responseToBhttp(new Response('hello /a', { headers: { 'content-type': 'text/plain' } }));
  const out: string[] = [];
  const titles = [
    'Round trip 1: ClientHello (with the PSK binder) / ServerHello + encrypted handshake',
    'Round trip 2: client Finished + the first inner request (piggy-backed) / NewSessionTicket + the first inner response',
    'Round trip 3: a later inner request, one protected message each way',
  ];
  exchanges.forEach((c, i) => {
    out.push(`#### ${titles[i] ?? `Round trip ${i + 1}`}`, '');
    out.push('```http', head(c), '', ...describeBody(c.request.headers, c.requestBody), '```', '');
    out.push('```', hexBlock(c.requestBody), '```', '');
    out.push('```http', responseHead(c), '', ...describeBody(c.response.headers, c.responseBody), '```', '');
    out.push('```', hexBlock(c.responseBody), '```', '');
  });
  out.push(
    '#### The plaintexts of round trip 2',
    '',
    'Inner request (`GET http://localhost/a`, Binary HTTP, known-length):',
    '',
    '```',
    hexBlock(innerReq),
    '```',
    '',
    'Inner response (`200`, `content-type: text/plain`, body `hello /a`):',
    '',
    '```',
    hexBlock(innerRes),
    '```',
  );
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { markdown } = await captureHttpExample();
  process.stdout.write(`${markdown}\n`);
}
