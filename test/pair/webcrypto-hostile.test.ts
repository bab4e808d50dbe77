/**
 * The webcrypto client against a real server (the preferred full engine)
 * whose answers are made hostile in targeted ways: each violation fails with
 * the RFC 8446 alert, sent in the clear before the handshake keys and
 * protected after them, and the error is sticky.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { availableEngines, getEngine } from '../../src/engines/index.js';
import type { EngineConnection, TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { AlertDescription as A, AtlsError } from '../../src/errors.js';
import { testPki, type TestPki } from '../helpers/pki.js';

const webcrypto = getEngine('webcrypto');
const server = availableEngines()[0]!;
/** Offset of ServerHello.cipher_suite in a server's first flight: record(5) handshake(4) version(2) random(32) empty session id(1). */
const SUITE_AT = 5 + 4 + 2 + 32 + 1;

async function failure(client: EngineConnection, flight: Uint8Array): Promise<AtlsError> {
  const err = await client.receive(flight).then(
    () => assert.fail('accepted'),
    (e: unknown) => e as AtlsError,
  );
  assert.ok(err instanceof AtlsError, String(err));
  await assert.rejects(client.receive(new Uint8Array(0)), (e) => e === err, 'sticky');
  return err;
}

void describe(`webcrypto client: hostile server answers (server: ${server.name})`, () => {
  let pki: TestPki;
  let c: TlsClientConfig;
  let s: TlsServerConfig;
  before(async () => {
    pki = await testPki();
    c = { ca: pki.ca.cert, serverName: 'localhost' };
    s = { cert: pki.server.cert, key: pki.server.key };
  });

  async function serverFlight(client: TlsClientConfig, srv: TlsServerConfig): Promise<{ conn: EngineConnection; flight: Uint8Array }> {
    const conn = webcrypto.createClient(client);
    const hello = await conn.start();
    return { conn, flight: Uint8Array.from((await server.createServer(srv).receive(hello.flight)).flight) };
  }

  void it('a suite that was not offered: illegal_parameter in the clear', async () => {
    const { conn, flight } = await serverFlight({ ...c, ciphers: 'TLS_AES_128_GCM_SHA256' }, s);
    assert.deepEqual([...flight.subarray(SUITE_AT, SUITE_AT + 2)], [0x13, 0x01]);
    flight[SUITE_AT + 1] = 0x02;
    const err = await failure(conn, flight);
    assert.equal(err.code, 'HANDSHAKE_FAILED');
    assert.equal(err.alert?.description, A.illegal_parameter);
    assert.deepEqual([...err.alertFlight], [21, 3, 3, 0, 2, 2, A.illegal_parameter]);
  });

  void it('a TLS 1.2-only server: its protocol_version alert, not answered', async () => {
    const conn = webcrypto.createClient(c);
    const hello = await conn.start();
    const refused = await server.createServer({ ...s, maxVersion: 'TLSv1.2' }).receive(hello.flight).then(
      () => assert.fail('a TLS 1.2 server accepted a TLS 1.3-only ClientHello'),
      (e: unknown) => e as AtlsError,
    );
    const err = await failure(conn, refused.alertFlight);
    assert.equal(err.code, 'PROTOCOL_VERSION');
    assert.equal(err.alert?.description, A.protocol_version);
    assert.equal(err.alertFlight.length, 0, 'no alert answers an alert');
  });

  void it('a HelloRetryRequest for the group already shared: illegal_parameter', async () => {
    const { conn, flight } = await serverFlight({ ...c, groups: 'X25519:P-256' }, { ...s, groups: 'P-256' });
    // The HRR's key_share extension carries selected_group 0x0017 (P-256); ask for X25519 again.
    let at = -1;
    for (let i = 3; i < flight.length; i++) {
      if (flight[i - 3] === 0x00 && flight[i - 2] === 0x33 && flight[i - 1] === 0x00 && flight[i] === 0x02) at = i;
    }
    assert.ok(at > 0, 'key_share in the HelloRetryRequest');
    assert.deepEqual([...flight.subarray(at + 1, at + 3)], [0x00, 0x17]);
    flight[at + 2] = 0x1d;
    const err = await failure(conn, flight);
    assert.equal(err.alert?.description, A.illegal_parameter);
  });

  void it('a forged byte in the encrypted server flight: bad_record_mac, protected', async () => {
    const { conn, flight } = await serverFlight(c, s);
    flight[flight.length - 1]! ^= 0x40;
    const err = await failure(conn, flight);
    assert.equal(err.code, 'BAD_RECORD_MAC');
    assert.equal(err.alert?.description, A.bad_record_mac);
    assert.equal(err.alertFlight[0], 23, 'the alert goes under the client handshake key');
  });

  void it('a record longer than TLS allows: decode_error', async () => {
    const { conn, flight } = await serverFlight(c, s);
    const bogus = Uint8Array.from([...flight, 23, 3, 3, 0xff, 0xff]);
    const err = await failure(conn, bogus);
    assert.equal(err.code, 'MALFORMED_RECORD');
    assert.equal(err.alert?.description, A.decode_error);
  });
});
