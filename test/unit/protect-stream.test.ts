/**
 * Protected streams (docs/protocol.md §4.1): round trips in every AEAD and
 * any arrival pattern, small bodies unchanged, and every tampering a
 * middlebox can do to a chunk stream detected: reordering, dropping,
 * repeating, splicing from another stream, flipping the final flag,
 * truncation (at a chunk boundary and inside a chunk), trailing bytes,
 * replaying the whole stream. The worked example of §4.1 is checked byte for byte.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { channelPair, SUITES_PER_AEAD } from '../helpers/protect-pair.js';
import { prng } from '../helpers/prng.js';
import {
  MAX_CHUNK_PLAINTEXT,
  ProtectedChannel,
  StreamOpener,
  StreamSealer,
  aeadForSuite,
  protectBody,
  unprotectBody,
} from '../../src/protect/index.js';
import { AtlsError } from '../../src/errors.js';

function streamOf(parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < parts.length) c.enqueue(parts[i++]!);
      else c.close();
    },
  });
}

async function collect(s: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(s).arrayBuffer());
}

/** Splits bytes into pieces of pseudo-random sizes (1..max). */
function pieces(bytes: Uint8Array, seed: number, max: number): Uint8Array[] {
  const rnd = prng(seed);
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; ) {
    const n = 1 + rnd.int(max);
    out.push(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

/** The chunks of a sealed stream, as separate arrays. */
function sealChunks(ch: ProtectedChannel, parts: Uint8Array[]): Uint8Array[] {
  const s = new StreamSealer(ch);
  const out = parts.slice(0, -1).flatMap((p) => s.write(p));
  out.push(...s.end(parts.at(-1)));
  return out;
}

function openAll(ch: ProtectedChannel, chunks: Uint8Array[]): Uint8Array[] {
  const o = new StreamOpener(ch);
  const out = chunks.flatMap((c) => o.push(c)).map((p) => new Uint8Array(p));
  o.end();
  return out;
}

const code = (c: string) => (e: unknown) => e instanceof AtlsError && e.code === c;

describe('protected streams', () => {
  for (const suite of SUITES_PER_AEAD) {
    it(`${suite}: bodies of every size round-trip whatever the arrival pattern; small ones stay one message`, async () => {
      const { client, server } = channelPair(suite);
      const rnd = prng(7);
      for (const size of [0, 1, 100, MAX_CHUNK_PLAINTEXT, MAX_CHUNK_PLAINTEXT + 1, 3 * MAX_CHUNK_PLAINTEXT + 5, 200_000]) {
        const body = rnd.bytes(size);
        const wire = await collect(protectBody(client, streamOf(pieces(body, size, 5000))));
        if (size <= MAX_CHUNK_PLAINTEXT) {
          // Exactly today's single message: no extra byte.
          assert.equal(wire.length, size + client.spec.tagLength + 1 + (wire[0]! & 7) + 1);
          assert.equal(wire[0]! & 0x18, 0);
        } else {
          assert.equal(wire[0]! & 0x10, 0x10);
        }
        const plain = await collect(unprotectBody(server, streamOf(pieces(wire, size + 1, 3000)), 1 << 20));
        assert.deepEqual(plain, body, `size ${size}`);
        // Pieces that hold several chunks and end inside one: the leftover is completed from the next piece.
        const again = channelPair(suite);
        const wire2 = await collect(protectBody(again.client, streamOf(pieces(body, size, 70_000))));
        assert.deepEqual(await collect(unprotectBody(again.server, streamOf(pieces(wire2, size + 2, 50_000)), 1 << 20)), body, `size ${size}, large pieces`);
      }
    });
  }

  it('chunks of one stream need not have consecutive sequence numbers (other messages in between)', () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256');
    const s = new StreamSealer(client);
    const a = s.write(new Uint8Array([1]));
    const other = client.seal(new Uint8Array([9]));
    const b = s.end(new Uint8Array([2]));
    const o = new StreamOpener(server);
    assert.deepEqual([...o.push(a[0]!)[0]!], [1]);
    assert.deepEqual([...server.open(other)], [9]);
    assert.deepEqual([...o.push(b[0]!)[0]!], [2]);
    o.end();
    assert.ok(o.done);
  });

  it('reordered, dropped, repeated and spliced chunks, a flipped final flag, truncation and trailing bytes are detected', () => {
    const parts = [new Uint8Array([1]), new Uint8Array([2]), new Uint8Array([3]), new Uint8Array([4])];
    const fresh = () => {
      const { client, server } = channelPair('TLS_AES_128_GCM_SHA256', { block: new Uint8Array(56).fill(3) });
      return { client, server, chunks: sealChunks(client, parts) };
    };
    const { server, chunks } = fresh();
    assert.deepEqual(openAll(server, chunks), parts);
    // Reordered.
    let t = fresh();
    assert.throws(() => openAll(t.server, [t.chunks[0]!, t.chunks[2]!, t.chunks[1]!, t.chunks[3]!]), code('DECRYPT_FAILED'));
    // A middle chunk dropped.
    t = fresh();
    assert.throws(() => openAll(t.server, [t.chunks[0]!, t.chunks[2]!, t.chunks[3]!]), code('DECRYPT_FAILED'));
    // A chunk repeated.
    t = fresh();
    assert.throws(() => openAll(t.server, [t.chunks[0]!, t.chunks[1]!, t.chunks[1]!, t.chunks[2]!, t.chunks[3]!]), code('DECRYPT_FAILED'));
    // Cut before the final chunk: every chunk authentic, the end missing.
    t = fresh();
    assert.throws(() => openAll(t.server, t.chunks.slice(0, 3)), code('MALFORMED_MESSAGE'));
    // Cut inside a chunk.
    t = fresh();
    assert.throws(() => openAll(t.server, [...t.chunks.slice(0, 3), t.chunks[3]!.subarray(0, 5)]), code('MALFORMED_MESSAGE'));
    // The final flag set on a middle chunk (cutting the stream there), or cleared on the last.
    t = fresh();
    const flipped = t.chunks[1]!.slice();
    flipped[0]! ^= 0x08;
    assert.throws(() => openAll(t.server, [t.chunks[0]!, flipped]), code('DECRYPT_FAILED'));
    t = fresh();
    const unfinal = t.chunks[3]!.slice();
    unfinal[0]! ^= 0x08;
    assert.throws(() => openAll(t.server, [...t.chunks.slice(0, 3), unfinal]), code('DECRYPT_FAILED'));
    // Bytes after the final chunk.
    t = fresh();
    assert.throws(() => openAll(t.server, [...t.chunks, new Uint8Array([0x30])]), code('MALFORMED_MESSAGE'));
    // A chunk of another stream of the same session, at the same index.
    t = fresh();
    const second = sealChunks(t.client, parts);
    assert.throws(() => openAll(t.server, [t.chunks[0]!, second[1]!, t.chunks[2]!, t.chunks[3]!]), code('DECRYPT_FAILED'));
    // The whole stream replayed: its first chunk is in the replay window.
    t = fresh();
    openAll(t.server, t.chunks);
    assert.throws(() => openAll(t.server, t.chunks), code('REPLAYED'));
    // A chunk is not a single message, and a single message is not a chunk.
    t = fresh();
    assert.throws(() => t.server.open(t.chunks[0]!), code('MALFORMED_MESSAGE'));
    assert.throws(() => new StreamOpener(t.server).push(t.client.seal(new Uint8Array([1]))), code('MALFORMED_MESSAGE'));
  });

  it('unprotectBody errors the stream on a reordered or truncated body, and bounds a single message', async () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256');
    const body = new Uint8Array(5 * MAX_CHUNK_PLAINTEXT).fill(1);
    const wire = await collect(protectBody(client, streamOf([body])));
    const chunk = MAX_CHUNK_PLAINTEXT + 16 + 1 + 1 + 2; // seq < 256: one sequence byte
    const swapped = new Uint8Array(wire);
    swapped.set(wire.subarray(chunk, 2 * chunk), 0);
    swapped.set(wire.subarray(0, chunk), chunk);
    await assert.rejects(collect(unprotectBody(server, streamOf([swapped]), 1 << 20)), code('DECRYPT_FAILED'));
    await assert.rejects(collect(unprotectBody(server, streamOf([wire.subarray(0, wire.length - 10)]), 1 << 20)), code('MALFORMED_MESSAGE'));
    const one = client.seal(new Uint8Array(1000));
    await assert.rejects(collect(unprotectBody(server, streamOf([one]), 500)), code('TOO_LARGE'));
  });

  it('the worked example of docs/protocol.md §4.1, byte for byte', () => {
    const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'protocol.md'), 'utf8');
    const section = doc.slice(doc.indexOf('### 4.1'), doc.indexOf('<!-- /section:protect -->'));
    const field = (name: string): string => {
      const m = new RegExp(`^${name}\\s+([0-9a-f]+)`, 'm').exec(section);
      assert.ok(m, `${name} missing from §4.1`);
      return m[1]!;
    };
    const hex = (h: string) => Buffer.from(h, 'hex');
    const block = Buffer.concat([hex(field('client_write_key')), hex(field('server_write_key')), hex(field('client_write_IV')), hex(field('server_write_IV'))]);
    const spec = aeadForSuite('TLS_AES_128_GCM_SHA256');
    const sender = ProtectedChannel.fromKeyBlock(new Uint8Array(block), spec, 'client', { initialSequence: 5 });
    const s = new StreamSealer(sender);
    const c0 = s.write(new TextEncoder().encode('hello, '));
    sender.seal(new TextEncoder().encode('other')); // another message takes sequence number 6
    const c1 = s.end(new TextEncoder().encode('atls'));
    assert.equal(Buffer.from(c0[0]!).toString('hex'), field('chunk 0'));
    assert.equal(Buffer.from(c1[0]!).toString('hex'), field('chunk 1'));
    const receiver = ProtectedChannel.fromKeyBlock(new Uint8Array(block), spec, 'server');
    const o = new StreamOpener(receiver);
    const body = hex(field('chunk 0') + field('chunk 1'));
    assert.equal(Buffer.concat(o.push(body)).toString(), 'hello, atls');
    o.end();
  });
  it('store-backed ends: chunks sealed under given numbers (sealChunkAt) and opened without the local window (authenticateChunk)', async () => {
    const { client, server } = channelPair('TLS_AES_128_GCM_SHA256');
    const numbers = [7, 8, 9, 40, 41, 42, 43, 44, 45, 46];
    const ready: number[] = [];
    const sealer = {
      seal: (p: Uint8Array) => server.sealAt(7, p),
      sealChunk: (p: Uint8Array, final: boolean, start: bigint | undefined, index: bigint) => server.sealChunkAt(numbers.shift()!, p, final, start, index),
      ready: async (n: number) => {
        ready.push(n);
      },
    };
    const data = prng(5).bytes(3 * MAX_CHUNK_PLAINTEXT + 100);
    const wire = await collect(protectBody(sealer, streamOf([data.subarray(0, 20_000), data.subarray(20_000)])));
    assert.deepEqual(ready, [2, 2, 1], 'numbers asked for before each write: 20,000 bytes need 2 chunks, the rest 2, the (empty) final 1');
    assert.equal(server.stats.sent, 5);
    const seen: bigint[] = [];
    const view = {
      spec: client.spec,
      openChunk: (c: Uint8Array, start: bigint | undefined, index: bigint) => {
        const r = client.authenticateChunk(c, start, index);
        seen.push(r.seq);
        return r;
      },
    };
    const o = new StreamOpener(view);
    assert.deepEqual(Buffer.concat(o.push(wire)), Buffer.from(data));
    o.end();
    assert.deepEqual(seen, [7n, 8n, 9n, 40n, 41n]);
    // No window was touched: the same stream opens again here (the store's window is the judge).
    assert.deepEqual(Buffer.concat(new StreamOpener(view).push(wire)), Buffer.from(data));
    // ...while a channel's own window refuses the replay.
    const o2 = new StreamOpener(client);
    o2.push(wire);
    assert.throws(() => new StreamOpener(client).push(wire), code('REPLAYED'));
    // A small complete body is one message under the committed number.
    const one = await collect(protectBody(sealer, streamOf([new Uint8Array([1, 2, 3])])));
    assert.equal(one[0], 0x20);
    assert.equal(one[1], 7);
  });
});
