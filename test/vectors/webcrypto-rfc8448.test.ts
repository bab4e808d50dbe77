// The webcrypto engine's key schedule, record protection, X25519,
// CertificateVerify and PSK binder against RFC 8448 (test/vectors/rfc8448.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import 'reflect-metadata';
import { X509Certificate } from '@peculiar/x509';
import { concatBytes, toHex } from '../../src/bytes.js';
import { GROUPS, sharedSecret, verifyCertificateVerify, type CryptoKey } from '../../src/engines/webcrypto/crypto.js';
import { KeySchedule, SHA256, trafficKeys } from '../../src/engines/webcrypto/key-schedule.js';
import { CONTENT_APPLICATION_DATA, CONTENT_HANDSHAKE, RecordKey, SUITES } from '../../src/engines/webcrypto/record.js';
import * as v from './rfc8448.js';

const AES128 = SUITES.get(0x1301)!;
const hex = (b: Uint8Array): string => toHex(b);
/** A rejection predicate: the error's code and alert description. */
const failsWith = (code: string, alert: number) => (e: unknown): boolean =>
  (e as { code?: string }).code === code && (e as { alert?: { description: number } }).alert?.description === alert;
const transcript = (...messages: Uint8Array[]): Uint8Array => SHA256.digest(concatBytes(messages));

async function x25519Private(d: Uint8Array, x: Uint8Array): Promise<CryptoKey> {
  const jwk = { kty: 'OKP', crv: 'X25519', d: Buffer.from(d).toString('base64url'), x: Buffer.from(x).toString('base64url') };
  return globalThis.crypto.subtle.importKey('jwk', jwk, { name: 'X25519' }, false, ['deriveBits']);
}

