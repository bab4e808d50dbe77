/**
 * The browser client (src/browser/fetch.ts) in Node, against a real ATLS
 * server on a loopback socket: Node's fetch stands in for the page's, with a
 * cookie jar standing in for the browser's. The handshake with the first
 * request riding on the final flight, later requests as protected messages,
 * a lost session re-established for an idempotent request and not for a
 * POST, and a server the configured CA did not sign. The same client in a
 * real browser: test/browser.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { createAtlsFetch, type BrowserAtlsEvent } from '../../src/browser/fetch.js';
import { createAtlsServer, echoApp, type AtlsNodeServer } from '../../src/http/index.js';
import { COOKIE_NAME } from '../../src/http/constants.js';
import { testPki, type TestPki } from '../helpers/pki.js';

/** Node's fetch plus one cookie, as a browser keeps it for the origin. */
function browserLikeFetch(): { fetch: typeof fetch; forget(): void } {
  let cookie: string | undefined;
  return {
    fetch: async (input, init) => {
      const headers = new Headers(init?.headers);
      if (cookie) headers.set('cookie', cookie);
      const res = await fetch(input, { ...init, headers });
      for (const sc of res.headers.getSetCookie()) {
        const pair = sc.split(';')[0]!;
        if (pair.startsWith(`${COOKIE_NAME}=`)) cookie = pair;
      }
      return res;
    },
    forget: () => {
      cookie = undefined;
    },
  };
}

void describe('atls/browser client over a real socket (Node fetch as the transport)', () => {
  let pki: TestPki;
  let server: AtlsNodeServer;
  let origin: string;

  before(async () => {
    pki = await testPki();
    server = createAtlsServer({ tls: { cert: pki.server.cert, key: pki.server.key }, app: echoApp });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  void it('handshakes with the first request on the final flight, then sends protected messages', async () => {
    const events: BrowserAtlsEvent[] = [];
    const transport = browserLikeFetch();
    const client = createAtlsFetch({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, fetch: transport.fetch, onEvent: (e) => events.push(e) });
    const first = await client.fetch(`${origin}/one`, { method: 'POST', body: 'first inner body', headers: { 'content-type': 'text/plain' } });
    assert.equal(first.status, 200);
    assert.equal(await first.text(), 'first inner body');
    const hs = events.find((e) => e.type === 'handshake');
    assert.ok(hs?.type === 'handshake');
    assert.equal(hs.info.version, 'TLSv1.3');
    assert.equal(hs.info.peerVerified, true);
    assert.equal(hs.roundTrips, 2);
    const sent = events.filter((e) => e.type === 'flight' && e.direction === 'sent').map((e) => (e.type === 'flight' ? e.kind : ''));
    assert.deepEqual(sent, ['flight', 'flight+protected']);

    const second = await client.fetch(`${origin}/two`, { method: 'PUT', body: 'second', headers: { 'content-type': 'text/plain' } });
    assert.equal(await second.text(), 'second');
    const last = events.filter((e) => e.type === 'flight' && e.direction === 'sent').at(-1);
    assert.equal(last?.type === 'flight' ? last.kind : undefined, 'protected');
    client.close();
  });

  void it('a lost session: an idempotent request handshakes again, a POST is refused', async () => {
    const events: BrowserAtlsEvent[] = [];
    const transport = browserLikeFetch();
    const client = createAtlsFetch({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, fetch: transport.fetch, onEvent: (e) => events.push(e) });
    assert.equal((await client.fetch(`${origin}/a`, { method: 'PUT', body: 'a' })).status, 200);
    transport.forget(); // the browser lost the cookie: the server no longer finds the session
    const again = await client.fetch(`${origin}/b`, { method: 'PUT', body: 'b' });
    assert.equal(await again.text(), 'b');
    assert.ok(events.some((e) => e.type === 'session-lost'));
    assert.equal(events.filter((e) => e.type === 'handshake').length, 2);

    transport.forget();
    await assert.rejects(client.fetch(`${origin}/c`, { method: 'POST', body: 'c' }), { code: 'CLOSED' });
    client.close();
  });

  void it('a server certificate the configured CA did not sign fails the handshake', async () => {
    const client = createAtlsFetch({ tls: { ca: pki.otherCa.cert, serverName: 'localhost' }, fetch: browserLikeFetch().fetch });
    await assert.rejects(client.fetch(`${origin}/x`), { code: 'CERTIFICATE_UNTRUSTED' });
    client.close();
  });
});
