/**
 * The client's body limits as the README states them, against the real
 * server over loopback, in both modes: no bound unless `maxBodyBytes` is set
 * (a body given as bytes larger than the former 16 MiB default goes, and
 * so does a piggy-backed first answer that large, streamed);
 * with `maxBodyBytes`, a request body given as bytes or as a stream is
 * refused locally (TOO_LARGE, source local, the app never sees it), and
 * every answer's content above it, read whole, streamed or piggy-backed,
 * errors `response.body` with TOO_LARGE (remote); `maxResponseBytes`
 * bounds what the client holds whole (a protected message, a flight).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsServer } from '../../src/http/node.js';
import { createAtlsClient, type AtlsClientOptions } from '../../src/http/client.js';
import { AtlsError } from '../../src/errors.js';

const MiB = 1024 * 1024;
/** Larger than the 16 MiB the client refused by default before. */
const LARGE = 17 * MiB;
/** An answer the server sends whole (it ends within 16 KiB) and one it streams. */
const WHOLE_ANSWER = 2000;
const STREAMED_ANSWER = 100_000;

/** Byte i of every test body. */
function pattern(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 10)) & 0xff;
  return b;
}

/** Reads a body to its end: its length and whether it is the pattern, or the error that ended it. */
async function drain(body: ReadableStream<Uint8Array> | null): Promise<{ bytes: number; intact: boolean } | unknown> {
  let bytes = 0;
  let intact = true;
  try {
    for await (const p of body!) {
      for (let j = 0; j < p.length; j++) {
        const i = bytes + j;
        if (p[j] !== ((i * 7 + (i >>> 10)) & 0xff)) intact = false;
      }
      bytes += p.length;
    }
  } catch (e) {
    return e;
  }
  return { bytes, intact };
}

function assertTooLarge(e: unknown, source: 'local' | 'remote'): void {
  assert.ok(e instanceof AtlsError, `expected an AtlsError, got ${String(e)}`);
  assert.equal(e.code, 'TOO_LARGE', e.message);
  assert.equal(e.source, source, e.message);
}

describe('atlsFetch body limits against the real server', () => {
  let pki: TestPki;
  const servers: Server[] = [];
  before(async () => {
    pki = await testPki();
  });
  after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });

  /**
   * A server whose app echoes POST bodies as they come (POST /count: answers their length) and answers
   * GET /bytes?n=N with N pattern bytes; counts the requests its app saw.
   */
  async function start(mode: 'exported' | 'records'): Promise<{ origin: string; seen: () => number; client: (o?: AtlsClientOptions) => ReturnType<typeof createAtlsClient> }> {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    let seen = 0;
    const app = (req: Request): Response | Promise<Response> => {
      seen++;
      const url = new URL(req.url);
      if (url.pathname === '/count') return req.arrayBuffer().then((b) => new Response(String(b.byteLength)));
      if (req.method === 'POST') return new Response(req.body);
      return new Response(pattern(Number(url.searchParams.get('n'))));
    };
    // 17 MiB each way through one request: on a loaded machine that can outlast the service's 30 s request
    // timeout (the connection then ends with ECONNRESET), and the limits tested here are not about time.
    const server = createAtlsServer({ tls: tls.server, app, mode, connections: { requestTimeoutMs: 300_000 } });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const origin = `http://localhost:${(server.address() as AddressInfo).port}`;
    return { origin, seen: () => seen, client: (o = {}) => createAtlsClient({ tls: tls.client, mode, proxy: false, ...o }) };
  }

  for (const mode of ['exported', 'records'] as const) {
    it(`${mode}: no bound unless maxBodyBytes is set: ${LARGE / MiB} MiB given as bytes goes; a piggy-backed (streamed) first answer as large arrives`, async () => {
      const s = await start(mode);
      const client = s.client();
      // The first request of a session rides with the final flight, and so does its answer.
      const first = await client.fetch(`${s.origin}/bytes?n=${LARGE}`);
      assert.equal(client.sessions.get(s.origin)?.roundTrips, 2, 'the GET rode with the final flight');
      assert.deepEqual(await drain(first.body), { bytes: LARGE, intact: true });
      const counted = await client.fetch(`${s.origin}/count`, { method: 'POST', body: pattern(LARGE) });
      assert.equal(counted.status, 200);
      assert.equal(await counted.text(), String(LARGE));
      await client.close();
    });

    it(`${mode}: maxBodyBytes refuses larger request bodies locally, given as bytes or as a stream`, async () => {
      const s = await start(mode);
      const max = 64 * 1024;
      const client = s.client({ maxBodyBytes: max });
      const atMax = await client.fetch(`${s.origin}/echo`, { method: 'POST', body: pattern(max) });
      assert.deepEqual(await drain(atMax.body), { bytes: max, intact: true });
      const before = s.seen();
      await assert.rejects(client.fetch(`${s.origin}/echo`, { method: 'POST', body: pattern(max + 1) }), (e) => (assertTooLarge(e, 'local'), true));
      assert.equal(s.seen(), before, 'the app saw the refused body');
      let produced = 0;
      const stream = new ReadableStream<Uint8Array>({
        pull(c) {
          c.enqueue(pattern(16 * 1024));
          produced += 16 * 1024;
          if (produced > 4 * max) c.close();
        },
      });
      let failure: unknown;
      try {
        const res = await client.fetch(`${s.origin}/echo`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
        failure = await drain(res.body);
      } catch (e) {
        failure = e;
      }
      assertTooLarge(failure, 'local');
      assert.ok(produced <= max + 64 * 1024, `the client took ${produced} bytes of a body refused above ${max}`);
      await client.close();
    });

    it(`${mode}: maxBodyBytes bounds every answer: read whole, streamed, or piggy-backed`, async () => {
      const s = await start(mode);
      const max = 1000;
      for (const n of [WHOLE_ANSWER, STREAMED_ANSWER]) {
        const client = s.client({ maxBodyBytes: max });
        const first = await client.fetch(`${s.origin}/bytes?n=${n}`);
        assert.equal(client.sessions.get(s.origin)?.roundTrips, 2, 'the GET rode with the final flight');
        assertTooLarge(await drain(first.body), 'remote');
        const later = await client.fetch(`${s.origin}/bytes?n=${n}`);
        assertTooLarge(await drain(later.body), 'remote');
        const fits = await client.fetch(`${s.origin}/bytes?n=${max}`);
        assert.deepEqual(await drain(fits.body), { bytes: max, intact: true });
        await client.close();
      }
    });

    it(`${mode}: maxResponseBytes bounds what the client holds whole`, async () => {
      const s = await start(mode);
      const client = s.client({ maxResponseBytes: 4096 });
      const fits = await client.fetch(`${s.origin}/bytes?n=1000`);
      assert.deepEqual(await drain(fits.body), { bytes: 1000, intact: true });
      // Sent whole (it ends within 16 KiB): one protected message, or a flight, with a Content-Length.
      await assert.rejects(
        client.fetch(`${s.origin}/bytes?n=10000`).then((r) => r.arrayBuffer()),
        (e) => (assertTooLarge(e, 'remote'), true),
      );
      await client.close();
    });
  }
});
