/**
 * Where a full TLS 1.3 ECDSA handshake's server CPU goes, layer by layer, in
 * one process and without sockets: the openssl engine alone, an
 * `AtlsServerSession` (exported keys), and the HTTP endpoint's byte-level core
 * (`handler.serve`, two POSTs with the first 100 B request piggy-backed, as
 * figure 1 of `npm run bench`). Only the server's calls are timed, by the
 * thread's CPU clock, so the client's work and other processes do not count.
 *
 * Usage: `node --import tsx bench/handshake-cost.ts` (HS_COUNT handshakes per
 * layer, default 2000; best of HS_ROUNDS rounds, default 3). With `--cpu-prof`
 * the profile holds the client too: read the server's functions in it.
 * HS_ONLY=engine|Atls|endpoint runs one layer (HS_ONLY=first: a new session's first three protected requests); HS_TICKETS=N sets the server's ticketCount;
 * HS_NO_RIDE=1 sends the final flight without the first request; HS_KIND=full|resumed|mutual|mutual-resumed.
 * The loop turns the event loop every 16 handshakes (untimed) so that native finalizers run as in a
 * server; HS_NO_TURN=1 leaves it unturned, as runs before round 6 measured.
 *
 * `HS_ONLY=sockets`: figure 1's two servers instead (the ATLS endpoint (b) and
 * node:https, each in its own pinned process under the benchmark's load
 * processes, HS_CONCURRENCY loops, default 8), reported as the server's
 * main-thread CPU per handshake beside its whole CPU, and their ratio; the
 * in-process layers above less the sockets, node:http and the process's own
 * costs. HS_MS is the measured window per server (default 3000).
 * @module
 */
import { opensslEngine, threadCpuNs } from '../src/engines/openssl.js';
import { AtlsClientSession, AtlsServerSession } from '../src/session/session.js';
import { createAtlsHandler, echoRawApp } from '../src/http/index.js';
import { encodeRequest, decodeResponse } from '../src/bhttp/codec.js';
import { concatBytes } from '../src/bytes.js';
import { benchPki } from './lib/pki.js';
import { runLoad, startServer, type LoadSummary } from './lib/procs.js';
import type { BenchPki, LoadJob, ServerSpec } from './lib/scenarios.js';
import type { TlsClientConfig, TlsServerConfig } from '../src/engines/types.js';

const COUNT = Number(process.env.HS_COUNT ?? 2000);
const ROUNDS = Number(process.env.HS_ROUNDS ?? 3);

