/**
 * atlsFetch streams, against the real server over loopback, in both modes:
 * the first piece of an answer reaches the application while the server's
 * app has not produced the rest, a request body reaches the server's app
 * while the client has not produced the rest (gates, not timings, prove
 * both), and a streamed answer that a man in the middle cuts or reorders
 * errors `response.body` with a typed AtlsError.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsServer } from '../../src/http/node.js';
import { createAtlsClient } from '../../src/http/client.js';
import { AtlsError } from '../../src/errors.js';
import { concatBytes } from '../../src/bytes.js';

/** A gate that opens when told, or by itself after a long time (then `timedOut` says so: the test fails). */
function gate(): { open(): void; opened: Promise<void>; timedOut: () => boolean } {
  let open!: () => void;
  let timedOut = false;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const timer = setTimeout(() => {
    timedOut = true;
    open();
  }, 60_000);
  void opened.then(() => clearTimeout(timer));
  return { open, opened, timedOut: () => timedOut };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as AddressInfo).port;
}

/** Reads a body to its end; resolves with its bytes, or with the error that ended it. */
async function drain(body: ReadableStream<Uint8Array> | null): Promise<Uint8Array | unknown> {
  const parts: Uint8Array[] = [];
  try {
    for await (const p of body!) parts.push(p);
  } catch (e) {
    return e;
  }
  return concatBytes(parts);
}

/** Protected chunks of a chunk stream (docs/protocol.md §4.1), split by their headers. */
function splitChunks(body: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.length; ) {
    const n = (body[at]! & 7) + 1;
    const len = (body[at + 1 + n]! << 8) | body[at + 2 + n]!;
    out.push(body.subarray(at, at + 3 + n + len));
    at += 3 + n + len;
  }
  return out;
}

/** TLS records, split by their 5-byte headers. */
function splitTlsRecords(body: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < body.length; ) {
    const len = (body[at + 3]! << 8) | body[at + 4]!;
    out.push(body.subarray(at, at + 5 + len));
    at += 5 + len;
  }
  return out;
}

