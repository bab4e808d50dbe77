/**
 * Streamed bodies through the server side of the HTTP binding (docs/protocol.md
 * §5.14), both modes: a slowly produced answer reaches the client while the
 * app is still producing it, a large request body reaches the app as it is
 * sent, small answers keep one protected message byte for byte, and a chunk
 * stream that is cut short, reordered or forged is refused with a typed
 * error (no 500) while the session goes on; over --max-body is a 413. The
 * store-backed path runs with the in-memory store and with an async store.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { testPki, type TestPki } from '../helpers/pki.js';
import { ForgetfulStore, tlsPair } from '../helpers/http.js';
import { StreamingTestClient, handlerPoster, fetchPoster } from '../helpers/stream-client.js';
import { createAtlsHandler, type AtlsApp, type AtlsHandlerOptions, type AtlsRawApp } from '../../src/http/server.js';
import { createAtlsServer } from '../../src/http/node.js';
import { MAX_CHUNK_PLAINTEXT, readChunkHeader } from '../../src/protect/header.js';
import { prng } from '../helpers/prng.js';
import type { Mode } from '../../src/session/types.js';
import type { AddressInfo } from 'node:net';
import { decodeResponseStream } from '../../src/bhttp/stream.js';

const MiB = 1024 * 1024;

/** An app: GET /slow streams `size` bytes, waiting for `gate` after the first piece; POST /hash answers the body's SHA-256 and length. */
function streamingApp(size: number, gate: () => Promise<void>): AtlsApp {
  return async (req) => {
    const path = new URL(req.url).pathname;
    if (path === '/hash') {
      const h = createHash('sha256');
      let n = 0;
      for await (const piece of req.body as unknown as AsyncIterable<Uint8Array>) {
        h.update(piece);
        n += piece.length;
      }
      return new Response(`${n} ${h.digest('hex')}`);
    }
    if (path === '/small') return new Response('small answer', { headers: { 'content-type': 'text/plain' } });
    const data = prng(1).bytes(size);
    let at = 0;
    let waited = false;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(c) {
          if (at === 0) {
            c.enqueue(data.subarray(0, 1000));
            at = 1000;
            return;
          }
          if (!waited) {
            waited = true;
            await gate();
          }
          if (at >= size) return c.close();
          c.enqueue(data.subarray(at, at + 64 * 1024));
          at += 64 * 1024;
        },
      }),
      { headers: { 'content-type': 'application/octet-stream' } },
    );
  };
}

