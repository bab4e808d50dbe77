/**
 * The engine conformance suite: every available TLS engine, client and server
 * of the same engine joined in memory (test/helpers/pair.ts).
 *
 * Covers {TLS 1.2, 1.3} x {ECDSA, RSA, PSK} x {server-only, mutual},
 * exporter agreement and context semantics, application data, resumption
 * (same server and a second server sharing ticket keys), HelloRetryRequest,
 * ALPN, SNI, and the failures: each negative case asserts the code, the
 * source and the alert on both sides. A case is skipped only when the engine
 * lacks the capability it needs, with the reason.
 *
 * A client-only engine (webcrypto) runs every client-side case against the
 * preferred full engine as its server; the server-side cases check that its
 * server role is refused.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { availableEngines, clientEngines, clientLacks as lacks } from '../../src/engines/index.js';
import type { EngineConnection, TlsClientConfig, TlsEngine, TlsServerConfig } from '../../src/engines/types.js';
import { AlertDescription as A, AtlsError, type AtlsErrorCode, type ErrorSource } from '../../src/errors.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { continuePump, describe as describeRun, handshakeOf, pump, received, send, ticketsOf, type PairRun, type Side } from '../helpers/pair.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const LABEL = 'application-layer-tls'; // draft §7.1
const PSK = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex') };
const VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
type Version = (typeof VERSIONS)[number];
type Auth = 'ecdsa' | 'rsa' | 'psk';

function der(pem: string): Uint8Array {
  return new Uint8Array(new X509Certificate(pem).raw);
}

function only(v: Version): Pick<TlsClientConfig, 'minVersion' | 'maxVersion'> {
  return { minVersion: v, maxVersion: v };
}

function configs(pki: TestPki, v: Version, auth: Auth, mutual: boolean): { client: TlsClientConfig; server: TlsServerConfig } {
  if (auth === 'psk') {
    // PSK authenticates both ends; "mutual" also asks for a certificate, which a PSK handshake does not use.
    return {
      client: { ...only(v), psk: PSK, serverName: 'localhost', ...(mutual ? { cert: pki.client.cert, key: pki.client.key } : {}) },
      server: {
        ...only(v),
        pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined),
        ...(mutual ? { ca: pki.ca.cert, requireClientCert: true } : {}),
      },
    };
  }
  const server = auth === 'ecdsa' ? pki.server : pki.serverRsa;
  const client = auth === 'ecdsa' ? pki.client : pki.clientRsa;
  return {
    client: { ...only(v), ca: pki.ca.cert, serverName: 'localhost', ...(mutual ? { cert: client.cert, key: client.key } : {}) },
    server: { ...only(v), cert: server.cert, key: server.key, ...(mutual ? { ca: pki.ca.cert, requireClientCert: true } : {}) },
  };
}

/**
 * A connection of `engine` waiting for its first peer flight: a server, or
 * for a client-only engine a client that has sent its ClientHello.
 */
async function firstReceiver(engine: TlsEngine, pki: TestPki): Promise<EngineConnection> {
  if (engine.capabilities.server) return engine.createServer({ cert: pki.server.cert, key: pki.server.key });
  const client = engine.createClient({ ca: pki.ca.cert, serverName: 'localhost' });
  await client.start();
  return client;
}

/** The engine that plays the server opposite `engine`: itself, or the preferred full engine. */
function serverFor(engine: TlsEngine): TlsEngine {
  if (engine.capabilities.server) return engine;
  const full = availableEngines()[0];
  if (!full) throw new Error('no engine with a server role');
  return full;
}

function connect(engine: TlsEngine, c: TlsClientConfig, s: TlsServerConfig): Record<Side, EngineConnection> {
  return { client: engine.createClient(c), server: serverFor(engine).createServer(s) };
}


