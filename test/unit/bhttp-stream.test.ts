// Binary HTTP as streams (RFC 9292 §3.2): the RFC's examples byte for byte,
// every split of the input, the head before the content, bounds, cuts, and
// the fetch converters that pick the known-length form for small bodies.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError, type AtlsErrorCode } from '../../src/errors.js';
import { readFileSync } from 'node:fs';
import { concatBytes, fromHex, toHex } from '../../src/bytes.js';
import {
  bhttpStreamToRequest,
  bhttpStreamToResponse,
  decodeRequest,
  decodeRequestStream,
  decodeResponse,
  decodeResponseStream,
  encodeContentChunks,
  encodeContentPiece,
  encodeEnd,
  encodeRequest,
  encodeRequestStream,
  encodeResponse,
  encodeResponseStream,
  MAX_CHUNK_CONTENT,
  requestToBhttp,
  requestToBhttpStream,
  responseToBhttp,
  responseToBhttpStream,
  type BhttpRequest,
  type BhttpResponse,
  type BhttpStreamedRequest,
  type BhttpStreamedResponse,
} from '../../src/bhttp/index.js';
import * as V from '../vectors/rfc9292.js';
import { prng } from '../helpers/prng.js';
import { collect, indeterminateRequest, indeterminateResponse, randomRequest, randomResponse, randomSplits, streamOf } from '../helpers/bhttp.js';

const te = new TextEncoder();
const td = new TextDecoder();

