/**
 * Streamed answers and requests of sessions kept in a real redis-server: two
 * handlers (two processes' worth of state) share one Redis; two 4 MiB
 * answers of ONE session streamed at once, one from each handler, never
 * seal two chunks under one sequence number (the store's `reserve`), cost a
 * handful of Redis round trips each (blocks of 4, 8, ... 256 numbers), and
 * a 4 MiB chunk-stream request is committed once and reaches the app whole.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { StreamingTestClient, handlerPoster } from '../helpers/stream-client.js';
import { clientCommandsDuring, redisIfInstalled, type RedisServer } from '../helpers/redis.js';
import { RedisStateStore } from '../../src/store/redis.js';
import { createAtlsHandler, type AtlsApp, type AtlsHandler } from '../../src/http/server.js';
import { readChunkHeader } from '../../src/protect/header.js';
import { decodeResponseStream } from '../../src/bhttp/stream.js';
import { COOKIE_NAME, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { prng } from '../helpers/prng.js';

const MiB = 1024 * 1024;
const SIZE = 4 * MiB;

const app: AtlsApp = async (req) => {
  if (req.method === 'POST') {
    const h = createHash('sha256');
    let n = 0;
    for await (const p of req.body as unknown as AsyncIterable<Uint8Array>) {
      h.update(p);
      n += p.length;
    }
    return new Response(`${n} ${h.digest('hex')}`);
  }
  const data = prng(9).bytes(SIZE);
  let at = 0;
  return new Response(
    new ReadableStream({
      async pull(c) {
        if (at >= SIZE) return c.close();
        await new Promise((r) => setImmediate(r)); // not at hand: the answer streams
        c.enqueue(data.subarray(at, at + 100_000));
        at += 100_000;
      },
    }),
  );
};

/** Sequence numbers of the chunks of an exported wire body. */
function chunkSeqs(wire: Uint8Array): number[] {
  const out: number[] = [];
  const h = { hi: 0, lo: 0, headerLength: 0, sealedLength: 0, final: false };
  for (let at = 0; at < wire.length; at += h.headerLength + h.sealedLength) {
    assert.ok(readChunkHeader(wire.subarray(at), 16, h), 'a whole chunk');
    out.push(h.hi * 2 ** 32 + h.lo);
  }
  return out;
}

const one = (b: Uint8Array) => new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(b), c.close()) });

describe('streamed bodies with sessions in Redis', () => {
  let redis: RedisServer | undefined;
  let pki: TestPki;
  const opened: Array<{ h: AtlsHandler; s: RedisStateStore }> = [];
  before(async () => {
    redis = await redisIfInstalled();
    pki = await testPki();
  });
  after(async () => {
    for (const o of opened) await o.s.close();
    await redis?.stop();
  });

  it('two handlers stream answers of one session at once: distinct numbers, few round trips; a streamed request is committed once', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const [a, b] = await Promise.all(
      [0, 1].map(async () => {
        const s = new RedisStateStore({ url: redis!.url });
        assert.ok(await s.ready(5000), 'connected');
        const h = createAtlsHandler({ tls: tls.server, app, store: s });
        opened.push({ h, s });
        return h;
      }),
    );
    const client = await StreamingTestClient.connect(handlerPoster(a!), tls.client, 'exported');
    const via = (h: AtlsHandler, body: ReadableStream<Uint8Array>) =>
      handlerPoster(h)(body, { 'content-type': MEDIA_TYPE_PROTECTED, cookie: `${COOKIE_NAME}=${client.cookie}` });
    let wires: Uint8Array[] = [];
    const calls = await clientCommandsDuring(redis, async () => {
      wires = await Promise.all(
        [a!, b!].map(async (h) => {
          const res = await via(h, client.wire(new Request('http://localhost/down')));
          assert.equal(res.status, 200);
          return new Uint8Array(await res.arrayBuffer());
        }),
      );
    });
    const seqs = wires.flatMap(chunkSeqs);
    assert.ok(seqs.length >= 2 * (SIZE / 16384));
    assert.equal(new Set(seqs).size, seqs.length, 'no sequence number sealed twice, whichever handler sealed it');
    // Per answer: one commit, then blocks of 4, 8, ..., 256 numbers for 257 chunks and more.
    const evals = calls.get('evalsha') ?? 0;
    assert.ok(evals <= 2 * 10, `Redis round trips for two 4 MiB answers: ${evals}`);
    for (const w of wires) {
      const inner = await decodeResponseStream(client.open(one(w)));
      const got = new Uint8Array(await new Response(inner.content).arrayBuffer());
      assert.equal(Buffer.compare(got, prng(9).bytes(SIZE)), 0);
    }
    // A chunk-stream request through the other handler.
    const up = prng(4).bytes(SIZE);
    const res = await via(b!, client.wire(new Request('http://localhost/up', { method: 'POST', body: up })));
    assert.equal(res.status, 200);
    const inner = await decodeResponseStream(client.open(res.body!));
    assert.equal(await new Response(inner.content).text(), `${SIZE} ${createHash('sha256').update(up).digest('hex')}`);
  });
});