async function handshake(engine: TlsEngine, c: TlsClientConfig, s: TlsServerConfig): Promise<{ conns: Record<Side, EngineConnection>; run: PairRun }> {
  const conns = connect(engine, c, s);
  const run = await pump(conns.client, conns.server);
  return { conns, run };
}

function assertOk(run: PairRun): void {
  assert.deepEqual(Object.keys(run.errors), [], describeRun(run));
  assert.ok(handshakeOf(run.events.client), `client completed: ${describeRun(run)}`);
  assert.ok(handshakeOf(run.events.server), `server completed: ${describeRun(run)}`);
}

interface Expect {
  code: AtlsErrorCode;
  alert: number | undefined;
  source?: ErrorSource;
}

function assertError(err: AtlsError | undefined, want: Expect, side: Side, run: PairRun): void {
  assert.ok(err instanceof AtlsError, `${side} should fail: ${describeRun(run)}`);
  assert.equal(err.code, want.code, `${side} code: ${describeRun(run)}`);
  assert.equal(err.alert?.description, want.alert, `${side} alert: ${describeRun(run)}`);
  assert.equal(err.source, want.source ?? 'remote', `${side} source: ${describeRun(run)}`);
}

/** Both ends failed as expected; the failing end's alert reached the peer (no silent failure). */
function assertFailure(run: PairRun, client: Expect, server: Expect): void {
  assertError(run.errors.client, client, 'client', run);
  assertError(run.errors.server, server, 'server', run);
}

async function exchangeData(conns: Record<Side, EngineConnection>, run: PairRun): Promise<void> {
  assert.equal(dec.decode(await send(conns, run, 'client', enc.encode('ping from client'))), 'ping from client');
  assert.equal(dec.decode(await send(conns, run, 'server', enc.encode('pong from server'))), 'pong from server');
}

function flipLastByte(flight: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(flight);
  copy[copy.length - 1]! ^= 0x01; // inside the AEAD tag of the last record
  return copy;
}

