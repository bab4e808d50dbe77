/**
 * Handshake benchmark of the TLS engines (issue 3): server-side handshakes
 * per second on one core for TLS 1.3 with ECDSA P-256 (server-only and
 * mutual) and with an external PSK, for every available engine, next to the
 * crypto-only limit of the same handshake (node:crypto: X25519 key generation
 * and derivation plus the signature operations).
 *
 * It counts work, not wall time: the CPU time of the JS thread spent inside
 * the server's calls (CLOCK_THREAD_CPUTIME_ID through the native addon), so a
 * busy machine inflates the figures less. Wall-clock rates of the whole
 * client+server loop are printed too.
 *
 * Usage: `node --import tsx bench/engines.ts` (or `npm run bench:engines`).
 * ATLS_BENCH_SECONDS (default 3) bounds each measurement; writes
 * bench/out/engines-<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, sign, verify } from 'node:crypto';
import { availableEngines, engineUnavailableReason } from '../src/engines/index.js';
import { threadCpuNs } from '../src/engines/openssl.js';
import type { EngineConnection, TlsClientConfig, TlsEngine, TlsServerConfig } from '../src/engines/types.js';
import { testPki, type TestPki } from '../test/helpers/pki.js';

const SECONDS = Number(process.env.ATLS_BENCH_SECONDS ?? 3);
const PSK_KEY = new Uint8Array(32).fill(7);

interface Scenario {
  name: string;
  client: TlsClientConfig;
  server: TlsServerConfig;
  /** Only for engines with this capability (e.g. ticketCount). */
  needs?: 'ticketCount';
}

function scenarios(pki: TestPki): Scenario[] {
  const v = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
  return [
    {
      name: 'tls13-ecdsa-p256',
      client: { ...v, ca: pki.ca.cert, serverName: 'localhost', groups: 'X25519' },
      server: { ...v, cert: pki.server.cert, key: pki.server.key },
    },
    {
      name: 'tls13-ecdsa-p256-mutual',
      client: { ...v, ca: pki.ca.cert, serverName: 'localhost', groups: 'X25519', cert: pki.client.cert, key: pki.client.key },
      server: { ...v, cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requireClientCert: true },
    },
    {
      name: 'tls13-psk',
      client: { ...v, psk: { identity: 'bench', key: PSK_KEY }, verifyPeer: false, groups: 'X25519' },
      server: { ...v, pskLookup: (id) => (id === 'bench' ? PSK_KEY : undefined) },
    },
  ];
}

/** The same handshakes without TLS 1.3 tickets (engines that can set the count). */
function noTicketScenarios(list: Scenario[]): Scenario[] {
  return list.map((sc) => ({ ...sc, name: `${sc.name}/0-tickets`, server: { ...sc.server, ticketCount: 0 }, needs: 'ticketCount' }));
}

interface Result {
  engine: string;
  scenario: string;
  handshakes: number;
  /** Server CPU time per handshake, microseconds. */
  serverUs: number;
  /** Server-side handshakes per second on one core (1e6 / serverUs). */
  serverPerSec: number;
  /** Client CPU time per handshake, microseconds. */
  clientUs: number;
  /** Whole loop (client + server) handshakes per second, wall clock. */
  wallPerSec: number;
  flights: number[];
}

/** One handshake; adds the thread CPU time of each side to `acc`. */
async function handshake(engine: TlsEngine, sc: Scenario, acc: { server: number; client: number }, flights?: number[]): Promise<void> {
  let t = threadCpuNs();
  const c = engine.createClient(sc.client);
  let step = await c.start();
  let now = threadCpuNs();
  acc.client += now - t;
  t = now;
  const s: EngineConnection = engine.createServer(sc.server);
  now = threadCpuNs();
  acc.server += now - t;
  let toServer = true;
  let done = false;
  for (let i = 0; i < 8 && step.flight.length > 0; i++) {
    flights?.push(step.flight.length);
    t = threadCpuNs();
    step = toServer ? await s.receive(step.flight) : await c.receive(step.flight);
    now = threadCpuNs();
    if (toServer) acc.server += now - t;
    else acc.client += now - t;
    if (step.events.some((e) => e.type === 'handshake') && toServer) done = true;
    toServer = !toServer;
  }
  if (!done) throw new Error(`${engine.name} ${sc.name}: the server did not complete the handshake`);
  t = threadCpuNs();
  s.destroy();
  now = threadCpuNs();
  acc.server += now - t;
  c.destroy();
}

