/**
 * In-process handshake throughput of every available TLS engine: client and
 * server in one process, flights passed in memory, so each figure is the cost
 * of both ends together. Reports handshakes/s (wall) and CPU ms per handshake
 * (user + system, less sensitive to a busy machine).
 *
 *   node --import tsx bench/engine-handshakes.ts [--n 300] [--baselines] [--json]
 *
 * `--baselines` also times raw node:tls pairs driven the way the node engine
 * could drive them (docs/decisions.md, section engines): a tls.Server per
 * connection, a shared tls.Server, or a server TLSSocket per connection over
 * a cached SecureContext (the engine's choice), plus the cost of one empty
 * engine step (the flight heuristic alone).
 */
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { availableEngines } from '../src/engines/index.js';
import { nodeEngine } from '../src/engines/node.js';
import type { TlsClientConfig, TlsEngine, TlsServerConfig } from '../src/engines/types.js';
import { testPki, type TestPki } from '../test/helpers/pki.js';
import { pump, ticketsOf } from '../test/helpers/pair.js';

const args = process.argv.slice(2);
const N = Number(args[args.indexOf('--n') + 1] ?? 300) || 300;
const JSON_OUT = args.includes('--json');
const PSK = { identity: 'bench', key: new Uint8Array(32).fill(1) };

interface Row {
  engine: string;
  case: string;
  handshakesPerSecond: number;
  cpuMsPerHandshake: number;
  wallMsPerHandshake: number;
}

async function time(engine: string, name: string, n: number, once: () => Promise<void>): Promise<Row> {
  for (let i = 0; i < Math.min(20, n); i++) await once(); // warm-up: contexts, JIT
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await once();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return {
    engine,
    case: name,
    handshakesPerSecond: Math.round((n / wall) * 1000),
    cpuMsPerHandshake: +((cpu.user + cpu.system) / 1000 / n).toFixed(3),
    wallMsPerHandshake: +(wall / n).toFixed(3),
  };
}

function cases(pki: TestPki): Array<[string, TlsClientConfig, TlsServerConfig]> {
  const v13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
  const v12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
  const client = { ca: pki.ca.cert, serverName: 'localhost' };
  const pskServer = { pskLookup: (id: string) => (id === PSK.identity ? PSK.key : undefined) };
  return [
    ['TLS 1.3 ECDSA server-only', { ...v13, ...client }, { ...v13, ...pki.server }],
    ['TLS 1.3 ECDSA mutual', { ...v13, ...client, ...pki.client }, { ...v13, ...pki.server, ca: pki.ca.cert, requireClientCert: true }],
    ['TLS 1.3 RSA server-only', { ...v13, ...client }, { ...v13, ...pki.serverRsa }],
    ['TLS 1.3 PSK', { ...v13, psk: PSK }, { ...v13, ...pskServer }],
    ['TLS 1.2 ECDSA server-only', { ...v12, ...client }, { ...v12, ...pki.server }],
    ['TLS 1.2 PSK', { ...v12, psk: PSK }, { ...v12, ...pskServer }],
  ];
}

async function engineRows(engine: TlsEngine, pki: TestPki): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [name, c, s] of cases(pki)) {
    rows.push(
      await time(engine.name, name, N, async () => {
        const client = engine.createClient(c);
        const server = engine.createServer(s);
        const run = await pump(client, server);
        if (Object.keys(run.errors).length) throw new Error(`${name}: ${JSON.stringify(run.errors)}`);
        client.destroy();
        server.destroy();
      }),
    );
  }
  // Resumption with a ticket from a first handshake.
  const [, c, s] = cases(pki)[0]!;
  const first = await pump(engine.createClient(c), engine.createServer(s));
  const session = ticketsOf(first.events.client).at(-1)!;
  rows.push(
    await time(engine.name, 'TLS 1.3 resumption (ticket)', N, async () => {
      const client = engine.createClient({ ...c, session });
      const server = engine.createServer(s);
      await pump(client, server);
      client.destroy();
      server.destroy();
    }),
  );
  return rows;
}

