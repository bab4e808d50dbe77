/**
 * Total handshake bytes of ATLS over CoAP per configuration, for the README's
 * performance section: TLS payload bytes (the flights) and CoAP bytes on the
 * wire (UDP payloads, headers and block-wise overhead included), measured on
 * loopback with our client and server. Needs the native engine for DTLS 1.2
 * and for zero TLS 1.3 tickets; rows it cannot run are reported as skipped.
 *
 *     node --import tsx bench/coap-handshake-sizes.ts [--block-size 64] [--json]
 */
import { AtlsCoapServer, echoCoapHandler } from '../src/coap/server.js';
import { AtlsCoapClient } from '../src/coap/client.js';
import { CoapEndpoint } from '../src/coap/endpoint.js';
import { availableEngines } from '../src/engines/index.js';
import type { TlsClientConfig, TlsEngine, TlsServerConfig } from '../src/engines/types.js';
import { createDevPki } from '../src/pki.js';

interface Row {
  config: string;
  version: string;
  cipherSuite: string;
  flights: number;
  clientBytes: number;
  serverBytes: number;
  tlsTotal: number;
  coapDatagrams: number;
  coapBytes: number;
}

const args = process.argv.slice(2);
const blockSize = Number(args[args.indexOf('--block-size') + 1] ?? 1024) || 1024;
const asJson = args.includes('--json');
const PSK = { identity: 'dev', key: Buffer.alloc(16, 7) };
const pskLookup = (id: string): Uint8Array | undefined => (id === PSK.identity ? PSK.key : undefined);

const engine: TlsEngine | undefined = availableEngines().find((e) => e.name === 'openssl') ?? availableEngines()[0];
if (!engine) throw new Error('no TLS engine');
const native = engine.capabilities.ticketCount;
const pki = await createDevPki();

interface Config {
  name: string;
  server: TlsServerConfig;
  client: TlsClientConfig;
  nonConfirmable?: boolean;
  needs?: 'dtls';
}

const t13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
const t12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
const noTickets = native ? { ticketCount: 0 } : {};
const configs: Config[] = [
  { name: 'TLS 1.3, certificates (ECDSA P-256)', server: { ...t13, ...noTickets, cert: pki.server.cert, key: pki.server.key }, client: { ...t13, ca: pki.ca.cert, serverName: 'localhost' } },
  { name: 'TLS 1.3, mutual certificates', server: { ...t13, ...noTickets, cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requireClientCert: true }, client: { ...t13, ca: pki.ca.cert, serverName: 'localhost', cert: pki.client.cert, key: pki.client.key } },
  { name: 'TLS 1.3, PSK + ECDHE (psk_dhe_ke)', server: { ...t13, ...noTickets, ciphers: 'TLS_AES_128_GCM_SHA256', pskLookup }, client: { ...t13, ciphers: 'TLS_AES_128_GCM_SHA256', psk: PSK } },
  {
    name: 'TLS 1.3, PSK + ECDHE, trimmed ClientHello (X25519 only, one sigalg)',
    server: { ...t13, ...noTickets, ciphers: 'TLS_AES_128_GCM_SHA256', groups: 'X25519', pskLookup },
    client: { ...t13, ciphers: 'TLS_AES_128_GCM_SHA256', groups: 'X25519', sigalgs: 'ECDSA+SHA256', psk: PSK },
  },
  { name: 'TLS 1.2, PSK (PSK-AES128-GCM-SHA256)', server: { ...t12, ciphers: 'PSK-AES128-GCM-SHA256', pskLookup }, client: { ...t12, ciphers: 'PSK-AES128-GCM-SHA256', psk: PSK } },
  { name: 'TLS 1.2, PSK + ECDHE (ECDHE-PSK-CHACHA20-POLY1305)', server: { ...t12, ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', pskLookup }, client: { ...t12, ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', psk: PSK } },
  { name: 'DTLS 1.2 over NON, certificates', needs: 'dtls', nonConfirmable: true, server: { dtls: true, cert: pki.server.cert, key: pki.server.key }, client: { dtls: true, ca: pki.ca.cert, serverName: 'localhost' } },
  { name: 'DTLS 1.2 over NON, PSK', needs: 'dtls', nonConfirmable: true, server: { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', pskLookup }, client: { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', psk: PSK } },
];

const rows: Row[] = [];
const skipped: string[] = [];
for (const c of configs) {
  if (c.needs === 'dtls' && !engine.capabilities.dtls) {
    skipped.push(`${c.name}: engine ${engine.name} has no DTLS`);
    continue;
  }
  const server = await AtlsCoapServer.listen({ tls: c.server, engine, handler: echoCoapHandler });
  const endpoint = await CoapEndpoint.bind({ host: '127.0.0.1' });
  const client = new AtlsCoapClient({ url: server.url, tls: c.client, engine, endpoint, blockSize, ...(c.nonConfirmable ? { nonConfirmable: true, timeoutMs: 5000 } : {}) });
  try {
    const info = await client.connect();
    const st = endpoint.stats;
    rows.push({
      config: c.name,
      version: info.version,
      cipherSuite: info.cipherSuite,
      flights: client.stats.flights,
      clientBytes: client.stats.handshakeBytesSent,
      serverBytes: client.stats.handshakeBytesReceived,
      tlsTotal: client.stats.handshakeBytesSent + client.stats.handshakeBytesReceived,
      coapDatagrams: st.sent + st.received,
      coapBytes: st.bytesSent + st.bytesReceived,
    });
  } catch (e) {
    skipped.push(`${c.name}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    await client.close().catch(() => undefined);
    await endpoint.close();
    await server.close();
  }
}

if (asJson) {
  console.log(JSON.stringify({ engine: engine.name, blockSize, ticketCount: native ? 0 : 'default (2)', rows, skipped }, null, 2));
} else {
  console.log(`ATLS handshake sizes over CoAP (engine ${engine.name}, block size ${blockSize}, TLS 1.3 tickets: ${native ? '0' : 'engine default'})\n`);
  console.log('| configuration | suite | flights | client B | server B | TLS total B | CoAP datagrams | CoAP total B |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.config} | ${r.cipherSuite} | ${r.flights} | ${r.clientBytes} | ${r.serverBytes} | ${r.tlsTotal} | ${r.coapDatagrams} | ${r.coapBytes} |`);
  }
  console.log('| EDHOC (RFC 9528, published figures) | | 3 | | | 101-242 | | |');
  for (const s of skipped) console.log(`\nskipped: ${s}`);
}
