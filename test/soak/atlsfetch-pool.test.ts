/**
 * atlsFetch with inline options, as the README shows it, 10,000 times in a
 * row: one client for the equal settings, so one handshake and a handful of
 * keep-alive sockets (counted at the server), whatever object carries them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { createAtlsServer } from '../../src/http/node.js';
import { atlsFetch } from '../../src/http/client.js';

describe('atlsFetch pool', () => {
  it('10,000 calls with inline options: one handshake, at most a handful of sockets', async () => {
    const pki = await testPki();
    let handshakes = 0;
    let sockets = 0;
    let open = 0;
    let mostOpen = 0;
    const server = createAtlsServer({
      tls: { cert: pki.server.cert, key: pki.server.key },
      app: () => new Response('ok'),
      onEvent: (e) => void (e.type === 'handshake' && handshakes++),
    });
    server.on('connection', (s) => {
      sockets++;
      mostOpen = Math.max(mostOpen, ++open);
      s.on('close', () => open--);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const url = `http://localhost:${(server.address() as AddressInfo).port}/item`;
    const ca = pki.ca.cert;
    for (let i = 0; i < 10_000; i++) {
      // A new options object every call, as `atlsFetch(url, { atls: { tls: { ca } } })` makes.
      const res = await atlsFetch(url, { atls: { tls: { ca }, proxy: false } });
      assert.equal(await res.text(), 'ok');
    }
    assert.equal(handshakes, 1);
    assert.ok(mostOpen <= 4, `${mostOpen} sockets open at once`);
    assert.ok(sockets <= 8, `${sockets} sockets over the run`);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
});
