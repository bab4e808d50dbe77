/**
 * Device (our CoAP client) -> CoAP-to-HTTP gateway -> ATLS HTTP service, end
 * to end on loopback, with a record of what the gateway saw: Content-Formats,
 * media types and opaque bodies in which the application data never appears.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { AtlsError } from '../../src/errors.js';
import { createAtlsServer, type AtlsNodeServer } from '../../src/http/index.js';
import { AtlsCoapGateway, coapCodeForStatus, type GatewayEvent } from '../../src/coap/gateway.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { CoapCode, OptionNumber, WELL_KNOWN_PATH } from '../../src/coap/constants.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { DELETE_NEEDS_PROOF } from '../../src/coap/delete.js';
import { getOption, stringOption, uintOption, type CoapOption } from '../../src/coap/packet.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { postClientHello } from '../helpers/coap-hello.js';

const wellKnown = WELL_KNOWN_PATH.map((seg) => stringOption(OptionNumber.UriPath, seg));
import { testPki, type TestPki } from '../helpers/pki.js';

const SECRET = 'SECRET-READING-42';
let pki: TestPki;
let service: AtlsNodeServer;
let gateway: AtlsCoapGateway;
const seen: GatewayEvent[] = [];

before(async () => {
  pki = await testPki();
  service = createAtlsServer({
    tls: { cert: pki.server.cert, key: pki.server.key },
    app: async (req) => new Response(`service got ${req.method} ${new URL(req.url).pathname}: ${await req.text()}`, { headers: { 'content-type': 'text/plain' } }),
  });
  await new Promise<void>((r) => service.listen(0, '127.0.0.1', () => r()));
  const port = (service.address() as AddressInfo).port;
  gateway = await AtlsCoapGateway.listen({ to: `http://127.0.0.1:${port}/`, onEvent: (e) => seen.push(e) });
});
after(async () => {
  await gateway.close();
  await new Promise<void>((r) => service.close(() => r()));
});

function device(blockSize = 64): AtlsCoapClient {
  return new AtlsCoapClient({ url: gateway.url, blockSize, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
}

void describe('CoAP device -> gateway -> HTTP service', () => {
  void it('runs the handshake and a request end to end; the gateway sees only opaque bytes', async () => {
    seen.length = 0;
    const client = device(64);
    const res = await client.fetch(new Request('https://service.example/temp', { method: 'POST', body: SECRET }));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), `service got POST /temp: ${SECRET}`);
    await client.close();

    // What the gateway saw, printed for the record.
    for (const e of seen) {
      console.log(`gateway saw: ${e.direction.padEnd(10)} session=${e.sessionId ?? '(new)'} cf=${e.contentFormat ?? '-'} type=${e.mediaType} ${e.status ?? ''} ${e.coapCode ?? ''} ${e.bytes} B`);
    }
    const formats = seen.map((e) => `${e.direction}:${e.contentFormat}`);
    assert.deepEqual(formats, [
      'to-service:65000', // ClientHello
      'to-device:65000', // ServerHello .. Finished
      'to-service:65000', // client Finished
      'to-device:65000', // answer (tickets)
      'to-service:65002', // protected Binary HTTP request
      'to-device:65002', // protected Binary HTTP response
    ]);
    assert.equal(seen[0]!.mediaType, 'application/atls+octet-stream');
    assert.equal(seen[4]!.mediaType, 'application/atls-protected');
    assert.equal(seen[1]!.coapCode, '2.01');
    for (const e of seen) {
      assert.ok(!Buffer.from(e.body).includes(SECRET), 'the gateway never sees application data');
      assert.ok(!Buffer.from(e.body).includes('service got'), 'nor the response');
    }
  });

  void it('several devices at once keep their own sessions', async () => {
    const clients = [device(64), device(256), device(1024)];
    const texts = await Promise.all(
      clients.map(async (c, i) => (await c.fetch(new Request(`https://service.example/d${i}`, { method: 'POST', body: `n${i}` }))).text()),
    );
    assert.deepEqual(texts, ['service got POST /d0: n0', 'service got POST /d1: n1', 'service got POST /d2: n2']);
    await Promise.all(clients.map((c) => c.close()));
  });

  void it('an inner CoAP message cannot reach an HTTP service: 4.15', async () => {
    const client = device();
    await assert.rejects(client.request({ method: 'GET', pathname: '/x' }), (e: unknown) => e instanceof AtlsError && /4\.15/.test(e.message));
    await client.close();
  });

  void it('a DELETE of a mapping needs the proof the service checks, from any endpoint, before and after the first protected message', async () => {
    // The device's own socket: a DELETE from it is what a spoofer of its UDP source sends.
    const own = await CoapEndpoint.bind();
    const client = new AtlsCoapClient({ url: gateway.url, endpoint: own, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const other = await CoapEndpoint.bind();
    try {
      await client.connect();
      const path = client.resource!.split('/').slice(1).map((seg) => stringOption(OptionNumber.UriPath, seg));
      const del = (from: CoapEndpoint, options: CoapOption[] = [], payload = new Uint8Array(0)) =>
        from.request(gateway.endpoint.address, { code: CoapCode.DELETE, options: [...path, ...options], payload });
      const mapped = gateway.handler.sessionCount;
      // Handshake done, no protected message yet: the gateway cannot tell the session's mode, so no source suffices.
      assert.equal((await del(other)).code, CoapCode.Forbidden, 'another endpoint, no proof');
      assert.equal((await del(own)).code, CoapCode.Forbidden, "the device's own endpoint, no proof");
      assert.equal(gateway.handler.sessionCount, mapped);
      assert.equal((await client.fetch(new Request('https://service.example/a'))).status, 200);
      assert.equal((await del(own)).code, CoapCode.Forbidden, 'an exported session: no proof');
      const forged = await del(other, [uintOption(OptionNumber.ContentFormat, 65001)], new Uint8Array(40));
      assert.equal(forged.code, CoapCode.Forbidden, 'the service refused the forged proof');
      assert.equal(await (await client.fetch(new Request('https://service.example/b', { method: 'POST', body: 'on' }))).text(), 'service got POST /b: on');
      await client.close(); // its DELETE carries a protected message: the service checks it and ends the session
      assert.equal(gateway.handler.sessionCount, mapped - 1);
    } finally {
      await other.close();
      await client.close();
      await own.close();
    }
  });

  void it('a records-mode session proves its DELETE with its close_notify records, which the service checks', async () => {
    const records = createAtlsServer({ tls: { cert: pki.server.cert, key: pki.server.key }, mode: 'records', app: () => new Response('x') });
    await new Promise<void>((r) => records.listen(0, '127.0.0.1', () => r()));
    const gw = await AtlsCoapGateway.listen({ to: `http://127.0.0.1:${(records.address() as AddressInfo).port}/` });
    const own = await CoapEndpoint.bind();
    const client = new AtlsCoapClient({ url: gw.url, endpoint: own, mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    try {
      await client.connect();
      const path = client.resource!.split('/').slice(1).map((seg) => stringOption(OptionNumber.UriPath, seg));
      const del = (options: CoapOption[], payload: Uint8Array) => own.request(gw.endpoint.address, { code: CoapCode.DELETE, options: [...path, ...options], payload });
      assert.equal((await del([], new Uint8Array(0))).code, CoapCode.Forbidden, "the device's own endpoint, no proof");
      const forged = Uint8Array.from([23, 3, 3, 0, 19, ...new Uint8Array(19).fill(7)]);
      assert.equal((await del([uintOption(OptionNumber.ContentFormat, 65000)], forged)).code, CoapCode.Forbidden, 'the service refused the forged close_notify');
      assert.equal(gw.handler.sessionCount, 1);
      assert.equal(records.atls.stats().sessions, 1, 'the session goes on at the service');
      await client.close(); // its DELETE carries its close_notify: the service ends the session
      assert.equal(gw.handler.sessionCount, 0);
      assert.equal(records.atls.stats().sessions, 0);
    } finally {
      await client.close();
      await own.close();
      await gw.close();
      await new Promise<void>((r) => records.close(() => r()));
    }
  });

  void it('an exported session proves its DELETE before its first protected request', async () => {
    const client = device();
    try {
      await client.connect();
      const mapped = gateway.handler.sessionCount;
      await client.close(); // an empty protected message proves the DELETE
      assert.equal(gateway.handler.sessionCount, mapped - 1);
    } finally {
      await client.close();
    }
  });

  void it('a half-open mapping, which no message can prove, takes no DELETE, not even from the endpoint that started it', async () => {
    const own = await CoapEndpoint.bind();
    const other = await CoapEndpoint.bind();
    try {
      const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
      // A lone ClientHello amplifies: repeat it with the Echo value the gateway hands out (RFC 9175 §2.4).
      const post = (options: CoapOption[]) =>
        own.request(gateway.endpoint.address, { code: CoapCode.POST, options: [...wellKnown, uintOption(OptionNumber.ContentFormat, 65000), ...options], payload: hello });
      let created = await post([]);
      const echo = getOption(created, OptionNumber.Echo);
      if (echo) created = await post([echo]);
      assert.equal(created.code, CoapCode.Created);
      const path = created.options.filter((o) => o.number === OptionNumber.LocationPath).map((o) => ({ ...o, number: OptionNumber.UriPath }));
      const mapped = gateway.handler.sessionCount;
      for (const from of [other, own]) {
        const res = await from.request(gateway.endpoint.address, { code: CoapCode.DELETE, options: path, payload: new Uint8Array(0) });
        assert.equal(res.code, CoapCode.Forbidden);
        assert.equal(new TextDecoder().decode(res.payload), DELETE_NEEDS_PROOF);
      }
      assert.equal(gateway.handler.sessionCount, mapped, 'the mapping stays until it idles out');
    } finally {
      await own.close();
      await other.close();
    }
  });

  void it('a flood of handshakes from another address fills only its own share of the mappings: the device keeps its session', async () => {
    const small = await AtlsCoapGateway.listen({ to: gateway.handler.serviceEndpoint, maxSessions: 4, addressCheck: false });
    const device = new AtlsCoapClient({ url: small.url, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const flooder = await CoapEndpoint.bind({ host: '127.0.0.2' });
    try {
      const first = await device.fetch(new Request('https://service.example/a', { method: 'POST', body: 'one' }));
      assert.equal(await first.text(), 'service got POST /a: one');
      const resource = device.resource;
      const flights = device.stats.flights;
      // Twelve fresh ClientHellos from 127.0.0.2: each handshake the service starts is mapped (2.01).
      for (let i = 0; i < 12; i++) {
        const res = await postClientHello(flooder, small.endpoint.address);
        assert.equal(res.code, CoapCode.Created);
      }
      assert.equal(small.handler.sessionCount, 4);
      // The device's mapping is still there: same resource, no new handshake.
      const again = await device.fetch(new Request('https://service.example/b', { method: 'POST', body: 'two' }));
      assert.equal(await again.text(), 'service got POST /b: two');
      assert.equal(device.resource, resource);
      assert.equal(device.stats.flights, flights);
    } finally {
      await device.close();
      await flooder.close();
      await small.close();
    }
  });

  void it('a flight to /.well-known/atls that is no ClientHello gets 4.00 without a request to the service', async () => {
    let forwarded = 0;
    const counting = await AtlsCoapGateway.listen({
      to: gateway.handler.serviceEndpoint,
      addressCheck: false,
      fetch: (input, init) => {
        forwarded++;
        return fetch(input, init);
      },
    });
    const from = await CoapEndpoint.bind();
    try {
      for (const payload of [new TextEncoder().encode('garbage'), Uint8Array.from([21, 3, 3, 0, 2, 2, 40]), Uint8Array.from([22, 3, 3, 0, 4, 2, 0, 0, 0])]) {
        const res = await from.request(counting.endpoint.address, { code: CoapCode.POST, options: [...wellKnown, uintOption(OptionNumber.ContentFormat, 65000)], payload });
        assert.equal(res.code, CoapCode.BadRequest);
      }
      assert.equal(forwarded, 0);
      assert.equal(counting.handler.sessionCount, 0);
      const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
      const res = await from.request(counting.endpoint.address, { code: CoapCode.POST, options: [...wellKnown, uintOption(OptionNumber.ContentFormat, 65000)], payload: hello });
      assert.equal(res.code, CoapCode.Created, 'a ClientHello goes on');
      assert.equal(forwarded, 1);
    } finally {
      await from.close();
      await counting.close();
    }
  });

  void it('maps HTTP statuses to CoAP codes', () => {
    assert.equal(coapCodeForStatus(200), CoapCode.Changed);
    assert.equal(coapCodeForStatus(413), CoapCode.RequestEntityTooLarge);
    assert.equal(coapCodeForStatus(415), CoapCode.UnsupportedContentFormat);
    assert.equal(coapCodeForStatus(403), CoapCode.Forbidden);
    assert.equal(coapCodeForStatus(599), CoapCode.BadGateway);
  });

  void it('a service that is down gives 5.04', async () => {
    const dead = await AtlsCoapGateway.listen({ to: 'http://127.0.0.1:9/', timeoutMs: 2000 });
    try {
      const client = new AtlsCoapClient({ url: dead.url, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      await assert.rejects(client.connect(), (e: unknown) => e instanceof AtlsError && /5\.04/.test(e.message));
      await client.close();
    } finally {
      await dead.close();
    }
  });
});