async function rejectsCode(p: Promise<unknown>, code: AtlsErrorCode, source: 'local' | 'remote' = 'remote'): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AtlsError, `expected AtlsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.source, source);
    return true;
  });
}

/** A stream we feed by hand, to see what the other side does before the rest exists. */
function manualStream(): { stream: ReadableStream<Uint8Array>; push(b: Uint8Array): void; end(): void } {
  let c!: ReadableStreamDefaultController<Uint8Array>;
  const stream = new ReadableStream<Uint8Array>({ start: (controller) => void (c = controller) });
  return { stream, push: (b) => c.enqueue(b), end: () => c.close() };
}

async function fullRequest(r: BhttpStreamedRequest): Promise<BhttpRequest> {
  const content = await collect(r.content);
  return { method: r.method, scheme: r.scheme, authority: r.authority, path: r.path, headers: r.headers, content, trailers: r.trailers };
}

async function fullResponse(r: BhttpStreamedResponse): Promise<BhttpResponse> {
  const content = await collect(r.content);
  return { informational: r.informational, status: r.status, headers: r.headers, content, trailers: r.trailers };
}

const figure7: BhttpRequest = { ...V.REQUEST_FIGURE_7, content: new Uint8Array(0), trailers: [] };

describe('stream encoder: RFC 9292 §5 examples', () => {
  it('Figure 7 without content is Figure 9 without its 10 bytes of padding', async () => {
    const fig9 = fromHex(V.REQUEST_INDETERMINATE_LENGTH_FIGURE_9);
    const wire = await collect(encodeRequestStream(V.REQUEST_FIGURE_7, null));
    assert.equal(toHex(concatBytes([wire, new Uint8Array(10)])), toHex(fig9));
  });

  it('Figure 10 with its content as one piece is Figure 11 exactly', async () => {
    const fig11 = fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11);
    const { content, ...head } = V.RESPONSE_FIGURE_10;
    const wire = await collect(encodeResponseStream(head, streamOf(te.encode(content))));
    assert.equal(toHex(wire), toHex(fig11));
  });

  it('the head goes out before any content exists; each piece as it comes', async () => {
    const body = manualStream();
    const reader = encodeResponseStream({ status: 200, headers: [['content-type', 'text/plain']] }, body.stream).getReader();
    const head = await reader.read();
    assert.equal(toHex(head.value!), '0340c80c636f6e74656e742d747970650a746578742f706c61696e00');
    body.push(te.encode('ab'));
    assert.equal(toHex((await reader.read()).value!), '026162');
    body.push(new Uint8Array(0)); // an empty piece is no chunk (a zero length would end the content)
    body.push(te.encode('c'));
    assert.equal(toHex((await reader.read()).value!), '0163');
    body.end();
    assert.equal(toHex((await reader.read()).value!), '0000');
    assert.equal((await reader.read()).done, true);
  });

  it('splits large pieces into chunks of at most 16,384 encoded bytes and writes trailers', async () => {
    const big = new Uint8Array(MAX_CHUNK_CONTENT * 2 + 5).fill(7);
    const chunks = encodeContentChunks(big);
    assert.deepEqual(chunks.map((c) => c.length), [16384, 16384, 6]);
    // One buffer for a streamed piece: the same chunks, byte for byte.
    for (const n of [0, 1, MAX_CHUNK_CONTENT, MAX_CHUNK_CONTENT + 1, 65536]) {
      const content = big.length >= n ? big.subarray(0, n) : new Uint8Array(n).fill(3);
      assert.deepEqual(encodeContentPiece(content), concatBytes(encodeContentChunks(content)), `${n} bytes`);
    }
    assert.equal(toHex(encodeEnd([['t', 'v']])), '000174017600');
    const wire = await collect(encodeRequestStream({ method: 'PUT', scheme: 'https', authority: 'a.example', path: '/x' }, streamOf(big), { trailers: () => [['t', 'v']] }));
    const back = decodeRequest(wire);
    assert.deepEqual(back.content, big);
    assert.deepEqual(back.trailers, [['t', 'v']]);
  });

  it('refuses invalid heads at the call (local INVALID_ARGUMENT) and non-bytes content in the stream', async () => {
    assert.throws(() => encodeRequestStream({ method: 'G T', scheme: 'https', path: '/' }, null), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    assert.throws(() => encodeResponseStream({ status: 99 }, null), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    const bad = new ReadableStream({ start: (c) => c.enqueue('text' as never) });
    await rejectsCode(collect(encodeResponseStream({ status: 200 }, bad)), 'INVALID_ARGUMENT', 'local');
  });

  it('knownLengthMax: a small body at hand is the known-length message, byte for byte', async () => {
    const rnd = prng(5);
    for (let i = 0; i < 50; i++) {
      const req = randomRequest(rnd);
      const { content, trailers, ...head } = req;
      const opts = { truncate: rnd.next() < 0.5, padding: rnd.pick([0, 3]) };
      const wire = await collect(encodeRequestStream(head, streamOf(content, [1, 7]), { ...opts, knownLengthMax: 1 << 20, trailers: () => trailers }));
      assert.equal(toHex(wire), toHex(encodeRequest(req, opts)));
    }
  });

  it('knownLengthMax: a body over the bound or not at hand streams, head first', async () => {
    const head = { status: 200, headers: [['x', 'y']] as Array<[string, string]> };
    const over = await collect(encodeResponseStream(head, streamOf(new Uint8Array(100)), { knownLengthMax: 99 }));
    assert.equal(over[0], 3);
    const body = manualStream();
    const reader = encodeResponseStream(head, body.stream, { knownLengthMax: 1 << 20 }).getReader();
    body.push(te.encode('early'));
    const first = await reader.read(); // the producer stalls: the head goes out alone
    assert.equal(toHex(first.value!), '0340c80178017900');
    assert.equal(td.decode((await reader.read()).value!.subarray(1)), 'early');
    body.end();
    assert.equal(toHex((await reader.read()).value!), '0000');
  });
});

describe('stream decoder', () => {
  it('decodes the RFC examples (both framings) fed one byte at a time', async () => {
    const ones = (b: Uint8Array) => streamOf(b, Array.from({ length: b.length }, () => 1));
    const fig8 = fromHex(V.REQUEST_KNOWN_LENGTH_FIGURE_8);
    const fig9 = fromHex(V.REQUEST_INDETERMINATE_LENGTH_FIGURE_9);
    for (const bytes of [fig8, fig9]) {
      const r = await decodeRequestStream(ones(bytes));
      assert.deepEqual(await fullRequest(r), figure7);
    }
    assert.equal((await decodeRequestStream(ones(fig8))).framing, 'known-length');
    assert.equal((await decodeRequestStream(ones(fig9))).framing, 'indeterminate-length');
    const fig11 = await fullResponse(await decodeResponseStream(ones(fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11))));
    assert.deepEqual(fig11.informational, V.RESPONSE_FIGURE_10.informational);
    assert.deepEqual(fig11.headers, V.RESPONSE_FIGURE_10.headers);
    assert.equal(td.decode(fig11.content), V.RESPONSE_FIGURE_10.content);
    const fig13 = await fullResponse(await decodeResponseStream(ones(fromHex(V.RESPONSE_KNOWN_LENGTH_FIGURE_13))));
    assert.equal(td.decode(fig13.content), V.RESPONSE_FIGURE_12.content);
    assert.deepEqual(fig13.trailers, V.RESPONSE_FIGURE_12.trailers);
  });

  it('agrees with the whole-message decoder on random messages, any framing, any split', async () => {
    const rnd = prng(6);
    for (let i = 0; i < 60; i++) {
      const req = randomRequest(rnd);
      const known = rnd.next() < 0.5;
      const reqBytes = known ? encodeRequest(req, { truncate: rnd.next() < 0.5, padding: rnd.pick([0, 4]) }) : indeterminateRequest(req, 1 + rnd.int(400));
      const r = await decodeRequestStream(streamOf(reqBytes, randomSplits(rnd, reqBytes.length)));
      assert.deepEqual(await fullRequest(r), decodeRequest(reqBytes), `request ${i}`);
      const res = randomResponse(rnd);
      const resBytes = known ? encodeResponse(res) : indeterminateResponse(res, 1 + rnd.int(400));
      const s = await decodeResponseStream(streamOf(resBytes, randomSplits(rnd, resBytes.length)));
      assert.deepEqual(await fullResponse(s), decodeResponse(resBytes), `response ${i}`);
    }
  });

  it('gives the head as soon as it is complete, and the content piece by piece', async () => {
    const body = manualStream();
    const head = encodeResponseStream({ status: 206, headers: [['a', 'b']] }, null);
    const headBytes = (await head.getReader().read()).value!;
    body.push(headBytes.subarray(0, 3));
    const pending = decodeResponseStream(body.stream);
    body.push(headBytes.subarray(3));
    const res = await pending; // nothing after the head exists yet
    assert.equal(res.status, 206);
    assert.deepEqual(res.headers, [['a', 'b']]);
    const reader = res.content.getReader();
    body.push(concatBytes([...encodeContentChunks(te.encode('first'))]));
    assert.equal(td.decode((await reader.read()).value!), 'first');
    body.push(concatBytes([...encodeContentChunks(te.encode('second')), encodeEnd([['t', '1']])]));
    assert.equal(td.decode((await reader.read()).value!), 'second');
    body.end();
    assert.equal((await reader.read()).done, true);
    assert.deepEqual(res.trailers, [['t', '1']]);
  });

  it('streams a known-length message\'s content without gathering it', async () => {
    const content = new Uint8Array(1 << 20).fill(9);
    const bytes = encodeResponse({ status: 200, content });
    const res = await decodeResponseStream(streamOf(bytes, Array.from({ length: 64 }, () => 1 << 14)), { maxContent: 1 << 20 });
    let pieces = 0;
    let total = 0;
    for await (const p of res.content) {
      pieces++;
      total += p.length;
      assert.ok(p.length <= 1 << 14);
    }
    assert.equal(total, 1 << 20);
    assert.ok(pieces >= 64);
  });

  it('refuses more content than maxContent, in both framings (TOO_LARGE in the content stream)', async () => {
    const req = { ...figure7, method: 'POST', content: new Uint8Array(1000) };
    for (const bytes of [encodeRequest(req), indeterminateRequest(req, 100)]) {
      const r = await decodeRequestStream(streamOf(bytes), { maxContent: 999 });
      await rejectsCode(collect(r.content), 'TOO_LARGE');
      const ok = await decodeRequestStream(streamOf(bytes), { maxContent: 1000 });
      assert.equal((await collect(ok.content)).length, 1000);
    }
  });

  it('refuses heads over the field limits before buffering them (TOO_LARGE)', async () => {
    const many = { ...figure7, headers: Array.from({ length: 20 }, (_, i) => [`f${i}`, 'v'] as [string, string]) };
    for (const bytes of [encodeRequest(many), indeterminateRequest(many)]) {
      await rejectsCode(decodeRequestStream(streamOf(bytes), { maxFields: 19 }), 'TOO_LARGE');
      await rejectsCode(decodeRequestStream(streamOf(bytes), { maxFieldBytes: 40 }), 'TOO_LARGE');
    }
    // A known-length section that claims 1 GiB is refused from its length alone.
    const huge = fromHex('0003474554056874747073000a2f68656c6c6f2e747874c000000040000000');
    await rejectsCode(decodeRequestStream(streamOf(huge)), 'TOO_LARGE');
    // Control data is bounded too.
    const longPath = concatBytes([fromHex('0003474554056874747073'), fromHex('00'), fromHex('80100000')]);
    await rejectsCode(decodeRequestStream(streamOf(longPath), { maxFieldBytes: 1024 }), 'TOO_LARGE');
    // Informational responses are counted.
    const infos = concatBytes([fromHex('03'), ...Array.from({ length: 17 }, () => fromHex('406400')), fromHex('40c800')]);
    await rejectsCode(decodeResponseStream(streamOf(infos)), 'TOO_LARGE');
  });

  it('accepts cuts only where RFC 9292 §3.8 allows them; elsewhere MALFORMED_MESSAGE', async () => {
    const req: BhttpRequest = { method: 'POST', scheme: 'https', authority: 'a.example', path: '/p', headers: [['a', 'b']], content: te.encode('hello'), trailers: [['t', 'v']] };
    for (const bytes of [encodeRequest(req), indeterminateRequest(req, 2)]) {
      for (let k = 0; k <= bytes.length; k++) {
        const cut = bytes.subarray(0, k);
        let expected: BhttpRequest | AtlsError;
        try {
          expected = decodeRequest(cut);
        } catch (e) {
          expected = e as AtlsError;
        }
        const got = await decodeRequestStream(streamOf(cut)).then(fullRequest).catch((e: unknown) => e as AtlsError);
        if (expected instanceof AtlsError) {
          assert.ok(got instanceof AtlsError, `cut at ${k}: accepted`);
          assert.equal(got.code, 'MALFORMED_MESSAGE', `cut at ${k}`);
        } else {
          assert.deepEqual(got, expected, `cut at ${k}`);
        }
      }
    }
  });

  it('refuses non-zero padding, a message of the other kind, and passes the input\'s own error through', async () => {
    const padded = concatBytes([encodeResponse({ status: 200 }), fromHex('0001')]);
    await rejectsCode(decodeResponseStream(streamOf(padded)).then(fullResponse), 'MALFORMED_MESSAGE');
    await rejectsCode(decodeResponseStream(streamOf(fromHex(V.REQUEST_KNOWN_LENGTH_FIGURE_8))), 'MALFORMED_MESSAGE');
    await rejectsCode(decodeRequestStream(streamOf(fromHex('04'))), 'MALFORMED_MESSAGE');
    const failing = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(encodeResponseHead200());
      },
      pull(c) {
        c.error(new AtlsError('DECRYPT_FAILED', 'chunk 3 failed', { source: 'remote' }));
      },
    });
    const res = await decodeResponseStream(failing);
    await rejectsCode(collect(res.content), 'DECRYPT_FAILED');
    const reset = new ReadableStream<Uint8Array>({ pull: (c) => c.error(new Error('socket hang up')) });
    await rejectsCode(decodeResponseStream(reset), 'TRUNCATED_FLIGHT');
  });

  it('cancelling the content cancels the input', async () => {
    let cancelled: unknown;
    const input = new ReadableStream<Uint8Array>({
      start: (c) => c.enqueue(concatBytes([encodeResponseHead200(), ...encodeContentChunks(te.encode('x'))])),
      cancel: (reason) => void (cancelled = reason ?? 'cancelled'),
    });
    const res = await decodeResponseStream(input);
    const reader = res.content.getReader();
    await reader.read();
    await reader.cancel('enough');
    assert.equal(cancelled, 'enough');
  });
});

function encodeResponseHead200(): Uint8Array {
  return fromHex('0340c800');
}

describe('fetch converters, streamed', () => {
  it('a small complete Request or Response encodes exactly as the whole-message converters do', async () => {
    const mk = () => new Request('https://a.example/x?y=1', { method: 'POST', body: 'hello', headers: { 'x-a': '1', connection: 'close' } });
    assert.equal(toHex(await collect(requestToBhttpStream(mk()))), toHex(await requestToBhttp(mk())));
    const res = () => new Response('ok', { status: 201, headers: { 'content-type': 'text/plain' } });
    assert.equal(toHex(await collect(responseToBhttpStream(res()))), toHex(await responseToBhttp(res())));
    assert.equal(toHex(await collect(responseToBhttpStream(new Response(null, { status: 204 })))), toHex(await responseToBhttp(new Response(null, { status: 204 }))));
  });

  it('a streamed request body arrives as a streamed Request body (duplex half)', async () => {
    const body = manualStream();
    const wire = requestToBhttpStream(new Request('https://a.example/up', { method: 'PUT', body: body.stream, duplex: 'half' } as RequestInit));
    const reqP = bhttpStreamToRequest(wire);
    body.push(te.encode('part1'));
    const req = await reqP; // before the body has ended
    assert.equal(req.method, 'PUT');
    assert.equal(req.url, 'https://a.example/up');
    const reader = req.body!.getReader();
    assert.equal(td.decode((await reader.read()).value!), 'part1');
    body.push(te.encode('part2'));
    assert.equal(td.decode((await reader.read()).value!), 'part2');
    body.end();
    assert.equal((await reader.read()).done, true);
  });

  it('a streamed Response arrives with its status and headers before its body ends', async () => {
    const body = manualStream();
    const wire = responseToBhttpStream(new Response(body.stream, { status: 200, headers: { 'content-type': 'application/octet-stream' } }));
    const resP = bhttpStreamToResponse(wire);
    const res = await resP;
    assert.equal(res.status, 200);
    assert.equal(res.statusText, 'OK');
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    body.push(new Uint8Array(100_000).fill(1));
    body.end();
    assert.equal((await res.arrayBuffer()).byteLength, 100_000);
  });

  it('keeps the whole-message rules: content-length must agree, GET has no content, 204 has none', async () => {
    const lying = { method: 'POST', scheme: 'https', authority: 'a.example', path: '/', headers: [['content-length', '3']] as Array<[string, string]> };
    const req = await bhttpStreamToRequest(encodeRequestStream(lying, streamOf(te.encode('four'))));
    await rejectsCode(req.arrayBuffer(), 'MALFORMED_MESSAGE');
    const short = await bhttpStreamToRequest(encodeRequestStream(lying, streamOf(te.encode('tw'))));
    await rejectsCode(short.arrayBuffer(), 'MALFORMED_MESSAGE');
    const exact = await bhttpStreamToRequest(encodeRequestStream(lying, streamOf(te.encode('two'))));
    assert.equal(await exact.text(), 'two');
    const get = { method: 'GET', scheme: 'https', authority: 'a.example', path: '/' };
    await rejectsCode(bhttpStreamToRequest(encodeRequestStream(get, streamOf(te.encode('x')))), 'UNSUPPORTED');
    assert.equal((await bhttpStreamToRequest(encodeRequestStream(get, null))).body, null);
    await rejectsCode(bhttpStreamToResponse(encodeResponseStream({ status: 204 }, streamOf(te.encode('x')))), 'MALFORMED_MESSAGE');
    await rejectsCode(bhttpStreamToRequest(encodeRequestStream({ method: 'CONNECT', scheme: 'https', authority: 'a.example:443', path: '' }, null)), 'UNSUPPORTED');
  });
});

describe('docs/protocol.md §5.4 worked example', () => {
  it('is what the stream encoder emits, piece for piece', async () => {
    const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    const block = doc.slice(doc.indexOf('<!-- bhttp-stream-example -->'));
    const start = block.indexOf('```text') + 8;
    const lines = block.slice(start, block.indexOf('```', start)).trim().split('\n');
    const documented = lines.map((l) => l.split(/\s+/)[0]);
    const pieces = [te.encode('hello, '), te.encode('atls')];
    const body = new ReadableStream<Uint8Array>({ pull: (c) => void (pieces.length ? c.enqueue(pieces.shift()!) : c.close()) });
    const emitted: string[] = [];
    for await (const b of encodeResponseStream({ status: 200, headers: [['content-type', 'text/plain']] }, body)) emitted.push(toHex(b));
    assert.deepEqual(emitted, documented);
  });
});
