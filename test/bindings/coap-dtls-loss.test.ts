/**
 * DTLS 1.2 over CoAP Non-confirmable messages through a lossy UDP relay: the
 * client resends a handshake flight when the engine's retransmission timer
 * fires (RFC 6347 §4.2.4), so losing one datagram of a flight no longer fails
 * the handshake. Also the session-level dtlsTimeout()/dtlsRetransmit() API.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { AtlsError } from '../../src/errors.js';
import { AtlsCoapServer, echoCoapHandler } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { availableEngines } from '../../src/engines/index.js';
import type { TlsEngine } from '../../src/engines/types.js';
import type { Peer } from '../../src/coap/blockwise.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode, OptionNumber } from '../../src/coap/constants.js';
import { stringOption, uintOption } from '../../src/coap/packet.js';

const PSK = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };
const CIPHERS = 'PSK-AES128-GCM-SHA256';
const dec = new TextDecoder();
const engine: TlsEngine | undefined = availableEngines().find((e) => e.capabilities.dtls);
const sockets: Socket[] = [];
let server: AtlsCoapServer | undefined;

before(async () => {
  if (!engine) return;
  server = await AtlsCoapServer.listen({
    engine,
    tls: { dtls: true, ciphers: CIPHERS, pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) },
    handler: echoCoapHandler,
  });
});
after(async () => {
  await server?.close();
  for (const s of sockets) s.close();
});

/**
 * A UDP relay in front of `target` (the pattern of coap-endpoint.test.ts)
 * that drops the datagrams `drop(n, toServer, datagram)` selects; `n` counts
 * the datagrams of each direction separately.
 */
async function lossyRelay(target: Peer, drop: (n: number, toServer: boolean, datagram: Uint8Array) => boolean): Promise<{ peer: Peer; dropped: number }> {
  const s = createSocket('udp4');
  sockets.push(s);
  let client: Peer | undefined;
  const count = { up: 0, down: 0 };
  const state = { peer: { address: '127.0.0.1', port: 0 }, dropped: 0 };
  s.on('message', (buf, r) => {
    const toServer = !(r.port === target.port && r.address === target.address);
    if (toServer) client = { address: r.address, port: r.port };
    const n = toServer ? count.up++ : count.down++;
    if (drop(n, toServer, buf)) {
      state.dropped++;
      return;
    }
    const to = toServer ? target : client;
    if (to) s.send(buf, to.port, to.address);
  });
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  state.peer.port = s.address().port;
  return state;
}

/** `initialTimeoutMs` is short so that lost flights are resent quickly. */
function dtlsClient(relay: Peer, initialTimeoutMs = 100): AtlsCoapClient {
  return new AtlsCoapClient({
    url: `coap://127.0.0.1:${relay.port}`,
    ...(engine ? { engine } : {}),
    nonConfirmable: true,
    timeoutMs: 5000,
    tls: { dtls: true, ciphers: CIPHERS, psk: PSK, dtlsInitialTimeoutMs: initialTimeoutMs },
  });
}

void describe('DTLS over CoAP NON with loss', () => {
  const cases: { name: string; drop: (n: number, toServer: boolean) => boolean }[] = [
    { name: 'the ClientHello', drop: (n, up) => up && n === 0 },
    { name: "the server's first flight", drop: (n, up) => !up && n === 0 },
    { name: "the client's second flight", drop: (n, up) => up && n === 1 },
  ];
  for (const c of cases) {
    void it(`the handshake completes when ${c.name} is lost`, async (t) => {
      if (!engine || !server) {
        t.skip('no engine with DTLS (native engine not built)');
        return;
      }
      const relay = await lossyRelay({ address: '127.0.0.1', port: server.port }, c.drop);
      const client = dtlsClient(relay.peer);
      try {
        assert.equal((await client.connect()).version, 'DTLSv1.2');
        assert.equal(relay.dropped, 1);
        assert.ok(client.stats.dtlsRetransmissions >= 1, JSON.stringify(client.stats));
        assert.equal(dec.decode((await client.request({ method: 'POST', payload: 'after loss' })).payload), 'after loss');
      } finally {
        await client.close();
      }
    });
  }

  for (const mode of ['exported', 'records'] as const) {
    for (const nonConfirmable of [true, false]) {
      void it(`mode ${mode}, ${nonConfirmable ? 'NON' : 'CON'}: the handshake completes when the server's last flight is lost`, async (t) => {
        if (!engine) {
          t.skip('no engine with DTLS (native engine not built)');
          return;
        }
        const own = await AtlsCoapServer.listen({
          engine,
          mode,
          tls: { dtls: true, ciphers: CIPHERS, pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) },
          handler: echoCoapHandler,
        });
        // The first 2.04 Changed (RFC 7252 §3: code byte 0x44) the server sends: the answer to the
        // client's final flight, carrying the server's last flight (ticket, CCS, Finished).
        let seen = false;
        const relay = await lossyRelay({ address: '127.0.0.1', port: own.port }, (_n, up, datagram) => {
          if (up || seen || datagram[1] !== 0x44) return false;
          return (seen = true);
        });
        const client = new AtlsCoapClient({
          url: `coap://127.0.0.1:${relay.peer.port}`,
          engine,
          mode,
          nonConfirmable,
          // Margins for a busy machine: the loss is recovered by the first resend, whenever it
          // fires; a stalled server must not use up the resends (5 DTLS, 4 CoAP) before it answers.
          timeoutMs: 30_000,
          transmission: { ackTimeout: 500 },
          tls: { dtls: true, ciphers: CIPHERS, psk: PSK, dtlsInitialTimeoutMs: 400 },
        });
        try {
          assert.equal((await client.connect()).version, 'DTLSv1.2');
          assert.equal(relay.dropped, 1);
          assert.equal(dec.decode((await client.request({ method: 'POST', payload: 'after loss' })).payload), 'after loss');
        } finally {
          await client.close();
          await own.close();
        }
      });
    }
  }

  void it('without loss nothing is resent', async (t) => {
    if (!engine || !server) {
      t.skip('no engine with DTLS (native engine not built)');
      return;
    }
    const relay = await lossyRelay({ address: '127.0.0.1', port: server.port }, () => false);
    // A timer long enough that a busy machine cannot fire it: only a resend caused
    // by something other than the timer (a bug) is counted.
    const client = dtlsClient(relay.peer, 30_000);
    try {
      await client.connect();
      assert.equal(client.stats.dtlsRetransmissions, 0);
    } finally {
      await client.close();
    }
  });
});

