/**
 * Where a protected request's server CPU goes, measured two ways:
 *
 * - `core`: the endpoint's byte-level core alone (`handler.serve`, one
 *   protected echo request of an established architecture-(b) session, the
 *   answer read to its end), in one process without sockets, timed by the
 *   thread's CPU clock over batches of 100 requests sealed beforehand, so the
 *   client's work does not count;
 * - `sockets`: figure 2's servers (plain HTTP, HTTPS, arch (b), arch (a)),
 *   each in its own pinned process under the benchmark's load generator,
 *   reported as the server's main-thread CPU per request (what the process
 *   spends outside V8's helper threads) and its whole CPU per request.
 *
 * Usage: `node --import tsx bench/request-cost.ts` (both), `RC_ONLY=core|sockets`,
 * `RC_SIZES=100,65536`, `RC_WHOLE=16384` (answers above it as chunk streams), `RC_COUNT` requests per core round (default 5000), `RC_ROUNDS`
 * core rounds (best and median reported, default 7), `RC_IDLE` idle sessions beside the measured one (default 0), `RC_ROWS=b,https` socket rows by key (`b-node`: arch (b) with the front off)
 * (http, https, b, a), `RC_MS` measured window per socket row (default 3000).
 * @module
 */
import { opensslEngine, threadCpuNs } from '../src/engines/openssl.js';
import { AtlsClientSession } from '../src/session/session.js';
import { createAtlsHandler, echoRawApp } from '../src/http/index.js';
import { encodeRequest, decodeResponse } from '../src/bhttp/codec.js';
import { concatBytes } from '../src/bytes.js';
import { StreamOpener, startsChunkStream } from '../src/protect/stream.js';
import { benchPki } from './lib/pki.js';
import { runLoad, startServer } from './lib/procs.js';
import type { LoadJob, ServerSpec } from './lib/scenarios.js';
import type { TlsServerConfig } from '../src/engines/types.js';

const SIZES = (process.env.RC_SIZES ?? '100,65536').split(',').map(Number);
const COUNT = Number(process.env.RC_COUNT ?? 5000);
const ROUNDS = Number(process.env.RC_ROUNDS ?? 7);
const only = process.env.RC_ONLY;
const IDLE = Number(process.env.RC_IDLE ?? 0);

const FLIGHT = 'application/atls+octet-stream';
const PROTECTED = 'application/atls-protected';

/** The answer's pieces as a socket would take them (no copy: joining them is the client's work). */
async function pieces(body: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  if (body instanceof Uint8Array) return [body];
  const parts: Uint8Array[] = [];
  const reader = body.getReader();
  for (;;) {
    const r = await reader.read();
    if (r.done) return parts;
    parts.push(r.value);
  }
}

async function readAll(body: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return concatBytes(await pieces(body));
}

