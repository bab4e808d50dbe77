import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError, type AtlsErrorCode } from '../../src/errors.js';
import { ByteReader, concatBytes, fromHex, toHex } from '../../src/bytes.js';
import {
  bhttpToRequest,
  bhttpToResponse,
  decodeMessage,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  readVarint,
  requestToBhttp,
  responseToBhttp,
  type BhttpRequest,
  type FieldLine,
} from '../../src/bhttp/index.js';
import * as V from '../vectors/rfc9292.js';
import { prng } from '../helpers/prng.js';
import { indeterminateRequest, indeterminateResponse, lp, fuzzSeeds, mutate, randomRequest, randomResponse, varint } from '../helpers/bhttp.js';

const te = new TextEncoder();
const td = new TextDecoder();

function throwsCode(fn: () => unknown, code: AtlsErrorCode, source?: 'local' | 'remote'): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof AtlsError, `expected AtlsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (source) assert.equal(e.source, source);
    return true;
  });
}

async function rejectsCode(p: Promise<unknown>, code: AtlsErrorCode, source?: 'local' | 'remote'): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AtlsError, `expected AtlsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (source) assert.equal(e.source, source);
    return true;
  });
}

const figure7: BhttpRequest = { ...V.REQUEST_FIGURE_7, content: new Uint8Array(0), trailers: [] };

describe('varint (RFC 9000 §16)', () => {
  it('decodes the RFC 9000 §A.1 samples, including a non-minimal one', () => {
    for (const [hex, value] of V.VARINT_SAMPLES) {
      const r = new ByteReader(fromHex(hex), 'MALFORMED_MESSAGE');
      const got = readVarint(r);
      assert.equal(r.remaining, 0);
      if (typeof value === 'bigint') assert.ok(Math.abs(got - Number(value)) < 2 ** 10, `${hex}`);
      else assert.equal(got, value);
    }
  });

  it('round-trips at every length boundary with the shortest encoding', () => {
    for (const v of [0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
      const b = varint(v);
      assert.equal(b.length, v < 64 ? 1 : v < 16384 ? 2 : v < 2 ** 30 ? 4 : 8);
      assert.equal(readVarint(new ByteReader(b, 'MALFORMED_MESSAGE')), v);
    }
    assert.equal(toHex(varint(15293)), '7bbd');
    assert.equal(toHex(varint(494878333)), '9d7f3e7d');
  });

  it('refuses values it cannot encode and truncated input', () => {
    throwsCode(() => varint(-1), 'INVALID_ARGUMENT', 'local');
    throwsCode(() => varint(1.5), 'INVALID_ARGUMENT', 'local');
    throwsCode(() => readVarint(new ByteReader(fromHex('c2197c'), 'MALFORMED_MESSAGE')), 'MALFORMED_MESSAGE', 'remote');
  });
});

describe('RFC 9292 §5 examples', () => {
  const fig8 = fromHex(V.REQUEST_KNOWN_LENGTH_FIGURE_8);

  it('encodes Figure 7 to the Figure 8 bytes exactly (names lower-cased)', () => {
    const bytes = encodeRequest({
      method: 'GET',
      scheme: 'https',
      authority: '',
      path: '/hello.txt',
      headers: [
        ['User-Agent', 'curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3'],
        ['Host', 'www.example.com'],
        ['Accept-Language', 'en, mi'],
      ],
    });
    assert.equal(toHex(bytes), toHex(fig8));
  });

  it('decodes Figure 8, and Figure 8 with its last one or two bytes truncated (§5.1, §3.8)', () => {
    for (const cut of [0, 1, 2]) assert.deepEqual(decodeRequest(fig8.subarray(0, fig8.length - cut)), figure7);
    assert.equal(toHex(encodeRequest(figure7, { truncate: true })), toHex(fig8.subarray(0, fig8.length - 2)));
  });

  it('decodes Figure 9 (indeterminate-length, 10 bytes of padding), also with up to 12 bytes removed', () => {
    const fig9 = fromHex(V.REQUEST_INDETERMINATE_LENGTH_FIGURE_9);
    for (let cut = 0; cut <= 12; cut++) assert.deepEqual(decodeRequest(fig9.subarray(0, fig9.length - cut)), figure7);
    // 13 bytes cut ends inside the header section: invalid.
    throwsCode(() => decodeRequest(fig9.subarray(0, fig9.length - 13)), 'MALFORMED_MESSAGE', 'remote');
  });

  it('decodes Figure 11 (informational responses, indeterminate-length)', () => {
    const r = decodeResponse(fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11));
    assert.equal(r.status, V.RESPONSE_FIGURE_10.status);
    assert.deepEqual(r.informational, V.RESPONSE_FIGURE_10.informational);
    assert.deepEqual(r.headers, V.RESPONSE_FIGURE_10.headers);
    assert.equal(td.decode(r.content), V.RESPONSE_FIGURE_10.content);
    assert.deepEqual(r.trailers, []);
    // The same response in the known-length form reads back the same.
    assert.deepEqual(decodeResponse(encodeResponse(r)), r);
  });

  it('encodes Figure 12 to the Figure 13 bytes exactly and decodes them back', () => {
    const fig13 = fromHex(V.RESPONSE_KNOWN_LENGTH_FIGURE_13);
    const bytes = encodeResponse({
      status: 200,
      content: te.encode(V.RESPONSE_FIGURE_12.content),
      trailers: V.RESPONSE_FIGURE_12.trailers,
    });
    assert.equal(toHex(bytes), toHex(fig13));
    const r = decodeResponse(fig13);
    assert.equal(r.status, 200);
    assert.equal(td.decode(r.content), V.RESPONSE_FIGURE_12.content);
    assert.deepEqual(r.trailers, V.RESPONSE_FIGURE_12.trailers);
  });

  it('decodeMessage tells requests from responses by the framing indicator (§3.3)', () => {
    const m = decodeMessage(fig8);
    assert.equal(m.kind, 'request');
    assert.equal(m.framing, 'known-length');
    const n = decodeMessage(fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11));
    assert.equal(n.kind, 'response');
    assert.equal(n.framing, 'indeterminate-length');
  });
});

