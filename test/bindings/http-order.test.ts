/**
 * docs/protocol.md §5.8: the order in which a server checks a request, and
 * §4: an authentic protected message whose inner message is malformed
 * spends its sequence number; §5.5: how many requests a client keeps in
 * flight.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { testPki, type TestPki } from '../helpers/pki.js';
import { manualHandshake, post, protectedRequest, tlsPair, MEDIA_TYPE_PROTECTED } from '../helpers/http.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient } from '../../src/http/client.js';

const app = (): Response => new Response('inner ok');

describe('order of checks and sequence numbers', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  it('an established exported session: a body that is not records is 409 INVALID_STATE, not 400', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app });
    const { cookie } = await manualHandshake(h, tls.client);
    const garbage = await post(h, new Uint8Array([0xff, 0x00, 0x01]), { cookie });
    assert.equal(garbage.status, 409);
    assert.equal(garbage.headers.get('atls-error'), 'INVALID_STATE');
    // The same body with no cookie is judged as records: 400.
    const fresh = await post(h, new Uint8Array([0xff, 0x00, 0x01]));
    assert.equal(fresh.status, 400);
    assert.equal(fresh.headers.get('atls-error'), 'MALFORMED_RECORD');
    // Content-Type comes before everything else: 415 even with a valid cookie.
    assert.equal((await post(h, new Uint8Array([0xff]), { cookie, type: 'text/plain' })).status, 415);
    assert.equal(h.stats().sessions, 1, 'none of this touched the session');
  });

  it('an authentic message with a malformed inner request: 400, its sequence number is spent, the session goes on', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app });
    const { session, cookie } = await manualHandshake(h, tls.client);
    const bad = session.protect(new TextEncoder().encode('not binary http'));
    const r1 = await post(h, bad, { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(r1.status, 400);
    assert.equal(r1.headers.get('atls-error'), 'MALFORMED_MESSAGE');
    const again = await post(h, bad, { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(again.headers.get('atls-error'), 'REPLAYED', 'the number was recorded when the message opened');
    const ok = await post(h, await protectedRequest(session), { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(ok.status, 200);
  });
});

describe('requests in flight at once', () => {
  it('the client keeps at most 64 protected requests outstanding: 200 at once, delivered in reverse, all answered', async () => {
    const pki = await testPki();
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app });
    // A path that holds protected requests and delivers each batch last first, the worst reordering.
    let batch: Array<() => void> = [];
    let peak = 0;
    const client = createAtlsClient({
      tls: tls.client,
      piggyback: false,
      transport: {
        fetch: (request) => {
          if (request.headers.get('content-type') !== MEDIA_TYPE_PROTECTED) return h(request);
          return new Promise<Response>((resolve) => {
            batch.push(() => void h(request).then(resolve));
            peak = Math.max(peak, batch.length);
            if (batch.length === 1) {
              setTimeout(() => {
                const now = batch.reverse();
                batch = [];
                for (const deliver of now) deliver();
              }, 20);
            }
          });
        },
      },
    });
    await (await client.fetch('http://localhost/warm-up')).text();
    const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => client.fetch(`http://localhost/${i}`).then((r) => r.status)));
    assert.deepEqual(new Set(answers), new Set([200]));
    assert.equal(peak, 64, 'never more than 64 sealed and unanswered');
    await client.close();
    await h.close();
  });
});
