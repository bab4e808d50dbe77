/**
 * Figure 3: bytes on the wire. Each handshake flight (TLS records as the
 * session produces them, per engine and credential), the per-message
 * overhead of architecture (b) protected messages and of architecture (a)
 * TLS records, and the outer HTTP/1.1 bytes around them.
 * @module
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AtlsClientSession, AtlsServerSession } from '../../src/session/session.js';
import { availableEngines } from '../../src/engines/index.js';
import type { TlsClientConfig, TlsEngine, TlsServerConfig } from '../../src/engines/types.js';
import { createAtlsServer } from '../../src/http/index.js';
import { H1Connection } from '../lib/h1.js';
import { AtlsDriver } from '../lib/atls-driver.js';
import { innerRequest, nodeEcho, webEcho, type BenchPki } from '../lib/scenarios.js';
import type { BenchRow } from '../lib/stats.js';

/** One handshake's flights, client first. */
export interface FlightSizes {
  flights: number[];
  total: number;
  /** Bytes a 100-byte message grows by: protected message (b) and TLS record (a). */
  overheadB: number;
  overheadA: number;
}

/** Runs one in-memory handshake and returns its flight sizes. */
export async function handshakeFlights(engine: TlsEngine, client: TlsClientConfig, server: TlsServerConfig): Promise<FlightSizes> {
  const sizes: number[] = [];
  const pair = async (mode: 'exported' | 'records'): Promise<[AtlsClientSession, AtlsServerSession]> => {
    const c = new AtlsClientSession({ engine, tls: client, mode });
    const s = new AtlsServerSession({ engine, tls: server, mode });
    let out = await c.start();
    for (let i = 0; i < 8; i++) {
      if (mode === 'exported') sizes.push(out.flight.length);
      const back = await s.receive(out.flight);
      if (mode === 'exported') sizes.push(back.flight.length);
      if (c.state === 'established' && back.flight.length === 0) break;
      out = await c.receive(back.flight);
      if (c.state === 'established' && out.flight.length === 0) break;
    }
    return [c, s];
  };
  const [c, s] = await pair('exported');
  const msg = new Uint8Array(100);
  const overheadB = c.protect(msg).length - msg.length;
  c.destroy();
  s.destroy();
  const [ca, sa] = await pair('records');
  const overheadA = (await ca.send(msg)).length - msg.length;
  ca.destroy();
  sa.destroy();
  while (sizes.length > 0 && sizes[sizes.length - 1] === 0) sizes.pop();
  return { flights: sizes, total: sizes.reduce((a, b) => a + b, 0), overheadB, overheadA };
}

/** The credentials compared: name, client config, server config. */
export function credentials(pki: BenchPki): Array<[string, TlsClientConfig, TlsServerConfig]> {
  const psk = { identity: pki.psk.identity, key: Buffer.from(pki.psk.keyHex, 'hex') };
  const v13 = { minVersion: 'TLSv1.3' as const };
  return [
    ['ECDSA P-256, server-only', { ...v13, serverName: 'localhost', ca: pki.ca.cert }, { ...v13, ...pki.server }],
    [
      'ECDSA P-256, mutual',
      { ...v13, serverName: 'localhost', ca: pki.ca.cert, ...pki.client },
      { ...v13, ...pki.server, ca: pki.ca.cert, requireClientCert: true },
    ],
    ['RSA 2048, server-only', { ...v13, serverName: 'localhost', ca: pki.ca.cert }, { ...v13, ...pki.serverRsa }],
    ['PSK (external, psk_dhe_ke)', { ...v13, psk }, { ...v13, pskLookup: (id) => (id === psk.identity ? psk.key : undefined) }],
  ];
}

/** Figure 3. */
export async function wireSection(pki: BenchPki): Promise<BenchRow[]> {
  const S = '3 bytes on the wire';
  const rows: BenchRow[] = [];
  for (const engine of availableEngines()) {
    for (const [name, cc, sc] of credentials(pki)) {
      const f = await handshakeFlights(engine, cc, sc);
      rows.push({
        section: S,
        name: `handshake ${name} [${engine.name}]`,
        value: f.total,
        unit: 'B',
        note: `flights C→S / S→C: ${f.flights.join(' / ')} (last S→C = session tickets)`,
        extra: { flights: f.flights, engine: engine.name, credential: name },
      });
    }
  }
  const f = await handshakeFlights(availableEngines()[0]!, credentials(pki)[0]![1], credentials(pki)[0]![2]);
  rows.push({ section: S, name: 'per-message overhead, arch (b) protected message', value: f.overheadB, unit: 'B', note: 'header + 16 B GCM tag, first message' });
  rows.push({ section: S, name: 'per-message overhead, arch (a) TLS 1.3 record', value: f.overheadA, unit: 'B', note: '5 B header + 1 B type + 16 B tag (RFC 8446 §5.2)' });
  const inner = innerRequest(100);
  rows.push({ section: S, name: 'Binary HTTP framing of a 100 B POST /echo', value: inner.length - 100, unit: 'B', note: 'RFC 9292 known-length request (method, scheme, authority, path, 1 field)' });
  rows.push(...(await httpOverhead(pki)));
  return rows;
}

/** Outer HTTP/1.1 bytes of a real exchange over a socket (heads included). */
async function httpOverhead(pki: BenchPki): Promise<BenchRow[]> {
  const S = '3 bytes on the wire';
  const atls = createAtlsServer({ tls: { ...pki.server, minVersion: 'TLSv1.3' }, app: webEcho });
  const plain = createServer(nodeEcho);
  await Promise.all([atls, plain].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
  try {
    const conn = await H1Connection.connect({ port: (atls.address() as AddressInfo).port });
    const d = new AtlsDriver(conn, { tls: { serverName: 'localhost', ca: pki.ca.cert, minVersion: 'TLSv1.3' } });
    const inner = innerRequest(100);
    await d.handshake(inner);
    const hsOut = conn.bytesOut;
    const hsIn = conn.bytesIn;
    const bodies = d.trace.bodies.reduce((a, b) => a + b, 0);
    const o0 = conn.bytesOut;
    const i0 = conn.bytesIn;
    await d.request(inner);
    const reqWire = conn.bytesOut - o0 + (conn.bytesIn - i0);
    conn.close();
    const p = await H1Connection.connect({ port: (plain.address() as AddressInfo).port });
    await p.request('POST', '/echo', { 'content-type': 'application/octet-stream' }, new Uint8Array(100));
    const plainWire = p.bytesOut + p.bytesIn;
    p.close();
    return [
      {
        section: S,
        name: 'ATLS HTTP handshake incl. piggy-backed 100 B request',
        value: hsOut + hsIn,
        unit: 'B',
        note: `${d.trace.bodies.length / 2} POSTs; bodies ${d.trace.bodies.join(' / ')}; outer HTTP heads ${hsOut + hsIn - bodies} B`,
      },
      {
        section: S,
        name: 'ATLS arch (b) 100 B echo, request + response on the wire',
        value: reqWire,
        unit: 'B',
        note: `plain HTTP/1.1 100 B echo: ${plainWire} B; difference ${reqWire - plainWire} B`,
      },
    ];
  } finally {
    atls.close();
    plain.close();
  }
}
