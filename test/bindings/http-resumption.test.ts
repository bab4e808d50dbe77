/**
 * The HTTP client keeps the latest TLS ticket per origin: a re-handshake
 * after a lost session resumes, servers sharing ticket keys resume each
 * other's tickets, and a ticket the server cannot use costs only a full handshake.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { testPki, type TestPki } from '../helpers/pki.js';
import { ForgetfulStore, makePair, tlsPair } from '../helpers/http.js';
import { availableEngines } from '../../src/engines/index.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient, type AtlsClientEvent } from '../../src/http/client.js';
import type { HandshakeInfo } from '../../src/engines/types.js';

/** The `info` of every handshake event, in order. */
function handshakes(events: AtlsClientEvent[]): HandshakeInfo[] {
  return events.flatMap((e) => (e.type === 'handshake' ? [e.info] : []));
}

describe('HTTP client resumption', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const engine of availableEngines()) {
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      it(`${engine.name} ${version}: the re-handshake after a forgotten session resumes`, async () => {
        const tls = tlsPair(pki, version, 'cert');
        const store = new ForgetfulStore();
        const p = makePair(
          { tls: tls.server, store, engine, app: () => new Response('ok') },
          { tls: tls.client, engine },
        );
        assert.equal(await (await p.client.fetch('http://localhost/a')).text(), 'ok');
        store.forgetAll(); // the server forgets every session (restart, eviction, TTL)
        assert.equal(await (await p.client.fetch('http://localhost/a')).text(), 'ok');
        const hs = handshakes(p.events);
        assert.deepEqual(
          hs.map((i) => i.resumed),
          [false, true],
        );
        assert.equal(p.events.filter((e) => e.type === 'session-lost').length, 1);
        // A new client of the same origin has no ticket: a full handshake.
        store.forgetAll();
        await p.client.close();
        assert.equal(await (await p.client.fetch('http://localhost/b')).text(), 'ok');
        assert.equal(handshakes(p.events).at(-1)!.resumed, false, 'close() forgets the tickets');
        await p.client.close();
      });
    }

    it(`${engine.name}: a PSK client makes full handshakes, so the server keeps seeing its identity`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'psk');
      const store = new ForgetfulStore();
      const p = makePair({ tls: tls.server, store, engine }, { tls: tls.client, engine });
      const identity = async (): Promise<unknown> => ((await (await p.client.fetch('http://localhost/')).json()) as { pskIdentity: unknown }).pskIdentity;
      assert.equal(await identity(), 'device-17');
      store.forgetAll();
      assert.equal(await identity(), 'device-17');
      assert.deepEqual(
        handshakes(p.events).map((i) => i.resumed),
        [false, false],
      );
      await p.client.close();
    });

    it(`${engine.name}: mutual authentication: the resumed session still shows the client's certificate`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'mutual');
      const store = new ForgetfulStore();
      const p = makePair({ tls: tls.server, store, engine }, { tls: tls.client, engine });
      const subject = async (): Promise<unknown> => ((await (await p.client.fetch('http://localhost/')).json()) as { subject: unknown }).subject;
      assert.match(String(await subject()), /CN=atls-test-client/);
      store.forgetAll();
      assert.match(String(await subject()), /CN=atls-test-client/);
      assert.deepEqual(
        handshakes(p.events).map((i) => i.resumed),
        [false, true],
      );
      await p.client.close();
    });

    it(`${engine.name}: resumption: false always makes full handshakes`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const store = new ForgetfulStore();
      const p = makePair({ tls: tls.server, store, engine, app: () => new Response('ok') }, { tls: tls.client, engine, resumption: false });
      await (await p.client.fetch('http://localhost/')).text();
      store.forgetAll();
      await (await p.client.fetch('http://localhost/')).text();
      assert.deepEqual(
        handshakes(p.events).map((i) => i.resumed),
        [false, false],
      );
      await p.client.close();
    });
  }

  for (const engine of availableEngines()) {
    for (const shared of [true, false]) {
      const title = shared
        ? "two servers sharing ticketKeys behind one origin resume each other's tickets"
        : 'a server with other ticket keys makes a full handshake and the request succeeds';
      it(`${engine.name}: ${title}`, async () => {
        const tls = tlsPair(pki, 'TLSv1.3', 'cert');
        const keysA = new Uint8Array(48).fill(1);
        const keysB = shared ? keysA : new Uint8Array(48).fill(2);
        const ctx = { sessionIdContext: 'atls-resumption-test' };
        const stores = [new ForgetfulStore(), new ForgetfulStore()];
        const handlers = [
          createAtlsHandler({ tls: { ...tls.server, ...ctx, ticketKeys: keysA }, store: stores[0]!, engine, app: () => new Response('A') }),
          createAtlsHandler({ tls: { ...tls.server, ...ctx, ticketKeys: keysB }, store: stores[1]!, engine, app: () => new Response('B') }),
        ];
        let backend = 0;
        const events: AtlsClientEvent[] = [];
        const client = createAtlsClient({
          tls: tls.client,
          engine,
          transport: { fetch: (request) => handlers[backend]!(request) },
          onEvent: (e) => events.push(e),
        });
        assert.equal(await (await client.fetch('http://localhost/')).text(), 'A');
        backend = 1; // the balancer moves the origin to the other instance, which knows no session
        assert.equal(await (await client.fetch('http://localhost/')).text(), 'B');
        assert.deepEqual(
          handshakes(events).map((i) => i.resumed),
          [false, shared],
        );
        if (!shared) {
          // The full handshake brought a ticket of B's keys: the next loss resumes with B.
          stores[1]!.forgetAll();
          assert.equal(await (await client.fetch('http://localhost/')).text(), 'B');
          assert.equal(handshakes(events).at(-1)!.resumed, true);
        }
        await client.close();
      });
    }
  }
});