async function core(): Promise<void> {
  const pki = await benchPki();
  const engine = opensslEngine();
  const tls: TlsServerConfig = { cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.3' };
  // RC_WHOLE=16384: a whole-body cap that sends answers above it as chunk streams (the front here reads any body).
  const whole = process.env.RC_WHOLE ? { limits: { maxWholeBodyBytes: Number(process.env.RC_WHOLE) } } : {};
  const handler = createAtlsHandler({ tls, engine, rawApp: echoRawApp, ...whole });
  const request = (headers: Record<string, string>, bytes: Uint8Array) => ({
    method: 'POST',
    pathname: '/.well-known/atls',
    header: (name: string) => headers[name],
    body: () => Promise.resolve(bytes),
    https: false,
    authority: 'localhost',
    outer: () => {
      throw new Error('no outer request');
    },
  });
  const establish = async (): Promise<{ c: AtlsClientSession; cookie: string }> => {
    const c = new AtlsClientSession({ engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const hello = await c.start();
    const r1 = await handler.serve(request({ 'content-type': FLIGHT }, hello.flight));
    const cookie = (r1.headers.find(([n]) => n === 'set-cookie')?.[1] ?? '').split(';')[0]!;
    const fin = await c.receive(await readAll(r1.body));
    const r2 = await handler.serve(request({ 'content-type': FLIGHT, cookie }, fin.flight));
    await c.receive(await readAll(r2.body));
    if (c.state !== 'established') throw new Error(`client state ${c.state}`);
    return { c, cookie };
  };
  // RC_IDLE=n: n other established sessions that stay idle (the server's tables at a realistic size).
  for (let i = 0; i < IDLE; i++) (await establish()).c.destroy();
  // One established session, as the load generator has.
  const { c, cookie } = await establish();

  for (const size of SIZES) {
    const content = new Uint8Array(size).fill(0x61);
    const inner = encodeRequest({ method: 'POST', scheme: 'http', authority: 'localhost', path: '/echo', headers: [['content-type', 'application/octet-stream']], content });
    const headers = { 'content-type': PROTECTED, cookie };
    // Requests are sealed before and answers checked after a timed batch: only
    // the server's work is timed, and the clock (a system call here, ~1.5 µs) is
    // read twice per batch, not twice per request.
    const batch = async (n: number): Promise<number> => {
      const sealed: Uint8Array[] = [];
      for (let i = 0; i < n; i++) sealed.push(c.protect(inner));
      const replies: Array<{ status: number; parts: Uint8Array[] }> = [];
      const t = threadCpuNs();
      for (let i = 0; i < n; i++) {
        const reply = await handler.serve(request(headers, sealed[i]!));
        replies.push({ status: reply.status, parts: await pieces(reply.body) });
      }
      const spent = threadCpuNs() - t;
      for (const reply of replies) {
        const body = concatBytes(reply.parts);
        if (reply.status !== 200) throw new Error(`status ${reply.status}: ${new TextDecoder().decode(body)}`);
        let plain: Uint8Array;
        if (startsChunkStream(body[0]!)) {
          const opener = new StreamOpener(c.protectedChannel);
          plain = concatBytes(opener.push(body));
          opener.end();
        } else plain = c.unprotect(body);
        if (decodeResponse(plain).content?.length !== size) throw new Error('echo mismatch');
      }
      return spent;
    };
    const BATCH = 100;
    const per: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < Math.min(1000, COUNT); i += BATCH) await batch(BATCH); // warm-up
      let spent = 0;
      for (let i = 0; i < COUNT; i += BATCH) spent += await batch(BATCH);
      per.push(spent / (Math.ceil(COUNT / BATCH) * BATCH) / 1000);
    }
    per.sort((x, y) => x - y);
    const form = size > 16384 ? ` (answer: ${startsChunkStream((await readAll((await handler.serve(request(headers, c.protect(inner)))).body))[0]!) ? 'chunk stream' : 'one message'})` : '';
    console.log(`core  arch (b) handler.serve, ${String(size).padStart(6)} B${form}: best ${per[0]!.toFixed(2)} µs, median ${per[per.length >> 1]!.toFixed(2)} µs thread CPU per request (${ROUNDS} x ${COUNT})`);
  }
  c.destroy();
  await handler.close();
}

async function sockets(): Promise<void> {
  const pki = await benchPki();
  const rows: Array<[string, string, ServerSpec, Omit<LoadJob, 'port' | 'size'>]> = [
    ['http', 'plain HTTP keep-alive', { kind: 'http' }, { concurrency: 16, kind: 'req-http' }],
    ['https', 'HTTPS keep-alive', { kind: 'https' }, { concurrency: 16, kind: 'req-https' }],
    ['b', 'ATLS arch (b)', { kind: 'atls', mode: 'exported' }, { concurrency: 16, kind: 'req-atls', mode: 'exported' }],
    ['b-node', 'arch (b) over node:http', { kind: 'atls', mode: 'exported', front: false }, { concurrency: 16, kind: 'req-atls', mode: 'exported' }],
    ['a', 'ATLS arch (a)', { kind: 'atls', mode: 'records' }, { concurrency: 16, kind: 'req-atls', mode: 'records' }],
  ];
  const pick = process.env.RC_ROWS?.split(',');
  for (const size of SIZES) {
    for (const [key, name, spec, job] of rows) {
      if (pick && !pick.includes(key)) continue;
      const server = await startServer(spec, pki);
      try {
        const r = await runLoad({ ...job, size, port: server.port }, pki, server, { warmupMs: 1000, durationMs: Number(process.env.RC_MS ?? 3000) });
        console.log(
          `sockets ${name.padEnd(22)} ${String(size).padStart(6)} B: main thread ${r.serverMainUsPerOp.toFixed(1)} µs, process ${r.serverUsPerOp.toFixed(1)} µs CPU per request (${r.ops} requests${r.errors ? `, ${r.errors} errors: ${r.firstError}` : ''})`,
        );
      } finally {
        await server.stop();
      }
    }
  }
}

if (only !== 'sockets') await core();
if (only !== 'core') await sockets();