describe('atlsFetch streaming against the real server', () => {
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

  for (const mode of ['exported', 'records'] as const) {
    it(`${mode}: response.body gives the first piece before the app has produced the rest`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const rest = gate();
      const app = (): Response =>
        new Response(
          new ReadableStream<Uint8Array>({
            async start(c) {
              c.enqueue(new Uint8Array(40_000).fill(1));
              await rest.opened;
              c.enqueue(new Uint8Array(40_000).fill(2));
              c.close();
            },
          }),
        );
      const server = createAtlsServer({ tls: tls.server, app, mode });
      servers.push(server);
      const port = await listen(server);
      const client = createAtlsClient({ tls: tls.client, mode, proxy: false });
      const res = await client.fetch(`http://localhost:${port}/slow`);
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      let got = 0;
      while (got < 40_000) {
        const r = await reader.read();
        assert.ok(!r.done, 'the body ended early');
        assert.ok(r.value.every((b: number) => b === 1));
        got += r.value.length;
      }
      assert.ok(!rest.timedOut(), 'the first piece came only after the app had produced everything');
      rest.open();
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        assert.ok(r.value.every((b: number) => b === 2));
        got += r.value.length;
      }
      assert.equal(got, 80_000);
      await client.close();
    });

    it(`${mode}: aborting the signal while the body streams errors response.body with the signal's reason, as fetch does`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const rest = gate();
      const app = (): Response =>
        new Response(
          new ReadableStream<Uint8Array>({
            async start(c) {
              c.enqueue(new Uint8Array(40_000).fill(1));
              await rest.opened;
              c.close();
            },
          }),
        );
      const server = createAtlsServer({ tls: tls.server, app, mode });
      servers.push(server);
      const port = await listen(server);
      const client = createAtlsClient({ tls: tls.client, mode, proxy: false });
      for (const reason of [undefined, new Error('stopped by the caller')]) {
        const controller = new AbortController();
        const res = await client.fetch(`http://localhost:${port}/slow`, { signal: controller.signal });
        const reader = res.body!.getReader();
        let got = 0;
        while (got < 40_000) got += ((await reader.read()).value?.length ?? 40_000);
        controller.abort(reason);
        const error = await reader.read().then(
          () => undefined,
          (e: unknown) => e,
        );
        if (reason) assert.equal(error, reason);
        else assert.equal((error as Error).name, 'AbortError', String(error));
      }
      rest.open();
      await client.close();
    });

    it(`${mode}: a request body given as a stream reaches the app before the client has produced the rest`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const seen = gate();
      const app = async (req: Request): Promise<Response> => {
        let n = 0;
        for await (const piece of req.body!) {
          n += piece.length;
          seen.open();
        }
        return new Response(String(n));
      };
      const server = createAtlsServer({ tls: tls.server, app, mode, limits: { maxBodyBytes: 8 << 20 } });
      servers.push(server);
      const port = await listen(server);
      const client = createAtlsClient({ tls: tls.client, mode, proxy: false });
      await (await client.fetch(`http://localhost:${port}/warm-up`)).arrayBuffer(); // the handshake
      const body = new ReadableStream<Uint8Array>({
        async start(c) {
          c.enqueue(new Uint8Array(50_000));
          await seen.opened;
          c.enqueue(new Uint8Array(3_000_000));
          c.close();
        },
      });
      const res = await client.fetch(`http://localhost:${port}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit);
      assert.equal(await res.text(), '3050000');
      assert.ok(!seen.timedOut(), 'the app saw the body only once the client had produced all of it');
      await client.close();
    });
  }

  /** A man in the middle: the answers of protected exchanges whose body is at least 20 KB go through `mutate`. */
  async function mitm(target: number, mutate: (body: Uint8Array) => Uint8Array): Promise<number> {
    const server = createServer((req, res) => {
      void (async () => {
        const parts: Buffer[] = [];
        for await (const p of req) parts.push(p as Buffer);
        const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k !== 'host' && k !== 'content-length')) as Record<string, string>;
        const up = await fetch(`http://127.0.0.1:${target}${req.url}`, { method: req.method!, headers, body: Buffer.concat(parts) });
        let body: Uint8Array = new Uint8Array(await up.arrayBuffer());
        if (up.status === 200 && body.length >= 20_000) body = mutate(body);
        const out: Record<string, string> = {};
        up.headers.forEach((v, k) => {
          if (k !== 'content-length' && k !== 'transfer-encoding' && k !== 'set-cookie') out[k] = v;
        });
        const cookies = up.headers.getSetCookie();
        res.writeHead(up.status, { ...out, ...(cookies.length ? { 'set-cookie': cookies } : {}) });
        res.end(body); // chunked: the client reads it as a stream
      })();
    });
    servers.push(server);
    return listen(server);
  }

  const cases: Array<{ mode: 'exported' | 'records'; name: string; code: string; mutate: (b: Uint8Array) => Uint8Array }> = [
    { mode: 'exported', name: 'the final chunk dropped', code: 'MALFORMED_MESSAGE', mutate: (b) => concatBytes(splitChunks(b).slice(0, -1)) },
    { mode: 'exported', name: 'cut inside a chunk', code: 'MALFORMED_MESSAGE', mutate: (b) => b.subarray(0, b.length - 5) },
    {
      mode: 'exported',
      name: 'two chunks swapped',
      code: 'DECRYPT_FAILED',
      mutate: (b) => {
        const c = splitChunks(b);
        [c[1], c[2]] = [c[2]!, c[1]!];
        return concatBytes(c);
      },
    },
    { mode: 'records', name: 'the last records dropped', code: 'MALFORMED_MESSAGE', mutate: (b) => concatBytes(splitTlsRecords(b).slice(0, -1)) },
    { mode: 'records', name: 'cut inside a record', code: 'TRUNCATED_FLIGHT', mutate: (b) => b.subarray(0, b.length - 5) },
    {
      mode: 'records',
      name: 'two records swapped',
      code: 'BAD_RECORD_MAC',
      mutate: (b) => {
        const r = splitTlsRecords(b);
        [r[0], r[1]] = [r[1]!, r[0]!];
        return concatBytes(r);
      },
    },
  ];
  for (const { mode, name, code, mutate } of cases) {
    it(`${mode}: a streamed answer with ${name} errors response.body with ${code}`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const app = (): Response =>
        new Response(
          new ReadableStream<Uint8Array>({
            async start(c) {
              for (let i = 0; i < 5; i++) {
                c.enqueue(new Uint8Array(20_000).fill(i));
                await new Promise((r) => setImmediate(r));
              }
              c.close();
            },
          }),
        );
      const server = createAtlsServer({ tls: tls.server, app, mode });
      servers.push(server);
      const port = await mitm(await listen(server), mutate);
      const client = createAtlsClient({ tls: tls.client, mode, proxy: false, piggyback: false });
      let outcome: unknown;
      try {
        const res = await client.fetch(`http://localhost:${port}/big`);
        outcome = await drain(res.body);
      } catch (e) {
        outcome = e; // a cut before the head is complete rejects fetch itself
      }
      assert.ok(outcome instanceof AtlsError, `expected an AtlsError, got ${outcome instanceof Uint8Array ? `${outcome.length} bytes` : String(outcome)}`);
      assert.equal(outcome.code, code, outcome.message);
      await client.close();
    });
  }
});
