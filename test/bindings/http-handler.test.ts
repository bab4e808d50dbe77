/**
 * The HTTP binding through the Web handler, no sockets: the client's
 * transport calls the handler directly. Both modes, TLS 1.2 and 1.3,
 * certificates, mutual authentication and PSK, piggy-backing, cookies,
 * session loss and re-handshake.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { testPki, type TestPki } from '../helpers/pki.js';
import { ForgetfulStore, makePair, tlsPair, cookieOf, type HttpAuth } from '../helpers/http.js';
import { AtlsError } from '../../src/errors.js';
import { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED, HEADER_FLIGHT_LENGTH } from '../../src/http/constants.js';
import type { Mode } from '../../src/session/types.js';
import { captureHttpExample } from '../helpers/http-example.js';

interface Report {
  method: string;
  path: string;
  body: string;
  contentType: string | null;
  subject: string | null;
  pskIdentity: string | null;
  version: string;
  cipherSuite: string;
  mode: string;
}

describe('HTTP binding through the Web handler', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const mode of ['exported', 'records'] as const satisfies readonly Mode[]) {
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      for (const auth of ['cert', 'mutual', 'psk'] as const satisfies readonly HttpAuth[]) {
        it(`${mode} ${version} ${auth}: GET and POST through the handler`, async () => {
          const tls = tlsPair(pki, version, auth);
          const p = makePair({ tls: tls.server, mode }, { tls: tls.client, mode });
          const r1 = await p.client.fetch('http://localhost/items?id=7');
          assert.equal(r1.status, 200);
          const j1 = (await r1.json()) as Report;
          assert.equal(j1.method, 'GET');
          assert.equal(j1.path, '/items?id=7');
          assert.equal(j1.version, version);
          assert.equal(j1.mode, mode);
          assert.match(j1.cipherSuite, /^TLS_/);
          if (auth === 'mutual') assert.match(j1.subject ?? '', /CN=atls-test-client/);
          else assert.equal(j1.subject, null);
          assert.equal(j1.pskIdentity, auth === 'psk' ? 'device-17' : null);

          const r2 = await p.client.fetch('http://localhost/items', {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ a: 1 }),
          });
          const j2 = (await r2.json()) as Report;
          assert.deepEqual([j2.method, j2.body, j2.contentType], ['POST', '{"a":1}', 'application/json']);

          const hs = p.events.filter((e) => e.type === 'handshake');
          assert.equal(hs.length, 1, 'one handshake for two requests');
          const sessions = p.client.sessions;
          assert.equal(sessions.get('http://localhost')?.state, 'established');
          assert.equal(p.handler.stats().sessions, 1);
          assert.equal(p.handler.stats().halfOpen, 0);
          // Every ATLS response is marked no-store; bodies carry the right media types.
          for (const { request, response } of p.wire) {
            assert.equal(response.headers.get('cache-control'), 'no-store');
            assert.equal(request.method, 'POST');
            const t = request.headers.get('content-type');
            assert.ok(t === MEDIA_TYPE_FLIGHT || t === MEDIA_TYPE_PROTECTED, t ?? 'none');
            assert.equal(response.headers.get('content-type'), t);
          }
          if (mode === 'records') {
            assert.ok(p.wire.every((w) => w.request.headers.get('content-type') === MEDIA_TYPE_FLIGHT));
          }
          await p.client.close();
        });
      }
    }
  }

  it('TLS 1.3: the first request rides with the final flight (2 POSTs in all)', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const p = makePair({ tls: tls.server }, { tls: tls.client });
    const r = await p.client.fetch('http://localhost/first');
    assert.equal(((await r.json()) as Report).path, '/first');
    assert.equal(p.wire.length, 2);
    const second = p.wire[1]!;
    const n = Number(second.request.headers.get(HEADER_FLIGHT_LENGTH));
    assert.ok(n > 0, 'the request names the flight length');
    assert.equal(second.request.headers.get('content-type'), MEDIA_TYPE_FLIGHT);
    assert.ok(second.response.headers.has(HEADER_FLIGHT_LENGTH));
    const hs = p.events.find((e) => e.type === 'handshake');
    assert.ok(hs && hs.type === 'handshake' && hs.piggyBacked && hs.roundTrips === 2);
    // Later requests are plain protected messages.
    await p.client.fetch('http://localhost/second');
    assert.equal(p.wire[2]!.request.headers.get('content-type'), MEDIA_TYPE_PROTECTED);
    await p.client.close();
  });

  it('records mode: the first request rides as application_data records after the final flight', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair({ tls: tls.server, mode: 'records' }, { tls: tls.client, mode: 'records' });
    const r = await p.client.fetch('http://localhost/first');
    assert.equal(((await r.json()) as Report).path, '/first');
    assert.equal(p.wire.length, 2);
    assert.equal(p.wire[1]!.request.headers.get(HEADER_FLIGHT_LENGTH), null);
    await p.client.close();
  });

  it('piggyback: false takes a separate POST for the first request', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const p = makePair({ tls: tls.server }, { tls: tls.client, piggyback: false });
    await (await p.client.fetch('http://localhost/first')).arrayBuffer();
    assert.equal(p.wire.length, 3);
    assert.ok(p.wire.every((w) => !w.request.headers.has(HEADER_FLIGHT_LENGTH)));
    await p.client.close();
  });

  it('flight events give sizes and round trips for `atls fetch -v`', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair({ tls: tls.server }, { tls: tls.client });
    await (await p.client.fetch('http://localhost/')).arrayBuffer();
    const flights = p.events.filter((e) => e.type === 'flight');
    assert.deepEqual(
      flights.map((f) => (f.type === 'flight' ? `${f.direction}:${f.roundTrip}:${f.kind}` : '')),
      ['sent:1:flight', 'received:1:flight', 'sent:2:flight+protected', 'received:2:flight+protected'],
    );
    for (const f of flights) if (f.type === 'flight') assert.ok(f.flightBytes <= f.bytes.length);
    await p.client.close();
  });

  it('session cookie: HttpOnly, SameSite=Strict, Path of the endpoint used, Secure only on https, routing tag', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    for (const [origin, endpoint, secure] of [
      ['http://localhost', '/.well-known/atls', false],
      ['https://localhost', '/atls', true],
    ] as const) {
      const p = makePair({ tls: tls.server, routingTag: 'node-3' }, { tls: tls.client, endpoint });
      await (await p.client.fetch(`${origin}/`)).arrayBuffer();
      const first = p.wire[0]!;
      assert.equal(new URL(first.request.url).pathname, endpoint);
      const sc = first.response.headers.getSetCookie();
      assert.equal(sc.length, 1);
      const attrs = sc[0]!.split('; ');
      const [nv, ...rest] = attrs;
      assert.match(nv!, /^atls-session=node-3\.[A-Za-z0-9_-]{22}$/);
      assert.ok(rest.includes(`Path=${endpoint}`), sc[0]);
      assert.ok(rest.includes('HttpOnly'));
      assert.ok(rest.includes('SameSite=Strict'));
      assert.equal(rest.includes('Secure'), secure);
      // Only the first response sets it; later requests carry it back.
      assert.ok(p.wire.slice(1).every((w) => w.response.headers.getSetCookie().length === 0));
      assert.ok(p.wire.slice(1).every((w) => w.request.headers.get('cookie') === nv));
      await p.client.close();
    }
  });

  it('cookie values are distinct and carry 128 random bits', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair({ tls: tls.server }, { tls: tls.client });
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) {
      await (await p.client.fetch(`http://host${i}.test/`)).arrayBuffer();
    }
    for (const w of p.wire) {
      const c = cookieOf(w.response);
      if (c) seen.add(c);
    }
    assert.equal(seen.size, 3);
    for (const c of seen) assert.equal(Buffer.from(c, 'base64url').length, 16);
    await p.client.close();
  });

  it('a lost session: GET re-handshakes transparently, POST is not resent', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    let served = 0;
    const store = new ForgetfulStore();
    const p = makePair(
      {
        tls: tls.server,
        store,
        app: (req) => {
          served++;
          return new Response(`${req.method} ${served}`);
        },
      },
      { tls: tls.client },
    );
    assert.equal(await (await p.client.fetch('http://localhost/a')).text(), 'GET 1');
    store.forgetAll(); // the server forgets every session (restart, eviction, TTL)
    assert.equal(await (await p.client.fetch('http://localhost/a')).text(), 'GET 2');
    const lost = p.events.filter((e) => e.type === 'session-lost');
    assert.equal(lost.length, 1);
    assert.ok(lost[0]!.type === 'session-lost' && lost[0]!.status === 410 && lost[0]!.resend);
    assert.equal(p.events.filter((e) => e.type === 'handshake').length, 2);

    store.forgetAll();
    await assert.rejects(
      p.client.fetch('http://localhost/a', { method: 'POST', body: 'once' }),
      (e: unknown) => e instanceof AtlsError && e.code === 'CLOSED' && /not idempotent/.test(e.message),
    );
    assert.equal(served, 2, 'the POST never reached the app');
    // The next request handshakes afresh (and PUT, idempotent, would be resent).
    assert.equal(await (await p.client.fetch('http://localhost/a', { method: 'PUT', body: 'x' })).text(), 'PUT 3');
    await p.client.close();
  });

  it('retryNonIdempotent resends a POST after a lost session', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const store = new ForgetfulStore();
    const p = makePair({ tls: tls.server, store, app: () => new Response('ok') }, { tls: tls.client, retryNonIdempotent: true });
    await (await p.client.fetch('http://localhost/')).text();
    store.forgetAll();
    assert.equal(await (await p.client.fetch('http://localhost/', { method: 'POST', body: 'x' })).text(), 'ok');
    await p.client.close();
  });

  it('an expired session (TTL) answers 410 and the client re-handshakes', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair({ tls: tls.server, ttl: 30, app: () => new Response('ok') }, { tls: tls.client });
    await (await p.client.fetch('http://localhost/')).text();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(await (await p.client.fetch('http://localhost/')).text(), 'ok');
    assert.equal(p.events.filter((e) => e.type === 'handshake').length, 2);
    const gone = p.wire.find((w) => w.response.status === 410);
    assert.ok(gone, 'one request met a 410');
    // The 410 also deletes the stale cookie.
    assert.match(gone.response.headers.getSetCookie()[0] ?? '', /^atls-session=; .*Max-Age=0/);
    await p.client.close();
  });

  it('mutual authentication refused: 401/403 with the alert records, client gets a typed error', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'mutual');
    const noCert = { ...tls.client };
    delete noCert.cert;
    delete noCert.key;
    const p = makePair({ tls: tls.server }, { tls: noCert });
    await assert.rejects(p.client.fetch('http://localhost/'), (e: unknown) => {
      assert.ok(e instanceof AtlsError, String(e));
      assert.equal(e.source, 'remote');
      assert.ok(['CERTIFICATE_REQUIRED', 'HANDSHAKE_FAILED'].includes(e.code), e.code);
      return true;
    });
    const last = p.wire.at(-1)!;
    assert.ok([401, 403].includes(last.response.status), String(last.response.status));
    assert.equal(last.response.headers.get('content-type'), MEDIA_TYPE_FLIGHT);
    const alert = new Uint8Array(await last.response.arrayBuffer());
    // TLS 1.3: the alert follows the server's handshake keys, so it is an encrypted record (type 23).
    assert.ok(alert[0] === 21 || alert[0] === 23, `an alert record (type ${alert[0]})`);
    assert.equal(p.handler.stats().sessions, 0, 'the failed session is forgotten');
    await p.client.close();
  });

  it('untrusted client certificate: 403', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'mutual');
    const p = makePair({ tls: tls.server }, { tls: { ...tls.client, cert: pki.untrustedClient.cert, key: pki.untrustedClient.key } });
    await assert.rejects(p.client.fetch('http://localhost/'), (e: unknown) => e instanceof AtlsError && e.source === 'remote');
    assert.ok([401, 403].includes(p.wire.at(-1)!.response.status));
    await p.client.close();
  });

  it('wrong PSK identity: 401', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair({ tls: tls.server }, { tls: { ...tls.client, psk: { identity: 'nobody', key: new Uint8Array(16) } } });
    await assert.rejects(p.client.fetch('http://localhost/'), (e: unknown) => e instanceof AtlsError);
    const st = p.wire.at(-1)!.response.status;
    assert.ok(st === 401 || st === 403, String(st));
    await p.client.close();
  });

  it('the client refuses a server its ATLS trust does not cover, whatever the transport', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const p = makePair({ tls: { ...tls.server, cert: pki.untrustedServer.cert, key: pki.untrustedServer.key } }, { tls: tls.client });
    await assert.rejects(p.client.fetch('http://localhost/'), (e: unknown) => e instanceof AtlsError && e.code === 'CERTIFICATE_UNTRUSTED');
    await p.client.close();
  });

  it('the inner app’s own 5xx and exceptions travel protected as inner responses', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair(
      {
        tls: tls.server,
        app: (req) => {
          if (new URL(req.url).pathname === '/throw') throw new Error('boom');
          return new Response('unavailable', { status: 503 });
        },
      },
      { tls: tls.client },
    );
    const a = await p.client.fetch('http://localhost/503');
    assert.equal(a.status, 503);
    assert.equal(await a.text(), 'unavailable');
    const b = await p.client.fetch('http://localhost/throw');
    assert.equal(b.status, 500);
    assert.ok(p.wire.every((w) => w.response.status === 200), 'outer responses stay 200');
    await p.client.close();
  });

  it('concurrent fetches share one handshake; exported requests may overlap', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair({ tls: tls.server, app: (req) => new Response(new URL(req.url).pathname) }, { tls: tls.client });
    const paths = Array.from({ length: 8 }, (_, i) => `/r${i}`);
    const texts = await Promise.all(paths.map(async (x) => (await p.client.fetch(`http://localhost${x}`)).text()));
    assert.deepEqual(texts, paths);
    assert.equal(p.events.filter((e) => e.type === 'handshake').length, 1);
    await p.client.close();
  });

  it('records mode serialises concurrent requests on the session', async () => {
    const tls = tlsPair(pki, 'TLSv1.2', 'psk');
    const p = makePair({ tls: tls.server, mode: 'records', app: (req) => new Response(new URL(req.url).pathname) }, { tls: tls.client, mode: 'records' });
    const paths = Array.from({ length: 5 }, (_, i) => `/r${i}`);
    const texts = await Promise.all(paths.map(async (x) => (await p.client.fetch(`http://localhost${x}`)).text()));
    assert.deepEqual(texts, paths);
    await p.client.close();
  });

  it('large inner bodies (several TLS records / big protected messages)', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    for (const mode of ['exported', 'records'] as const) {
      const p = makePair({ tls: tls.server, mode, app: async (req) => new Response(await req.arrayBuffer()) }, { tls: tls.client, mode });
      const big = new Uint8Array(200_000).map((_, i) => i & 0xff);
      const res = await p.client.fetch('http://localhost/big', { method: 'POST', body: big });
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), big);
      await p.client.close();
    }
  });

  it('the inner response is a real Response with headers, status and body', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const p = makePair(
      { tls: tls.server, app: () => new Response(null, { status: 204, headers: { 'x-a': '1', 'set-cookie': 'inner=1' } }) },
      { tls: tls.client },
    );
    const res = await p.client.fetch('http://localhost/');
    assert.ok(res instanceof Response);
    assert.equal(res.status, 204);
    assert.equal(res.headers.get('x-a'), '1');
    assert.deepEqual(res.headers.getSetCookie(), ['inner=1']);
    // The inner cookie never leaks into the outer response.
    assert.ok(p.wire.every((w) => !w.response.headers.getSetCookie().some((c) => c.startsWith('inner='))));
    await p.client.close();
  });

  it('the worked example of docs/protocol.md §5.10 can be regenerated', async () => {
    const { markdown, exchanges } = await captureHttpExample();
    assert.equal(exchanges.length, 3);
    assert.ok(exchanges[1]!.request.headers.has(HEADER_FLIGHT_LENGTH));
    assert.equal(exchanges[2]!.request.headers.get('content-type'), MEDIA_TYPE_PROTECTED);
    assert.match(markdown, /client_hello/);
    assert.match(markdown, /set-cookie: atls-session=/);
  });

  it('HelloRetryRequest: one more round trip, the request still rides with the final flight', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const p = makePair({ tls: { ...tls.server, groups: 'P-256' } }, { tls: { ...tls.client, groups: 'X25519:P-256' } });
    const r = await p.client.fetch('http://localhost/hrr');
    assert.equal(((await r.json()) as Report).path, '/hrr');
    const hs = p.events.find((e) => e.type === 'handshake');
    assert.ok(hs && hs.type === 'handshake');
    assert.equal(hs.roundTrips, 3);
    assert.ok(hs.piggyBacked);
    assert.equal(p.wire.length, 3);
    await p.client.close();
  });
});