// ---- baselines: raw node:tls, driven with the same "quiet for two turns" rule ----

class Pipe extends Duplex {
  out: Buffer[] = [];
  constructor() {
    super({ allowHalfOpen: false });
  }
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.out.push(c);
    cb();
  }
  override _read(): void {}
}

async function settle(p: Pipe): Promise<Buffer> {
  let seen = -1;
  let quiet = 0;
  while (quiet < 2) {
    await new Promise((r) => setImmediate(r));
    const n = p.out.reduce((a, b) => a + b.length, 0);
    if (n === seen) quiet++;
    else [seen, quiet] = [n, 0];
  }
  const b = Buffer.concat(p.out);
  p.out = [];
  return b;
}

async function rawPair(attachServer: (pipe: Pipe) => void, clientCtx: tls.SecureContext): Promise<void> {
  const sp = new Pipe();
  const cp = new Pipe();
  attachServer(sp);
  const c = tls.connect({ socket: cp, secureContext: clientCtx, servername: 'localhost' });
  c.on('error', () => undefined);
  let f = await settle(cp);
  while (f.length) {
    sp.push(f);
    const g = await settle(sp);
    if (!g.length) break;
    cp.push(g);
    f = await settle(cp);
  }
  c.destroy();
  sp.destroy();
}

async function baselineRows(pki: TestPki): Promise<Row[]> {
  const opts = { cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
  const clientCtx = tls.createSecureContext({ ca: pki.ca.cert });
  const sharedCtx = tls.createSecureContext(opts);
  const shared = tls.createServer(opts);
  const rows = [
    await time('raw node:tls', 'tls.Server per connection', N, () =>
      rawPair((p) => {
        const server = tls.createServer(opts);
        server.on('tlsClientError', () => undefined);
        server.emit('connection', p);
      }, clientCtx),
    ),
    await time('raw node:tls', 'shared tls.Server (no socket<->duplex link)', N, () =>
      rawPair((p) => {
        shared.emit('connection', p);
      }, clientCtx),
    ),
    await time('raw node:tls', 'server TLSSocket per connection, cached context', N, () =>
      rawPair((p) => {
        const s = new tls.TLSSocket(p, { isServer: true, secureContext: sharedCtx });
        s.on('error', () => undefined);
      }, clientCtx),
    ),
    await time('raw node:tls', 'tls.createSecureContext alone', N, async () => {
      tls.createSecureContext(opts);
    }),
  ];
  shared.close();
  // One empty step on an established connection: the flight heuristic's own cost.
  const conn = { client: nodeEngine.createClient({ ca: pki.ca.cert, serverName: 'localhost' }), server: nodeEngine.createServer(pki.server) };
  await pump(conn.client, conn.server);
  rows.push(
    await time('node', 'one empty receive() step', N * 10, async () => {
      await conn.server.receive(new Uint8Array(0));
    }),
  );
  return rows;
}

const pki = await testPki();
const rows: Row[] = [];
for (const engine of availableEngines()) rows.push(...(await engineRows(engine, pki)));
if (args.includes('--baselines')) rows.push(...(await baselineRows(pki)));

if (JSON_OUT) {
  console.log(JSON.stringify({ node: process.version, n: N, rows }, null, 2));
} else {
  console.log(`in-process handshakes, client + server together; node ${process.version}; n = ${N}`);
  console.log('engine        case                                              hs/s   cpu ms/hs  wall ms/hs');
  for (const r of rows) {
    console.log(
      `${r.engine.padEnd(13)} ${r.case.padEnd(48)} ${String(r.handshakesPerSecond).padStart(6)} ${r.cpuMsPerHandshake.toFixed(3).padStart(10)} ${r.wallMsPerHandshake.toFixed(3).padStart(11)}`,
    );
  }
}
