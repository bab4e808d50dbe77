/**
 * In-memory pair tests of ATLS sessions over every available engine:
 * {TLS 1.2, 1.3} x {ECDSA, RSA, PSK} x {server-only, mutual} x {records, exported},
 * resumption, HelloRetryRequest, and the session-level negative cases.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { AtlsClientSession, AtlsServerSession } from '../../src/session/session.js';
import type { ClientSessionOptions, ServerSessionOptions } from '../../src/session/session.js';
import type { FlightResult, Mode, SessionEvent } from '../../src/session/types.js';
import { availableEngines } from '../../src/engines/index.js';
import type { TlsEngine } from '../../src/engines/types.js';
import { AtlsError } from '../../src/errors.js';
import { concatBytes } from '../../src/bytes.js';
import { testPki, type TestPki } from '../helpers/pki.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const PSK = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };

interface Handshake {
  roundTrips: number;
  clientEvents: SessionEvent[];
  serverEvents: SessionEvent[];
  flights: number[];
}

/** Pumps flights between a client and a server until the client is established. */
async function handshake(client: AtlsClientSession, server: AtlsServerSession): Promise<Handshake> {
  const h: Handshake = { roundTrips: 0, clientEvents: [], serverEvents: [], flights: [] };
  let out: FlightResult = await client.start();
  h.clientEvents.push(...out.events);
  while (client.state !== 'established') {
    assert.ok(h.roundTrips < 6, 'handshake does not converge');
    h.flights.push(out.flight.length);
    const back = await server.receive(out.flight);
    h.serverEvents.push(...back.events);
    h.flights.push(back.flight.length);
    h.roundTrips++;
    out = await client.receive(back.flight);
    h.clientEvents.push(...out.events);
    if ((client.state as string) === 'established' && out.flight.length > 0) {
      // TLS 1.2 full handshake with tickets: nothing more is needed, but a
      // non-empty client flight would still have to reach the server.
      const last = await server.receive(out.flight);
      h.serverEvents.push(...last.events);
    }
  }
  return h;
}

type Auth = 'ecdsa' | 'rsa' | 'psk';

function configs(
  pki: TestPki,
  engine: TlsEngine,
  version: 'TLSv1.2' | 'TLSv1.3',
  auth: Auth,
  mutual: boolean,
  mode: Mode,
): { client: ClientSessionOptions; server: ServerSessionOptions } {
  const v = { minVersion: version, maxVersion: version } as const;
  if (auth === 'psk') {
    // PSK authenticates both sides by itself; "mutual" adds nothing to it.
    const ciphers =
      version === 'TLSv1.3' ? 'TLS_AES_128_GCM_SHA256' : 'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256';
    return {
      client: { engine, mode, tls: { ...v, ciphers, psk: PSK, serverName: 'localhost' } },
      server: {
        engine,
        mode,
        tls: { ...v, ciphers, pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) },
      },
    };
  }
  const server = auth === 'ecdsa' ? pki.server : pki.serverRsa;
  const client = auth === 'ecdsa' ? pki.client : pki.clientRsa;
  return {
    client: {
      engine,
      mode,
      tls: { ...v, ca: pki.ca.cert, serverName: 'localhost', ...(mutual ? { cert: client.cert, key: client.key } : {}) },
    },
    server: {
      engine,
      mode,
      tls: { ...v, cert: server.cert, key: server.key, ...(mutual ? { ca: pki.ca.cert, requireClientCert: true } : {}) },
    },
  };
}

/** Sends one message each way in the session's mode and checks it arrives intact. */
async function exchange(client: AtlsClientSession, server: AtlsServerSession): Promise<void> {
  if (client.mode === 'exported') {
    const m1 = client.protect(enc.encode('ping from client'));
    assert.equal(dec.decode(server.unprotect(m1)), 'ping from client');
    const m2 = server.protect(enc.encode('pong from server'));
    assert.equal(dec.decode(client.unprotect(m2)), 'pong from server');
    return;
  }
  const r1 = await client.send(enc.encode('ping from client'));
  const got1 = await server.receive(r1);
  assert.deepEqual(
    got1.events.filter((e) => e.type === 'data').map((e) => dec.decode((e as { data: Uint8Array }).data)).join(''),
    'ping from client',
  );
  const r2 = await server.send(enc.encode('pong from server'));
  const got2 = await client.receive(r2);
  assert.equal(
    got2.events.filter((e) => e.type === 'data').map((e) => dec.decode((e as { data: Uint8Array }).data)).join(''),
    'pong from server',
  );
}

