/**
 * Appendix A of the draft (TLS stack configuration and round trips, §11):
 * runs each configuration through the HTTP binding on an engine and counts
 * what the handshake costs: HTTP round trips (POSTs), flights (non-empty
 * bodies, both directions) and bytes (all flight bytes, both directions).
 * The first request does not ride with the final flight, so the counts are
 * the handshake's alone.
 *
 * Regenerate the table of docs/protocol.md §1.5:
 *   node --import tsx test/helpers/appendix-a.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient, type AtlsClientEvent } from '../../src/http/client.js';
import { availableEngines } from '../../src/engines/index.js';

/** The engines that run both roles (the webcrypto engine is a client only). */
const BOTH_ROLES: Array<TlsEngine['name']> = ['openssl', 'node'];
import type { HandshakeInfo, TlsClientConfig, TlsEngine, TlsServerConfig } from '../../src/engines/types.js';
import type { Mode } from '../../src/session/types.js';
import { encodeRequest } from '../../src/bhttp/codec.js';
import { testPki, type TestPki } from './pki.js';
import { reportApp, TEST_PSK } from './http.js';

/** One configuration: how both ends are set up, and whether the measured handshake resumes a first one. */
export interface Configuration {
  name: string;
  server: (pki: TestPki) => TlsServerConfig;
  client: (pki: TestPki) => TlsClientConfig;
  resumed?: boolean;
  /** Engines that can run it (default both). */
  engines?: Array<TlsEngine['name']>;
  /** Mode of both ends (default exported). */
  mode?: Mode;
  /** The measured (resumed) handshake carries 0-RTT data that the server accepts. */
  earlyData?: boolean;
}

const v12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
const v13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
const cert = (pki: TestPki): TlsServerConfig => ({ cert: pki.server.cert, key: pki.server.key });
const trust = (pki: TestPki): TlsClientConfig => ({ ca: pki.ca.cert, serverName: 'localhost' });
const pskServer: TlsServerConfig = { pskLookup: (id) => (id === TEST_PSK.identity ? TEST_PSK.key : undefined) };

export const CONFIGURATIONS: Configuration[] = [
  { name: 'TLS 1.2 full, certificate', server: (p) => ({ ...v12, ...cert(p) }), client: (p) => ({ ...v12, ...trust(p) }) },
  { name: 'TLS 1.2 resumed (ticket)', server: (p) => ({ ...v12, ...cert(p) }), client: (p) => ({ ...v12, ...trust(p) }), resumed: true },
  {
    name: 'TLS 1.2 PSK',
    server: () => ({ ...v12, ...pskServer, ciphers: 'PSK-AES128-GCM-SHA256' }),
    client: () => ({ ...v12, psk: TEST_PSK, ciphers: 'PSK-AES128-GCM-SHA256', serverName: 'localhost' }),
  },
  {
    name: 'TLS 1.2 mutual',
    server: (p) => ({ ...v12, ...cert(p), ca: p.ca.cert, requireClientCert: true }),
    client: (p) => ({ ...v12, ...trust(p), cert: p.client.cert, key: p.client.key }),
  },
  { name: 'TLS 1.3 full, certificate', server: (p) => ({ ...v13, ...cert(p) }), client: (p) => ({ ...v13, ...trust(p) }) },
  {
    name: 'TLS 1.3 HelloRetryRequest',
    server: (p) => ({ ...v13, ...cert(p), groups: 'P-256' }),
    client: (p) => ({ ...v13, ...trust(p), groups: 'X25519:P-256' }),
  },
  { name: 'TLS 1.3 resumed (ticket)', server: (p) => ({ ...v13, ...cert(p) }), client: (p) => ({ ...v13, ...trust(p) }), resumed: true },
  {
    name: 'TLS 1.3 PSK',
    server: () => ({ ...v13, ...pskServer, ciphers: 'TLS_AES_128_GCM_SHA256' }),
    client: () => ({ ...v13, psk: TEST_PSK, ciphers: 'TLS_AES_128_GCM_SHA256', serverName: 'localhost' }),
  },
  {
    name: 'TLS 1.3 mutual',
    server: (p) => ({ ...v13, ...cert(p), ca: p.ca.cert, requireClientCert: true }),
    client: (p) => ({ ...v13, ...trust(p), cert: p.client.cert, key: p.client.key }),
  },
  {
    // The client's early data is one Binary HTTP request; mode records, where application data travels in TLS records.
    name: 'TLS 1.3 0-RTT (early data, mode records)',
    server: (p) => ({ ...v13, ...cert(p), maxEarlyData: 16384 }),
    client: (p) => ({ ...v13, ...trust(p), earlyData: encodeRequest({ method: 'GET', scheme: 'http', authority: 'localhost', path: '/early' }) }),
    resumed: true,
    earlyData: true,
    mode: 'records',
    engines: ['openssl'],
  },
  {
    name: 'TLS 1.3, no tickets',
    server: (p) => ({ ...v13, ...cert(p), ticketCount: 0 }),
    client: (p) => ({ ...v13, ...trust(p) }),
    engines: ['openssl'],
  },
];

