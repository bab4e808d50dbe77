/**
 * Unit tests of the pieces under the node engine: flight scanning, plaintext
 * alerts, the TLS 1.3 protected alert (RFC 8448 §3 known answers), error
 * classification and configuration checks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plaintextAlert, plaintextAlerts } from '../../src/engines/connection.js';
import { scanRecords } from '../../src/records.js';
import { canProtectAlert, expandLabel, tls13AlertRecord } from '../../src/engines/tls13-alert.js';
import { certificateFailure, classifyStackError, receivedAlertNumber } from '../../src/engines/node-errors.js';
import { resolveCiphers, TLS13_SUITES, TLS12_PSK_SUITES, checkAlpn, checkPsk } from '../../src/engines/config.js';
import { AlertDescription as A } from '../../src/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const record = (type: number, body: number[]): number[] => [type, 3, 3, body.length >> 8, body.length & 0xff, ...body];

void test('scanRecords splits whole records and never throws', () => {
  const flight = Uint8Array.from([...record(22, [1, 2, 3]), ...record(20, [1]), ...record(23, new Array(40).fill(7))]);
  const scan = scanRecords(flight);
  assert.equal(scan.truncated, false);
  assert.equal(scan.garbageAt, undefined);
  assert.deepEqual(
    scan.records.map((r) => [r.contentType, r.offset, r.offset + r.headerLength + r.length]),
    [
      [22, 0, 8],
      [20, 8, 14],
      [23, 14, 59],
    ],
  );
  assert.deepEqual(scanRecords(new Uint8Array(0)), { records: [], truncated: false, garbageAt: undefined });
  // Cut inside a header, inside a body.
  assert.equal(scanRecords(flight.subarray(0, 3)).truncated, true);
  assert.equal(scanRecords(flight.subarray(0, 20)).truncated, true);
  assert.equal(scanRecords(flight.subarray(0, 20)).records.length, 2);
  // Not a record: bad type, bad version, oversized length.
  assert.equal(scanRecords(Buffer.from('GET / HTTP/1.1\r\n')).garbageAt, 0);
  assert.equal(scanRecords(Uint8Array.from([...record(22, [0]), 22, 9, 9, 0, 1, 0])).garbageAt, 6);
  assert.equal(scanRecords(Uint8Array.from([23, 3, 3, 0x48, 0x01])).garbageAt, 0); // 18433 > 2^14 + 2048
  for (let n = 0; n < 300; n++) scanRecords(Uint8Array.from({ length: n % 17 }, (_, i) => (i * 37 + n) & 0xff));
});

void test('plaintext alerts: written and found; protected records are never mistaken for them', () => {
  assert.deepEqual([...plaintextAlert(A.unknown_ca)], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 48]);
  assert.deepEqual([...plaintextAlert(A.close_notify, 1)], [0x15, 3, 3, 0, 2, 1, 0]);
  const flight = Uint8Array.from([...record(20, [1]), ...plaintextAlert(A.decode_error)]);
  const found = plaintextAlerts(scanRecords(flight).records);
  assert.equal(found.length, 1);
  assert.deepEqual([found[0]!.level, found[0]!.description], [2, A.decode_error]);
  // TLS 1.2 encrypted alert (8-byte nonce + 2 + 16-byte tag) and TLS 1.3 records: not plaintext.
  assert.equal(plaintextAlerts(scanRecords(Uint8Array.from(record(21, new Array(26).fill(1)))).records).length, 0);
  assert.equal(plaintextAlerts(scanRecords(Uint8Array.from(record(23, new Array(19).fill(1)))).records).length, 0);
});

void test('TLS 1.3 protected alert: RFC 8448 §3 records, other suites round-trip', () => {
  // RFC 8448 §3 (Simple 1-RTT Handshake), client/server application traffic secrets.
  const client = hex('9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5');
  const server = hex('a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643');
  assert.equal(expandLabel('sha256', client, 'key', 16).toString('hex'), '17422dda596ed5d9acd890e3c63f5051');
  assert.equal(expandLabel('sha256', client, 'iv', 12).toString('hex'), '5b78923dee08579033e523d9');
  // "{client} send alert record" (close_notify after one application record: sequence 1).
  assert.deepEqual(
    Buffer.from(tls13AlertRecord('TLS_AES_128_GCM_SHA256', client, A.close_notify, 1, 1)!),
    hex('17 03 03 00 13 c9 87 27 60 65 56 66 b7 4d 7f f1 15 3e fd 6d b6 d0 b0 e3'),
  );
  // "{server} send alert record" (after NewSessionTicket and one application record: sequence 2).
  assert.deepEqual(
    Buffer.from(tls13AlertRecord('TLS_AES_128_GCM_SHA256', server, A.close_notify, 1, 2)!),
    hex('17 03 03 00 13 b5 8f d6 71 66 eb f5 99 d2 47 20 cf be 7e fa 7a 88 64 a9'),
  );
  for (const suite of TLS13_SUITES.split(':').concat('TLS_AES_128_CCM_SHA256', 'TLS_AES_128_CCM_8_SHA256')) {
    assert.ok(canProtectAlert(suite), suite);
    const secret = Buffer.alloc(suite.endsWith('SHA384') ? 48 : 32, 5);
    const rec = tls13AlertRecord(suite, secret, A.unknown_ca)!;
    assert.equal(rec[0], 23);
    assert.equal(rec.length, 5 + 3 + (suite.endsWith('CCM_8_SHA256') ? 8 : 16));
  }
  assert.equal(tls13AlertRecord('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', Buffer.alloc(32), 48), undefined);
});

void test('received alerts are read from OpenSSL error texts', () => {
  const msg = 'error:0A000418:SSL routines:ssl3_read_bytes:tlsv1 alert unknown ca:../ssl/record/rec_layer_s3.c:1602:SSL alert number 48';
  assert.equal(receivedAlertNumber(msg), 48);
  assert.equal(receivedAlertNumber('decryption failed or bad record mac'), undefined);
  assert.deepEqual(classifyStackError({ code: 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', message: msg }, { tls13: true, established: false }), {
    code: 'CERTIFICATE_UNTRUSTED',
    alert: 48,
    received: true,
  });
});

void test('local stack errors map to codes and the alert OpenSSL sends', () => {
  const c = (code: string, opts: { tls13?: boolean; established?: boolean; ownAlert?: number } = {}) =>
    classifyStackError({ code, message: code }, { tls13: opts.tls13, established: opts.established ?? false, ownAlert: opts.ownAlert });
  assert.deepEqual(c('ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC'), { code: 'BAD_RECORD_MAC', alert: 20, received: false });
  assert.deepEqual(c('ERR_SSL_CIPHER_OPERATION_FAILED'), { code: 'BAD_RECORD_MAC', alert: 20, received: false });
  assert.deepEqual(c('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', { tls13: true }).alert, A.certificate_required);
  assert.deepEqual(c('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE', { tls13: false }).alert, A.handshake_failure);
  assert.equal(c('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE').code, 'CERTIFICATE_REQUIRED');
  assert.equal(c('ERR_SSL_PSK_IDENTITY_NOT_FOUND').code, 'PSK_UNKNOWN');
  assert.equal(c('ERR_SSL_WRONG_VERSION_NUMBER').code, 'MALFORMED_RECORD');
  assert.equal(c('ERR_SSL_UNSUPPORTED_PROTOCOL').code, 'PROTOCOL_VERSION');
  // The alert the stack wrote in the clear wins over the table's guess.
  assert.deepEqual(c('ERR_SSL_NO_SHARED_CIPHER', { ownAlert: A.handshake_failure }), { code: 'HANDSHAKE_FAILED', alert: 40, received: false });
  assert.deepEqual(c('ERR_SOMETHING_NEW'), { code: 'HANDSHAKE_FAILED', alert: 40, received: false });
  assert.deepEqual(c('ERR_SOMETHING_NEW', { established: true }), { code: 'MALFORMED_RECORD', alert: 10, received: false });
  assert.equal(classifyStackError(undefined, { tls13: undefined, established: false }).code, 'HANDSHAKE_FAILED');
});

void test('certificate verification results map like OpenSSL ssl_verify_alarm_type', () => {
  assert.deepEqual(certificateFailure('CERT_HAS_EXPIRED'), { code: 'CERTIFICATE_EXPIRED', alert: 45 });
  assert.deepEqual(certificateFailure('UNABLE_TO_VERIFY_LEAF_SIGNATURE'), { code: 'CERTIFICATE_UNTRUSTED', alert: 48 });
  assert.deepEqual(certificateFailure('SELF_SIGNED_CERT_IN_CHAIN'), { code: 'CERTIFICATE_UNTRUSTED', alert: 48 });
  assert.deepEqual(certificateFailure('ERR_TLS_CERT_ALTNAME_INVALID'), { code: 'CERTIFICATE_NAME_MISMATCH', alert: 42 });
  assert.deepEqual(certificateFailure(undefined), { code: 'CERTIFICATE_UNTRUSTED', alert: 42 });
});

void test('cipher defaults are AEAD only; TLS 1.3 suites survive a TLS 1.2-only list', () => {
  for (const list of [resolveCiphers({}, false, true), resolveCiphers({}, true, false), resolveCiphers({}, true, true)]) {
    for (const name of list.split(':')) assert.match(name, /GCM|CHACHA20|CCM/, name);
  }
  assert.ok(resolveCiphers({}, true, false).includes(TLS12_PSK_SUITES));
  assert.ok(!resolveCiphers({}, true, false).includes('ECDHE-ECDSA'), 'a PSK-only side offers no certificate suites');
  assert.equal(resolveCiphers({ ciphers: 'PSK-AES128-GCM-SHA256' }, true, false), `${TLS13_SUITES}:PSK-AES128-GCM-SHA256`);
  assert.equal(resolveCiphers({ ciphers: 'TLS_AES_128_GCM_SHA256' }, false, true), 'TLS_AES_128_GCM_SHA256');
  assert.throws(() => resolveCiphers({ ciphers: ' ' }, false, true), { code: 'INVALID_ARGUMENT' });
});

void test('ALPN and PSK arguments are checked', () => {
  assert.deepEqual(checkAlpn(['h2']), ['h2']);
  assert.equal(checkAlpn(undefined), undefined);
  assert.throws(() => checkAlpn([]), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => checkAlpn(['']), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => checkAlpn(['x'.repeat(256)]), { code: 'INVALID_ARGUMENT' }); // RFC 7301 §3.1
  assert.equal(checkPsk({ identity: 'a', key: new Uint8Array(16) }).key.length, 16);
  assert.throws(() => checkPsk({ identity: '', key: new Uint8Array(16) }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => checkPsk({ identity: 'a', key: new Uint8Array(0) }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => checkPsk({ identity: 'a'.repeat(129), key: new Uint8Array(1) }), { code: 'INVALID_ARGUMENT' });
});