describe('round trips', () => {
  it('requests and responses survive encode/decode, with and without truncation and padding', () => {
    const rnd = prng(1);
    for (let i = 0; i < 300; i++) {
      const opts = { truncate: rnd.next() < 0.5, padding: rnd.pick([0, 0, 1, 17]) };
      const req = randomRequest(rnd);
      assert.deepEqual(decodeRequest(encodeRequest(req, opts)), req);
      const res = randomResponse(rnd);
      assert.deepEqual(decodeResponse(encodeResponse(res, opts)), res);
    }
  });

  it('indeterminate-length messages (any chunking) decode to the same message', () => {
    const rnd = prng(2);
    for (let i = 0; i < 200; i++) {
      const req = randomRequest(rnd);
      assert.deepEqual(decodeRequest(indeterminateRequest(req, 1 + rnd.int(50))), req);
      const res = randomResponse(rnd);
      assert.deepEqual(decodeResponse(indeterminateResponse(res, 1 + rnd.int(50))), res);
    }
  });

  it('takes a fetch Headers object as field lines', () => {
    const bytes = encodeRequest({ method: 'GET', scheme: 'https', path: '/', headers: new Headers({ 'X-A': '1', accept: '*/*' }) });
    assert.deepEqual(decodeRequest(bytes).headers, [['accept', '*/*'], ['x-a', '1']]);
  });

  it('keeps obs-text bytes (0x80-0xff) as one char per byte', () => {
    const req = { ...figure7, headers: [['x-latin', 'caf\u00e9 \u00ff'] as FieldLine] };
    const bytes = encodeRequest(req);
    assert.ok(toHex(bytes).includes('636166e920ff'));
    assert.deepEqual(decodeRequest(bytes), req);
  });

  it('accepts non-minimal varints (RFC 9292 §3)', () => {
    // Framing 0 as 0x4000, method length 3 as 0x4003.
    const bytes = concatBytes([fromHex('4000 4003'), te.encode('GET'), lp('https'), lp(''), lp('/'), fromHex('80000000')]);
    const r = decodeRequest(bytes);
    assert.equal(r.method, 'GET');
    assert.deepEqual(r.headers, []);
  });
});