/** What one handshake cost. */
export interface Measured {
  configuration: string;
  engine: TlsEngine['name'];
  roundTrips: number;
  flights: number;
  bytes: number;
  resumed: boolean;
  earlyData: HandshakeInfo['earlyData'];
}

/** Runs one configuration on one engine (both ends on that engine). */
export async function measure(c: Configuration, engine: TlsEngine, pki: TestPki): Promise<Measured> {
  const handler = createAtlsHandler({ tls: c.server(pki), app: reportApp, engine, ...(c.mode ? { mode: c.mode } : {}) });
  const events: AtlsClientEvent[] = [];
  let lose = false;
  const client = createAtlsClient({
    tls: c.client(pki),
    engine,
    ...(c.mode ? { mode: c.mode } : {}),
    piggyback: false,
    // A server that lost the session answers 410 (section 5.8): the client handshakes again with its ticket.
    transport: { fetch: async (request) => (lose ? ((lose = false), new Response(null, { status: 410 })) : handler(request)) },
    onEvent: (e) => events.push(e),
  });
  try {
    await (await client.fetch('http://localhost/a')).text();
    let from = 0;
    if (c.resumed) {
      lose = true;
      from = events.length;
      await (await client.fetch('http://localhost/b')).text();
      // Count from the new handshake on, not the request that found the session gone.
      from = events.findIndex((e, i) => i >= from && e.type === 'session-lost') + 1;
    }
    const run = events.slice(from);
    const hs = run.find((e) => e.type === 'handshake');
    if (!hs || hs.type !== 'handshake') throw new Error(`${c.name}: no handshake`);
    const end = run.indexOf(hs);
    const flights = run.slice(0, end).filter((e) => e.type === 'flight' && e.kind === 'flight' && e.bytes.length > 0).length;
    return {
      configuration: c.name,
      engine: engine.name,
      roundTrips: hs.roundTrips,
      flights,
      bytes: hs.bytesSent + hs.bytesReceived,
      resumed: hs.info.resumed,
      earlyData: hs.info.earlyData,
    };
  } finally {
    await client.close();
    await handler.close();
  }
}

/** Every configuration on every available engine. */
export async function measureAll(): Promise<Measured[]> {
  const pki = await testPki();
  const out: Measured[] = [];
  for (const c of CONFIGURATIONS) {
    for (const engine of availableEngines()) {
      if (!(c.engines ?? BOTH_ROLES).includes(engine.name)) continue;
      out.push(await measure(c, engine, pki));
    }
  }
  return out;
}

const DOC = new URL('../../docs/protocol.md', import.meta.url);
export const TABLE_START = '<!-- appendix-a:start -->';
export const TABLE_END = '<!-- appendix-a:end -->';

/** The measured rows as the doc's table (one row per configuration, both engines side by side). */
export function renderTable(rows: Measured[]): string {
  const lines = [
    '| configuration | engine | HTTP round trips | flights | bytes |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.configuration} | ${r.engine} | ${r.roundTrips} | ${r.flights} | ${r.bytes} |`),
  ];
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows = await measureAll();
  const doc = readFileSync(DOC, 'utf8');
  const a = doc.indexOf(TABLE_START);
  const b = doc.indexOf(TABLE_END);
  if (a < 0 || b < 0) throw new Error('markers not found in docs/protocol.md');
  writeFileSync(DOC, `${doc.slice(0, a + TABLE_START.length)}\n${renderTable(rows)}\n${doc.slice(b)}`);
  console.log(renderTable(rows));
}
