/**
 * In-process handshake throughput of every available TLS engine: client and
 * server in one process, flights passed in memory, so each figure is the cost
 * of both ends together. Reports handshakes/s (wall) and CPU ms per handshake
 * (user + system, less sensitive to a busy machine).
 *
 *   node --import tsx bench/engine-handshakes.ts [--n 300] [--rounds 5] [--baselines] [--json]
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
const ROUNDS = Number(args[args.indexOf('--rounds') + 1] ?? 5) || 5;
const PSK = { identity: 'bench', key: new Uint8Array(32).fill(1) };

interface Row {
  engine: string;
  case: string;
  handshakesPerSecond: number;
  /** Median over the rounds of CPU (user + system) ms per handshake. */
  cpuMsPerHandshake: number;
  wallMsPerHandshake: number;
}

interface Case {
  engine: string;
  name: string;
  n: number;
  once: () => Promise<void>;
}

/**
 * Runs every case in ROUNDS interleaved rounds (a busy machine then slows all
 * cases alike) and reports the median round per case.
 */
async function measure(cases: Case[]): Promise<Row[]> {
  for (const c of cases) for (let i = 0; i < Math.min(20, c.n); i++) await c.once(); // warm-up: contexts, JIT
  const cpu = new Map<Case, number[]>();
  const wall = new Map<Case, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const c of cases) {
      const per = Math.max(1, Math.round(c.n / ROUNDS));
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < per; i++) await c.once();
      const w = (performance.now() - t0) / per;
      const u = process.cpuUsage(cpu0);
      cpu.set(c, [...(cpu.get(c) ?? []), (u.user + u.system) / 1000 / per]);
      wall.set(c, [...(wall.get(c) ?? []), w]);
    }
  }
  const median = (xs: number[]): number => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  return cases.map((c) => {
    const w = median(wall.get(c)!);
    return {
      engine: c.engine,
      case: c.name,
      handshakesPerSecond: Math.round(1000 / w),
      cpuMsPerHandshake: +median(cpu.get(c)!).toFixed(3),
      wallMsPerHandshake: +w.toFixed(3),
    };
  });
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

async function engineCases(engine: TlsEngine, pki: TestPki): Promise<Case[]> {
  const out: Case[] = cases(pki).map(([name, c, s]) => ({
    engine: engine.name,
    name,
    n: N,
    once: async () => {
      const client = engine.createClient(c);
      const server = engine.createServer(s);
      const run = await pump(client, server);
      if (Object.keys(run.errors).length) throw new Error(`${name}: ${JSON.stringify(run.errors)}`);
      client.destroy();
      server.destroy();
    },
  }));
  // Resumption with a ticket from a first handshake.
  const [, c, s] = cases(pki)[0]!;
  const first = await pump(engine.createClient(c), engine.createServer(s));
  const session = ticketsOf(first.events.client).at(-1)!;
  out.push({
    engine: engine.name,
    name: 'TLS 1.3 resumption (ticket)',
    n: N,
    once: async () => {
      const client = engine.createClient({ ...c, session });
      const server = engine.createServer(s);
      await pump(client, server);
      client.destroy();
      server.destroy();
    },
  });
  return out;
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

async function baselineCases(pki: TestPki): Promise<Case[]> {
  const opts = { cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
  const clientCtx = tls.createSecureContext({ ca: pki.ca.cert });
  const sharedCtx = tls.createSecureContext(opts);
  const shared = tls.createServer(opts);
  shared.on('tlsClientError', () => undefined);
  const raw = 'raw node:tls';
  // One empty step on an established connection: the flight heuristic's own cost.
  const conn = { client: nodeEngine.createClient({ ca: pki.ca.cert, serverName: 'localhost' }), server: nodeEngine.createServer(pki.server) };
  await pump(conn.client, conn.server);
  return [
    {
      engine: raw,
      name: 'tls.Server per connection',
      n: N,
      once: () =>
        rawPair((p) => {
          const server = tls.createServer(opts);
          server.on('tlsClientError', () => undefined);
          server.emit('connection', p);
        }, clientCtx),
    },
    { engine: raw, name: 'shared tls.Server (no socket<->duplex link)', n: N, once: () => rawPair((p) => shared.emit('connection', p), clientCtx) },
    {
      engine: raw,
      name: 'server TLSSocket per connection, cached context',
      n: N,
      once: () =>
        rawPair((p) => {
          new tls.TLSSocket(p, { isServer: true, secureContext: sharedCtx }).on('error', () => undefined);
        }, clientCtx),
    },
    {
      engine: raw,
      name: 'tls.createSecureContext alone',
      n: N,
      once: async () => {
        tls.createSecureContext(opts);
      },
    },
    { engine: 'node', name: 'one empty receive() step', n: N * 10, once: async () => void (await conn.server.receive(new Uint8Array(0))) },
  ];
}

const pki = await testPki();
const all: Case[] = [];
for (const engine of availableEngines()) all.push(...(await engineCases(engine, pki)));
if (args.includes('--baselines')) all.push(...(await baselineCases(pki)));
const rows = await measure(all);

if (JSON_OUT) {
  console.log(JSON.stringify({ node: process.version, n: N, rows }, null, 2));
} else {
  console.log(`in-process handshakes, client + server together; node ${process.version}; n = ${N} in ${ROUNDS} interleaved rounds (medians)`);
  console.log('engine        case                                              hs/s   cpu ms/hs  wall ms/hs');
  for (const r of rows) {
    console.log(
      `${r.engine.padEnd(13)} ${r.case.padEnd(48)} ${String(r.handshakesPerSecond).padStart(6)} ${r.cpuMsPerHandshake.toFixed(3).padStart(10)} ${r.wallMsPerHandshake.toFixed(3).padStart(11)}`,
    );
  }
}