void describe("the server's last flight, kept for a copy of the client's final flight", () => {
  void it('a third party sending a copy gets the same bytes and changes nothing; a changed copy gets 4.00; after the first protected message none is answered', async (t) => {
    if (!engine || !server) {
      t.skip('no engine with DTLS (native engine not built)');
      return;
    }
    const target = server;
    const posts: Array<{ flight: Uint8Array; answer: Uint8Array }> = [];
    const client = new AtlsCoapClient({
      url: target.url,
      engine,
      nonConfirmable: true,
      tls: { dtls: true, ciphers: CIPHERS, psk: PSK },
      onExchange: ({ path, request, response }) => {
        if (path.startsWith('/atls/')) posts.push({ flight: request.payload, answer: response.payload });
      },
    });
    const other = await CoapEndpoint.bind();
    try {
      await client.connect();
      const [final] = posts; // the client's final flight and the server's last flight
      assert.ok(final && final.answer.length > 0);
      const before = target.handler.sessionCount;
      const [, prefix, id] = client.resource!.split('/');
      const send = (payload: Uint8Array) =>
        other.request(
          target.endpoint.address,
          { code: CoapCode.POST, options: [stringOption(OptionNumber.UriPath, prefix!), stringOption(OptionNumber.UriPath, id!), uintOption(OptionNumber.ContentFormat, 65000)], payload },
          { nonConfirmable: true },
        );
      const again = await send(final.flight);
      assert.equal(again.code, CoapCode.Changed);
      assert.deepEqual(again.payload, final.answer, 'the same last flight, byte for byte');
      // The same length, one plaintext byte changed (the first record's last byte): not a copy.
      const changed = final.flight.slice();
      changed[13 + ((changed[11]! << 8) | changed[12]!) - 1]! ^= 1;
      assert.equal((await send(changed)).code, CoapCode.BadRequest);
      assert.equal(target.handler.sessionCount, before, 'no session made or ended');
      assert.equal(dec.decode((await client.request({ method: 'POST', payload: 'still' })).payload), 'still');
      assert.equal((await send(final.flight)).code, CoapCode.BadRequest, 'the client has the last flight: forgotten');
      assert.equal(target.handler.sessionCount, before);
    } finally {
      await other.close();
      await client.close();
    }
  });
});

void describe('session DTLS timer API', () => {
  void it('a TLS session has no DTLS timer and refuses dtlsRetransmit()', async () => {
    const s = new AtlsClientSession({ tls: { serverName: 'localhost' } });
    try {
      assert.equal(s.dtlsTimeout(), undefined);
      await assert.rejects(s.dtlsRetransmit(), (e: unknown) => e instanceof AtlsError && e.code === 'UNSUPPORTED');
    } finally {
      s.destroy();
    }
  });

  void it('a DTLS client arms its timer after the ClientHello and resends it when it fires', async (t) => {
    if (!engine) {
      t.skip('no engine with DTLS (native engine not built)');
      return;
    }
    const s = new AtlsClientSession({ engine, tls: { dtls: true, ciphers: CIPHERS, psk: PSK, dtlsInitialTimeoutMs: 50 } });
    try {
      assert.equal(s.dtlsTimeout(), undefined);
      const hello = await s.start();
      const ms = s.dtlsTimeout();
      assert.ok(ms !== undefined && ms <= 50, String(ms));
      await new Promise((r) => setTimeout(r, ms + 10));
      const again = await s.dtlsRetransmit();
      assert.ok(again.flight.length > 0);
      // The same ClientHello in a record with the next sequence number (RFC 6347 §4.1).
      assert.equal(again.flight.length, hello.flight.length);
      const ms2 = s.dtlsTimeout();
      assert.ok(ms2 !== undefined && ms2 > 50 && ms2 <= 100, `doubled timer: ${String(ms2)}`);
    } finally {
      s.destroy();
    }
  });
});