async function main(): Promise<void> {
  const pki = await benchPki();
  const engine = opensslEngine();
  const tickets = process.env.HS_TICKETS === undefined ? {} : { ticketCount: Number(process.env.HS_TICKETS) };
  // HS_KIND: full (default), resumed (the client offers a ticket from a first handshake), mutual (client
  // certificate), mutual-resumed (both).
  const kind = process.env.HS_KIND ?? 'full';
  const mutual = kind.startsWith('mutual');
  const resumed = kind.endsWith('resumed');
  const server: TlsServerConfig = {
    cert: pki.server.cert,
    key: pki.server.key,
    ...tickets,
    ...(mutual ? { ca: pki.ca.cert, requireClientCert: true } : {}),
  };
  const client: TlsClientConfig = {
    ca: pki.ca.cert,
    serverName: 'localhost',
    ...(mutual ? { cert: pki.client.cert, key: pki.client.key } : {}),
  };
  const body = new Uint8Array(100).fill(0x61);
  const inner = encodeRequest({ method: 'POST', scheme: 'https', authority: 'localhost', path: '/echo', headers: [], content: body });
  let spent = 0;
  const timed = async <T>(fn: () => Promise<T>): Promise<T> => {
    const t = threadCpuNs();
    const r = await fn();
    spent += threadCpuNs() - t;
    return r;
  };

  const engineOnly = async (): Promise<void> => {
    const c = engine.createClient(client);
    const hello = await c.start();
    const s = await timed(async () => {
      const conn = engine.createServer(server);
      return { conn, step: await conn.receive(hello.flight) };
    });
    const fin = await c.receive(s.step.flight);
    await timed(async () => {
      await s.conn.receive(fin.flight);
      s.conn.exportKeyingMaterial(56, 'application-layer-tls');
      s.conn.destroy();
    });
    c.destroy();
  };

  const sessionOnly = async (): Promise<void> => {
    const c = new AtlsClientSession({ engine, tls: client });
    const hello = await c.start();
    const s = await timed(async () => {
      const session = new AtlsServerSession({ engine, tls: server });
      return { session, step: await session.receive(hello.flight) };
    });
    const fin = await c.receive(s.step.flight);
    await timed(() => s.session.receive(fin.flight));
    if (resumed !== c.handshakeInfo?.resumed) throw new Error(`resumed: ${c.handshakeInfo?.resumed}`);
    c.destroy();
    s.session.destroy();
  };

  const handler = createAtlsHandler({ tls: server, engine, rawApp: echoRawApp });
  if (resumed) {
    // One handshake with the same server configuration (so the same ticket keys) gives the ticket every later one offers.
    const first = new AtlsClientSession({ engine, tls: client });
    const s = new AtlsServerSession({ engine, tls: server });
    let out = await first.start();
    while (first.state !== 'established') out = await first.receive((await s.receive(out.flight)).flight);
    if (!first.resumptionTicket) throw new Error('no ticket');
    client.session = first.resumptionTicket;
    first.destroy();
    s.destroy();
  }
  const request = (headers: Record<string, string>, bytes: Uint8Array) => ({
    method: 'POST',
    pathname: '/.well-known/atls',
    header: (name: string) => headers[name],
    body: () => Promise.resolve(bytes),
    https: true,
    authority: 'localhost',
    outer: () => {
      throw new Error('no outer request');
    },
  });
  const bytes = (body: Uint8Array | ReadableStream<Uint8Array>): Uint8Array => {
    if (!(body instanceof Uint8Array)) throw new Error('a streamed reply to a handshake POST');
    return body;
  };
  const endpoint = async (): Promise<void> => {
    const c = new AtlsClientSession({ engine, tls: client });
    const hello = await c.start();
    const r1 = await timed(() => handler.serve(request({ 'content-type': 'application/atls+octet-stream' }, hello.flight)));
    if (r1.status !== 200) throw new Error(`POST 1: ${r1.status}`);
    const cookie = (r1.headers.find(([n]) => n === 'set-cookie')?.[1] ?? '').split(';')[0]!;
    const fin = await c.receive(bytes(r1.body));
    if (process.env.HS_NO_RIDE === '1') {
      // The handshake alone: the final flight without a request.
      const r2 = await timed(() => handler.serve(request({ 'content-type': 'application/atls+octet-stream', cookie }, fin.flight)));
      if (r2.status !== 200) throw new Error(`POST 2: ${r2.status}`);
      await c.receive(bytes(r2.body));
      c.destroy();
      return;
    }
    const sealed = c.protect(inner);
    const r2 = await timed(() =>
      handler.serve(
        request({ 'content-type': 'application/atls+octet-stream', cookie, 'atls-flight-length': String(fin.flight.length) }, concatBytes([fin.flight, sealed])),
      ),
    );
    if (r2.status !== 200) throw new Error(`POST 2: ${r2.status}`);
    const n = Number(r2.headers.find(([h]) => h === 'atls-flight-length')?.[1]);
    const body2 = bytes(r2.body);
    await c.receive(body2.subarray(0, n));
    const answer = decodeResponse(c.unprotect(body2.subarray(n)));
    if (answer.content?.length !== body.length) throw new Error('echo mismatch');
    c.destroy();
  };

  if (process.env.HS_ONLY === 'first') {
    // A session's first three protected requests, timed apart: what the piggy-backed echo costs beyond a warm request.
    const protectedType = 'application/atls-protected';
    for (let round = 0; round < ROUNDS; round++) {
      const per = [0, 0, 0];
      for (let i = 0; i < COUNT; i++) {
        const c = new AtlsClientSession({ engine, tls: client });
        const r1 = await handler.serve(request({ 'content-type': 'application/atls+octet-stream' }, (await c.start()).flight));
        const cookie = (r1.headers.find(([n]) => n === 'set-cookie')?.[1] ?? '').split(';')[0]!;
        const fin = await c.receive(bytes(r1.body));
        await c.receive(bytes((await handler.serve(request({ 'content-type': 'application/atls+octet-stream', cookie }, fin.flight))).body));
        for (let k = 0; k < 3; k++) {
          const sealed = c.protect(inner);
          const t = threadCpuNs();
          const r = await handler.serve(request({ 'content-type': protectedType, cookie }, sealed));
          per[k] = per[k]! + threadCpuNs() - t;
          if (r.status !== 200) throw new Error(`request ${k + 1}: ${r.status}`);
          c.unprotect(bytes(r.body));
        }
        c.destroy();
        if (process.env.HS_NO_TURN !== '1' && i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
      }
      console.log(`${kind.padEnd(8)} a session's requests 1, 2, 3 (handler.serve): ${per.map((v) => (v / COUNT / 1000).toFixed(1)).join(' / ')} µs server CPU`);
    }
    await handler.close();
    return;
  }
  for (const [name, fn] of [
    ['engine (openssl) server side', engineOnly],
    ['AtlsServerSession, exported', sessionOnly],
    ['endpoint core (handler.serve), 2 POSTs + 100 B echo', endpoint],
  ] as const) {
    if (process.env.HS_ONLY && !name.startsWith(process.env.HS_ONLY)) continue;
    let best = Infinity;
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < Math.min(200, COUNT); i++) await fn(); // warm-up
      spent = 0;
      for (let i = 0; i < COUNT; i++) {
        await fn();
        // Untimed: turn the event loop now and then, as a server does between requests. Node-API
        // finalizers (the native AEAD contexts and connection wrappers) run only from the loop; a loop
        // of awaits alone never frees them, and every new context then lands on fresh memory.
        if (process.env.HS_NO_TURN !== '1' && i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
      }
      best = Math.min(best, spent / COUNT / 1000);
    }
    console.log(`${kind.padEnd(8)} ${name.padEnd(55)} ${best.toFixed(1).padStart(7)} µs server CPU per handshake (${(1e6 / best).toFixed(0)}/s)`);
  }
  await handler.close();
}

