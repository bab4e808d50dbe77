/**
 * Several HTTP handlers (stand-ins for processes) sharing one session state
 * store: a session established at one is answered by all, a message accepted
 * by one is REPLAYED at the others, send numbers never repeat, and nothing
 * without the session's keys ends or replaces it. Both the synchronous
 * in-memory store and an asynchronous-only one (the path Redis takes).
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { testPki, type TestPki } from '../helpers/pki.js';
import { ForgetfulStore, cookieOf, manualHandshake, post, protectedRequest, tlsPair } from '../helpers/http.js';
import { createAtlsHandler, type AtlsHandler } from '../../src/http/server.js';
import { MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { MemoryStateStore, type SessionStateStore } from '../../src/store/index.js';
import { parseHeader } from '../../src/protect/index.js';
import { bhttpToResponse } from '../../src/bhttp/web.js';
import { AtlsClientSession } from '../../src/session/session.js';

describe('HTTP handlers sharing one session state store', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  const stores: Array<[string, () => SessionStateStore]> = [
    ['memory (sync)', () => new MemoryStateStore({ sweepIntervalMs: 0 })],
    ['async-only', () => new ForgetfulStore()],
  ];
  for (const [name, makeStore] of stores) {
    it(`${name}: one session answered round-robin by three handlers, replays refused everywhere, send numbers unique`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const store = makeStore();
      const handlers: AtlsHandler[] = [0, 1, 2].map((i) =>
        createAtlsHandler({ tls: tls.server, store, app: (req) => new Response(`${i} ${new URL(req.url).pathname}`) }),
      );
      const { session, cookie } = await manualHandshake(handlers[0]!, tls.client);
      const seen = new Set<bigint>();
      const sent: Uint8Array[] = [];
      for (let i = 0; i < 9; i++) {
        const msg = await protectedRequest(session, `http://localhost/r${i}`);
        sent.push(msg);
        const res = await post(handlers[i % 3]!, msg, { type: MEDIA_TYPE_PROTECTED, cookie });
        assert.equal(res.status, 200, `request ${i}`);
        const body = new Uint8Array(await res.arrayBuffer());
        const seq = parseHeader(body).seq;
        assert.ok(!seen.has(seq), `send number ${seq} used twice`);
        seen.add(seq);
        const inner = bhttpToResponse(session.unprotect(body));
        assert.equal(await inner.text(), `${i % 3} /r${i}`);
      }
      // Accepted at handler 0: replayed at 1 and 2 (and at 0).
      for (const h of handlers) {
        const res = await post(h, sent[0]!, { type: MEDIA_TYPE_PROTECTED, cookie });
        assert.equal(res.status, 400);
        assert.equal(res.headers.get('atls-error'), 'REPLAYED');
      }
      // Concurrent requests of one session at all three: distinct send numbers.
      const batch = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const msg = await protectedRequest(session, `http://localhost/c${i}`);
          const res = await post(handlers[i % 3]!, msg, { type: MEDIA_TYPE_PROTECTED, cookie });
          assert.equal(res.status, 200);
          return parseHeader(new Uint8Array(await res.arrayBuffer())).seq;
        }),
      );
      for (const s of batch) {
        assert.ok(!seen.has(s), `send number ${s} used twice`);
        seen.add(s);
      }
      for (const h of handlers) await h.close();
      await store.close();
    });

    it(`${name}: nothing without the keys ends or replaces an established session`, async () => {
      const tls = tlsPair(pki, 'TLSv1.3', 'cert');
      const store = makeStore();
      const h = createAtlsHandler({ tls: tls.server, store, app: () => new Response('ok') });
      const { session, cookie, flights } = await manualHandshake(h, tls.client);
      // Records bodies (a replayed Finished, garbage) to the established session: 409, session intact.
      const late = await post(h, flights[flights.length - 1]!, { cookie });
      assert.equal(late.status, 409);
      // A ClientHello carrying its cookie starts a NEW session beside it.
      const other = new AtlsClientSession({ tls: tls.client });
      const hello = (await other.start()).flight;
      const res = await post(h, hello, { cookie });
      assert.equal(res.status, 200);
      const newCookie = cookieOf(res);
      assert.ok(newCookie && newCookie !== cookie);
      // A forged protected message: 400, session intact.
      const forged = await post(h, new Uint8Array(40).fill(0x20), { type: MEDIA_TYPE_PROTECTED, cookie });
      assert.equal(forged.status, 400);
      const ok = await post(h, await protectedRequest(session), { type: MEDIA_TYPE_PROTECTED, cookie });
      assert.equal(ok.status, 200, 'the original session goes on');
      await h.close();
      await store.close();
    });
  }

  it('a session the store lost answers 410 and clears the cookie', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const store = new ForgetfulStore();
    const h = createAtlsHandler({ tls: tls.server, store, app: () => new Response('ok') });
    const { session, cookie } = await manualHandshake(h, tls.client);
    assert.equal((await post(h, await protectedRequest(session), { type: MEDIA_TYPE_PROTECTED, cookie })).status, 200);
    store.forgetAll();
    const res = await post(h, await protectedRequest(session), { type: MEDIA_TYPE_PROTECTED, cookie });
    assert.equal(res.status, 410);
    assert.equal(cookieOf(res), '');
    await h.close();
  });
});
