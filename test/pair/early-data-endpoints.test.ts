/**
 * TLS 1.3 early data through the HTTP endpoints, on every engine pair that
 * has 0-RTT (the native engine today): a records-mode server serves the
 * early request once the handshake completes, marked `Early-Data: 1` for the
 * app (RFC 8470 §5.1); a 425 makes the client send it again after the
 * handshake (§5.2); a ClientHello whose handshake never completes gets
 * nothing served. Servers that cannot carry early data (mode exported, CoAP)
 * refuse `maxEarlyData` at construction.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { availableEngines } from '../../src/engines/index.js';
import type { TlsEngine } from '../../src/engines/types.js';
import { AtlsError } from '../../src/errors.js';
import { createAtlsHandler, type AtlsRawApp } from '../../src/http/server.js';
import { createAtlsClient, type AtlsClientEvent } from '../../src/http/client.js';
import { encodeRequest } from '../../src/bhttp/index.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { AtlsCoapServer, echoCoapHandler } from '../../src/coap/server.js';
import { post } from '../helpers/http.js';
import { REQUIRE_NATIVE } from '../helpers/native-drive.js';
import { testPki, type TestPki } from '../helpers/pki.js';

let pki: TestPki;
before(async () => {
  pki = await testPki();
});

/** Engines that accept and send 0-RTT; none (no addon) skips, unless CI demands the native engine. */
function earlyEngines(t: TestContext): TlsEngine[] {
  const engines = availableEngines().filter((e) => e.capabilities.earlyData);
  if (engines.length > 0) return engines;
  if (REQUIRE_NATIVE) throw new Error('no engine with TLS 1.3 early data and ATLS_REQUIRE_NATIVE=1');
  t.skip('no engine with TLS 1.3 early data (the native addon is not built)');
  return [];
}

const EARLY_PATH = '/transfer';
const earlyRequest = (headers: Array<[string, string]> = []) =>
  encodeRequest({ method: 'POST', scheme: 'http', authority: 'localhost', path: EARLY_PATH, headers });

/**
 * A records-mode handler with early data on and a client whose session is
 * lost once (410), so that its second request resumes with the ticket and
 * sends `earlyData` with the ClientHello.
 */
function rig(engine: TlsEngine, app: (req: Request) => Response) {
  const handler = createAtlsHandler({ tls: { cert: pki.server.cert, key: pki.server.key, maxEarlyData: 4096 }, engine, mode: 'records', app: async (req) => app(req) });
  const events: AtlsClientEvent[] = [];
  let lose = false;
  const client = createAtlsClient({
    tls: { ca: pki.ca.cert, serverName: 'localhost', earlyData: earlyRequest() },
    engine,
    mode: 'records',
    transport: { fetch: async (request) => (lose ? ((lose = false), new Response(null, { status: 410 })) : handler(request)) },
    onEvent: (e) => events.push(e),
  });
  const resumeWithEarlyData = async (): Promise<Response> => {
    await (await client.fetch('http://localhost/first')).text(); // full handshake: no ticket, so no early data
    lose = true;
    return client.fetch('http://localhost/second'); // 410, then a resumed handshake carrying the early request
  };
  const close = async () => {
    await client.close();
    await handler.close();
  };
  return { handler, client, events, resumeWithEarlyData, close };
}

const seenBy = (req: Request) => `${req.method} ${new URL(req.url).pathname} early-data=${req.headers.get('early-data')}`;