for (const engine of availableEngines()) {
  describe(`sessions over the ${engine.name} engine`, () => {
    let pki: TestPki;
    before(async () => {
      pki = await testPki();
    });

    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      for (const auth of ['ecdsa', 'rsa', 'psk'] as const) {
        for (const mutual of [false, true]) {
          for (const mode of ['records', 'exported'] as const) {
            const name = `${version} ${auth} ${mutual ? 'mutual' : 'server-only'} ${mode}`;
            it(name, async () => {
              const cfg = configs(pki, engine, version, auth, mutual, mode);
              const client = new AtlsClientSession(cfg.client);
              const server = new AtlsServerSession(cfg.server);
              const h = await handshake(client, server);
              assert.equal(server.state, 'established');
              const info = client.handshakeInfo!;
              assert.equal(info.version, version);
              assert.match(info.cipherSuite, /^TLS_/);
              assert.equal(server.handshakeInfo!.cipherSuite, info.cipherSuite);
              // TLS 1.3 and TLS 1.2 full handshakes take two round trips (draft §9.5).
              assert.equal(h.roundTrips, 2, `round trips: flights ${h.flights.join(',')}`);
              const established = h.clientEvents.filter((e) => e.type === 'handshake');
              assert.equal(established.length, 1, 'client reports the handshake exactly once');
              if (auth === 'psk') {
                assert.equal(server.handshakeInfo!.pskIdentity, PSK.identity);
                assert.equal(info.peerCertificates.length, 0);
              } else {
                const leaf = new X509Certificate(Buffer.from(info.peerCertificates[0]!));
                assert.ok(leaf.checkHost('localhost'));
                assert.equal(leaf.publicKey.asymmetricKeyType, auth === 'ecdsa' ? 'ec' : 'rsa');
                if (mutual) {
                  const peer = new X509Certificate(Buffer.from(server.handshakeInfo!.peerCertificates[0]!));
                  assert.match(peer.subject, /atls-test-client/);
                } else {
                  assert.equal(server.handshakeInfo!.peerCertificates.length, 0);
                }
              }
              if (mode === 'records') {
                const label = 'application-layer-tls';
                assert.deepEqual(client.exportKeyingMaterial(32, label), server.exportKeyingMaterial(32, label));
              } else {
                // Budget: at most tag + 3 bytes while sequence numbers are below 2^16.
                assert.ok(client.protectedOverhead! <= 16 + 3);
                const probe = client.protect(new Uint8Array(10));
                assert.ok(probe.length - 10 <= 16 + 3);
                server.unprotect(probe);
              }
              await exchange(client, server);
              client.destroy();
              server.destroy();
            });
          }
        }
      }
    }

    it('resumes with a ticket, on a second server that shares ticket keys', async () => {
      const ticketKeys = new Uint8Array(48).fill(7);
      const mk = (): AtlsServerSession =>
        new AtlsServerSession({
          engine,
          mode: 'records',
          tls: { cert: pki.server.cert, key: pki.server.key, ticketKeys, sessionIdContext: 'atls-test' },
        });
      const first = new AtlsClientSession({ engine, mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      const h1 = await handshake(first, mk());
      const ticket = h1.clientEvents.find((e) => e.type === 'ticket');
      assert.ok(ticket && ticket.type === 'ticket', 'a ticket was issued');
      const second = new AtlsClientSession({
        engine,
        mode: 'records',
        tls: { ca: pki.ca.cert, serverName: 'localhost', session: ticket.session },
      });
      const other = mk();
      await handshake(second, other);
      assert.equal(second.handshakeInfo!.resumed, true);
      assert.equal(other.handshakeInfo!.resumed, true);
      await exchange(second, other);
    });

    it('handles a HelloRetryRequest with one more round trip', async () => {
      const client = new AtlsClientSession({
        engine,
        tls: { ca: pki.ca.cert, serverName: 'localhost', minVersion: 'TLSv1.3', groups: 'X25519:P-256' },
      });
      const server = new AtlsServerSession({
        engine,
        tls: { cert: pki.server.cert, key: pki.server.key, groups: 'P-256' },
      });
      const h = await handshake(client, server);
      assert.equal(h.roundTrips, 3);
      await exchange(client, server);
    });

    describe('misuse and hostile input', () => {
      it('refuses to export or protect before the handshake', async () => {
        const client = new AtlsClientSession({ engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
        assert.throws(() => client.exportKeyingMaterial(32, 'application-layer-tls'), { code: 'NOT_ESTABLISHED' });
        assert.throws(() => client.protect(enc.encode('x')), { code: 'NOT_ESTABLISHED' });
        await client.start();
        assert.throws(() => client.exportKeyingMaterial(32, 'application-layer-tls'), { code: 'NOT_ESTABLISHED' });
        client.destroy();
      });

      it('rejects a truncated flight before the stack sees it, and stays failed', async () => {
        const client = new AtlsClientSession({ engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
        const server = new AtlsServerSession({ engine, tls: { cert: pki.server.cert, key: pki.server.key } });
        const hello = await client.start();
        const err = await server.receive(hello.flight.subarray(0, hello.flight.length - 7)).catch((e: unknown) => e);
        assert.ok(err instanceof AtlsError);
        assert.equal(err.code, 'TRUNCATED_FLIGHT');
        assert.equal(err.source, 'remote');
        assert.equal(err.httpStatus, 400);
        assert.equal(server.state, 'failed');
        // Sticky: the same error on every later call.
        await assert.rejects(server.receive(hello.flight), (e) => e === err);
        assert.throws(() => server.protect(enc.encode('x')), (e) => e === err);
        client.destroy();
      });

      it('TLS 1.2, mode records: a client fails with bad_record_mac on one flipped byte of the server\'s records and tells the server', async () => {
        const client = new AtlsClientSession({ engine, mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost', maxVersion: 'TLSv1.2' } });
        const server = new AtlsServerSession({ engine, mode: 'records', tls: { cert: pki.server.cert, key: pki.server.key } });
        await handshake(client, server);
        const records = await server.send(enc.encode('important'));
        records[records.length - 3]! ^= 0x01;
        // A client guards no records: the server of its session is the one it chose (decisions.md).
        const err = await client.receive(records).catch((e: unknown) => e);
        assert.ok(err instanceof AtlsError);
        assert.equal(err.code, 'BAD_RECORD_MAC');
        assert.equal(err.alert?.name, 'bad_record_mac');
        // The alert the client's stack produced reaches the server and fails it too.
        const serverErr = await server.receive(err.alertFlight).catch((e: unknown) => e);
        assert.ok(serverErr instanceof AtlsError, 'server learns of the failure');
        assert.equal(serverErr.source, 'remote');
      });

      for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
        it(`${version}, mode records: a record with one flipped byte is refused before the engine; the session goes on`, async () => {
          const client = new AtlsClientSession({ engine, mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost', maxVersion: version } });
          const server = new AtlsServerSession({ engine, mode: 'records', tls: { cert: pki.server.cert, key: pki.server.key } });
          await handshake(client, server);
          assert.equal(server.handshakeInfo?.version, version);
          const records = await client.send(enc.encode('important'));
          const flipped = Uint8Array.from(records);
          flipped[flipped.length - 3]! ^= 0x01;
          const err = await server.receive(flipped).catch((e: unknown) => e);
          assert.ok(err instanceof AtlsError);
          assert.equal(err.code, 'BAD_RECORD_MAC');
          assert.equal(err.source, 'remote');
          assert.equal(err.alertFlight.length, 0, 'no alert: the engine never saw the record');
          assert.equal(server.state, 'established');
          const ok = await server.receive(records);
          assert.equal(dec.decode(concatBytes(ok.events.flatMap((e) => (e.type === 'data' ? [e.data] : [])))), 'important');
        });
      }

      it('TLS 1.2, mode records, resumed: a record with one flipped byte is refused before the engine; the session goes on', async () => {
        const ticketKeys = new Uint8Array(48).fill(5);
        const tls12 = { ca: pki.ca.cert, serverName: 'localhost', maxVersion: 'TLSv1.2' } as const;
        const mk = (): AtlsServerSession =>
          new AtlsServerSession({ engine, mode: 'records', tls: { cert: pki.server.cert, key: pki.server.key, ticketKeys, sessionIdContext: 'atls-test' } });
        const h1 = await handshake(new AtlsClientSession({ engine, mode: 'records', tls: tls12 }), mk());
        const ticket = h1.clientEvents.find((e) => e.type === 'ticket');
        assert.ok(ticket && ticket.type === 'ticket', 'a ticket was issued');
        const client = new AtlsClientSession({ engine, mode: 'records', tls: { ...tls12, session: ticket.session } });
        const server = mk();
        await handshake(client, server);
        assert.equal(server.handshakeInfo?.resumed, true);
        assert.equal(server.handshakeInfo?.version, 'TLSv1.2');
        const records = await client.send(enc.encode('resumed'));
        const flipped = Uint8Array.from(records);
        flipped[flipped.length - 3]! ^= 0x01;
        const err = await server.receive(flipped).catch((e: unknown) => e);
        assert.ok(err instanceof AtlsError && err.code === 'BAD_RECORD_MAC' && err.alertFlight.length === 0, String(err));
        assert.equal(server.state, 'established');
        const ok = await server.receive(records);
        assert.equal(dec.decode(concatBytes(ok.events.flatMap((e) => (e.type === 'data' ? [e.data] : [])))), 'resumed');
      });

      it('TLS 1.2, mode records, a CBC suite a user named: the session works; its records are left to the engine (a flipped one ends it)', async () => {
        const ciphers = 'ECDHE-ECDSA-AES128-SHA256';
        const client = new AtlsClientSession({ engine, mode: 'records', tls: { ca: pki.ca.cert, serverName: 'localhost', maxVersion: 'TLSv1.2', ciphers } });
        const server = new AtlsServerSession({ engine, mode: 'records', tls: { cert: pki.server.cert, key: pki.server.key, ciphers } });
        await handshake(client, server);
        assert.equal(server.handshakeInfo?.cipherSuite, 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256');
        const records = await client.send(enc.encode('cbc'));
        const ok = await server.receive(records);
        assert.equal(dec.decode(concatBytes(ok.events.flatMap((e) => (e.type === 'data' ? [e.data] : [])))), 'cbc');
        const flipped = await client.send(enc.encode('cbc again'));
        flipped[flipped.length - 3]! ^= 0x01;
        const err = await server.receive(flipped).catch((e: unknown) => e);
        assert.ok(err instanceof AtlsError && err.code === 'BAD_RECORD_MAC', String(err));
        assert.equal(server.state, 'failed', 'documented limit: no guard for CBC (decisions.md)');
      });

      it('rejects replayed, too old and forged protected messages without ending the session', async () => {
        const client = new AtlsClientSession({ engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
        const server = new AtlsServerSession({
          engine,
          tls: { cert: pki.server.cert, key: pki.server.key },
          protection: { replayWindow: 8 },
        });
        await handshake(client, server);
        const msgs = Array.from({ length: 12 }, (_, i) => client.protect(enc.encode(`m${i}`)));
        assert.equal(dec.decode(server.unprotect(msgs[1]!)), 'm1');
        assert.equal(dec.decode(server.unprotect(msgs[0]!)), 'm0', 'reordered within the window');
        assert.throws(() => server.unprotect(msgs[1]!), { code: 'REPLAYED' });
        assert.equal(dec.decode(server.unprotect(msgs[11]!)), 'm11');
        assert.throws(() => server.unprotect(msgs[2]!), { code: 'TOO_OLD' });
        const forged = Uint8Array.from(msgs[10]!);
        forged[forged.length - 1]! ^= 0x80;
        assert.throws(() => server.unprotect(forged), { code: 'DECRYPT_FAILED' });
        assert.equal(dec.decode(server.unprotect(msgs[10]!)), 'm10', 'the session survives a forgery');
        assert.equal(server.state, 'established');
      });

      it('ends the session at the AEAD usage limit and asks for a new handshake', async () => {
        const client = new AtlsClientSession({
          engine,
          tls: { ca: pki.ca.cert, serverName: 'localhost' },
          protection: { limits: { confidentiality: 3 } },
        });
        const server = new AtlsServerSession({ engine, tls: { cert: pki.server.cert, key: pki.server.key } });
        await handshake(client, server);
        for (let i = 0; i < 3; i++) client.protect(enc.encode('x'));
        assert.throws(() => client.protect(enc.encode('x')), { code: 'KEY_LIMIT_REACHED' });
        assert.throws(() => client.protect(enc.encode('x')), { code: 'KEY_LIMIT_REACHED' });
      });

      it('rejects an empty first flight and a flight over the size cap', async () => {
        const server = new AtlsServerSession({ engine, tls: { cert: pki.server.cert, key: pki.server.key } });
        await assert.rejects(server.receive(new Uint8Array(0)), { code: 'MALFORMED_RECORD' });
        const capped = new AtlsServerSession({
          engine,
          maxFlightBytes: 100,
          tls: { cert: pki.server.cert, key: pki.server.key },
        });
        await assert.rejects(capped.receive(new Uint8Array(101)), { code: 'TOO_LARGE' });
      });

      it('releases the TLS engine after key export in mode exported', async () => {
        const client = new AtlsClientSession({ engine, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
        const server = new AtlsServerSession({ engine, tls: { cert: pki.server.cert, key: pki.server.key } });
        await handshake(client, server);
        assert.throws(() => server.exportKeyingMaterial(16, 'x'), { code: 'INVALID_STATE' });
        await exchange(client, server);
      });
    });
  });
}

/**
 * The first request rides with the client's final flight (docs/protocol.md
 * §5.6) in both modes: a fresh session and its first answer take two flights
 * each way, i.e. two HTTP round trips, as a new HTTPS connection.
 */
for (const engine of availableEngines()) {
  describe(`the first message rides with the final flight over the ${engine.name} engine`, () => {
    let pki: TestPki;
    before(async () => {
      pki = await testPki();
    });
    for (const mode of ['records', 'exported'] as const) {
      for (const mutual of [false, true]) {
        it(`TLS 1.3 ECDSA, ${mutual ? 'mutual' : 'server-only'}, mode ${mode}: two round trips to the first answer`, async () => {
          const c = configs(pki, engine, 'TLSv1.3', 'ecdsa', mutual, mode);
          const client = new AtlsClientSession(c.client);
          const server = new AtlsServerSession(c.server);
          let roundTrips = 0;
          // Round trip 1: ClientHello / ServerHello .. Finished.
          const hello = await client.start();
          const first = await server.receive(hello.flight);
          roundTrips++;
          const fin = await client.receive(first.flight);
          assert.equal(client.state, 'confirming', 'the handshake ends on a client flight');
          // Round trip 2: Finished + the request / tickets + the answer, in one body each way.
          const request = enc.encode('GET /first');
          const body =
            mode === 'records'
              ? Buffer.concat([fin.flight, await client.send(request)]) // records are records: just appended
              : Buffer.concat([fin.flight, client.protect(request)]); // the flight length travels beside it
          const flightLength = fin.flight.length;
          const got = await server.receive(mode === 'records' ? body : body.subarray(0, flightLength));
          roundTrips++;
          assert.equal(server.state, 'established');
          assert.ok(got.events.some((e) => e.type === 'handshake'));
          const answer = enc.encode('200 first');
          let reply: Uint8Array;
          if (mode === 'records') {
            assert.equal(
              got.events.filter((e) => e.type === 'data').map((e) => dec.decode((e as { data: Uint8Array }).data)).join(''),
              'GET /first',
              'the request records are read after the Finished that came before them',
            );
            reply = Buffer.concat([got.flight, await server.send(answer)]);
          } else {
            assert.equal(dec.decode(server.unprotect(body.subarray(flightLength))), 'GET /first');
            reply = Buffer.concat([got.flight, server.protect(answer)]);
          }
          const ticketsLength = got.flight.length;
          const last = await client.receive(mode === 'records' ? reply : reply.subarray(0, ticketsLength));
          assert.equal(client.state, 'established');
          assert.equal(last.flight.length, 0, 'nothing more to send: no third round trip');
          const text =
            mode === 'records'
              ? last.events.filter((e) => e.type === 'data').map((e) => dec.decode((e as { data: Uint8Array }).data)).join('')
              : dec.decode(client.unprotect(reply.subarray(ticketsLength)));
          assert.equal(text, '200 first');
          assert.equal(roundTrips, 2);
          client.destroy();
          server.destroy();
        });
      }
    }
  });
}
