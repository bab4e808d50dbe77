/**
 * The session cap does not lock honest clients out: one client (127.0.0.2)
 * completes five times as many handshakes as the cap holds, over real HTTP
 * and CoAP sockets, and honest clients (127.0.0.1) still get in and keep
 * their sessions; what gave way was the heavy client's own least recently
 * used sessions, and the limit and evictions were reported with the peer.
 * A small cap keeps this quick.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { createAtlsServer } from '../../src/http/node.js';
import { createAtlsClient } from '../../src/http/client.js';
import { echoApp } from '../../src/http/apps.js';
import type { AtlsServerEvent } from '../../src/http/server.js';
import { socketHandshake } from '../helpers/http.js';
import { AtlsCoapServer, echoCoapHandler, type AtlsCoapServerEvent } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';

const CAP = 20;
const HEAVY = 5 * CAP;
const HONEST = 8; // below half the cap: a fair share whatever the heavy client does

let pki: TestPki;
const tls = () => ({ ca: pki.ca.cert, serverName: 'localhost' });

before(async () => {
  pki = await testPki();
});

function limitEvents(events: Array<{ type: string }>): { limits: Set<string>; evictedPeers: Set<string> } {
  const limits = new Set<string>();
  const evictedPeers = new Set<string>();
  for (const e of events as Array<{ type: string; limit?: string; what?: string; peer?: string }>) {
    if (e.type === 'limit' && e.limit === 'sessions') limits.add(e.peer!);
    if (e.type === 'evicted' && e.what === 'session') evictedPeers.add(e.peer!);
  }
  return { limits, evictedPeers };
}

describe('fair share of established sessions', () => {
  it(`HTTP: ${HEAVY} completed handshakes from one address do not lock others out (cap ${CAP})`, async () => {
    const events: AtlsServerEvent[] = [];
    const server = createAtlsServer({ tls: { cert: pki.server.cert, key: pki.server.key }, app: echoApp, limits: { maxSessions: CAP }, onEvent: (e) => events.push(e) });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const heavy = new http.Agent({ keepAlive: true, maxSockets: 4, localAddress: '127.0.0.2' } as http.AgentOptions);
    const honest = Array.from({ length: HONEST }, () => createAtlsClient({ tls: tls(), proxy: false, reportTransport: false }));
    let handshakes = 0;
    const countHandshakes = (e: AtlsServerEvent): void => {
      if (e.type === 'handshake' && e.address === '127.0.0.1') handshakes++;
    };
    try {
      for (let i = 0; i < HEAVY / 2; i++) await socketHandshake(port, heavy, tls());
      assert.equal(server.atls.stats().sessions, CAP, 'the heavy client filled the cap');
      for (const [i, c] of honest.entries()) {
        const res = await c.fetch(`http://127.0.0.1:${port}/in`, { method: 'POST', body: `honest ${i}` });
        assert.equal(await res.text(), `honest ${i}`);
      }
      events.forEach(countHandshakes);
      assert.equal(handshakes, HONEST);
      // The heavy client goes on; the honest sessions stay (no new handshake needed).
      for (let i = 0; i < HEAVY / 2; i++) await socketHandshake(port, heavy, tls());
      handshakes = 0;
      const before = events.length;
      for (const [i, c] of honest.entries()) {
        const res = await c.fetch(`http://127.0.0.1:${port}/again`, { method: 'POST', body: `again ${i}` });
        assert.equal(await res.text(), `again ${i}`);
      }
      events.slice(before).forEach(countHandshakes);
      assert.equal(handshakes, 0, 'the honest sessions survived the heavy client');
      assert.ok((server.atls.stats().sessions ?? Infinity) <= CAP);
      const { limits, evictedPeers } = limitEvents(events);
      assert.ok(limits.has('127.0.0.2'), 'limit "sessions" reported with the heavy peer');
      assert.deepEqual([...evictedPeers], ['127.0.0.2'], 'only the heavy peer gave way');
    } finally {
      heavy.destroy();
      for (const c of honest) await c.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it(`CoAP: ${HEAVY} completed handshakes from one address do not lock others out (cap ${CAP})`, async () => {
    const events: AtlsCoapServerEvent[] = [];
    const server = await AtlsCoapServer.listen({
      tls: { cert: pki.server.cert, key: pki.server.key },
      handler: echoCoapHandler,
      host: '127.0.0.1',
      maxSessions: CAP,
      onEvent: (e) => events.push(e),
    });
    const heavyEndpoint = await CoapEndpoint.bind({ host: '127.0.0.2' });
    const honest = Array.from({ length: HONEST }, () => new AtlsCoapClient({ url: server.url, tls: tls() }));
    const established = (): number => events.filter((e) => e.type === 'established').length;
    try {
      // The heavy client's sessions are never closed: it only holds them.
      for (let i = 0; i < HEAVY / 2; i++) await new AtlsCoapClient({ url: server.url, tls: tls(), endpoint: heavyEndpoint }).connect();
      assert.equal(server.handler.sessionCount, CAP, 'the heavy client filled the cap');
      for (const [i, c] of honest.entries()) {
        const res = await c.request({ method: 'POST', pathname: '/in', payload: `honest ${i}` });
        assert.equal(new TextDecoder().decode(res.payload), `honest ${i}`);
      }
      for (let i = 0; i < HEAVY / 2; i++) await new AtlsCoapClient({ url: server.url, tls: tls(), endpoint: heavyEndpoint }).connect();
      const before = established();
      for (const [i, c] of honest.entries()) {
        const res = await c.request({ method: 'POST', pathname: '/again', payload: `again ${i}` });
        assert.equal(new TextDecoder().decode(res.payload), `again ${i}`);
      }
      assert.equal(established(), before, 'the honest sessions survived the heavy client');
      assert.ok(server.handler.sessionCount <= CAP);
      const { limits, evictedPeers } = limitEvents(events);
      assert.ok(limits.has('127.0.0.2'), 'limit "sessions" reported with the heavy peer');
      assert.deepEqual([...evictedPeers], ['127.0.0.2'], 'only the heavy peer gave way');
    } finally {
      for (const c of honest) await c.close();
      await heavyEndpoint.close();
      await server.close();
    }
  });
});
