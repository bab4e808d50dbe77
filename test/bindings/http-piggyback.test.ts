/**
 * docs/protocol.md §5.6: a first request riding on the final flight that
 * fails to open ends the session at both ends: the server
 * answers 400 with the error and deletes the cookie, the client fails the
 * session, and the next request starts a new handshake.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { testPki, type TestPki } from '../helpers/pki.js';
import { reportApp, tlsPair } from '../helpers/http.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient, type AtlsClientEvent } from '../../src/http/client.js';
import { COOKIE_NAME, HEADER_FLIGHT_LENGTH } from '../../src/http/constants.js';
import { AtlsError } from '../../src/errors.js';
import { availableEngines } from '../../src/engines/index.js';

describe('a piggy-backed first request that fails', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const engine of availableEngines()) {
    {
      it(`${engine.name}, a forged tag: both ends drop the session, the next request handshakes again`, async () => {
        const tls = tlsPair(pki, 'TLSv1.3', 'cert');
        const handler = createAtlsHandler({ tls: tls.server, app: reportApp, engine });
        const answers: Response[] = [];
        let tamper = true;
        const events: AtlsClientEvent[] = [];
        const client = createAtlsClient({
          tls: tls.client,
          engine,
          onEvent: (e) => events.push(e),
          transport: {
            fetch: async (request) => {
              const split = request.headers.get(HEADER_FLIGHT_LENGTH);
              if (tamper && split !== null) {
                const body = new Uint8Array(await request.arrayBuffer());
                body[body.length - 1]! ^= 0x01;
                request = new Request(request, { body });
              }
              const response = await handler(request);
              answers.push(response.clone());
              return response;
            },
          },
        });
        await assert.rejects(client.fetch('http://localhost/first'), (e: unknown) => {
          assert.ok(e instanceof AtlsError, String(e));
          assert.equal(e.code, 'DECRYPT_FAILED');
          return true;
        });
        const failed = answers.at(-1)!;
        assert.equal(failed.status, 400);
        assert.equal(failed.headers.get('atls-error'), 'DECRYPT_FAILED');
        assert.ok(
          failed.headers.getSetCookie().some((c) => c.startsWith(`${COOKIE_NAME}=;`) && /Max-Age=0/.test(c)),
          'the server deletes the cookie',
        );
        assert.equal(handler.stats().sessions, 0, 'the server forgot the session');

        tamper = false;
        const res = await client.fetch('http://localhost/second');
        assert.equal(res.status, 200);
        assert.equal(((await res.json()) as { path: string }).path, '/second');
        assert.equal(events.filter((e) => e.type === 'handshake').length, 1, 'one handshake completed: the second');
        assert.equal(handler.stats().sessions, 1);
        await client.close();
        await handler.close();
      });
    }
  }
});