async function measure(engine: TlsEngine, sc: Scenario): Promise<Result> {
  const flights: number[] = [];
  await handshake(engine, sc, { server: 0, client: 0 }, flights);
  // Warm-up: caches, JIT.
  const warm = { server: 0, client: 0 };
  for (let i = 0; i < 50; i++) await handshake(engine, sc, warm);
  const acc = { server: 0, client: 0 };
  let n = 0;
  const t0 = performance.now();
  const deadline = t0 + SECONDS * 1000;
  while (performance.now() < deadline) {
    await handshake(engine, sc, acc);
    n++;
  }
  const wall = performance.now() - t0;
  const serverUs = acc.server / n / 1000;
  return {
    engine: engine.name,
    scenario: sc.name,
    handshakes: n,
    serverUs: round(serverUs),
    serverPerSec: Math.round(1e6 / serverUs),
    clientUs: round(acc.client / n / 1000),
    wallPerSec: Math.round((n / wall) * 1000),
    flights,
  };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** CPU microseconds per call of `fn`, over about `ms` of work. */
function cost(fn: () => void, ms = 600): number {
  for (let i = 0; i < 50; i++) fn();
  let n = 0;
  const t0 = threadCpuNs();
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 20; i++) fn();
    n += 20;
  }
  return (threadCpuNs() - t0) / n / 1000;
}

/** The cryptography a TLS 1.3 server must do per handshake, measured with node:crypto. */
function cryptoCosts(pki: TestPki): Record<string, number> {
  const peer = generateKeyPairSync('x25519');
  const ecKey = createPrivateKey(pki.server.key);
  const ecPub = createPublicKey(pki.server.key);
  const transcript = Buffer.alloc(130, 1); // RFC 8446 §4.4.3: 64 spaces + context + hash
  const sig = sign('sha256', transcript, ecKey);
  const x25519Keygen = cost(() => generateKeyPairSync('x25519'));
  const x25519Derive = cost(() => diffieHellman({ privateKey: peer.privateKey, publicKey: peer.publicKey }));
  const ecdsaSign = cost(() => sign('sha256', transcript, ecKey));
  const ecdsaVerify = cost(() => verify('sha256', transcript, ecPub, sig));
  return {
    x25519KeygenUs: round(x25519Keygen),
    x25519DeriveUs: round(x25519Derive),
    ecdsaP256SignUs: round(ecdsaSign),
    ecdsaP256VerifyUs: round(ecdsaVerify),
  };
}

/**
 * `openssl speed` on the same machine, when the CLI exists: raw X25519 derive
 * and ECDSA P-256 sign/verify without node:crypto's per-call overhead. Key
 * generation is not measured there; it is counted as one more derive.
 */
function opensslSpeed(): Record<string, number> | undefined {
  const r = spawnSync('openssl', ['speed', '-seconds', '1', 'ecdhx25519', 'ecdsap256'], { encoding: 'utf8' });
  if (r.status !== 0) return undefined;
  const ec = /256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(r.stdout);
  const x = /253 bits ecdh \(X25519\)\s+\S+\s+([\d.]+)/.exec(r.stdout);
  if (!ec || !x) return undefined;
  const derive = 1e6 / Number(x[1]);
  return {
    x25519KeygenUs: round(derive),
    x25519DeriveUs: round(derive),
    ecdsaP256SignUs: round(1e6 / Number(ec[1])),
    ecdsaP256VerifyUs: round(1e6 / Number(ec[2])),
  };
}

