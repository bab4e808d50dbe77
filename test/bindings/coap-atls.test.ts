/**
 * ATLS over CoAP end to end on loopback UDP: our client and our server with
 * certificates at block sizes 64, 256 and 1024, PSK, mode records, Binary
 * HTTP inner messages, and the bad-input cases (unknown session path, wrong
 * Content-Format, oversized bodies, garbage, tampered messages), each leaving
 * other sessions working.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { AtlsError } from '../../src/errors.js';
import { AtlsCoapServer, echoCoapHandler, type AtlsCoapServerEvent } from '../../src/coap/server.js';
import { AtlsCoapClient, coapFetch } from '../../src/coap/client.js';
import { httpAppAsCoapHandler } from '../../src/coap/http-map.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode, OptionNumber } from '../../src/coap/constants.js';
import { getUintOption, pathOptions, uintOption } from '../../src/coap/packet.js';
import { blockwiseRequest } from '../../src/coap/blockwise.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { availableEngines } from '../../src/engines/index.js';

const PSK = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };
const dec = new TextDecoder();
let pki: TestPki;
let server: AtlsCoapServer;
let pskServer: AtlsCoapServer;
const events: AtlsCoapServerEvent[] = [];

before(async () => {
  pki = await testPki();
  server = await AtlsCoapServer.listen({
    tls: { cert: pki.server.cert, key: pki.server.key },
    handler: echoCoapHandler,
    httpApp: async (req) => new Response(`http ${req.method} ${new URL(req.url).pathname} ${await req.text()}`, { status: 200 }),
    maxBodyBytes: 8 * 1024,
    onEvent: (e) => events.push(e),
  });
  pskServer = await AtlsCoapServer.listen({
    tls: { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256', pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) },
    handler: (req) => ({ code: '2.05', payload: `${req.method} ${req.path} ${req.query.join('&')} ${dec.decode(req.payload)}` }),
  });
});
after(async () => {
  await server.close();
  await pskServer.close();
});

function certClient(extra: Partial<ConstructorParameters<typeof AtlsCoapClient>[0]> = {}): AtlsCoapClient {
  return new AtlsCoapClient({ url: server.url, tls: { ca: pki.ca.cert, serverName: 'localhost' }, ...extra });
}

void describe('ATLS over CoAP', () => {
  for (const blockSize of [16, 64, 256, 1024]) {
    void it(`certificate handshake and an echo at block size ${blockSize}`, async () => {
      let maxPayload = 0;
      const client = certClient({ blockSize, onExchange: (e) => (maxPayload = Math.max(maxPayload, e.request.payload.length)) });
      const info = await client.connect();
      assert.equal(info.version, 'TLSv1.3');
      assert.match(client.resource!, /^\/atls\/[A-Za-z0-9_-]{22}$/);
      const body = new Uint8Array(randomBytes(1500));
      const res = await client.request({ method: 'POST', pathname: '/echo', payload: body, contentFormat: 42 });
      assert.equal(res.codeText, '2.05');
      assert.equal(res.contentFormat, 42);
      assert.deepEqual(new Uint8Array(res.payload), body);
      assert.ok(client.stats.handshakeBytesReceived > 1000, 'certificate flight crossed block-wise');
      await client.close();
    });
  }

  void it('PSK handshake, query and the coapFetch one-shot', async () => {
    const r = await coapFetch(`${pskServer.url}/temp?unit=C`, { method: 'PUT', payload: '21.5', tls: { psk: PSK, ciphers: 'TLS_AES_128_GCM_SHA256', minVersion: 'TLSv1.3' } });
    assert.equal(r.codeText, '2.05');
    assert.equal(dec.decode(r.payload), 'PUT /temp unit=C 21.5');
  });

  void it('small handshakes (native engine): DTLS 1.2 over NON, TLS 1.3 PSK with zero tickets', async (t) => {
    const engine = availableEngines().find((e) => e.capabilities.dtls && e.capabilities.ticketCount);
    if (!engine) {
      t.skip('no engine with DTLS and ticketCount (native engine not built)');
      return;
    }
    const pskLookup = (id: string) => (id === PSK.identity ? PSK.key : undefined);
    const dtls = await AtlsCoapServer.listen({ engine, tls: { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', pskLookup }, handler: echoCoapHandler });
    const zero = await AtlsCoapServer.listen({ engine, tls: { minVersion: 'TLSv1.3', ticketCount: 0, ciphers: 'TLS_AES_128_GCM_SHA256', pskLookup }, handler: echoCoapHandler });
    try {
      const c1 = new AtlsCoapClient({ url: dtls.url, engine, nonConfirmable: true, timeoutMs: 5000, tls: { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', psk: PSK } });
      assert.equal((await c1.connect()).version, 'DTLSv1.2');
      assert.equal(dec.decode((await c1.request({ method: 'POST', payload: 'over NON' })).payload), 'over NON');
      await c1.close();
      const c2 = new AtlsCoapClient({ url: zero.url, engine, tls: { minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256', psk: PSK } });
      await c2.connect();
      // Zero tickets: the server's answer to the client Finished is empty.
      assert.ok(c2.stats.handshakeBytesSent + c2.stats.handshakeBytesReceived < 700, JSON.stringify(c2.stats));
      await c2.close();
    } finally {
      await dtls.close();
      await zero.close();
    }
  });

  void it('an HTTP application answers inner CoAP requests (httpAppAsCoapHandler, for --upstream)', async () => {
    const srv = await AtlsCoapServer.listen({
      tls: { cert: pki.server.cert, key: pki.server.key },
      handler: httpAppAsCoapHandler(async (req) =>
        req.method === 'GET'
          ? new Response('gone', { status: 404 })
          : new Response(JSON.stringify({ got: await req.json(), path: new URL(req.url).pathname, q: new URL(req.url).search }), { headers: { 'content-type': 'application/json' } }),
      ),
    });
    try {
      const client = new AtlsCoapClient({ url: srv.url, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      const r = await client.request({ method: 'POST', pathname: '/api/v1?x=2', payload: '{"t":21}', contentFormat: 50 });
      assert.equal(r.codeText, '2.05');
      assert.equal(r.contentFormat, 50);
      assert.deepEqual(JSON.parse(dec.decode(r.payload)), { got: { t: 21 }, path: '/api/v1', q: '?x=2' });
      assert.equal((await client.request({ method: 'GET', pathname: '/nothing' })).codeText, '4.04');
      await client.close();
    } finally {
      await srv.close();
    }
  });

  void it('IPv6 (::1)', async (t) => {
    let v6: AtlsCoapServer;
    try {
      v6 = await AtlsCoapServer.listen({ host: '::1', tls: { pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) }, handler: echoCoapHandler });
    } catch {
      t.skip('no IPv6 loopback on this machine');
      return;
    }
    try {
      assert.match(v6.url, /^coap:\/\/\[::1\]:\d+$/);
      const r = await coapFetch(`${v6.url}/x`, { method: 'POST', payload: 'six', tls: { psk: PSK } });
      assert.equal(dec.decode(r.payload), 'six');
    } finally {
      await v6.close();
    }
  });

  void it('mode records (architecture a)', async () => {
    const rec = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, mode: 'records', handler: echoCoapHandler });
    try {
      const client = new AtlsCoapClient({ url: rec.url, mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      const res = await client.request({ method: 'POST', pathname: '/x', payload: 'in records' });
      assert.equal(dec.decode(res.payload), 'in records');
      await client.close();
    } finally {
      await rec.close();
    }
  });

  void it('Binary HTTP inner messages (Content-Format 65002) reach the HTTP app', async () => {
    const client = certClient();
    const res = await client.fetch(new Request('https://service.example/hello', { method: 'POST', body: 'hi' }));
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'http POST /hello hi');
    await client.close();
  });

  void it('DELETE closes the session resource; later use gets 4.04 (CLOSED)', async () => {
    const client = certClient();
    await client.connect();
    const path = client.resource!;
    const before = server.handler.sessionCount;
    await client.close();
    assert.equal(server.handler.sessionCount, before - 1);
    const ep = await CoapEndpoint.bind();
    try {
      const r = await ep.request(server.endpoint.address, { code: CoapCode.POST, options: [...pathOptions(path), uintOption(OptionNumber.ContentFormat, 65001)], payload: new Uint8Array(40) });
      assert.equal(r.code, CoapCode.NotFound);
    } finally {
      await ep.close();
    }
  });

  void describe('bad input', () => {
    let ep: CoapEndpoint;
    let good: AtlsCoapClient;
    before(async () => {
      ep = await CoapEndpoint.bind();
      good = certClient();
      await good.connect();
    });
    after(async () => {
      await good.close();
      await ep.close();
    });
    const post = (path: string, cf: number | undefined, payload: Uint8Array) =>
      blockwiseRequest((r) => ep.request(server.endpoint.address, r), {
        code: CoapCode.POST,
        options: [...pathOptions(path), ...(cf === undefined ? [] : [uintOption(OptionNumber.ContentFormat, cf)])],
        payload,
      });
    const stillWorks = async () => {
      const r = await good.request({ method: 'POST', pathname: '/ok', payload: 'still here' });
      assert.equal(dec.decode(r.payload), 'still here');
    };

    void it('unknown session paths and resources get 4.04', async () => {
      assert.equal((await post('/atls/AAAAAAAAAAAAAAAAAAAAAA', 65000, new Uint8Array(5))).code, CoapCode.NotFound);
      assert.equal((await post('/atls/../../etc', 65000, new Uint8Array(5))).code, CoapCode.NotFound);
      assert.equal((await post('/elsewhere', 65000, new Uint8Array(5))).code, CoapCode.NotFound);
      await stillWorks();
    });

    void it('wrong or missing Content-Format gets 4.15', async () => {
      assert.equal((await post('/.well-known/atls', 0, new Uint8Array(5))).code, CoapCode.UnsupportedContentFormat);
      assert.equal((await post('/.well-known/atls', undefined, new Uint8Array(5))).code, CoapCode.UnsupportedContentFormat);
      assert.equal((await post(good.resource!, 50, new Uint8Array(5))).code, CoapCode.UnsupportedContentFormat);
      await stillWorks();
    });

    void it('oversized bodies get 4.13 with Size1', async () => {
      const r = await post('/.well-known/atls', 65000, new Uint8Array(9000));
      assert.equal(r.code, CoapCode.RequestEntityTooLarge);
      assert.equal(getUintOption(r, OptionNumber.Size1), 8 * 1024);
      await stillWorks();
    });

    void it('a garbage first flight is refused without creating a session', async () => {
      const n = server.handler.sessionCount;
      const r = await post('/.well-known/atls', 65000, new Uint8Array(randomBytes(100)));
      assert.equal(r.code >> 5, 4);
      assert.equal(server.handler.sessionCount, n);
      await stillWorks();
    });

    void it('a tampered protected message gets 4.00 and the session goes on', async () => {
      const r = await post(good.resource!, 65001, new Uint8Array(randomBytes(40)));
      assert.equal(r.code, CoapCode.BadRequest);
      await stillWorks();
    });

    void it('block-wise abuse on the real server: bounded transfers, 4.08, other sessions unaffected', async () => {
      const b1 = (num: number, more: boolean, tag: number) => [
        { number: OptionNumber.RequestTag, value: new Uint8Array([tag]) },
        { number: OptionNumber.Block1, value: new Uint8Array([(num << 4) | (more ? 8 : 0)]) }, // SZX 0: 16 bytes
      ];
      const raw = (options: ReturnType<typeof b1>, payload: Uint8Array) =>
        ep.request(server.endpoint.address, { code: CoapCode.POST, options: [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000), ...options], payload });
      const codes: number[] = [];
      for (let tag = 0; tag < 20; tag++) codes.push((await raw(b1(0, true, tag), new Uint8Array(16))).code);
      assert.equal(codes.filter((c) => c === CoapCode.Continue).length, 16, 'per-peer cap');
      assert.equal(codes.filter((c) => c === CoapCode.ServiceUnavailable).length, 4);
      assert.equal((await raw(b1(5, true, 0), new Uint8Array(16))).code, CoapCode.RequestEntityIncomplete, 'gap');
      assert.equal((await raw(b1(1, false, 200), new Uint8Array(3))).code, CoapCode.RequestEntityIncomplete, 'no transfer');
      assert.ok(server.blockwise.stats.transfers <= 16); // bounded: at most 16 x 16 bytes held for this peer
      await stillWorks(); // a different peer endpoint, unaffected
    });

    void it('random datagrams never crash the server', async () => {
      const sock = createSocket('udp4');
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      for (let i = 0; i < 2000; i++) {
        const d = new Uint8Array(randomBytes(1 + (i % 80)));
        if (i % 2 === 0) d[0] = 0x40 | (d[0]! & 0x3f);
        sock.send(d, server.port, '127.0.0.1');
      }
      // A busy machine may take a while to read them: wait for the first malformed one to be counted.
      for (let i = 0; i < 100 && server.endpoint.stats.malformed === 0; i++) await new Promise((r) => setTimeout(r, 100));
      sock.close();
      assert.ok(server.endpoint.stats.malformed > 0);
      await stillWorks();
    });

    void it('a client that fails to reach anyone times out with TIMEOUT', async () => {
      const c = new AtlsCoapClient({ url: 'coap://127.0.0.1:9', tls: { psk: PSK }, transmission: { ackTimeout: 20, maxRetransmit: 1 } });
      await assert.rejects(c.connect(), (e: unknown) => e instanceof AtlsError && (e.code === 'TIMEOUT' || e.code === 'CLOSED'));
      await c.close();
    });
  });

  void it('reported session events', () => {
    assert.ok(events.some((e) => e.type === 'established'));
    assert.ok(events.some((e) => e.type === 'request' && e.path === '/echo'));
  });
});