/** Figure 1's ATLS and HTTPS servers under load, server CPU per handshake. */
async function sockets(): Promise<void> {
  const pki: BenchPki = await benchPki();
  const kind = process.env.HS_KIND ?? 'full';
  const mutual = kind.startsWith('mutual');
  const resumed = kind.endsWith('resumed');
  const base = { concurrency: Number(process.env.HS_CONCURRENCY ?? 8), size: 100, mutual, resumed };
  const rows: Array<[string, ServerSpec, Omit<LoadJob, 'port'>]> = [
    ['ATLS endpoint (b)', { kind: 'atls', mode: 'exported', mutual }, { ...base, kind: 'hs-atls', mode: 'exported' }],
    ['node:https, new connection', { kind: 'https', mutual }, { ...base, kind: 'hs-https' }],
  ];
  const got: LoadSummary[] = [];
  for (const [name, spec, job] of rows) {
    const server = await startServer(spec, pki);
    try {
      const r = await runLoad({ ...job, port: server.port }, pki, server, { warmupMs: 1000, durationMs: Number(process.env.HS_MS ?? 3000) });
      got.push(r);
      console.log(
        `sockets ${kind.padEnd(14)} ${name.padEnd(28)} main thread ${r.serverMainUsPerOp.toFixed(1).padStart(7)} µs, process ${r.serverUsPerOp.toFixed(1).padStart(7)} µs CPU per handshake, busy ${(r.serverBusy * 100).toFixed(0)}% (${r.ops} handshakes${r.errors ? `, ${r.errors} errors: ${r.firstError}` : ''})`,
      );
    } finally {
      await server.stop();
    }
  }
  const [atls, https] = got;
  if (atls && https) {
    console.log(`sockets ${kind.padEnd(14)} ratio ATLS / HTTPS per server CPU-second: ${(https.serverUsPerOp / atls.serverUsPerOp).toFixed(2)}x (main thread ${(https.serverMainUsPerOp / atls.serverMainUsPerOp).toFixed(2)}x)`);
  }
}

if (process.env.HS_ONLY === 'sockets') await sockets();
else await main();