/** Crypto-only server cost per scenario (RFC 8446: key share, signatures it makes and checks). */
function cryptoLimitUs(c: Record<string, number>, scenario: string): number {
  const base = scenario.replace('/0-tickets', '');
  const kx = c.x25519KeygenUs! + c.x25519DeriveUs!;
  if (base === 'tls13-psk') return kx; // psk_dhe_ke: the (EC)DHE only
  const serverOnly = kx + c.ecdsaP256SignUs!; // + CertificateVerify signature
  // Mutual: + the client's certificate signature (chain) and its CertificateVerify.
  return base === 'tls13-ecdsa-p256-mutual' ? serverOnly + 2 * c.ecdsaP256VerifyUs! : serverOnly;
}

async function main(): Promise<void> {
  const pki = await testPki();
  const engines = availableEngines();
  const missing = ['openssl', 'node'].filter((n) => !engines.some((e) => e.name === n));
  for (const m of missing) console.log(`# ${m} engine unavailable: ${engineUnavailableReason(m)}`);
  console.log(`# ${cpus()[0]?.model ?? 'cpu'}; load average ${loadavg().map((x) => x.toFixed(2)).join(' ')}; node ${process.version}, OpenSSL ${process.versions.openssl}`);
  console.log(`# server CPU time per handshake on the JS thread; ${SECONDS} s per case`);
  const crypto = cryptoCosts(pki);
  console.log(`# node:crypto costs (us): ${JSON.stringify(crypto)}`);
  const speed = opensslSpeed();
  if (speed) console.log(`# openssl speed costs (us; keygen counted as a derive): ${JSON.stringify(speed)}`);
  const results: Result[] = [];
  const list = scenarios(pki);
  for (const sc of [...list, ...noTicketScenarios(list)]) {
    for (const engine of engines) {
      if (sc.needs === 'ticketCount' && !engine.capabilities.ticketCount) continue;
      results.push(await measure(engine, sc));
    }
  }
  const rows: string[] = [];
  rows.push(
    [
      'scenario',
      'engine',
      'server us/hs',
      'server hs/s',
      'limit hs/s (node:crypto)',
      '% of it',
      'limit hs/s (openssl speed)',
      '% of it',
      'vs node',
      'client us/hs',
      'loop hs/s (wall)',
    ].join(' | '),
  );
  const summary: Record<string, unknown>[] = [];
  for (const r of results) {
    const limitUs = cryptoLimitUs(crypto, r.scenario);
    const limit = Math.round(1e6 / limitUs);
    const rawUs = speed ? cryptoLimitUs(speed, r.scenario) : NaN;
    const raw = Math.round(1e6 / rawUs);
    const base = r.scenario.replace('/0-tickets', '');
    const node = results.find((x) => x.engine === 'node' && x.scenario === base);
    const vsNode = node ? r.serverPerSec / node.serverPerSec : NaN;
    const pct = (100 * r.serverPerSec) / limit;
    const rawPct = (100 * r.serverPerSec) / raw;
    rows.push(
      [
        r.scenario,
        r.engine,
        r.serverUs,
        r.serverPerSec,
        limit,
        `${pct.toFixed(0)}%`,
        speed ? raw : '-',
        speed ? `${rawPct.toFixed(0)}%` : '-',
        Number.isNaN(vsNode) ? '-' : `${vsNode.toFixed(1)}x`,
        r.clientUs,
        r.wallPerSec,
      ].join(' | '),
    );
    summary.push({
      ...r,
      cryptoLimitUs: round(limitUs),
      cryptoLimitPerSec: limit,
      percentOfLimit: round(pct),
      ...(speed ? { opensslSpeedLimitPerSec: raw, percentOfOpensslSpeedLimit: round(rawPct) } : {}),
      vsNode: round(vsNode),
    });
  }
  console.log(rows.join('\n'));
  mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  const file = new URL(`./out/engines-${new Date().toISOString().replace(/[:.]/g, '-')}.json`, import.meta.url);
  writeFileSync(
    file,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        openssl: process.versions.openssl,
        cpu: cpus()[0]?.model,
        loadavg: loadavg(),
        seconds: SECONDS,
        crypto,
        opensslSpeed: speed,
        results: summary,
      },
      null,
      2,
    ),
  );
  console.log(`# wrote ${file.pathname.split('/').slice(-3).join('/')}`);
}

await main();
