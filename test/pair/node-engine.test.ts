/**
 * Behaviour specific to the node engine (the shared contract is in
 * engine-conformance.test.ts): where synthesised alerts go and how they are
 * protected, the interception of plaintext alerts, name checks, limits, the
 * context cache and argument checks.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createNodeEngine, nodeEngine } from '../../src/engines/node.js';
import { plaintextAlert } from '../../src/engines/connection.js';
import { AlertDescription as A, AtlsError } from '../../src/errors.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { describe as describeRun, handshakeOf, pump, received, ticketsOf } from '../helpers/pair.js';

const LABEL = 'application-layer-tls';
const only = (v: 'TLSv1.2' | 'TLSv1.3') => ({ minVersion: v, maxVersion: v }) as const;

void describe('node engine specifics', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  void it('TLS 1.2: the client refuses the certificate before its key exchange leaves', async () => {
    const run = await pump(
      nodeEngine.createClient({ ...only('TLSv1.2'), ca: pki.ca.cert, serverName: 'localhost' }),
      nodeEngine.createServer({ ...only('TLSv1.2'), cert: pki.untrustedServer.cert, key: pki.untrustedServer.key }),
    );
    // ClientHello, server flight, then only the alert (no ClientKeyExchange/Finished).
    assert.deepEqual(
      run.flights.map((f) => f.from),
      ['client', 'server', 'client'],
      describeRun(run),
    );
    assert.deepEqual([...run.errors.client!.alertFlight], [...plaintextAlert(A.unknown_ca)]);
    assert.equal(run.errors.server?.code, 'CERTIFICATE_UNTRUSTED');
  });

  for (const side of ['client', 'server'] as const) {
    void it(`TLS 1.3: a ${side} rejecting a certificate sends a protected alert its peer's stack decrypts`, async () => {
      const run = await pump(
        nodeEngine.createClient({
          ...only('TLSv1.3'),
          ca: pki.ca.cert,
          serverName: 'localhost',
          ciphers: 'TLS_CHACHA20_POLY1305_SHA256',
          ...(side === 'server' ? { cert: pki.untrustedClient.cert, key: pki.untrustedClient.key } : {}),
        }),
        nodeEngine.createServer({
          ...only('TLSv1.3'),
          ...(side === 'client' ? pki.untrustedServer : pki.server),
          ca: pki.ca.cert,
          requireClientCert: side === 'server',
        }),
      );
      const rejecting = run.errors[side]!;
      const peer = run.errors[side === 'client' ? 'server' : 'client']!;
      assert.equal(rejecting.code, 'CERTIFICATE_UNTRUSTED', describeRun(run));
      // RFC 8446 §5.2: opaque type application_data; 2 alert bytes + type + 16-byte tag.
      assert.equal(rejecting.alertFlight[0], 23);
      assert.equal(rejecting.alertFlight.length, 5 + 3 + 16);
      assert.equal(peer.code, 'CERTIFICATE_UNTRUSTED');
      assert.match(peer.message, /SSL alert number 48/, 'the peer stack decrypted and read the alert');
    });
  }

  void it('a plaintext fatal alert in a flight is read before the stack', async () => {
    const server = nodeEngine.createServer({ cert: pki.server.cert, key: pki.server.key });
    const err = await server.receive(plaintextAlert(A.handshake_failure)).catch((e: unknown) => e as AtlsError);
    assert.ok(err instanceof AtlsError);
    assert.deepEqual([err.code, err.source, err.alert?.name, err.alertFlight.length], ['HANDSHAKE_FAILED', 'remote', 'handshake_failure', 0]);
  });

  void it('verifyPeer false accepts any certificate (tests only)', async () => {
    const run = await pump(
      nodeEngine.createClient({ serverName: 'localhost', verifyPeer: false }),
      nodeEngine.createServer({ cert: pki.untrustedServer.cert, key: pki.untrustedServer.key }),
    );
    assert.deepEqual(run.errors, {}, describeRun(run));
  });

  void it('an IP serverName is checked against IP SANs and not sent as SNI', async () => {
    const run = await pump(
      nodeEngine.createClient({ ca: pki.ca.cert, serverName: '127.0.0.1' }),
      nodeEngine.createServer({ cert: pki.server.cert, key: pki.server.key }),
    );
    assert.deepEqual(run.errors, {}, describeRun(run));
    assert.equal(handshakeOf(run.events.server)!.serverName, undefined); // RFC 6066 §3: no IP literals
    const bad = await pump(
      nodeEngine.createClient({ ca: pki.ca.cert, serverName: '127.0.0.2' }),
      nodeEngine.createServer({ cert: pki.server.cert, key: pki.server.key }),
    );
    assert.equal(bad.errors.client?.code, 'CERTIFICATE_NAME_MISMATCH');
  });

  void it('without serverName only the chain is checked', async () => {
    const run = await pump(
      nodeEngine.createClient({ ca: pki.ca.cert }),
      nodeEngine.createServer({ cert: pki.wrongNameServer.cert, key: pki.wrongNameServer.key }),
    );
    assert.deepEqual(run.errors, {}, describeRun(run));
    assert.equal(handshakeOf(run.events.server)!.serverName, undefined);
  });

  void it('one call at a time: an overlapping call is INVALID_STATE and not fatal', async () => {
    const client = nodeEngine.createClient({ ca: pki.ca.cert, serverName: 'localhost' });
    const server = nodeEngine.createServer({ cert: pki.server.cert, key: pki.server.key });
    const hello = await client.start();
    const first = server.receive(hello.flight);
    await assert.rejects(server.receive(hello.flight), { code: 'INVALID_STATE', source: 'local' });
    assert.ok((await first).flight.length > 0);
    await assert.rejects(server.start(), { code: 'INVALID_STATE' });
    await assert.rejects(client.start(), { code: 'INVALID_STATE' });
    await assert.rejects(nodeEngine.createClient({}).receive(new Uint8Array(0)), { code: 'INVALID_STATE' });
    client.destroy();
    server.destroy();
  });

  void it('a step that never goes quiet fails with LIMIT_REACHED', async () => {
    const engine = createNodeEngine({ stepTimeoutMs: 30, quietTurns: 1e9 });
    const client = engine.createClient({ serverName: 'localhost' });
    const err = await client.start().catch((e: unknown) => e as AtlsError);
    assert.ok(err instanceof AtlsError);
    assert.deepEqual([err.code, err.source], ['LIMIT_REACHED', 'local']);
    await assert.rejects(client.receive(new Uint8Array(0)), (e) => e === err);
  });

  void it('flight and write limits', async () => {
    const engine = createNodeEngine({ maxFlightBytes: 4096 });
    const server = engine.createServer({ cert: pki.server.cert, key: pki.server.key });
    const err = await server.receive(new Uint8Array(4097)).catch((e: unknown) => e as AtlsError);
    assert.ok(err instanceof AtlsError);
    assert.deepEqual([err.code, err.source, err.alert?.name], ['TOO_LARGE', 'remote', 'internal_error']);
    assert.deepEqual([...err.alertFlight], [...plaintextAlert(A.internal_error)]);

    const conns = { client: engine.createClient({ ca: pki.ca.cert, serverName: 'localhost' }), server: engine.createServer(pki.server) };
    const run = await pump(conns.client, conns.server);
    assert.deepEqual(run.errors, {}, describeRun(run));
    await assert.rejects(conns.client.write(new Uint8Array(4096)), { code: 'TOO_LARGE', source: 'local' });
    assert.ok((await conns.client.write(new Uint8Array(1000))).flight.length > 1000, 'a write after a refused one still works');
    conns.client.destroy();
    conns.server.destroy();
  });

  void it('a large flight of application data arrives whole in one step', async () => {
    const conns = { client: nodeEngine.createClient({ ca: pki.ca.cert, serverName: 'localhost' }), server: nodeEngine.createServer(pki.server) };
    await pump(conns.client, conns.server);
    const data = Uint8Array.from({ length: 200_000 }, (_, i) => i & 0xff);
    const out = await conns.client.write(data);
    const got = await conns.server.receive(out.flight);
    assert.deepEqual(received(got.events), data);
    conns.client.destroy();
    conns.server.destroy();
  });

  void it('exporter bounds', async () => {
    const conns = { client: nodeEngine.createClient({ ca: pki.ca.cert, serverName: 'localhost' }), server: nodeEngine.createServer(pki.server) };
    await pump(conns.client, conns.server);
    assert.equal(conns.client.exportKeyingMaterial(8160, LABEL).length, 8160); // RFC 8446 §7.1: 255 x 32
    assert.throws(() => conns.client.exportKeyingMaterial(8161, LABEL), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => conns.client.exportKeyingMaterial(32, LABEL, new Uint8Array(65536)), { code: 'INVALID_ARGUMENT' });
    assert.throws(() => conns.client.exportKeyingMaterial(32, 'caf\u00e9'), { code: 'INVALID_ARGUMENT' });
    conns.client.destroy();
    conns.server.destroy();
  });

  void it('equal configurations share a context (and ticket keys) until the cache is cleared', async () => {
    const engine = createNodeEngine();
    const client = { ...only('TLSv1.3'), ca: pki.ca.cert, serverName: 'localhost' };
    const first = await pump(engine.createClient(client), engine.createServer({ ...pki.server }));
    const session = ticketsOf(first.events.client).at(-1)!;
    const again = await pump(engine.createClient({ ...client, session }), engine.createServer({ ...pki.server }));
    assert.equal(handshakeOf(again.events.server)!.resumed, true);
    engine.clearContextCache();
    const fresh = await pump(engine.createClient({ ...client, session }), engine.createServer({ ...pki.server }));
    assert.equal(handshakeOf(fresh.events.server)!.resumed, false, 'new random ticket keys');
  });

  for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
    void it(`${v} resumption: the server reports the SNI; the client has no peer certificate to report`, async () => {
      const c = { ...only(v), ca: pki.ca.cert, serverName: 'localhost' };
      const s = { ...only(v), ...pki.server };
      const first = await pump(nodeEngine.createClient(c), nodeEngine.createServer(s));
      const session = ticketsOf(first.events.client).at(-1)!;
      const again = await pump(nodeEngine.createClient({ ...c, session }), nodeEngine.createServer(s));
      assert.equal(handshakeOf(again.events.server)!.resumed, true);
      assert.equal(handshakeOf(again.events.server)!.serverName, 'localhost'); // TLS 1.2: read from the ClientHello
      // A resumed handshake carries no certificate; node:tls keeps no chain in a client session.
      assert.deepEqual(handshakeOf(again.events.client)!.peerCertificates, []);
    });
  }

  void it('TLS 1.2 plain PSK suite with an identity hint', async () => {
    const key = new Uint8Array(16).fill(9);
    const run = await pump(
      nodeEngine.createClient({ ...only('TLSv1.2'), ciphers: 'PSK-AES128-GCM-SHA256', psk: { identity: 'dev', key } }),
      nodeEngine.createServer({ ...only('TLSv1.2'), ciphers: 'PSK-AES128-GCM-SHA256', pskHint: 'atls', pskLookup: (id) => (id === 'dev' ? key : undefined) }),
    );
    assert.deepEqual(run.errors, {}, describeRun(run));
    assert.equal(handshakeOf(run.events.client)!.cipherSuite, 'TLS_PSK_WITH_AES_128_GCM_SHA256'); // RFC 5487
    assert.equal(handshakeOf(run.events.server)!.pskIdentity, 'dev');
  });

  void it('DER certificates and keys are accepted', async () => {
    const der = (pem: string) => new Uint8Array(new X509Certificate(pem).raw);
    const keyDer = (pem: string) => new Uint8Array(createPrivateKey(pem).export({ format: 'der', type: 'pkcs8' }));
    const run = await pump(
      nodeEngine.createClient({ ca: der(pki.ca.cert), serverName: 'localhost' }),
      nodeEngine.createServer({ cert: der(pki.server.cert), key: keyDer(pki.server.key) }),
    );
    assert.deepEqual(run.errors, {}, describeRun(run));
  });

  void it('a session that does not parse is ignored: a full handshake follows', async () => {
    const run = await pump(
      nodeEngine.createClient({ ca: pki.ca.cert, serverName: 'localhost', session: new Uint8Array(40).fill(3) }),
      nodeEngine.createServer(pki.server),
    );
    assert.deepEqual(run.errors, {}, describeRun(run));
    assert.equal(handshakeOf(run.events.client)!.resumed, false);
  });
});
