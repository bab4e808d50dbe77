/**
 * The CoAP client resends a flight or protected message answered 5.03 with
 * Max-Age, bounded: against a real ATLS server at its session cap (the
 * LIMIT_REACHED path) and against a bare endpoint that always answers 5.03.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError } from '../../src/errors.js';
import { AtlsCoapServer, echoCoapHandler } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode, OptionNumber } from '../../src/coap/constants.js';
import { pathOptions, stringOption, uintOption, type CoapOption } from '../../src/coap/packet.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { testPki, type TestPki } from '../helpers/pki.js';

let pki: TestPki;
before(async () => {
  pki = await testPki();
});

const tls = () => ({ ca: pki.ca.cert, serverName: 'localhost' });

/**
 * Holds the server's only session slot with a half-open handshake (an
 * established session would give way to a newcomer: fair shares); `end()`
 * completes its handshake, which frees the slot (a half-open handshake takes
 * no DELETE: nothing proves it).
 */
async function holdHalfOpen(server: AtlsCoapServer): Promise<{ end: () => Promise<void>; close: () => Promise<void> }> {
  const ep = await CoapEndpoint.bind();
  const session = new AtlsClientSession({ tls: tls() });
  const hello = (await session.start()).flight;
  const post = (extra: CoapOption[]) =>
    ep.request(server.endpoint.address, {
      code: CoapCode.POST,
      options: [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000), ...extra],
      payload: hello,
    });
  let res = await post([]);
  if (res.code === CoapCode.Unauthorized) res = await post(res.options.filter((o) => o.number === OptionNumber.Echo)); // RFC 9175 address check
  assert.equal(res.code, CoapCode.Created);
  const location = res.options.filter((o) => o.number === OptionNumber.LocationPath).map((o) => stringOption(OptionNumber.UriPath, new TextDecoder().decode(o.value)));
  return {
    end: async () => {
      const finished = (await session.receive(res.payload)).flight;
      const done = await ep.request(server.endpoint.address, { code: CoapCode.POST, options: [...location, uintOption(OptionNumber.ContentFormat, 65000)], payload: finished });
      assert.equal(done.code, CoapCode.Changed);
    },
    close: () => ep.close(),
  };
}

describe('CoAP client retries 5.03 + Max-Age', () => {
  it('at the session cap (LIMIT_REACHED, held by a half-open handshake), a handshake waits and gets in once it ends', async () => {
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, maxSessions: 1 });
    const holder = await holdHalfOpen(server);
    let refused = 0;
    const waiter = new AtlsCoapClient({
      url: server.url,
      tls: tls(),
      onExchange: ({ response }) => {
        if (response.code !== CoapCode.ServiceUnavailable) return;
        refused++;
        if (refused === 1) void holder.end(); // room is made while the waiter waits Max-Age
      },
    });
    try {
      const res = await waiter.request({ method: 'POST', pathname: '/echo', payload: 'in' });
      assert.equal(new TextDecoder().decode(res.payload), 'in');
      assert.ok(refused >= 1, 'the first ClientHello was refused with 5.03');
    } finally {
      await waiter.close();
      await holder.close();
      await server.close();
    }
  });

  it('the bound holds at the cap: retries, then LIMIT_REACHED with the Max-Age', async () => {
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, maxSessions: 1 });
    const holder = await holdHalfOpen(server);
    let refused = 0;
    const waiter = new AtlsCoapClient({
      url: server.url,
      tls: tls(),
      unavailableRetry: { retries: 1 },
      onExchange: ({ response }) => {
        if (response.code === CoapCode.ServiceUnavailable) refused++;
      },
    });
    try {
      await assert.rejects(waiter.connect(), (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED' && e.retryAfter === 1);
      assert.equal(refused, 2);
    } finally {
      await waiter.close();
      await holder.close();
      await server.close();
    }
  });

  describe('against an endpoint that always answers 5.03', () => {
    let ep: CoapEndpoint;
    let calls = 0;
    let options: CoapOption[] = [];
    before(async () => {
      ep = await CoapEndpoint.bind();
      ep.handle(() => {
        calls++;
        return { code: CoapCode.ServiceUnavailable, options };
      });
    });
    after(() => ep.close());
    const url = () => `coap://127.0.0.1:${ep.address.port}`;

    it('without Max-Age the 5.03 surfaces at once', async () => {
      calls = 0;
      options = [];
      const c = new AtlsCoapClient({ url: url(), tls: tls() });
      try {
        await assert.rejects(c.connect(), (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED' && e.retryAfter === undefined);
        assert.equal(calls, 1);
      } finally {
        await c.close();
      }
    });

    it('with Max-Age 0: the default 3 retries, then the 5.03 surfaces', async () => {
      calls = 0;
      options = [uintOption(OptionNumber.MaxAge, 0)];
      const c = new AtlsCoapClient({ url: url(), tls: tls() });
      try {
        await assert.rejects(c.connect(), (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED' && e.retryAfter === 0);
        assert.equal(calls, 4);
      } finally {
        await c.close();
      }
    });

    it('a Max-Age above maxWaitMs is not waited for', async () => {
      calls = 0;
      options = [uintOption(OptionNumber.MaxAge, 60)];
      const c = new AtlsCoapClient({ url: url(), tls: tls() });
      try {
        await assert.rejects(c.connect(), (e: unknown) => e instanceof AtlsError && e.retryAfter === 60);
        assert.equal(calls, 1);
      } finally {
        await c.close();
      }
    });
  });
});