async function readAll(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A request body of `size` pseudo-random bytes, produced in pieces. */
function uploadBody(size: number): { body: ReadableStream<Uint8Array>; expected: string } {
  const data = prng(2).bytes(size);
  let at = 0;
  return {
    expected: `${size} ${sha(data)}`,
    body: new ReadableStream({
      pull(c) {
        if (at >= size) return c.close();
        c.enqueue(data.subarray(at, at + 50_000));
        at += 50_000;
      },
    }),
  };
}

describe('HTTP binding: streamed bodies (server side)', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const mode of ['exported', 'records'] as const satisfies readonly Mode[]) {
    for (const store of mode === 'exported' ? (['memory', 'async'] as const) : (['memory'] as const)) {
      const setup = async (extra: Partial<AtlsHandlerOptions> = {}) => {
        const tls = tlsPair(pki, 'TLSv1.3', 'cert');
        let open!: () => void;
        const gate = new Promise<void>((r) => (open = r));
        const handler = createAtlsHandler({
          tls: tls.server,
          mode,
          app: streamingApp(2 * MiB, () => gate),
          ...(store === 'async' ? { store: new ForgetfulStore() } : {}),
          ...extra,
        });
        const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, mode);
        return { handler, client, open };
      };

      it(`${mode} (${store} store): a slowly produced 2 MiB answer starts before the app has produced it`, async () => {
        const { client, open } = await setup();
        const { outer, inner } = await client.fetch(new Request('http://localhost/slow'));
        assert.equal(inner.status, 200);
        assert.equal(outer.headers.get('content-length'), null, 'sent as it is produced');
        const reader = inner.content.getReader();
        const first = await reader.read();
        assert.ok(!first.done && first.value.length > 0, 'first content bytes arrived while the app waits at its gate');
        open();
        const rest = [first.value!];
        for (;;) {
          const r = await reader.read();
          if (r.done) break;
          rest.push(r.value);
        }
        const got = Buffer.concat(rest);
        assert.equal(got.length, 2 * MiB);
        assert.equal(sha(got), sha(prng(1).bytes(2 * MiB)));
        // The session goes on.
        const again = await client.fetch(new Request('http://localhost/small'));
        assert.equal(new TextDecoder().decode(await readAll(again.inner.content)), 'small answer');
      });

      it(`${mode} (${store} store): a 2 MiB request body streams to the app`, async () => {
        const { client } = await setup();
        const up = uploadBody(2 * MiB + 17);
        const { inner } = await client.fetch(new Request('http://localhost/hash', { method: 'POST', body: up.body, duplex: 'half' } as RequestInit));
        assert.equal(new TextDecoder().decode(await readAll(inner.content)), up.expected);
      });
    }

    it(`${mode}: a small answer is still one message with a Content-Length`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const handler = createAtlsHandler({ tls: tls.server, mode, app: streamingApp(10, () => Promise.resolve()) });
      const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, mode);
      const res = await client.send(client.wire(new Request('http://localhost/small')));
      const bytes = await readAll(res.body!);
      if (mode === 'exported') assert.equal(bytes[0]! & 0x10, 0, 'one protected message (§4), not a chunk stream');
      const inner = await decodeResponseStream(client.open(new ReadableStream({ start: (c) => (c.enqueue(bytes), c.close()) })));
      assert.equal(inner.framing, 'known-length');
      assert.equal(new TextDecoder().decode(await readAll(inner.content)), 'small answer');
    });

    if (mode === 'exported') {
      it('exported: a raw app\'s answer at hand is one message up to the whole-body cap, a chunk stream above it', async () => {
        const tls = tlsPair(pki, 'TLSv1.3', 'cert');
        const big = prng(7).bytes(100 * 1024);
        const rawApp: AtlsRawApp = () => ({ status: 200, headers: [], content: big });
        for (const [cap, chunked] of [
          [undefined, false],
          [64 * 1024, true],
        ] as const) {
          const handler = createAtlsHandler({ tls: tls.server, mode, rawApp, ...(cap ? { limits: { maxWholeBodyBytes: cap } } : {}) });
          const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, mode);
          const res = await client.send(client.wire(new Request('http://localhost/big')));
          const bytes = await readAll(res.body!);
          assert.equal(bytes[0]! & 0x10, chunked ? 0x10 : 0, chunked ? 'a chunk stream (§4.1) above the cap' : 'one protected message (§4) under the cap');
          if (chunked) assert.ok(chunksOf(bytes).length > 1);
          const inner = await decodeResponseStream(client.open(new ReadableStream({ start: (c) => (c.enqueue(bytes), c.close()) })));
          assert.equal(sha(Buffer.from(await readAll(inner.content))), sha(big));
          await handler.close();
        }
      });
    }

    it(`${mode}: over --max-body a streamed request is a 413`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const handler = createAtlsHandler({ tls: tls.server, mode, app: streamingApp(10, () => Promise.resolve()), limits: { maxBodyBytes: 256 * 1024 } });
      const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, mode);
      const up = uploadBody(1 * MiB);
      const res = await client.send(client.wire(new Request('http://localhost/hash', { method: 'POST', body: up.body, duplex: 'half' } as RequestInit)));
      assert.equal(res.status, 413);
      assert.equal(res.headers.get('atls-error'), 'TOO_LARGE');
    });

    it(`${mode}: a raw app takes a streamed request whole, up to the whole-body cap; above it a 413 that says so, and the session goes on`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const seen: number[] = [];
      const rawApp: AtlsRawApp = (req) => {
        seen.push(req.content.length);
        return { status: 200, headers: [], content: new TextEncoder().encode(`${req.content.length} ${sha(req.content)}`) };
      };
      const handler = createAtlsHandler({ tls: tls.server, mode, rawApp, limits: { maxWholeBodyBytes: 256 * 1024 } });
      const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, mode);
      const post = (size: number) => client.wire(new Request('http://localhost/raw', { method: 'POST', body: uploadBody(size).body, duplex: 'half' } as RequestInit));
      const over = await client.send(post(1 * MiB));
      assert.equal(over.status, 413);
      assert.equal(over.headers.get('atls-error'), 'TOO_LARGE');
      assert.match(await over.text(), /over 262144 bytes: this server's raw app takes requests whole/);
      assert.deepEqual(seen, [], 'the raw app never saw the refused request');
      // Under the cap, streamed all the same (no Content-Length): the raw app gets it whole.
      const under = uploadBody(200 * 1024);
      const { inner } = await client.fetch(new Request('http://localhost/raw', { method: 'POST', body: under.body, duplex: 'half' } as RequestInit));
      assert.equal(new TextDecoder().decode(await readAll(inner.content)), under.expected);
      assert.deepEqual(seen, [200 * 1024]);
    });
  }

  /** The chunks of an exported wire body. */
  function chunksOf(wire: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    const h = { hi: 0, lo: 0, headerLength: 0, sealedLength: 0, final: false };
    for (let at = 0; at < wire.length; ) {
      assert.ok(readChunkHeader(wire.subarray(at), 16, h));
      out.push(wire.subarray(at, at + h.headerLength + h.sealedLength));
      at += h.headerLength + h.sealedLength;
    }
    return out;
  }

  for (const store of ['memory', 'async'] as const) {
    it(`exported (${store} store): cut-short, reordered and forged chunk streams are 400s with their code; the session goes on`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const handler = createAtlsHandler({ tls: tls.server, app: streamingApp(10, () => Promise.resolve()), ...(store === 'async' ? { store: new ForgetfulStore() } : {}) });
      const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, 'exported');
      const body = (): Promise<Uint8Array> => readAll(client.wire(new Request('http://localhost/hash', { method: 'POST', body: prng(3).bytes(5 * MAX_CHUNK_PLAINTEXT) })));
      const asStream = (b: Uint8Array) => new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(b), c.close()) });
      const cases: Array<[string, (c: Uint8Array[]) => Uint8Array, string]> = [
        ['cut at a chunk boundary', (c) => Buffer.concat(c.slice(0, -1)), 'MALFORMED_MESSAGE'],
        ['cut inside a chunk', (c) => Buffer.concat(c).subarray(0, -5), 'MALFORMED_MESSAGE'],
        ['two chunks swapped', (c) => Buffer.concat([c[0]!, c[2]!, c[1]!, ...c.slice(3)]), 'DECRYPT_FAILED'],
        ['a chunk dropped', (c) => Buffer.concat([c[0]!, ...c.slice(2)]), 'DECRYPT_FAILED'],
        ['a bit flipped', (c) => {
          const b = Buffer.concat(c);
          b[b.length - 100]! ^= 1;
          return b;
        }, 'DECRYPT_FAILED'],
      ];
      for (const [what, damage, code] of cases) {
        const chunks = chunksOf(await body());
        assert.ok(chunks.length >= 4);
        const res = await client.send(asStream(damage(chunks)));
        assert.equal(res.status, 400, what);
        assert.equal(res.headers.get('atls-error'), code, what);
        await res.arrayBuffer();
      }
      // A chunk stream with a Content-Length under the whole-body cap is read whole, then opened the same way.
      const whole = await client.send(await body());
      assert.equal(whole.status, 200);
      assert.match(await new Response(client.open(whole.body!)).text(), new RegExp(`${5 * MAX_CHUNK_PLAINTEXT} [0-9a-f]{64}`));
      // A whole stream replayed: chunk 0 meets the replay window.
      const good = await body();
      const ok = await client.send(asStream(good));
      assert.equal(ok.status, 200);
      await ok.arrayBuffer();
      const replay = await client.send(asStream(good));
      assert.equal(replay.status, 400);
      assert.equal(replay.headers.get('atls-error'), 'REPLAYED');
      // The session went on through all of it.
      const again = await client.fetch(new Request('http://localhost/small'));
      assert.equal(new TextDecoder().decode(await readAll(again.inner.content)), 'small answer');
    });
  }

  it('records: a body cut inside a record is a 400 TRUNCATED_FLIGHT', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const handler = createAtlsHandler({ tls: tls.server, mode: 'records', app: streamingApp(10, () => Promise.resolve()) });
    const client = await StreamingTestClient.connect(handlerPoster(handler), tls.client, 'records');
    const wire = await readAll(client.wire(new Request('http://localhost/hash', { method: 'POST', body: prng(3).bytes(200_000) })));
    const res = await client.send(new ReadableStream({ start: (c) => (c.enqueue(wire.subarray(0, wire.length - 7)), c.close()) }));
    assert.equal(res.status, 400);
    assert.equal(res.headers.get('atls-error'), 'TRUNCATED_FLIGHT');
  });

  for (const mode of ['exported', 'records'] as const satisfies readonly Mode[]) {
    it(`${mode}: over real sockets (node:http fast path), 4 MiB down and up`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      let open!: () => void;
      const gate = new Promise<void>((r) => (open = r));
      const server = createAtlsServer({ tls: tls.server, mode, app: streamingApp(4 * MiB, () => gate) });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/atls`;
        const client = await StreamingTestClient.connect(fetchPoster(url), tls.client, mode);
        const down = await client.fetch(new Request('http://localhost/slow'));
        const reader = down.inner.content.getReader();
        const first = await reader.read();
        assert.ok(!first.done);
        open();
        let n = first.value!.length;
        for (;;) {
          const r = await reader.read();
          if (r.done) break;
          n += r.value.length;
        }
        assert.equal(n, 4 * MiB);
        const small = await client.send(client.wire(new Request('http://localhost/small')));
        assert.ok(Number(small.headers.get('content-length')) > 0, 'a small answer keeps its Content-Length');
        const answer = await decodeResponseStream(client.open(small.body!));
        assert.equal(new TextDecoder().decode(await readAll(answer.content)), 'small answer');
        const up = uploadBody(4 * MiB);
        const { inner } = await client.fetch(new Request('http://localhost/hash', { method: 'POST', body: up.body, duplex: 'half' } as RequestInit));
        assert.equal(new TextDecoder().decode(await readAll(inner.content)), up.expected);
      } finally {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
    });
  }
});