void describe('webcrypto engine: RFC 8448 §3 simple 1-RTT handshake', () => {
  const hello = transcript(v.clientHello, v.serverHello);
  const serverFinishedHash = transcript(v.clientHello, v.serverHello, v.encryptedExtensions, v.certificate, v.certificateVerify, v.serverFinished);
  const clientFinishedHash = transcript(
    v.clientHello, v.serverHello, v.encryptedExtensions, v.certificate, v.certificateVerify, v.serverFinished, v.clientFinished,
  );

  void it('X25519 on Web Crypto gives the RFC shared secret from either side', async () => {
    const x25519 = GROUPS.find((g) => g.name === 'X25519')!;
    const client = { group: x25519, privateKey: await x25519Private(v.clientPrivate, v.clientPublic), publicValue: v.clientPublic };
    const server = { group: x25519, privateKey: await x25519Private(v.serverPrivate, v.serverPublic), publicValue: v.serverPublic };
    assert.equal(hex(await sharedSecret(client, v.serverPublic)), hex(v.sharedSecret));
    assert.equal(hex(await sharedSecret(server, v.clientPublic)), hex(v.sharedSecret));
    await assert.rejects(sharedSecret(client, new Uint8Array(32)), failsWith('HANDSHAKE_FAILED', 47)); // all-zero result
    await assert.rejects(sharedSecret(client, new Uint8Array(31)), failsWith('HANDSHAKE_FAILED', 47));
  });

  void it('key schedule: handshake, application, exporter and resumption secrets', () => {
    const ks = new KeySchedule(SHA256);
    ks.early(undefined);
    const hs = ks.handshake(v.sharedSecret, hello);
    assert.equal(hex(hs.client), hex(v.secrets.clientHandshake));
    assert.equal(hex(hs.server), hex(v.secrets.serverHandshake));
    assert.equal(hex(ks.finishedKey(hs.server)), hex(v.serverFinishedKey));
    assert.equal(hex(ks.finishedKey(hs.client)), hex(v.clientFinishedKey));
    const finishedHash = transcript(v.clientHello, v.serverHello, v.encryptedExtensions, v.certificate, v.certificateVerify);
    assert.equal(hex(ks.verifyData(hs.server, finishedHash)), hex(v.serverFinished.subarray(4)));
    assert.equal(hex(ks.verifyData(hs.client, serverFinishedHash)), hex(v.clientFinished.subarray(4)));
    const ap = ks.master(serverFinishedHash);
    assert.equal(hex(ap.client), hex(v.secrets.clientApplication));
    assert.equal(hex(ap.server), hex(v.secrets.serverApplication));
    assert.equal(hex(ks.exporterMaster!), hex(v.secrets.exporterMaster));
    ks.resumption(clientFinishedHash);
    assert.equal(hex(ks.resumptionMaster!), hex(v.secrets.resumptionMaster));
    assert.equal(hex(ks.ticketPsk(v.ticketNonce)), hex(v.resumptionPsk));
  });

  void it('traffic keys and IVs', () => {
    for (const [secret, want] of [
      [v.secrets.serverHandshake, v.keys.serverHandshake],
      [v.secrets.clientHandshake, v.keys.clientHandshake],
      [v.secrets.serverApplication, v.keys.serverApplication],
      [v.secrets.clientApplication, v.keys.clientApplication],
    ] as const) {
      const got = trafficKeys(SHA256, secret, 16);
      assert.equal(hex(got.key), hex(want.key));
      assert.equal(hex(got.iv), hex(want.iv));
    }
  });

  void it('record protection: the server flight opens to EE..Finished and seals back to the same bytes', async () => {
    const record = v.serverHandshakeRecord;
    assert.equal(record.length, 679);
    const opened = await (await RecordKey.create(AES128, v.secrets.serverHandshake)).open(record.subarray(0, 5), record.subarray(5));
    assert.equal(opened.type, CONTENT_HANDSHAKE);
    assert.equal(hex(opened.content), hex(concatBytes([v.encryptedExtensions, v.certificate, v.certificateVerify, v.serverFinished])));
    const sealed = await (await RecordKey.create(AES128, v.secrets.serverHandshake)).seal(CONTENT_HANDSHAKE, opened.content);
    assert.equal(hex(sealed), hex(record));
  });

  void it('record protection: client Finished and application data in both directions', async () => {
    const finished = await (await RecordKey.create(AES128, v.secrets.clientHandshake)).seal(CONTENT_HANDSHAKE, v.clientFinished);
    assert.equal(hex(finished), hex(v.clientFinishedRecord));
    const data = await (await RecordKey.create(AES128, v.secrets.clientApplication)).seal(CONTENT_APPLICATION_DATA, v.applicationData);
    assert.equal(hex(data), hex(v.clientApplicationRecord));
    // The server's data record is its second under this key (sequence 1, §5.3), after its ticket.
    const server = await RecordKey.create(AES128, v.secrets.serverApplication);
    await assert.rejects(server.open(v.serverApplicationRecord.subarray(0, 5), v.serverApplicationRecord.subarray(5)), { code: 'BAD_RECORD_MAC' });
    const opened = await server.open(v.serverApplicationRecord.subarray(0, 5), v.serverApplicationRecord.subarray(5));
    assert.equal(opened.type, CONTENT_APPLICATION_DATA);
    assert.equal(hex(opened.content), hex(v.applicationData));
  });

  void it('a flipped bit in a record is BAD_RECORD_MAC with bad_record_mac', async () => {
    const tampered = Uint8Array.from(v.clientApplicationRecord);
    tampered[20]! ^= 1;
    const key = await RecordKey.create(AES128, v.secrets.clientApplication);
    await assert.rejects(key.open(tampered.subarray(0, 5), tampered.subarray(5)), failsWith('BAD_RECORD_MAC', 20));
  });

  void it('CertificateVerify: the RSA-PSS signature verifies with the certificate key; a changed transcript does not', async () => {
    const der = v.certificate.subarray(4 + 1 + 3 + 3, 4 + 1 + 3 + 3 + 0x1b0);
    const spki = new X509Certificate(der).publicKey.rawData;
    const signature = v.certificateVerify.subarray(8);
    const signed = transcript(v.clientHello, v.serverHello, v.encryptedExtensions, v.certificate);
    await verifyCertificateVerify(0x0804, [0x0804], spki, signature, signed);
    await assert.rejects(verifyCertificateVerify(0x0804, [0x0804], spki, signature, transcript(v.clientHello)), failsWith('HANDSHAKE_FAILED', 51)); // decrypt_error
    await assert.rejects(verifyCertificateVerify(0x0804, [0x0403], spki, signature, signed), failsWith('HANDSHAKE_FAILED', 47)); // not offered
    await assert.rejects(verifyCertificateVerify(0x0403, [0x0403], spki, signature, signed), failsWith('HANDSHAKE_FAILED', 47)); // wrong key type
  });
});

void describe('webcrypto engine: RFC 8448 §4 resumption PSK binder', () => {
  void it('early secret, binder key and binder of the resumed ClientHello', () => {
    const ks = new KeySchedule(SHA256);
    ks.early(v.resumptionPsk);
    const key = ks.binderFinishedKey(false);
    assert.equal(hex(key), hex(v.binderFinishedKey));
    assert.equal(hex(SHA256.hmac(key, SHA256.digest(v.resumedHelloPrefix))), hex(v.binder));
  });
});