void describe('TLS 1.3 early data at the endpoints (RFC 8470)', () => {
  void it('records mode: the early request reaches the app once, after the handshake, marked Early-Data: 1', async (t) => {
    for (const engine of earlyEngines(t)) {
      const seen: string[] = [];
      const r = rig(engine, (req) => (seen.push(seenBy(req)), new Response(`ok ${new URL(req.url).pathname}`)));
      try {
        const res = await r.resumeWithEarlyData();
        assert.equal(await res.text(), 'ok /second');
        assert.deepEqual(seen, [
          'GET /first early-data=null',
          `POST ${EARLY_PATH} early-data=1`, // served when the final flight completed the handshake
          'GET /second early-data=null', // sent after the handshake: no mark
        ], engine.name);
        const hs = r.events.filter((e) => e.type === 'handshake');
        assert.equal(hs[1]?.type === 'handshake' && hs[1].info.earlyData, 'accepted');
        assert.equal(hs[1]?.type === 'handshake' && hs[1].piggyBacked, false, 'no request rides with the flight that carries the early answer');
        const early = r.events.filter((e) => e.type === 'early-data');
        assert.equal(early.length, 1);
        assert.equal(early[0]!.type === 'early-data' && early[0]!.status, 200);
      } finally {
        await r.close();
      }
    }
  });

  void it('records mode: an app that answers 425 Too Early gets the request again, unmarked, once the handshake is complete', async (t) => {
    for (const engine of earlyEngines(t)) {
      const seen: string[] = [];
      const r = rig(engine, (req) => {
        seen.push(seenBy(req));
        if (req.headers.get('early-data') === '1') return new Response('too early', { status: 425 });
        return new Response('done');
      });
      try {
        assert.equal(await (await r.resumeWithEarlyData()).text(), 'done');
        assert.deepEqual(seen, ['GET /first early-data=null', `POST ${EARLY_PATH} early-data=1`, `POST ${EARLY_PATH} early-data=null`, 'GET /second early-data=null'], engine.name);
        const early = r.events.flatMap((e) => (e.type === 'early-data' ? [`${e.status} retried=${e.retried}`] : []));
        assert.deepEqual(early, ['425 retried=false', '200 retried=true']);
      } finally {
        await r.close();
      }
    }
  });

  void it('records mode, raw app: the early request carries exactly one early-data: 1, whatever the client put there', async (t) => {
    for (const engine of earlyEngines(t)) {
      const fields: string[][] = [];
      const raw: AtlsRawApp = (req) => {
        fields.push(req.headers.filter(([n]) => n === 'early-data').map(([, v]) => v));
        return { status: 200 };
      };
      const handler = createAtlsHandler({ tls: { cert: pki.server.cert, key: pki.server.key, maxEarlyData: 4096 }, engine, mode: 'records', rawApp: raw });
      try {
        const first = new AtlsClientSession({ mode: 'records', engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
        const ticket = await handshakeFor(handler, first);
        // The client claims the request is not early: the server's mark replaces the claim.
        const session = new AtlsClientSession({ mode: 'records', engine, tls: { ca: pki.ca.cert, serverName: 'localhost', session: ticket, earlyData: earlyRequest([['early-data', '0']]) } });
        await handshakeFor(handler, session);
        assert.equal(session.handshakeInfo?.earlyData, 'accepted');
        assert.deepEqual(fields, [['1']], engine.name);
      } finally {
        await handler.close();
      }
    }
  });

  void it('records mode: early data whose handshake never completes is never served (a replayed ClientHello)', async (t) => {
    for (const engine of earlyEngines(t)) {
      const seen: string[] = [];
      const handler = createAtlsHandler({
        tls: { cert: pki.server.cert, key: pki.server.key, maxEarlyData: 4096 },
        engine,
        mode: 'records',
        app: async (req) => (seen.push(seenBy(req)), new Response('ok')),
      });
      try {
        const ticket = await handshakeFor(handler, new AtlsClientSession({ mode: 'records', engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } }));
        const session = new AtlsClientSession({ mode: 'records', engine, tls: { ca: pki.ca.cert, serverName: 'localhost', session: ticket, earlyData: earlyRequest() } });
        const hello = await session.start();
        const res = await post(handler, hello.flight); // the attacker's copy: nobody sends the Finished
        assert.equal(res.status, 200);
        await res.arrayBuffer();
        assert.deepEqual(seen, [], `${engine.name}: nothing served before the handshake completes`);
      } finally {
        await handler.close();
      }
    }
  });

  void it('servers that cannot carry early data refuse maxEarlyData: mode exported, CoAP', async () => {
    const tls = { cert: pki.server.cert, key: pki.server.key, maxEarlyData: 4096 };
    const invalid = (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT' && /maxEarlyData/.test(e.message);
    assert.throws(() => createAtlsHandler({ tls, mode: 'exported', app: () => new Response('x') }), invalid);
    await assert.rejects(AtlsCoapServer.listen({ tls, mode: 'records', handler: echoCoapHandler }), invalid);
    // maxEarlyData 0 (the default) is fine everywhere.
    await (createAtlsHandler({ tls: { ...tls, maxEarlyData: 0 }, app: () => new Response('x') })).close();
  });
});

/** Runs `session`'s handshake against `handler` (records mode) and returns its ticket. */
async function handshakeFor(handler: ReturnType<typeof createAtlsHandler>, session: AtlsClientSession): Promise<Uint8Array> {
  let out = await session.start();
  let cookie: string | undefined;
  for (let i = 0; i < 4 && (session.state !== 'established' || out.flight.length > 0); i++) {
    const res = await post(handler, out.flight, cookie ? { cookie } : {});
    assert.equal(res.status, 200, await res.clone().text());
    cookie = /atls-session=([^;]*)/.exec(res.headers.get('set-cookie') ?? '')?.[1] ?? cookie;
    out = await session.receive(new Uint8Array(await res.arrayBuffer()));
  }
  const ticket = session.resumptionTicket;
  assert.ok(ticket, 'a ticket');
  return ticket;
}