for (const engine of clientEngines()) {
  void describe(`TLS engine conformance: ${engine.name}${engine.capabilities.server ? '' : ` (client; server: ${serverFor(engine).name})`}`, () => {
    let pki: TestPki;
    before(async () => {
      pki = await testPki();
    });

    void describe('handshake matrix', () => {
      for (const v of VERSIONS) {
        for (const auth of ['ecdsa', 'rsa', 'psk'] as const) {
          for (const mutual of [false, true]) {
            void it(`${v} ${auth} ${mutual ? 'mutual' : 'server-only'}`, { skip: lacks(engine, v, mutual) }, async (t) => {
              const cfg = configs(pki, v, auth, mutual);
              const { conns, run } = await handshake(engine, cfg.client, cfg.server);
              assertOk(run);
              t.diagnostic(`flights ${run.flights.map((f) => `${f.from}:${f.bytes}`).join(' ')}`);
              const ci = handshakeOf(run.events.client)!;
              const si = handshakeOf(run.events.server)!;
              assert.equal(ci.version, v);
              assert.equal(si.version, v);
              assert.equal(ci.cipherSuite, si.cipherSuite);
              // Default suites are AEAD ones, so exported-key protection has an AEAD to use.
              assert.match(ci.cipherSuite, /^TLS_.*(GCM|CHACHA20_POLY1305|CCM)/);
              assert.equal(run.roundTrips, 2, describeRun(run)); // draft §9.5: two round trips
              assert.equal(ci.resumed, false);
              assert.equal(ci.earlyData, 'none');
              if (auth === 'psk') {
                assert.match(ci.cipherSuite, v === 'TLSv1.2' ? /_PSK_/ : /^TLS_AES|^TLS_CHACHA/);
                assert.equal(ci.pskIdentity, PSK.identity);
                assert.equal(si.pskIdentity, PSK.identity);
                assert.equal(ci.peerCertificates.length, 0);
                assert.equal(si.peerCertificates.length, 0);
              } else {
                assert.equal(ci.pskIdentity, undefined);
                const serverPair = auth === 'ecdsa' ? pki.server : pki.serverRsa;
                const clientPair = auth === 'ecdsa' ? pki.client : pki.clientRsa;
                assert.deepEqual(ci.peerCertificates[0], der(serverPair.cert), 'client sees the server leaf first');
                if (mutual) assert.deepEqual(si.peerCertificates[0], der(clientPair.cert), 'server sees the client leaf first');
                else assert.equal(si.peerCertificates.length, 0);
                assert.equal(si.serverName, 'localhost');
                assert.match(ci.cipherSuite, v === 'TLSv1.3' ? /^TLS_(AES|CHACHA)/ : auth === 'ecdsa' ? /ECDSA/ : /_RSA_/);
              }

              // RFC 5705 / RFC 8446 §7.5: both ends export the same bytes.
              const none = conns.client.exportKeyingMaterial(32, LABEL);
              assert.deepEqual(conns.server.exportKeyingMaterial(32, LABEL), none);
              const empty = conns.client.exportKeyingMaterial(32, LABEL, new Uint8Array(0));
              assert.deepEqual(conns.server.exportKeyingMaterial(32, LABEL, new Uint8Array(0)), empty);
              if (engine.capabilities.exporterContextControl) {
                // RFC 8446 §7.5: no context = empty context in 1.3; RFC 5705 §4: they differ in 1.2.
                if (v === 'TLSv1.3') assert.deepEqual(empty, none);
                else assert.notDeepEqual(empty, none);
              }
              assert.notDeepEqual(conns.client.exportKeyingMaterial(32, 'other label'), none);

              await exchangeData(conns, run);
              assert.deepEqual(Object.keys(run.errors), []);
              conns.client.destroy();
              conns.server.destroy();
            });
          }
        }
      }
    });

    void describe('features', () => {
      for (const v of VERSIONS) {
        void it(`${v} resumption: same server, a server sharing ticket keys, not one without`, { skip: lacks(engine, v) }, async () => {
          const ticketKeys = new Uint8Array(48).fill(7);
          const base: TlsServerConfig = { ...only(v), cert: pki.server.cert, key: pki.server.key, ticketKeys, sessionIdContext: 'conformance' };
          const client: TlsClientConfig = { ...only(v), ca: pki.ca.cert, serverName: 'localhost' };
          const first = await handshake(engine, client, base);
          assertOk(first.run);
          const tickets = ticketsOf(first.run.events.client);
          assert.ok(tickets.length >= 1, 'the client got a ticket');
          if (v === 'TLSv1.3' && !serverFor(engine).capabilities.ticketCount) assert.equal(tickets.length, 2, 'TLS 1.3 servers issue two tickets');
          const session = tickets.at(-1)!;

          const same = await handshake(engine, { ...client, session }, base);
          assertOk(same.run);
          assert.equal(handshakeOf(same.run.events.client)!.resumed, true, 'resumed on the same server');
          assert.equal(handshakeOf(same.run.events.server)!.resumed, true);
          assert.deepEqual(same.conns.client.exportKeyingMaterial(16, LABEL), same.conns.server.exportKeyingMaterial(16, LABEL));

          // Another server instance (different configuration) with the same ticket keys and context.
          const twin: TlsServerConfig = { ...base, ciphers: 'TLS_AES_128_GCM_SHA256:ECDHE-ECDSA-AES128-GCM-SHA256' };
          const other = await handshake(engine, { ...client, session }, twin);
          assertOk(other.run);
          assert.equal(handshakeOf(other.run.events.server)!.resumed, true, 'resumed on a server sharing ticket keys');

          const stranger = await handshake(engine, { ...client, session }, { ...twin, ticketKeys: new Uint8Array(48).fill(9) });
          assertOk(stranger.run);
          assert.equal(handshakeOf(stranger.run.events.server)!.resumed, false, 'other ticket keys: full handshake');
          assert.equal(handshakeOf(stranger.run.events.client)!.resumed, false);
        });
      }

      void it('TLS 1.3 HelloRetryRequest adds a round trip', async () => {
        const { run } = await handshake(
          engine,
          { ...only('TLSv1.3'), ca: pki.ca.cert, serverName: 'localhost', groups: 'X25519:P-256' },
          { ...only('TLSv1.3'), cert: pki.server.cert, key: pki.server.key, groups: 'P-256' },
        );
        assertOk(run);
        assert.equal(run.roundTrips, 3, describeRun(run)); // RFC 8446 §4.1.4
      });

      for (const v of VERSIONS) {
        void it(`${v} ALPN agreement and mismatch`, { skip: lacks(engine, v) }, async () => {
          const client: TlsClientConfig = { ...only(v), ca: pki.ca.cert, serverName: 'localhost', alpn: ['h2', 'atls'] };
          const server: TlsServerConfig = { ...only(v), cert: pki.server.cert, key: pki.server.key, alpn: ['atls'] };
          const ok = await handshake(engine, client, server);
          assertOk(ok.run);
          assert.equal(handshakeOf(ok.run.events.client)!.alpn, 'atls');
          assert.equal(handshakeOf(ok.run.events.server)!.alpn, 'atls');
          const bad = await handshake(engine, { ...client, alpn: ['h2'] }, server);
          // RFC 7301 §3.2: no_application_protocol
          assertFailure(
            bad.run,
            { code: 'HANDSHAKE_FAILED', alert: A.no_application_protocol },
            { code: 'HANDSHAKE_FAILED', alert: A.no_application_protocol },
          );
        });

        void it(`${v} SNI: reported by the server, selects sniCertificates`, { skip: lacks(engine, v) }, async () => {
          const client: TlsClientConfig = { ...only(v), ca: pki.ca.cert, serverName: 'localhost' };
          const { run } = await handshake(engine, client, {
            ...only(v),
            cert: pki.wrongNameServer.cert,
            key: pki.wrongNameServer.key,
            sniCertificates: { localhost: pki.server },
          });
          assertOk(run);
          assert.equal(handshakeOf(run.events.server)!.serverName, 'localhost');
          assert.equal(handshakeOf(run.events.client)!.serverName, 'localhost');
          assert.deepEqual(handshakeOf(run.events.client)!.peerCertificates[0], der(pki.server.cert));
        });

        void it(`${v} chain through an intermediate`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), ca: pki.ca.cert, serverName: 'localhost' },
            { ...only(v), cert: pki.serverViaIntermediate.cert, key: pki.serverViaIntermediate.key },
          );
          assertOk(run);
          const chain = handshakeOf(run.events.client)!.peerCertificates;
          assert.ok(chain.length >= 2, 'leaf and intermediate');
          assert.deepEqual(chain[1], der(pki.intermediate.cert));
        });

        void it(`${v} close_notify both ways`, { skip: lacks(engine, v) }, async () => {
          const { conns, run } = await handshake(engine, configs(pki, v, 'ecdsa', false).client, configs(pki, v, 'ecdsa', false).server);
          assertOk(run);
          const bye = await conns.client.close();
          assert.ok(bye.flight.length > 0, 'close_notify record');
          const before = run.events.server.length;
          await continuePump(conns, run, 'client', bye.flight);
          assert.ok(run.events.server.slice(before).some((e) => e.type === 'closed'), 'server saw close_notify');
          assert.ok(run.events.client.some((e) => e.type === 'closed'), 'client saw the answer');
          await assert.rejects(conns.client.write(enc.encode('late')), { code: 'CLOSED' });
          conns.client.destroy();
          conns.server.destroy();
        });
      }
    });

    void describe('failures (code, source and alert on both ends)', () => {
      for (const v of VERSIONS) {
        const tls13 = v === 'TLSv1.3';

        void it(`${v} untrusted server certificate`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), ca: pki.ca.cert, serverName: 'localhost' },
            { ...only(v), cert: pki.untrustedServer.cert, key: pki.untrustedServer.key },
          );
          const want = { code: 'CERTIFICATE_UNTRUSTED', alert: A.unknown_ca } as const;
          assertFailure(run, want, want);
          assert.equal(handshakeOf(run.events.client), undefined, 'the client never reports a handshake');
          assert.equal(handshakeOf(run.events.server), undefined, 'refused before the server finished');
        });

        void it(`${v} expired server certificate`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), ca: pki.ca.cert, serverName: 'localhost' },
            { ...only(v), cert: pki.expiredServer.cert, key: pki.expiredServer.key },
          );
          const want = { code: 'CERTIFICATE_EXPIRED', alert: A.certificate_expired } as const;
          assertFailure(run, want, want);
        });

        void it(`${v} server certificate for another name`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), ca: pki.ca.cert, serverName: 'localhost' },
            { ...only(v), cert: pki.wrongNameServer.cert, key: pki.wrongNameServer.key },
          );
          // RFC 6125 mismatch: bad_certificate, which the server can only read as a handshake failure.
          assertFailure(run, { code: 'CERTIFICATE_NAME_MISMATCH', alert: A.bad_certificate }, { code: 'HANDSHAKE_FAILED', alert: A.bad_certificate });
        });

        for (const [name, pair, code, alert] of [
          ['untrusted', 'untrustedClient', 'CERTIFICATE_UNTRUSTED', A.unknown_ca],
          ['expired', 'expiredClient', 'CERTIFICATE_EXPIRED', A.certificate_expired],
        ] as const) {
          void it(`${v} ${name} client certificate`, { skip: lacks(engine, v, true) }, async () => {
            const { run } = await handshake(
              engine,
              { ...only(v), ca: pki.ca.cert, serverName: 'localhost', cert: pki[pair].cert, key: pki[pair].key },
              { ...only(v), cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requireClientCert: true },
            );
            assertFailure(run, { code, alert }, { code, alert });
            assert.equal(handshakeOf(run.events.server), undefined, 'the server never reports a handshake');
            // A TLS 1.3 client completes before the server judged its certificate (RFC 8446 §4.4.2.4);
            // the rejection arrives on its next receive().
            if (tls13 && !engine.capabilities.exactFlights) assert.ok(handshakeOf(run.events.client));
          });
        }

        void it(`${v} missing client certificate`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), ca: pki.ca.cert, serverName: 'localhost' },
            { ...only(v), cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requireClientCert: true },
          );
          // RFC 8446 §4.4.2.4: certificate_required; RFC 5246 §7.4.6: handshake_failure.
          if (tls13) {
            const want = { code: 'CERTIFICATE_REQUIRED', alert: A.certificate_required } as const;
            assertFailure(run, want, want);
          } else {
            assertFailure(run, { code: 'HANDSHAKE_FAILED', alert: A.handshake_failure }, { code: 'CERTIFICATE_REQUIRED', alert: A.handshake_failure });
          }
        });

        void it(`${v} requested but optional client certificate`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), ca: pki.ca.cert, serverName: 'localhost' },
            { ...only(v), cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestClientCert: true },
          );
          assertOk(run);
          assert.equal(handshakeOf(run.events.server)!.peerCertificates.length, 0);
        });

        void it(`${v} unknown PSK identity`, { skip: lacks(engine, v) }, async () => {
          const { run } = await handshake(
            engine,
            { ...only(v), psk: { identity: 'stranger', key: PSK.key }, serverName: 'localhost' },
            { ...only(v), pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) },
          );
          const want = { code: 'PSK_UNKNOWN', alert: A.unknown_psk_identity } as const;
          assertFailure(run, want, want);
        });

        void it(`${v} flipped byte in a record`, { skip: lacks(engine, v) }, async () => {
          const cfg = configs(pki, v, 'ecdsa', false);
          const { conns, run } = await handshake(engine, cfg.client, cfg.server);
          assertOk(run);
          const step = await conns.client.write(enc.encode('tamper with me'));
          await continuePump(conns, run, 'client', step.flight, { tamper: (f, from) => (from === 'client' ? flipLastByte(f) : f) });
          const want = { code: 'BAD_RECORD_MAC', alert: A.bad_record_mac } as const;
          assertFailure(run, want, want);
          assert.equal(received(run.events.server).length, 0, 'nothing of the forged record was delivered');
        });

        void it(`${v} truncated flight`, { skip: lacks(engine, v) }, async () => {
          const cfg = configs(pki, v, 'ecdsa', false);
          const conns = connect(engine, cfg.client, cfg.server);
          const run = await pump(conns.client, conns.server, {
            tamper: (f, from) => (from === 'server' ? f.subarray(0, Math.floor(f.length / 2)) : f),
          });
          // The truncating end answers with decode_error (RFC 8446 §6.2), which its peer reads as malformed.
          assertFailure(run, { code: 'TRUNCATED_FLIGHT', alert: A.decode_error }, { code: 'MALFORMED_RECORD', alert: A.decode_error });
        });
      }

      void it('every call after a fatal error rejects with the same error', async () => {
        const { conns, run } = await handshake(
          engine,
          { ca: pki.ca.cert, serverName: 'localhost' },
          { cert: pki.untrustedServer.cert, key: pki.untrustedServer.key },
        );
        const err = run.errors.client!;
        assert.ok(err instanceof AtlsError);
        await assert.rejects(conns.client.receive(new Uint8Array(0)), (e) => e === err);
        await assert.rejects(conns.client.write(enc.encode('x')), (e) => e === err);
        await assert.rejects(conns.client.close(), (e) => e === err);
        await assert.rejects(conns.client.start(), (e) => e === err);
        assert.throws(() => conns.client.exportKeyingMaterial(32, LABEL), (e) => e === err);
        conns.client.destroy();
        conns.client.destroy(); // idempotent
        await assert.rejects(conns.client.receive(new Uint8Array(0)), { code: 'CLOSED' });
        assert.throws(() => conns.client.exportKeyingMaterial(32, LABEL), { code: 'CLOSED' });
        conns.server.destroy();
      });

      void it('export before the handshake and bad export arguments', async () => {
        const cfg = configs(pki, 'TLSv1.3', 'ecdsa', false);
        const conns = connect(engine, cfg.client, cfg.server);
        assert.throws(() => conns.client.exportKeyingMaterial(32, LABEL), { code: 'NOT_ESTABLISHED' });
        assert.throws(() => conns.server.exportKeyingMaterial(32, LABEL), { code: 'NOT_ESTABLISHED' });
        const run = await pump(conns.client, conns.server);
        assertOk(run);
        assert.throws(() => conns.client.exportKeyingMaterial(0, LABEL), { code: 'INVALID_ARGUMENT', source: 'local' });
        assert.throws(() => conns.client.exportKeyingMaterial(1.5, LABEL), { code: 'INVALID_ARGUMENT' });
        assert.throws(() => conns.client.exportKeyingMaterial(32, ''), { code: 'INVALID_ARGUMENT' });
        // Argument errors are not fatal: the connection still works.
        assert.equal(conns.client.exportKeyingMaterial(32, LABEL).length, 32);
        conns.client.destroy();
        conns.server.destroy();
      });

      void it('destroy() frees the connection; later calls are CLOSED', async () => {
        const cfg = configs(pki, 'TLSv1.3', 'ecdsa', false);
        const conns = connect(engine, cfg.client, cfg.server);
        const first = await conns.client.start();
        conns.client.destroy();
        conns.client.destroy();
        await assert.rejects(conns.client.receive(first.flight), { code: 'CLOSED' });
        await assert.rejects(conns.client.write(enc.encode('x')), { code: 'CLOSED' });
        await assert.rejects(conns.client.close(), { code: 'CLOSED' });
        conns.server.destroy();
        await assert.rejects(conns.server.receive(first.flight), { code: 'CLOSED' });
      });

      void it('garbage instead of a ClientHello (client-only: instead of a ServerHello)', async () => {
        const server = await firstReceiver(engine, pki);
        const err = await server.receive(enc.encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n')).then(
          () => assert.fail('accepted garbage'),
          (e: unknown) => e as AtlsError,
        );
        assert.ok(err instanceof AtlsError);
        assert.equal(err.code, 'MALFORMED_RECORD');
        assert.equal(err.source, 'remote');
        assert.ok(err.alertFlight.length > 0, 'an alert goes back');
        server.destroy();
      });

      void it('configuration errors are local INVALID_ARGUMENT', () => {
        if (engine.capabilities.server) {
          assert.throws(() => engine.createServer({ cert: 'not a pem', key: 'nor this' }), { code: 'INVALID_ARGUMENT', source: 'local' });
          assert.throws(() => engine.createServer({ cert: pki.server.cert }), { code: 'INVALID_ARGUMENT', source: 'local' });
          assert.throws(() => engine.createServer({}), { code: 'INVALID_ARGUMENT', source: 'local' });
          assert.throws(() => engine.createServer({ cert: pki.server.cert, key: pki.client.key }), { code: 'INVALID_ARGUMENT' });
        }
        assert.throws(() => engine.createClient({ ca: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }), {
          code: 'INVALID_ARGUMENT',
        });
        assert.throws(() => engine.createClient({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.2' }), { code: 'INVALID_ARGUMENT' });
      });

      void it('capabilities the engine lacks are UNSUPPORTED', (t) => {
        const caps = engine.capabilities;
        const server = { cert: pki.server.cert, key: pki.server.key };
        let checked = 0;
        if (!caps.dtls) {
          assert.throws(() => engine.createClient({ dtls: true }), { code: 'UNSUPPORTED', source: 'local' });
          assert.throws(() => engine.createServer({ ...server, dtls: true }), { code: 'UNSUPPORTED' });
          checked++;
        }
        if (!caps.earlyData) {
          // A client may ask: without 0-RTT it is never sent (earlyData 'none'), as on any engine when the ticket does not allow it.
          assert.doesNotThrow(() => engine.createClient({ earlyData: enc.encode('x'), verifyPeer: false }).destroy());
          assert.throws(() => engine.createServer({ ...server, maxEarlyData: 1024 }), { code: 'UNSUPPORTED' });
          checked++;
        }
        if (!caps.ticketCount) {
          assert.throws(() => engine.createServer({ ...server, ticketCount: 1 }), { code: 'UNSUPPORTED' });
          checked++;
        }
        if (!caps.server) {
          assert.throws(() => engine.createServer(server), { code: 'UNSUPPORTED', source: 'local' });
          checked++;
        }
        if (!caps.clientCertificates) {
          assert.throws(() => engine.createClient({ ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key }), { code: 'UNSUPPORTED' });
          checked++;
        }
        if (!caps.tlsVersions.includes('TLSv1.2')) {
          assert.throws(() => engine.createClient({ ca: pki.ca.cert, ...only('TLSv1.2') }), { code: 'UNSUPPORTED' });
          checked++;
        }
        if (checked === 0) t.skip(`${engine.name} supports dtls, earlyData and ticketCount`);
      });

      void it('a flight above the size limit is TOO_LARGE', async () => {
        const server = await firstReceiver(engine, pki);
        await assert.rejects(server.receive(new Uint8Array(1024 * 1024 + 1)), { code: 'TOO_LARGE', source: 'remote' });
        server.destroy();
      });
    });
  });
}
