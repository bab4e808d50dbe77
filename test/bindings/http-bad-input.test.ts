/**
 * The HTTP binding against hostile input, through the Web handler: the exact
 * status for each kind of bad request, and a garbage sweep asserting that no
 * peer input ever yields a 5xx other than 503 (limits).
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { testPki, type TestPki } from '../helpers/pki.js';
import { cookieOf, manualHandshake, post, protectedRequest, tlsPair, MEDIA_TYPE_PROTECTED } from '../helpers/http.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { HEADER_FLIGHT_LENGTH } from '../../src/http/constants.js';

const app = (): Response => new Response('inner ok');

/** Deterministic bytes (xorshift) so failures reproduce. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x & 0xff;
  };
}

describe('HTTP binding: bad input', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });
  const handlerFor = (opts: Partial<Parameters<typeof createAtlsHandler>[0]> = {}) =>
    createAtlsHandler({ tls: tlsPair(pki, 'TLSv1.3', 'cert').server, app, ...opts });

  async function clientHello(version: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): Promise<Uint8Array> {
    const s = new AtlsClientSession({ tls: tlsPair(pki, version, 'cert').client });
    const out = await s.start();
    s.destroy();
    return out.flight;
  }

  it('wrong method: 405 with Allow: POST, DELETE', async () => {
    const h = handlerFor();
    for (const method of ['GET', 'PUT', 'HEAD', 'OPTIONS', 'PATCH']) {
      const res = await post(h, 'x', { method });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'POST, DELETE');
      assert.equal(res.headers.get('cache-control'), 'no-store');
    }
  });

  it('wrong or missing media type: 415', async () => {
    const h = handlerFor();
    const ch = await clientHello();
    for (const type of ['', 'application/octet-stream', 'text/plain', 'application/atls+json', 'application/atlsx']) {
      const res = await post(h, ch, { type });
      assert.equal(res.status, 415, type);
      assert.match(res.headers.get('accept-post') ?? '', /application\/atls\+octet-stream/);
    }
    // Parameters and case do not matter; the later spelling is accepted and echoed.
    for (const type of ['Application/ATLS+Octet-Stream; charset=binary', 'application/atls']) {
      const res = await post(h, await clientHello(), { type }); // a fresh hello: a repeated one is a replay
      assert.equal(res.status, 200, type);
      assert.equal(res.headers.get('content-type'), type.toLowerCase().includes('octet') ? 'application/atls+octet-stream' : 'application/atls');
    }
  });

  it('not an endpoint: 404', async () => {
    const res = await post(handlerFor(), await clientHello(), { path: '/other' });
    assert.equal(res.status, 404);
  });

  it('malformed flights: garbage, truncated record, record overflow, wrong content type: 400', async () => {
    const h = handlerFor();
    const ch = await clientHello();
    const cases: Record<string, Uint8Array> = {
      garbage: new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n'),
      truncated: ch.subarray(0, ch.length - 7),
      'header only': ch.subarray(0, 3),
      'overlong record length': Uint8Array.from([22, 3, 1, 0xff, 0xff, 1, 2, 3]),
      'application data first': Uint8Array.from([23, 3, 3, 0, 2, 0, 0]),
      'alert first': Uint8Array.from([21, 3, 3, 0, 2, 2, 10]),
      'client hello body garbage': Uint8Array.from([22, 3, 1, 0, 8, 1, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef]),
    };
    // Framing errors are caught before the TLS stack (400); what the stack refuses
    // is judged by its alert: 400 for protocol errors, 403 for handshake_failure.
    const stackJudged = new Set(['application data first', 'alert first', 'client hello body garbage']);
    for (const [name, body] of Object.entries(cases)) {
      const res = await post(h, body);
      const expected = stackJudged.has(name) ? [400, 403] : [400];
      assert.ok(expected.includes(res.status), `${name}: ${res.status} ${res.headers.get('atls-error')}`);
      assert.equal(res.headers.get('cache-control'), 'no-store');
      assert.equal(cookieOf(res), undefined, `${name}: no session is kept`);
    }
    // An empty body is not a ClientHello either.
    assert.equal((await post(h, new Uint8Array(0))).status, 400);
    assert.equal(h.stats().sessions, 0);
  });

  it('a flipped byte in the client’s second flight: 400 (bad_record_mac) or 403, never 5xx', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app });
    const s = new AtlsClientSession({ tls: tls.client });
    const first = await s.start();
    const r1 = await post(h, first.flight);
    const cookie = cookieOf(r1)!;
    const second = await s.receive(new Uint8Array(await r1.arrayBuffer()));
    const tampered = second.flight.slice();
    tampered[tampered.length - 3]! ^= 0x01;
    const r2 = await post(h, tampered, { cookie });
    assert.equal(r2.status, 400, r2.headers.get('atls-error') ?? '');
    assert.equal(r2.headers.get('atls-error'), 'BAD_RECORD_MAC');
    assert.equal(h.stats().sessions, 0, 'the failed session is gone');
    // Its cookie now names nothing: 410.
    assert.equal((await post(h, new Uint8Array([1]), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 410);
  });

  it('oversized bodies: 413, with and without Content-Length', async () => {
    const h = handlerFor({ limits: { maxBodyBytes: 1000 } });
    const big = new Uint8Array(5000);
    assert.equal((await post(h, big)).status, 413);
    // A streamed body of unknown length is cut off at the cap.
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        c.enqueue(new Uint8Array(400));
      },
    });
    const res = await h(
      new Request('http://localhost/atls', {
        method: 'POST',
        headers: { 'content-type': 'application/atls' },
        body: stream,
        duplex: 'half',
      } as RequestInit),
    );
    assert.equal(res.status, 413);
  });

  it('protected messages: replayed, flipped, truncated, unknown session, garbage cookie', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app });
    const { session, cookie } = await manualHandshake(h, tls.client);
    const msg = await protectedRequest(session);
    const ok = await post(h, msg, { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), MEDIA_TYPE_PROTECTED);
    const replay = await post(h, msg, { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(replay.status, 400);
    assert.equal(replay.headers.get('atls-error'), 'REPLAYED');

    const m2 = await protectedRequest(session);
    const flipped = m2.slice();
    flipped[flipped.length - 1]! ^= 0x80;
    const r = await post(h, flipped, { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(r.status, 400);
    assert.equal((await post(h, m2.subarray(0, 3), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 400);
    assert.equal((await post(h, new Uint8Array(0), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 400);
    // The session survives rejected messages: the untampered one still works.
    assert.equal((await post(h, m2, { cookie, type: MEDIA_TYPE_PROTECTED })).status, 200);

    for (const bad of ['', 'x', 'AAAAAAAAAAAAAAAAAAAAAA', 'node.AAAAAAAAAAAAAAAAAAAAAA', '%00;;', '"quoted"', 'a'.repeat(5000)]) {
      const res = await post(h, msg, { cookie: bad, type: MEDIA_TYPE_PROTECTED });
      assert.equal(res.status, 410, `cookie ${JSON.stringify(bad.slice(0, 20))}`);
    }
    assert.equal((await post(h, msg, { type: MEDIA_TYPE_PROTECTED })).status, 410, 'no cookie');
    // A flight (not a ClientHello) for an established architecture-(b) session: 409.
    assert.equal((await post(h, Uint8Array.from([21, 3, 3, 0, 2, 1, 0]), { cookie })).status, 409);
    // A ClientHello with a garbage cookie starts a new session (the client lost its own).
    const fresh = await post(h, await clientHello(), { cookie: 'garbage' });
    assert.equal(fresh.status, 200);
    assert.ok(cookieOf(fresh));
  });

  it('ATLS-Flight-Length that does not fit: 400', async () => {
    const h = handlerFor();
    const ch = await clientHello();
    for (const v of ['-1', '1e3', '0x10', '007', String(ch.length + 1), ' 5', '']) {
      const res = await post(h, ch, { headers: { [HEADER_FLIGHT_LENGTH]: v } });
      assert.equal(res.status, 400, `"${v}"`);
    }
    // Naming the whole body leaves no protected message: 400.
    assert.equal((await post(h, ch, { headers: { [HEADER_FLIGHT_LENGTH]: String(ch.length) } })).status, 400);
    // A piggy-backed message on a flight that does not finish the handshake: 400.
    const res = await post(h, new Uint8Array([...ch, 1, 2, 3]), { headers: { [HEADER_FLIGHT_LENGTH]: String(ch.length) } });
    assert.equal(res.status, 400);
  });

  it('a protected message before the handshake finished: 409', async () => {
    const h = handlerFor();
    const r1 = await post(h, await clientHello());
    const cookie = cookieOf(r1)!;
    assert.equal((await post(h, new Uint8Array(40), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 409);
  });

  it('records-mode session given a protected message: 415', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const h = createAtlsHandler({ tls: tls.server, app, mode: 'records' });
    const { cookie } = await manualHandshake(h, tls.client, 'records');
    assert.equal((await post(h, new Uint8Array(40), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 415);
  });

  it('mode "exported" endpoint given a records-mode client: 409 before the app runs', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    let calls = 0;
    const h = createAtlsHandler({ tls: tls.server, app: () => (calls++, new Response('ran')) });
    const s = new AtlsClientSession({ tls: tls.client, mode: 'records' });
    const r1 = await post(h, (await s.start()).flight);
    const cookie = cookieOf(r1)!;
    const last = await s.receive(new Uint8Array(await r1.arrayBuffer()));
    // The client's Finished plus a request in TLS records (architecture a).
    const body = new Uint8Array([...last.flight, ...(await s.send(new TextEncoder().encode('GET / inner')))]);
    const res = await post(h, body, { cookie });
    assert.equal(res.status, 409);
    assert.match(await res.text(), /runs mode "exported"/);
    assert.equal(calls, 0);
    s.destroy();
  });

  it('a second flight while the first is processed: 409', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app });
    const s = new AtlsClientSession({ tls: tls.client });
    const r1 = await post(h, (await s.start()).flight);
    const cookie = cookieOf(r1)!;
    const second = await s.receive(new Uint8Array(await r1.arrayBuffer()));
    const [a, b] = await Promise.all([post(h, second.flight, { cookie }), post(h, second.flight, { cookie })]);
    assert.deepEqual([a.status, b.status].sort(), [200, 409]);
  });

  it('limits: at the half-open cap the oldest handshake gives way; the total cap answers 503 with Retry-After', async () => {
    const h = handlerFor({ limits: { maxHalfOpen: 2, maxSessions: 10 } });
    const first = await post(h, await clientHello());
    assert.equal(first.status, 200);
    assert.equal((await post(h, await clientHello())).status, 200);
    assert.equal((await post(h, await clientHello())).status, 200, 'a new handshake is not refused');
    assert.equal(h.stats().halfOpen, 2);
    const lost = await post(h, Uint8Array.from([21, 3, 3, 0, 2, 1, 0]), { cookie: cookieOf(first)! });
    assert.equal(lost.status, 410, 'the oldest gave way');
    const capped = handlerFor({ limits: { maxHalfOpen: 5, maxSessions: 2 } });
    assert.equal((await post(capped, await clientHello())).status, 200);
    assert.equal((await post(capped, await clientHello())).status, 200);
    const r = await post(capped, await clientHello());
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '1');
  });

  it('half-open handshakes expire', async () => {
    // A lifetime long enough that a loaded machine cannot expire the first
    // handshake before the second request arrives.
    const h = handlerFor({ limits: { maxHalfOpen: 5, handshakeTtlMs: 1000 } });
    const ch = await clientHello();
    const first = await post(h, ch);
    assert.equal(first.status, 200);
    assert.equal(h.stats().halfOpen, 1);
    await new Promise((r) => setTimeout(r, 1100));
    const late = await post(h, Uint8Array.from([21, 3, 3, 0, 2, 1, 0]), { cookie: cookieOf(first)! });
    assert.equal(late.status, 410);
    assert.equal(h.stats().halfOpen, 0);
  });

  it('garbage of every kind never yields a 5xx other than 503', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'mutual');
    const h = createAtlsHandler({ tls: tls.server, app });
    const { session, cookie, flights } = await manualHandshake(h, tls.client);
    const ch12 = await clientHello('TLSv1.2');
    const seeds = [...flights, ch12, await protectedRequest(session)];
    const rnd = prng(0xa715);
    const statuses = new Map<number, number>();
    let n = 0;
    const types = ['application/atls+octet-stream', 'application/atls', MEDIA_TYPE_PROTECTED];
    for (const seed of seeds) {
      for (let i = 0; i < 60; i++) {
        const body = seed.slice();
        const mutation = i % 5;
        if (mutation === 0) body[rnd() % body.length]! ^= 1 << (rnd() % 8);
        else if (mutation === 1) for (let k = 0; k < 8; k++) body[rnd() % body.length] = rnd();
        const cut = mutation === 2 ? body.subarray(0, rnd() % body.length) : body;
        const extended = mutation === 3 ? Uint8Array.from([...body, ...Array.from({ length: rnd() }, rnd)]) : cut;
        const random = mutation === 4 ? Uint8Array.from({ length: (rnd() << 2) + 1 }, rnd) : extended;
        const res = await post(h, random, { type: types[i % 3]!, ...(i % 2 ? { cookie } : {}) });
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500 || res.status === 503, `status ${res.status} (${res.headers.get('atls-error')}) for mutation ${mutation}`);
        n++;
      }
    }
    assert.equal(n, seeds.length * 60);
    assert.ok(!statuses.has(200) || statuses.get(200)! < n / 2, `statuses ${JSON.stringify([...statuses])}`);
  });
});
