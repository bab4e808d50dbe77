/**
 * Binary HTTP test material: a test-only encoder of the indeterminate-length
 * form (RFC 9292 §3.2) with any chunking, random valid messages, and byte
 * streams cut into pieces.
 */
import { concatBytes } from '../../src/bytes.js';
import { varintLength, writeVarint, type BhttpRequest, type BhttpResponse, type FieldLine } from '../../src/bhttp/index.js';
import { fromHex } from '../../src/bytes.js';
import { encodeRequest, encodeResponse } from '../../src/bhttp/index.js';
import * as V from '../vectors/rfc9292.js';
import type { Prng } from './prng.js';

export function varint(v: number): Uint8Array {
  const out = new Uint8Array(varintLength(v));
  writeVarint(out, 0, v);
  return out;
}

export function lp(b: Uint8Array | string): Uint8Array {
  const bytes = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  return concatBytes([varint(bytes.length), bytes]);
}

/** Test-only encoder of the indeterminate-length form (RFC 9292 §3.2), content split in chunks. */
export function indeterminateFields(fields: FieldLine[]): Uint8Array {
  return concatBytes([...fields.flatMap(([n, v]) => [lp(n), lp(v)]), varint(0)]);
}
export function indeterminateContent(content: Uint8Array, chunk: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < content.length; i += chunk) parts.push(lp(content.subarray(i, i + chunk)));
  return concatBytes([...parts, varint(0)]);
}
export function indeterminateRequest(r: BhttpRequest, chunk = 3): Uint8Array {
  return concatBytes([
    varint(2),
    lp(r.method),
    lp(r.scheme),
    lp(r.authority),
    lp(r.path),
    indeterminateFields(r.headers),
    indeterminateContent(r.content, chunk),
    indeterminateFields(r.trailers),
  ]);
}
export function indeterminateResponse(r: BhttpResponse, chunk = 3): Uint8Array {
  return concatBytes([
    varint(3),
    ...r.informational.flatMap((i) => [varint(i.status), indeterminateFields(i.headers)]),
    varint(r.status),
    indeterminateFields(r.headers),
    indeterminateContent(r.content, chunk),
    indeterminateFields(r.trailers),
  ]);
}

export function randomToken(rnd: Prng, min = 1): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~";
  let s = '';
  const n = min + rnd.int(12);
  for (let i = 0; i < n; i++) s += alphabet[rnd.int(alphabet.length)];
  return s;
}
export function randomValue(rnd: Prng): string {
  let s = '';
  const n = rnd.int(20);
  for (let i = 0; i < n; i++) {
    let c = 0;
    while (c === 0 || c === 0x0a || c === 0x0d) c = rnd.int(256);
    s += String.fromCharCode(c);
  }
  return s.replace(/^[ \t]+|[ \t]+$/g, '');
}
export function randomFields(rnd: Prng, max: number): FieldLine[] {
  return Array.from({ length: rnd.int(max + 1) }, () => [randomToken(rnd), randomValue(rnd)] as FieldLine);
}
export function randomRequest(rnd: Prng): BhttpRequest {
  return {
    method: rnd.pick(['GET', 'POST', 'PUT', 'PATCH', 'X-CUSTOM']),
    scheme: rnd.pick(['https', 'http', 'coap+tcp']),
    authority: rnd.pick(['', 'example.com', 'a.example:8443', '[::1]:80']),
    path: rnd.pick(['/', '*', '/a/b?c=d&e=%20', '/' + randomToken(rnd).replaceAll('#', '-')]),
    headers: randomFields(rnd, 6),
    content: rnd.bytes(rnd.pick([0, 1, 63, 64, 300, 20000])),
    trailers: randomFields(rnd, 3),
  };
}
export function randomResponse(rnd: Prng): BhttpResponse {
  return {
    informational: Array.from({ length: rnd.int(3) }, () => ({ status: 100 + rnd.int(100), headers: randomFields(rnd, 2) })),
    status: 200 + rnd.int(400),
    headers: randomFields(rnd, 6),
    content: rnd.bytes(rnd.pick([0, 1, 64, 300])),
    trailers: randomFields(rnd, 3),
  };
}


/** A stream of `bytes` in pieces of the given sizes (the rest as one last piece). */
export function streamOf(bytes: Uint8Array, sizes: number[] = []): ReadableStream<Uint8Array> {
  const pieces: Uint8Array[] = [];
  let at = 0;
  for (const n of sizes) {
    if (at >= bytes.length) break;
    pieces.push(bytes.slice(at, at + n));
    at += n;
  }
  if (at < bytes.length) pieces.push(bytes.slice(at));
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const next = pieces.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

/** Random piece sizes covering `total` bytes (1-byte pieces now and then). */
export function randomSplits(rnd: Prng, total: number): number[] {
  const sizes: number[] = [];
  for (let left = total; left > 0; ) {
    const n = Math.min(left, rnd.next() < 0.3 ? 1 : 1 + rnd.int(Math.max(1, total >> 2)));
    sizes.push(n);
    left -= n;
  }
  return sizes;
}

/** Every byte of a stream. */
export async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of stream) parts.push(p);
  return concatBytes(parts);
}

/** One to four random edits of `src` (bit flips, varint-ish bytes, cuts, insertions, deletions, duplications). */
export function mutate(rnd: Prng, src: Uint8Array): Uint8Array {
  let b: Uint8Array = src.slice();
  const n = 1 + rnd.int(4);
  for (let i = 0; i < n; i++) {
    const at = b.length === 0 ? 0 : rnd.int(b.length);
    switch (rnd.int(7)) {
      case 0: // flip a bit
        if (b.length) b[at]! ^= 1 << rnd.int(8);
        break;
      case 1: // random byte
        if (b.length) b[at] = rnd.int(256);
        break;
      case 2: // interesting varint-ish byte
        if (b.length) b[at] = rnd.pick([0x00, 0x3f, 0x40, 0x7f, 0x80, 0xbf, 0xc0, 0xff, 0x3a, 0x41, 0x0d]);
        break;
      case 3: // truncate
        b = b.subarray(0, at);
        break;
      case 4: // insert random bytes
        b = concatBytes([b.subarray(0, at), rnd.bytes(1 + rnd.int(4)), b.subarray(at)]);
        break;
      case 5: // delete a run
        b = concatBytes([b.subarray(0, at), b.subarray(at + 1 + rnd.int(4))]);
        break;
      default: // duplicate a slice
        b = concatBytes([b.subarray(0, at), b.subarray(at, at + rnd.int(16)), b.subarray(at)]);
    }
  }
  return b;
}

/** Inputs to mutate: the RFC 9292 examples and random messages in both framings. */
export function fuzzSeeds(rnd: Prng): Uint8Array[] {
  const seeds = [
    fromHex(V.REQUEST_KNOWN_LENGTH_FIGURE_8),
    fromHex(V.REQUEST_INDETERMINATE_LENGTH_FIGURE_9),
    fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11),
    fromHex(V.RESPONSE_KNOWN_LENGTH_FIGURE_13),
  ];
  for (let i = 0; i < 20; i++) {
    seeds.push(encodeRequest(randomRequest(rnd)), encodeResponse(randomResponse(rnd)));
    seeds.push(indeterminateRequest(randomRequest(rnd), 1 + rnd.int(300)), indeterminateResponse(randomResponse(rnd), 1 + rnd.int(300)));
  }
  return seeds;
}