describe('truncation (RFC 9292 §3.1, §3.8)', () => {
  const req: BhttpRequest = {
    method: 'POST',
    scheme: 'https',
    authority: 'a.example',
    path: '/p',
    headers: [['a', 'b']],
    content: te.encode('hello'),
    trailers: [['t', 'v']],
  };
  const control = 1 + lp('POST').length + lp('https').length + lp('a.example').length + lp('/p').length;
  const afterHeaders = control + 1 + lp('a').length + lp('b').length;
  const afterContent = afterHeaders + lp('hello').length;

  it('accepts a known-length message cut exactly before a field section or content, nowhere else', () => {
    const bytes = encodeRequest(req);
    const allowed = new Map<number, BhttpRequest>([
      [control, { ...req, headers: [], content: new Uint8Array(0), trailers: [] }],
      [afterHeaders, { ...req, content: new Uint8Array(0), trailers: [] }],
      [afterContent, { ...req, trailers: [] }],
      [bytes.length, req],
    ]);
    for (let k = 0; k <= bytes.length; k++) {
      const expected = allowed.get(k);
      if (expected) assert.deepEqual(decodeRequest(bytes.subarray(0, k)), expected, `cut at ${k}`);
      else throwsCode(() => decodeRequest(bytes.subarray(0, k)), 'MALFORMED_MESSAGE', 'remote');
    }
  });

  it('accepts an indeterminate-length message cut only after control data or a terminator', () => {
    const bytes = indeterminateRequest(req, 2);
    const hdr = control + lp('a').length + lp('b').length + 1;
    const cnt = hdr + lp('he').length + lp('ll').length + lp('o').length + 1;
    const ok = new Set([control, hdr, cnt, bytes.length]);
    for (let k = 0; k <= bytes.length; k++) {
      if (ok.has(k)) decodeRequest(bytes.subarray(0, k));
      else throwsCode(() => decodeRequest(bytes.subarray(0, k)), 'MALFORMED_MESSAGE', 'remote');
    }
  });

  it('responses: every cut of Figure 11 and of a known-length response with informational parts', () => {
    const fig11 = fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11);
    let accepted = 0;
    for (let k = 0; k < fig11.length; k++) {
      try {
        decodeResponse(fig11.subarray(0, k));
        accepted++;
      } catch (e) {
        assert.ok(e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE', String(e));
      }
    }
    // Cuts after the final status, after the final header section's terminator, after the content terminator.
    assert.equal(accepted, 3);
    const known = encodeResponse({ ...V.RESPONSE_FIGURE_10, content: te.encode('x') });
    for (let k = 0; k < known.length; k++) {
      try {
        const r = decodeResponse(known.subarray(0, k));
        assert.equal(r.informational.length, 2); // no cut inside the informational part is accepted
      } catch (e) {
        assert.ok(e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE', String(e));
      }
    }
  });

  it('encoder truncation omits empty trailers, then empty content, never the header section', () => {
    const base = { method: 'GET', scheme: 'https', authority: 'a', path: '/' };
    const full = encodeRequest(base);
    assert.equal(toHex(full.subarray(-3)), '000000');
    assert.equal(encodeRequest(base, { truncate: true }).length, full.length - 2);
    assert.equal(encodeRequest({ ...base, content: te.encode('x') }, { truncate: true }).length, full.length + 1 - 1);
    assert.equal(encodeRequest({ ...base, trailers: [['t', 'v']] }, { truncate: true }).length, full.length + 4);
  });

  it('padding: zero bytes are accepted, a non-zero byte is not (RFC 9292 §3.8)', () => {
    const bytes = encodeRequest(figure7, { padding: 100 });
    assert.deepEqual(decodeRequest(bytes), figure7);
    const bad = bytes.slice();
    bad[bad.length - 50] = 1;
    throwsCode(() => decodeRequest(bad), 'MALFORMED_MESSAGE', 'remote');
    throwsCode(() => decodeRequest(concatBytes([fromHex(V.REQUEST_INDETERMINATE_LENGTH_FIGURE_9), fromHex('01')])), 'MALFORMED_MESSAGE');
  });
});

/** A known-length request with the given raw header section bytes. */
function withHeaderSection(fieldBytes: Uint8Array, trailerBytes: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concatBytes([
    varint(0),
    lp('GET'),
    lp('https'),
    lp('a.example'),
    lp('/'),
    lp(fieldBytes),
    varint(0),
    lp(trailerBytes),
  ]);
}
const line = (n: string, v: string): Uint8Array => concatBytes([lp(n), lp(v)]);

describe('validation (RFC 9292 §3.3-§3.6, §4)', () => {
  it('rejects invalid field names and values from the peer', () => {
    for (const [n, v] of [
      ['Accept', 'x'], // upper case (RFC 9113 §8.2.1)
      ['a b', 'x'],
      ['a:b', 'x'],
      ['a\u00e9', 'x'],
      ['a"', 'x'],
      ['x', 'a\rb'],
      ['x', 'a\nb'],
      ['x', 'a\u0000b'],
      ['x', ' lead'],
      ['x', 'trail\t'],
      [':method', 'GET'],
      [':status', '200'],
      [':', 'x'],
    ] as const) {
      throwsCode(() => decodeRequest(withHeaderSection(line(n, v))), 'MALFORMED_MESSAGE', 'remote');
    }
    // An empty name in a known-length section (Name Length = 1..).
    throwsCode(() => decodeRequest(withHeaderSection(fromHex('0000'))), 'MALFORMED_MESSAGE', 'remote');
    // A field line that overruns its section.
    throwsCode(() => decodeRequest(withHeaderSection(fromHex('0161'))), 'MALFORMED_MESSAGE', 'remote');
  });

  it('allows extension pseudo-fields first in headers only (RFC 9292 §3.6)', () => {
    const ok = decodeRequest(withHeaderSection(concatBytes([line(':protocol', 'websocket'), line('a', 'b')])));
    assert.deepEqual(ok.headers, [[':protocol', 'websocket'], ['a', 'b']]);
    throwsCode(() => decodeRequest(withHeaderSection(concatBytes([line('a', 'b'), line(':protocol', 'x')]))), 'MALFORMED_MESSAGE');
    throwsCode(() => decodeRequest(withHeaderSection(new Uint8Array(0), line(':protocol', 'x'))), 'MALFORMED_MESSAGE');
  });

  it('accepts empty values and obs-text, and repeated names in order', () => {
    const r = decodeRequest(withHeaderSection(concatBytes([line('a', ''), line('a', '\u00ff'), line('cookie', 'x=1'), line('cookie', 'y=2')])));
    assert.deepEqual(r.headers, [['a', ''], ['a', '\u00ff'], ['cookie', 'x=1'], ['cookie', 'y=2']]);
  });

  it('rejects bad control data', () => {
    const req = (m: string, s: string, a: string, p: string): Uint8Array => concatBytes([varint(0), lp(m), lp(s), lp(a), lp(p)]);
    for (const [m, s, a, p] of [
      ['', 'https', 'a', '/'],
      ['G T', 'https', 'a', '/'],
      ['GET', '1http', 'a', '/'],
      ['GET', 'https', 'u@a', '/'],
      ['GET', 'https', 'a/b', '/'],
      ['GET', 'https', 'a', ''],
      ['GET', 'https', 'a', 'x'],
      ['GET', 'https', 'a', '/a b'],
      ['GET', 'https', 'a', '/#f'],
      ['CONNECT', '', '', ''],
    ]) {
      throwsCode(() => decodeRequest(req(m!, s!, a!, p!)), 'MALFORMED_MESSAGE', 'remote');
    }
    assert.equal(decodeRequest(req('CONNECT', '', 'a.example:443', '')).authority, 'a.example:443');
    assert.equal(decodeRequest(req('OPTIONS', 'https', 'a', '*')).path, '*');
    // Control data cannot be truncated.
    throwsCode(() => decodeRequest(concatBytes([varint(0), lp('GET'), lp('https')])), 'MALFORMED_MESSAGE');
  });

  it('rejects unknown framing indicators, the wrong kind, and bad status codes', () => {
    throwsCode(() => decodeRequest(fromHex('04')), 'MALFORMED_MESSAGE', 'remote');
    throwsCode(() => decodeRequest(new Uint8Array(0)), 'MALFORMED_MESSAGE', 'remote');
    throwsCode(() => decodeRequest(fromHex(V.RESPONSE_KNOWN_LENGTH_FIGURE_13)), 'MALFORMED_MESSAGE', 'remote');
    throwsCode(() => decodeResponse(fromHex(V.REQUEST_KNOWN_LENGTH_FIGURE_8)), 'MALFORMED_MESSAGE', 'remote');
    for (const status of [0, 99, 600, 1000]) {
      throwsCode(() => decodeResponse(concatBytes([varint(1), varint(status)])), 'MALFORMED_MESSAGE', 'remote');
    }
    // An informational response must be followed by a final one.
    throwsCode(() => decodeResponse(concatBytes([varint(1), varint(103), varint(0)])), 'MALFORMED_MESSAGE');
    assert.equal(decodeResponse(concatBytes([varint(1), varint(103), varint(0), varint(204)])).status, 204);
  });

  it('the encoder lower-cases names and refuses what the decoder would refuse (local errors)', () => {
    const base = { method: 'GET', scheme: 'https', authority: 'a', path: '/' };
    assert.deepEqual(decodeRequest(encodeRequest({ ...base, headers: [['X-Foo', 'Bar']] })).headers, [['x-foo', 'Bar']]);
    for (const bad of [
      { ...base, method: 'G T' },
      { ...base, path: 'nope' },
      { ...base, headers: [['a b', 'x']] as FieldLine[] },
      { ...base, headers: [['x', 'a\r\nb']] as FieldLine[] },
      { ...base, headers: [['x', '\u20ac']] as FieldLine[] },
      { ...base, headers: [[':path', '/']] as FieldLine[] },
      { ...base, trailers: [[':protocol', 'x']] as FieldLine[] },
      { ...base, content: 'text' as unknown as Uint8Array },
    ]) {
      throwsCode(() => encodeRequest(bad), 'INVALID_ARGUMENT', 'local');
    }
    throwsCode(() => encodeRequest(base, { padding: -1 }), 'INVALID_ARGUMENT', 'local');
    throwsCode(() => encodeResponse({ status: 199 }), 'INVALID_ARGUMENT', 'local');
    throwsCode(() => encodeResponse({ status: 200, informational: [{ status: 200 }] }), 'INVALID_ARGUMENT', 'local');
  });
});

describe('bounds', () => {
  it('maxFields, maxFieldBytes, maxContent, maxInformational raise TOO_LARGE (remote)', () => {
    const many = Array.from({ length: 257 }, (_, i) => [`h${i}`, 'v'] as FieldLine);
    const bytes = encodeRequest({ method: 'GET', scheme: 'https', path: '/', headers: many });
    throwsCode(() => decodeRequest(bytes), 'TOO_LARGE', 'remote');
    assert.equal(decodeRequest(bytes, { maxFields: 257 }).headers.length, 257);
    // Trailers count against the same budget.
    const split = encodeRequest({ method: 'GET', scheme: 'https', path: '/', headers: many.slice(0, 2), trailers: many.slice(2, 4) });
    throwsCode(() => decodeRequest(split, { maxFields: 3 }), 'TOO_LARGE');

    const big = encodeRequest({ method: 'GET', scheme: 'https', path: '/', headers: [['a', 'x'.repeat(70000)]] });
    throwsCode(() => decodeRequest(big), 'TOO_LARGE', 'remote');
    throwsCode(() => decodeRequest(big, { maxFieldBytes: 70000 }), 'TOO_LARGE');
    assert.equal(decodeRequest(big, { maxFieldBytes: 70001 }).headers.length, 1);

    const req = { method: 'POST', scheme: 'https', path: '/', content: new Uint8Array(1000), headers: [], trailers: [] };
    throwsCode(() => decodeRequest(encodeRequest(req), { maxContent: 999 }), 'TOO_LARGE', 'remote');
    throwsCode(() => decodeRequest(indeterminateRequest({ ...req, authority: '' }, 7), { maxContent: 999 }), 'TOO_LARGE', 'remote');
    assert.equal(decodeRequest(indeterminateRequest({ ...req, authority: '' }, 7), { maxContent: 1000 }).content.length, 1000);

    const infos = Array.from({ length: 17 }, () => ({ status: 100, headers: [] as FieldLine[] }));
    throwsCode(() => decodeResponse(encodeResponse({ status: 200, informational: infos })), 'TOO_LARGE', 'remote');
  });

  it('a huge declared length fails before any allocation', () => {
    // Content length 2^62-1 in a tiny message.
    const bytes = concatBytes([varint(1), varint(200), varint(0), fromHex('ffffffffffffffff')]);
    throwsCode(() => decodeResponse(bytes), 'TOO_LARGE', 'remote');
    const overrun = concatBytes([varint(1), varint(200), varint(0), fromHex('c000010000000000')]); // 2^40
    throwsCode(() => decodeResponse(overrun, { maxContent: Number.MAX_SAFE_INTEGER }), 'MALFORMED_MESSAGE', 'remote');
    const section = concatBytes([varint(1), varint(200), fromHex('ffffffffffffffff')]);
    throwsCode(() => decodeResponse(section), 'MALFORMED_MESSAGE', 'remote');
  });
});

describe('fuzz: any input decodes or raises MALFORMED_MESSAGE / TOO_LARGE', () => {
  it('6000 mutations of the RFC examples and random messages', () => {
    const rnd = prng(0xa715);
    const seeds = fuzzSeeds(rnd);
    const limits = { maxFields: 32, maxFieldBytes: 4096, maxContent: 4096 };
    let ok = 0;
    for (let i = 0; i < 6000; i++) {
      const input = i % 50 === 0 ? rnd.bytes(rnd.int(64)) : mutate(rnd, rnd.pick(seeds));
      for (const decode of [
        (b: Uint8Array) => decodeMessage(b, limits),
        (b: Uint8Array) => bhttpToRequest(b, { scheme: 'https', authority: 'base.example' }, limits),
        (b: Uint8Array) => bhttpToResponse(b, limits),
      ]) {
        try {
          decode(input);
          ok++;
        } catch (e) {
          if (!(e instanceof AtlsError) || e.source !== 'remote' || !['MALFORMED_MESSAGE', 'TOO_LARGE', 'UNSUPPORTED'].includes(e.code)) {
            assert.fail(`case ${i} (${toHex(input)}): ${String(e)}`);
          }
        }
      }
    }
    assert.ok(ok > 500, `only ${ok} mutated inputs decoded; the fuzz is not reaching deep`);
  });
});

describe('fetch Request/Response converters', () => {
  it('round-trips a Request with a body, dropping connection-specific fields', async () => {
    const bytes = await requestToBhttp(
      new Request('https://api.example:8443/v1/x?q=1#frag', {
        method: 'POST',
        body: 'hello',
        headers: { 'Content-Type': 'text/plain', Connection: 'close, x-hop', 'X-Hop': '1', 'Keep-Alive': '5', TE: 'gzip', 'X-Keep': 'yes' },
      }),
    );
    const m = decodeRequest(bytes);
    assert.equal(m.authority, 'api.example:8443');
    assert.equal(m.path, '/v1/x?q=1');
    assert.deepEqual(m.headers, [['content-type', 'text/plain'], ['x-keep', 'yes']]);
    const req = bhttpToRequest(bytes);
    assert.equal(req.url, 'https://api.example:8443/v1/x?q=1');
    assert.equal(req.method, 'POST');
    assert.equal(await req.text(), 'hello');
  });

  it('takes the target from host, then from base (RFC 9292 §5.1)', () => {
    assert.equal(bhttpToRequest(fromHex(V.REQUEST_KNOWN_LENGTH_FIGURE_8)).url, 'https://www.example.com/hello.txt');
    const noHost = encodeRequest({ method: 'GET', scheme: '', path: '/x' });
    assert.equal(bhttpToRequest(noHost, { scheme: 'https', authority: 'origin.example' }).url, 'https://origin.example/x');
    throwsCode(() => bhttpToRequest(noHost), 'MALFORMED_MESSAGE', 'remote');
    // A host field is held to the authority rules: no path injection through it.
    const evil = encodeRequest({ method: 'GET', scheme: 'https', path: '/x', headers: [['host', 'evil.example/y?']] });
    throwsCode(() => bhttpToRequest(evil), 'MALFORMED_MESSAGE', 'remote');
    const two = encodeRequest({ method: 'GET', scheme: 'https', path: '/x', headers: [['host', 'a'], ['host', 'b']] });
    throwsCode(() => bhttpToRequest(two), 'MALFORMED_MESSAGE', 'remote');
  });

  it('joins repeated cookie fields with "; " (RFC 9292 §3.6) and drops pseudo-fields', () => {
    const bytes = encodeRequest({
      method: 'GET',
      scheme: 'https',
      authority: 'a',
      path: '/',
      headers: [[':protocol', 'x'], ['cookie', 'a=1'], ['cookie', 'b=2']],
    });
    const req = bhttpToRequest(bytes);
    assert.equal(req.headers.get('cookie'), 'a=1; b=2');
    assert.equal([...req.headers].length, 1);
  });

  it('refuses what fetch cannot carry, and content-length mismatches', () => {
    const base = { scheme: 'https', authority: 'a', path: '/' };
    throwsCode(() => bhttpToRequest(encodeRequest({ ...base, method: 'TRACE' })), 'UNSUPPORTED', 'remote');
    throwsCode(() => bhttpToRequest(encodeRequest({ method: 'CONNECT', scheme: '', authority: 'a:1', path: '' })), 'UNSUPPORTED');
    throwsCode(() => bhttpToRequest(encodeRequest({ ...base, method: 'GET', content: te.encode('x') })), 'UNSUPPORTED', 'remote');
    const cl = encodeRequest({ ...base, method: 'POST', content: te.encode('abc'), headers: [['content-length', '4']] });
    throwsCode(() => bhttpToRequest(cl), 'MALFORMED_MESSAGE', 'remote');
    const clOk = encodeRequest({ ...base, method: 'POST', content: te.encode('abc'), headers: [['content-length', '3']] });
    assert.equal(bhttpToRequest(clOk).headers.get('content-length'), '3');
  });

  it('round-trips a Response, keeping each set-cookie, dropping trailers and informational responses', async () => {
    const res = new Response('body', { status: 201, headers: [['Set-Cookie', 'a=1'], ['Set-Cookie', 'b=2'], ['Transfer-Encoding', 'chunked']] });
    const bytes = await responseToBhttp(res, { truncate: true });
    const m = decodeResponse(bytes);
    assert.deepEqual(m.headers, [['content-type', 'text/plain;charset=UTF-8'], ['set-cookie', 'a=1'], ['set-cookie', 'b=2']]);
    const back = bhttpToResponse(bytes);
    assert.equal(back.status, 201);
    assert.deepEqual(back.headers.getSetCookie(), ['a=1', 'b=2']);
    assert.equal(await back.text(), 'body');
    const fig11 = bhttpToResponse(fromHex(V.RESPONSE_INDETERMINATE_LENGTH_FIGURE_11));
    assert.equal(fig11.status, 200);
    assert.equal(await fig11.text(), V.RESPONSE_FIGURE_10.content);
  });

  it('null-body statuses: empty is fine, content is malformed', () => {
    assert.equal(bhttpToResponse(encodeResponse({ status: 204 })).body, null);
    throwsCode(() => bhttpToResponse(encodeResponse({ status: 304, content: te.encode('x') })), 'MALFORMED_MESSAGE', 'remote');
  });

  it('bounds the body it reads (TOO_LARGE, local) and refuses used bodies and error responses', async () => {
    await rejectsCode(requestToBhttp(new Request('https://a/', { method: 'POST', body: new Uint8Array(100) }), { maxContent: 99 }), 'TOO_LARGE', 'local');
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new Uint8Array(1000)); // endless
      },
    });
    await rejectsCode(responseToBhttp(new Response(stream), { maxContent: 10_000 }), 'TOO_LARGE', 'local');
    const used = new Response('x');
    await used.text();
    await rejectsCode(responseToBhttp(used), 'INVALID_ARGUMENT', 'local');
    await rejectsCode(responseToBhttp(Response.error()), 'INVALID_ARGUMENT', 'local');
  });
});
