// Record framing, hello parsing and flight inspection, checked against flights
// written by real stacks (node:tls / OpenSSL for TLS 1.2 and 1.3, OpenSSL
// s_client for DTLS 1.2) and hand-built edge cases.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { AtlsError } from '../../src/errors.js';
import { concatBytes, fromHex } from '../../src/bytes.js';
import {
  HELLO_RETRY_REQUEST_RANDOM,
  MAX_RECORD_FRAGMENT,
  MAX_RECORD_FRAGMENT_TLS12,
  inspectFlight,
  parseClientHello,
  parseClientHelloBody,
  parseServerHello,
  readHandshakeMessages,
  splitRecords,
  wholeRecordsLength,
  type TlsRecord,
} from '../../src/records.js';
import { captureHandshake, type CapturedHandshake } from '../helpers/tls-capture.js';
import { testPki } from '../helpers/pki.js';
import {
  clientHelloBody,
  dtlsHandshakeFragment,
  dtlsRecord,
  ext,
  extData,
  handshake,
  serverHelloBody,
  tlsRecord,
} from '../helpers/tls-builders.js';
import { DTLS_CLIENT_HELLO_FRAGMENTS_HEX, DTLS_CLIENT_HELLO_HEX } from '../vectors/records-dtls.js';

/** Asserts that `f` throws an AtlsError with this code (and remote source). */
function throwsCode(f: () => unknown, code: string, alert?: string): AtlsError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof AtlsError, `expected AtlsError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.equal(caught.source, 'remote');
  if (alert !== undefined) assert.equal(caught.alert?.name, alert);
  return caught;
}

const flight = (h: CapturedHandshake, i: number): Uint8Array => {
  const f = h.flights[i];
  assert.ok(f, `flight ${i} exists`);
  return f.bytes;
};

let tls13: CapturedHandshake;
let tls12: CapturedHandshake;
let hrr: CapturedHandshake;
let psk: CapturedHandshake;

before(async () => {
  const pskKey = Buffer.alloc(32, 7);
  [tls13, tls12, hrr, psk] = await Promise.all([
    captureHandshake({
      client: { servername: 'api.example', ALPNProtocols: ['h2', 'http/1.1'] },
      server: { ALPNProtocols: ['http/1.1'] },
      clientData: 'ping',
    }),
    captureHandshake({
      client: { servername: 'legacy.example', ALPNProtocols: ['coap', 'http/1.1'], maxVersion: 'TLSv1.2' },
      server: { ALPNProtocols: ['http/1.1'] },
    }),
    // The client's key share is X25519 only; the server insists on P-256 -> HelloRetryRequest.
    captureHandshake({ client: { servername: 'hrr.example', ecdhCurve: 'X25519:P-256' }, server: { ecdhCurve: 'P-256' } }),
    captureHandshake({
      client: {
        pskCallback: () => ({ psk: pskKey, identity: 'device-1' }),
        ciphers: 'TLS_AES_128_GCM_SHA256',
        checkServerIdentity: () => undefined,
      },
      server: {
        pskCallback: (_socket: unknown, id: string) => (id === 'device-1' ? pskKey : null),
        ciphers: 'TLS_AES_128_GCM_SHA256',
      } as never,
    }),
  ]);
});

describe('splitRecords', () => {
  it('splits a real ClientHello flight into one handshake record', () => {
    const body = flight(tls13, 0);
    const recs = splitRecords(body);
    assert.equal(recs.length, 1);
    const r = recs[0]!;
    assert.equal(r.contentType, 22);
    assert.equal(r.contentTypeName, 'handshake');
    assert.equal(r.offset, 0);
    assert.equal(r.headerLength, 5);
    assert.equal(r.length, body.length - 5);
    assert.equal(r.fragment.length, r.length);
    assert.equal(r.fragment[0], 1); // client_hello
    assert.equal(r.epoch, undefined);
    assert.ok(r.versionName === 'TLSv1.0' || r.versionName === 'TLSv1.2');
  });

  it('splits a real TLS 1.3 server flight: ServerHello, compatibility CCS, encrypted records', () => {
    const recs = splitRecords(flight(tls13, 1));
    assert.deepEqual(recs[0]!.contentTypeName, 'handshake');
    assert.deepEqual(recs[1]!.contentTypeName, 'change_cipher_spec');
    assert.ok(recs.slice(2).every((r) => r.contentTypeName === 'application_data'));
    let at = 0;
    for (const r of recs) {
      assert.equal(r.offset, at);
      assert.equal(r.version, 0x0303);
      at += 5 + r.length;
    }
    assert.equal(at, flight(tls13, 1).length);
  });

  it('accepts an empty body as an empty flight', () => {
    assert.deepEqual(splitRecords(new Uint8Array(0)), []);
    assert.deepEqual(splitRecords(new Uint8Array(0), { dtls: true }), []);
  });

  it('gives TRUNCATED_FLIGHT at every cut inside a record of every real flight, and whole records at boundaries', () => {
    for (const h of [tls13, tls12, hrr, psk]) {
      for (const f of h.flights) {
        const body = f.bytes;
        const boundaries = new Set<number>([0]);
        for (const r of splitRecords(body)) boundaries.add(r.offset + r.headerLength + r.length);
        let lastBoundary = 0;
        for (let n = 1; n < body.length; n++) {
          const prefix = body.subarray(0, n);
          if (boundaries.has(n)) {
            lastBoundary = n;
            assert.equal(splitRecords(prefix).reduce((a, r) => a + 5 + r.length, 0), n);
          } else {
            throwsCode(() => splitRecords(prefix), 'TRUNCATED_FLIGHT');
            throwsCode(() => inspectFlight(prefix), 'TRUNCATED_FLIGHT');
          }
          assert.equal(wholeRecordsLength(prefix), lastBoundary);
        }
        assert.equal(wholeRecordsLength(body), body.length);
      }
    }
  });

  it('rejects unknown content types with MALFORMED_RECORD / unexpected_message', () => {
    for (const t of [0, 19, 25, 26, 0x80, 0xff]) {
      throwsCode(() => splitRecords(tlsRecord(t, 0x0303, Uint8Array.of(1, 2))), 'MALFORMED_RECORD', 'unexpected_message');
    }
    // tls12_cid (25) exists only in DTLS.
    throwsCode(() => splitRecords(dtlsRecord(26, Uint8Array.of(1)), { dtls: true }), 'MALFORMED_RECORD');
    // A bad type byte is reported as malformed even when the header is incomplete.
    throwsCode(() => splitRecords(Uint8Array.of(0x99)), 'MALFORMED_RECORD');
    throwsCode(() => splitRecords(Uint8Array.of(0x16)), 'TRUNCATED_FLIGHT');
    // A bad record after good ones.
    const good = tlsRecord(23, 0x0303, Uint8Array.of(1, 2, 3));
    throwsCode(() => splitRecords(concatBytes([good, tlsRecord(99, 0x0303, Uint8Array.of(1))])), 'MALFORMED_RECORD');
  });

  it('rejects record versions that are not 0x03xx (TLS) or 0xfeff/0xfefd (DTLS)', () => {
    for (const v of [0x0203, 0x0403, 0x0000, 0xfefd, 0x1603]) {
      throwsCode(() => splitRecords(tlsRecord(22, v, Uint8Array.of(1))), 'MALFORMED_RECORD', 'protocol_version');
    }
    for (const v of [0x0300, 0x0301, 0x0302, 0x0303, 0x0304, 0x03ff]) {
      assert.equal(splitRecords(tlsRecord(23, v, Uint8Array.of(1))).length, 1);
    }
    for (const v of [0xfefe, 0xfefc, 0x0303]) {
      throwsCode(() => splitRecords(dtlsRecord(22, Uint8Array.of(1), 0, 0n, v), { dtls: true }), 'MALFORMED_RECORD');
    }
    assert.equal(splitRecords(dtlsRecord(23, Uint8Array.of(1), 0, 0n, 0xfeff), { dtls: true })[0]!.versionName, 'DTLSv1.0');
  });

  it('enforces the 2^14 + 256 fragment limit (record_overflow) and maxRecordLength', () => {
    const max = new Uint8Array(MAX_RECORD_FRAGMENT);
    assert.equal(splitRecords(tlsRecord(23, 0x0303, max))[0]!.length, 2 ** 14 + 256);
    const over = new Uint8Array(MAX_RECORD_FRAGMENT + 1);
    throwsCode(() => splitRecords(tlsRecord(23, 0x0303, over)), 'MALFORMED_RECORD', 'record_overflow');
    // Detected from the header alone, before the fragment arrives.
    throwsCode(() => splitRecords(tlsRecord(23, 0x0303, new Uint8Array(0), 0xffff)), 'MALFORMED_RECORD', 'record_overflow');
    throwsCode(() => splitRecords(dtlsRecord(23, over), { dtls: true }), 'MALFORMED_RECORD', 'record_overflow');
    // Lowered and raised limits.
    throwsCode(() => splitRecords(tlsRecord(23, 0x0303, new Uint8Array(101)), { maxRecordLength: 100 }), 'MALFORMED_RECORD');
    assert.equal(splitRecords(tlsRecord(23, 0x0303, over), { maxRecordLength: MAX_RECORD_FRAGMENT_TLS12 }).length, 1);
    assert.throws(() => splitRecords(new Uint8Array(0), { maxRecordLength: 2 ** 16 }), (e: unknown) => {
      return e instanceof AtlsError && e.code === 'INVALID_ARGUMENT' && e.source === 'local';
    });
  });

  it('rejects zero-length handshake, alert, CCS and heartbeat fragments but not application_data', () => {
    for (const t of [20, 21, 22, 24]) {
      throwsCode(() => splitRecords(tlsRecord(t, 0x0303, new Uint8Array(0))), 'MALFORMED_RECORD');
      throwsCode(() => splitRecords(dtlsRecord(t, new Uint8Array(0)), { dtls: true }), 'MALFORMED_RECORD');
    }
    const recs = splitRecords(tlsRecord(23, 0x0303, new Uint8Array(0)));
    assert.equal(recs[0]!.length, 0);
  });

  it('bounds the number of records', () => {
    const one = tlsRecord(23, 0x0303, Uint8Array.of(0));
    const ten = concatBytes(Array.from({ length: 10 }, () => one));
    assert.equal(splitRecords(ten, { maxRecords: 10 }).length, 10);
    throwsCode(() => splitRecords(ten, { maxRecords: 9 }), 'MALFORMED_RECORD');
    // The default bound: 4096 records.
    const many = concatBytes(Array.from({ length: 4097 }, () => one));
    throwsCode(() => splitRecords(many), 'MALFORMED_RECORD');
  });

  it('returns fragments as views of the input, with no copy', () => {
    const body = flight(tls13, 1);
    const r = splitRecords(body)[0]!;
    assert.equal(r.fragment.buffer, body.buffer);
  });
});

describe('DTLS records', () => {
  it('splits a real OpenSSL DTLS 1.2 ClientHello record (epoch, sequence, 13-byte header)', () => {
    const body = fromHex(DTLS_CLIENT_HELLO_HEX);
    const [r, ...rest] = splitRecords(body, { dtls: true });
    assert.equal(rest.length, 0);
    assert.ok(r);
    assert.equal(r.headerLength, 13);
    assert.equal(r.version, 0xfeff);
    assert.equal(r.versionName, 'DTLSv1.0');
    assert.equal(r.epoch, 0);
    assert.equal(r.sequence, 0n);
    assert.equal(r.length, body.length - 13);
  });

  it('parses sequence numbers as 48-bit integers', () => {
    const r = splitRecords(dtlsRecord(23, Uint8Array.of(1), 7, 0xffff_ffff_fffen), { dtls: true })[0]!;
    assert.equal(r.epoch, 7);
    assert.equal(r.sequence, 0xffff_ffff_fffen);
  });

  it('parses tls12_cid records only when the CID length is known (RFC 9146)', () => {
    const cidRecord = Uint8Array.from([
      25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 5, /* cid */ 0xaa, 0xbb, 0xcc, 0xdd, /* length */ 0, 3, 9, 9, 9,
    ]);
    throwsCode(() => splitRecords(cidRecord, { dtls: true }), 'MALFORMED_RECORD');
    const [r] = splitRecords(cidRecord, { dtls: true, cidLength: 4 });
    assert.ok(r);
    assert.deepEqual([...r.cid!], [0xaa, 0xbb, 0xcc, 0xdd]);
    assert.equal(r.headerLength, 17);
    assert.equal(r.length, 3);
    throwsCode(() => splitRecords(cidRecord.subarray(0, 16), { dtls: true, cidLength: 4 }), 'TRUNCATED_FLIGHT');
  });

  it('gives TRUNCATED_FLIGHT at every cut of a DTLS record', () => {
    const body = fromHex(DTLS_CLIENT_HELLO_HEX);
    for (let n = 1; n < body.length; n++) {
      throwsCode(() => splitRecords(body.subarray(0, n), { dtls: true }), 'TRUNCATED_FLIGHT');
    }
  });

  it('parses a real DTLS ClientHello: cookie, SNI, ALPN, DTLS version names', () => {
    const ch = parseClientHello(fromHex(DTLS_CLIENT_HELLO_HEX), { dtls: true });
    assert.equal(ch.dtls, true);
    assert.equal(ch.legacyVersion, 0xfefd);
    assert.equal(ch.legacyVersionName, 'DTLSv1.2');
    assert.equal(ch.cookie, '');
    assert.equal(ch.serverName, 'dtls.example');
    assert.deepEqual(ch.alpn, ['coap']);
    assert.equal(ch.length, 212);
    assert.ok(ch.cipherSuites.some((s) => s.name === 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'));
    assert.ok(ch.cipherSuites.some((s) => s.name === 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV'));
    assert.deepEqual(
      ch.supportedGroups?.map((g) => g.name),
      ['x25519', 'secp256r1', 'x448', 'secp521r1', 'secp384r1'],
    );
    assert.equal(ch.supportedVersions, undefined);
  });

  it('reassembles a ClientHello fragmented by OpenSSL across two records, in either order', () => {
    const [a, b] = DTLS_CLIENT_HELLO_FRAGMENTS_HEX.map(fromHex) as [Uint8Array, Uint8Array];
    const inOrder = parseClientHello(concatBytes([a, b]));
    assert.equal(inOrder.dtls, true); // guessed from the 0xfe version byte
    assert.equal(inOrder.length, 330);
    assert.equal(inOrder.serverName, 'dtls.example');
    assert.deepEqual(inOrder.alpn, ['coap']);
    assert.ok(inOrder.cipherSuites.length > 80);
    assert.deepEqual(parseClientHello(concatBytes([b, a]), { dtls: true }), inOrder);
    // A retransmitted fragment changes nothing.
    assert.deepEqual(parseClientHello(concatBytes([a, b, a]), { dtls: true }), inOrder);
    // Only the first fragment: the message is incomplete.
    throwsCode(() => parseClientHello(a, { dtls: true }), 'TRUNCATED_FLIGHT');
    const msgs = readHandshakeMessages(splitRecords(concatBytes([a, b]), { dtls: true }));
    assert.equal(msgs.length, 1);
    assert.equal(msgs[0]!.messageSeq, 0);
    assert.equal(msgs[0]!.recordOffset, 0);
  });

  it('rejects DTLS fragments that disagree or overrun their message', () => {
    const body = clientHelloBody({ cookie: new Uint8Array(0), extensions: [ext(0, extData.serverName('x.example'))] });
    const f1 = dtlsHandshakeFragment(1, body, 0, 0, 10);
    const conflicting = dtlsHandshakeFragment(1, concatBytes([body, Uint8Array.of(0)]), 0, 10);
    throwsCode(
      () => parseClientHello(concatBytes([dtlsRecord(22, f1), dtlsRecord(22, conflicting, 0, 1n)]), { dtls: true }),
      'MALFORMED_RECORD',
      'illegal_parameter',
    );
    // fragment_offset + fragment_length beyond length.
    const overrun = Uint8Array.from([1, 0, 0, 4, 0, 0, 0, 0, 0, 2, 0, 0, 3, 1, 2, 3]);
    throwsCode(() => parseClientHello(dtlsRecord(22, overrun), { dtls: true }), 'MALFORMED_RECORD');
    // A huge declared length with one byte present: incomplete, and nothing big is allocated.
    const huge = Uint8Array.from([1, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 7]);
    throwsCode(() => parseClientHello(dtlsRecord(22, huge), { dtls: true, maxHandshakeLength: 2 ** 24 - 1 }), 'TRUNCATED_FLIGHT');
    throwsCode(() => parseClientHello(dtlsRecord(22, huge), { dtls: true }), 'MALFORMED_RECORD');
    // A fragment header cut short inside its record.
    throwsCode(() => parseClientHello(dtlsRecord(22, Uint8Array.of(1, 0, 0)), { dtls: true }), 'TRUNCATED_FLIGHT');
  });

  it('inspects a hand-built HelloVerifyRequest and an encrypted epoch-1 flight', () => {
    const hvr = Uint8Array.from([0xfe, 0xff, 4, 0xde, 0xad, 0xbe, 0xef]);
    const s = inspectFlight(dtlsRecord(22, dtlsHandshakeFragment(3, hvr, 0)));
    assert.equal(s.protocol, 'DTLS');
    assert.deepEqual(s.helloVerifyRequest, { serverVersion: 0xfeff, serverVersionName: 'DTLSv1.0', cookie: 'deadbeef' });
    assert.deepEqual(s.records[0]!.handshake, ['hello_verify_request']);
    assert.equal(s.records[0]!.sequence, 0);

    const flight2 = concatBytes([
      dtlsRecord(22, dtlsHandshakeFragment(16, new Uint8Array(33).fill(4), 2), 0, 2n),
      dtlsRecord(20, Uint8Array.of(1), 0, 3n),
      dtlsRecord(22, new Uint8Array(40).fill(0x5a), 1, 0n),
    ]);
    const s2 = inspectFlight(flight2, { dtls: true });
    assert.equal(s2.error, undefined);
    assert.deepEqual(s2.records[0]!.handshake, ['client_key_exchange']);
    assert.equal(s2.records[1]!.note, 'change_cipher_spec');
    assert.equal(s2.records[2]!.encrypted, true);
    assert.equal(s2.records[2]!.epoch, 1);
    assert.doesNotThrow(() => JSON.stringify(s2));
  });
});

describe('ClientHello from node:tls (OpenSSL)', () => {
  it('TLS 1.3 offer: SNI, ALPN, versions, suites, groups, key share, signature schemes', () => {
    const ch = parseClientHello(flight(tls13, 0));
    assert.equal(ch.dtls, false);
    assert.equal(ch.legacyVersion, 0x0303);
    assert.equal(ch.legacyVersionName, 'TLSv1.2');
    assert.equal(ch.random.length, 64);
    assert.equal(ch.sessionId.length, 64); // middlebox compatibility mode (RFC 8446 §D.4)
    assert.equal(ch.cookie, undefined);
    assert.equal(ch.serverName, 'api.example');
    assert.deepEqual(ch.alpn, ['h2', 'http/1.1']);
    assert.deepEqual(ch.supportedVersions, ['TLSv1.3', 'TLSv1.2']);
    const suites = ch.cipherSuites.map((s) => s.name);
    for (const s of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
      assert.ok(suites.includes(s), s);
    }
    assert.ok(suites.includes('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'));
    assert.ok(suites.includes('TLS_EMPTY_RENEGOTIATION_INFO_SCSV'));
    assert.deepEqual(ch.cipherSuites.find((s) => s.name === 'TLS_AES_128_GCM_SHA256'), {
      value: 0x1301,
      name: 'TLS_AES_128_GCM_SHA256',
    });
    assert.ok(ch.supportedGroups?.some((g) => g.name === 'x25519' && g.value === 29));
    assert.ok(ch.supportedGroups?.some((g) => g.name === 'secp256r1'));
    assert.ok(ch.supportedGroups?.some((g) => g.name === 'ffdhe2048'));
    assert.deepEqual(ch.keyShareGroups, [{ value: 29, name: 'x25519' }]);
    assert.ok(ch.signatureAlgorithms?.some((s) => s.name === 'ecdsa_secp256r1_sha256'));
    assert.ok(ch.signatureAlgorithms?.some((s) => s.name === 'rsa_pss_rsae_sha256'));
    assert.ok(ch.signatureAlgorithms?.some((s) => s.name === 'ed25519'));
    assert.deepEqual(ch.pskKeyExchangeModes, ['psk_dhe_ke']);
    assert.equal(ch.hasPreSharedKey, false);
    assert.equal(ch.hasEarlyData, false);
    assert.deepEqual(ch.compressionMethods, [0]);
    const extNames = ch.extensions.map((e) => e.name);
    for (const n of ['server_name', 'supported_groups', 'signature_algorithms', 'supported_versions', 'key_share']) {
      assert.ok(extNames.includes(n), n);
    }
    assert.ok(ch.extensions.every((e) => !e.name.startsWith('0x')), 'every extension OpenSSL sends is named');
    assert.ok(ch.cipherSuites.every((s) => !s.name.startsWith('0x')), 'every suite OpenSSL sends is named');
  });

  it('TLS 1.2-only offer has no supported_versions', () => {
    const ch = parseClientHello(flight(tls12, 0));
    assert.equal(ch.serverName, 'legacy.example');
    assert.deepEqual(ch.alpn, ['coap', 'http/1.1']);
    assert.equal(ch.supportedVersions, undefined);
    assert.equal(ch.keyShareGroups, undefined);
    assert.ok(!ch.cipherSuites.some((s) => s.name.startsWith('TLS_AES_')));
  });

  it('TLS 1.3 external PSK offer: pre_shared_key last, one identity', () => {
    const ch = parseClientHello(flight(psk, 0));
    assert.equal(ch.hasPreSharedKey, true);
    assert.equal(ch.pskIdentities, 1);
    assert.equal(ch.extensions.at(-1)?.name, 'pre_shared_key');
    assert.deepEqual(
      ch.cipherSuites.map((s) => s.name),
      ['TLS_AES_128_GCM_SHA256', 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV'],
    );
  });

  it('gives the same result for a ClientHello re-split into records of any size (RFC 8446 §5.1)', () => {
    const body = flight(tls13, 0);
    const whole = parseClientHello(body);
    const msg = splitRecords(body)[0]!.fragment;
    for (const size of [1, 4, 7, 100, 255]) {
      const parts: Uint8Array[] = [];
      for (let at = 0; at < msg.length; at += size) parts.push(tlsRecord(22, 0x0303, msg.subarray(at, at + size)));
      const split = concatBytes(parts);
      assert.deepEqual(parseClientHello(split), whole, `records of ${size} bytes`);
      const recs: readonly TlsRecord[] = splitRecords(split);
      assert.deepEqual(parseClientHello(recs), whole);
      const s = inspectFlight(split);
      assert.equal(s.error, undefined);
      assert.deepEqual(s.records[0]!.handshake, ['client_hello']);
      assert.equal(s.records[1]!.handshake, undefined);
    }
  });

  it('a ClientHello missing its last record gives TRUNCATED_FLIGHT', () => {
    const msg = splitRecords(flight(tls13, 0))[0]!.fragment;
    const first = tlsRecord(22, 0x0303, msg.subarray(0, 100));
    throwsCode(() => parseClientHello(first), 'TRUNCATED_FLIGHT');
    const s = inspectFlight(first);
    assert.equal(s.error?.code, 'TRUNCATED_FLIGHT');
  });
});

describe('ServerHello from node:tls (OpenSSL)', () => {
  it('TLS 1.3: selected version from supported_versions, suite as the client reports it', () => {
    const sh = parseServerHello(flight(tls13, 1));
    assert.equal(sh.legacyVersionName, 'TLSv1.2');
    assert.equal(sh.selectedVersion, 'TLSv1.3');
    assert.equal(sh.selectedVersion, tls13.protocol);
    assert.equal(sh.cipherSuite.name, tls13.cipher);
    assert.equal(sh.isHelloRetryRequest, false);
    assert.equal(sh.keyShareGroup?.name, 'x25519');
    assert.equal(sh.downgradeSentinel, undefined);
    // ALPN travels in EncryptedExtensions in TLS 1.3: not visible here.
    assert.equal(sh.alpn, undefined);
    assert.equal(tls13.alpnProtocol, 'http/1.1');
    assert.equal(sh.sessionId, parseClientHello(flight(tls13, 0)).sessionId);
  });

  it('TLS 1.2: legacy version, ALPN in the clear, downgrade sentinel of a 1.3-capable server', () => {
    const sh = parseServerHello(flight(tls12, 1));
    assert.equal(sh.selectedVersion, 'TLSv1.2');
    assert.equal(sh.selectedVersion, tls12.protocol);
    assert.equal(sh.cipherSuite.name, tls12.cipher);
    assert.equal(sh.alpn, 'http/1.1');
    assert.equal(sh.downgradeSentinel, 'TLSv1.2');
  });

  it('HelloRetryRequest: detected by its random, names the group it wants', () => {
    const sh = parseServerHello(flight(hrr, 1));
    assert.equal(sh.isHelloRetryRequest, true);
    assert.equal(sh.random, Buffer.from(HELLO_RETRY_REQUEST_RANDOM).toString('hex'));
    assert.equal(sh.selectedVersion, 'TLSv1.3');
    assert.deepEqual(sh.keyShareGroup, { value: 23, name: 'secp256r1' });
    // The second ClientHello follows a compatibility CCS in the same flight.
    const recs = splitRecords(flight(hrr, 2));
    assert.equal(recs[0]!.contentTypeName, 'change_cipher_spec');
    const ch2 = parseClientHello(recs);
    assert.deepEqual(ch2.keyShareGroups, [{ value: 23, name: 'secp256r1' }]);
    assert.equal(ch2.serverName, 'hrr.example');
    const final = parseServerHello(flight(hrr, 3));
    assert.equal(final.isHelloRetryRequest, false);
    assert.equal(final.keyShareGroup?.name, 'secp256r1');
  });

  it('PSK: the server selects identity 0', () => {
    const sh = parseServerHello(flight(psk, 1));
    assert.equal(sh.hasPreSharedKey, true);
    assert.equal(sh.selectedPskIdentity, 0);
  });

  it('a flight without the message asked for is MALFORMED_RECORD', () => {
    throwsCode(() => parseServerHello(flight(tls13, 0)), 'MALFORMED_RECORD', 'unexpected_message');
    throwsCode(() => parseClientHello(flight(tls13, 1)), 'MALFORMED_RECORD');
    throwsCode(() => parseClientHello(new Uint8Array(0)), 'MALFORMED_RECORD');
    throwsCode(() => parseClientHello(flight(tls13, 2)), 'MALFORMED_RECORD');
  });
});

describe('inspectFlight on real flights', () => {
  it('TLS 1.3 server flight: hello in the clear, the rest encrypted', () => {
    const s = inspectFlight(flight(tls13, 1));
    assert.equal(s.protocol, 'TLS');
    assert.equal(s.error, undefined);
    assert.deepEqual(s.records[0]!.handshake, ['server_hello']);
    assert.equal(s.records[1]!.contentTypeName, 'change_cipher_spec');
    assert.equal(s.records[1]!.encrypted, false);
    assert.ok(s.records.slice(2).every((r) => r.encrypted && r.note === 'encrypted'));
    assert.equal(s.serverHello?.selectedVersion, 'TLSv1.3');
    assert.equal(s.clientHello, undefined);
    assert.ok(s.notes.some((n) => n.includes('TLS 1.3')));
    assert.equal(s.records[0]!.header, Buffer.from(flight(tls13, 1).subarray(0, 5)).toString('hex'));
    assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
  });

  it('TLS 1.2 server flight: every handshake message in the clear, certificate sizes', async () => {
    const s = inspectFlight(flight(tls12, 1));
    assert.equal(s.error, undefined);
    assert.deepEqual(
      s.handshake.map((h) => h.name),
      ['server_hello', 'certificate', 'server_key_exchange', 'server_hello_done'],
    );
    const der = new X509Certificate((await testPki()).server.cert).raw;
    assert.deepEqual(s.handshake[1]!.certificateLengths, [der.length]);
    assert.ok(s.records.every((r) => !r.encrypted));
  });

  it('TLS 1.2 client and server final flights: CCS, then an encrypted Finished', () => {
    const c = inspectFlight(flight(tls12, 2));
    assert.equal(c.error, undefined);
    assert.deepEqual(c.records.map((r) => r.contentTypeName), ['handshake', 'change_cipher_spec', 'handshake']);
    assert.deepEqual(c.records[0]!.handshake, ['client_key_exchange']);
    assert.equal(c.records[2]!.encrypted, true);
    assert.equal(c.records[2]!.note, 'encrypted handshake');
    const sf = inspectFlight(flight(tls12, 3));
    assert.deepEqual(sf.records[0]!.handshake, ['new_session_ticket']);
    assert.equal(sf.records[2]!.encrypted, true);
  });

  it('HRR flights: hello_retry_request, then CCS + a plaintext second ClientHello', () => {
    const s1 = inspectFlight(flight(hrr, 1));
    assert.deepEqual(s1.records[0]!.handshake, ['hello_retry_request']);
    assert.equal(s1.serverHello?.isHelloRetryRequest, true);
    assert.ok(s1.notes.some((n) => n.includes('HelloRetryRequest')));
    const s2 = inspectFlight(flight(hrr, 2));
    assert.equal(s2.error, undefined);
    assert.equal(s2.records[1]!.encrypted, false);
    assert.deepEqual(s2.records[1]!.handshake, ['client_hello']);
    assert.equal(s2.clientHello?.keyShareGroups?.[0]?.name, 'secp256r1');
  });

  it('never throws on any real flight, and summaries are plain JSON', () => {
    for (const h of [tls13, tls12, hrr, psk]) {
      for (const f of h.flights) {
        const s = inspectFlight(f.bytes);
        assert.equal(s.error, undefined, s.error?.message);
        assert.equal(s.length, f.bytes.length);
        assert.deepEqual(JSON.parse(JSON.stringify(s)), s);
      }
    }
  });
});

describe('hand-built hellos', () => {
  const chRecord = (body: Uint8Array): Uint8Array => tlsRecord(22, 0x0301, handshake(1, body));

  it('names GREASE values and prints unknown values as hex', () => {
    const body = clientHelloBody({
      suites: [0x0a0a, 0x1301, 0x1234],
      extensions: [
        ext(0x1a1a),
        ext(10, extData.u16List([0x2a2a, 29, 0x9999])),
        ext(43, extData.supportedVersions([0x3a3a, 0x0304, 0x7f1c])),
        ext(51, extData.keyShare([0x4a4a, 29])),
        ext(13, extData.u16List([0x5a5a, 0x0403, 0x0bad])),
        ext(45, extData.pskModes([0x0b, 1, 0x77])),
        ext(0xbeef, Uint8Array.of(1, 2, 3)),
      ],
    });
    const ch = parseClientHello(chRecord(body));
    assert.deepEqual(
      ch.cipherSuites.map((s) => s.name),
      ['GREASE', 'TLS_AES_128_GCM_SHA256', '0x1234'],
    );
    assert.deepEqual(ch.extensions.map((e) => e.name), [
      'GREASE',
      'supported_groups',
      'supported_versions',
      'key_share',
      'signature_algorithms',
      'psk_key_exchange_modes',
      '0xbeef',
    ]);
    assert.equal(ch.extensions.at(-1)!.length, 3);
    assert.deepEqual(ch.supportedGroups?.map((g) => g.name), ['GREASE', 'x25519', '0x9999']);
    assert.deepEqual(ch.supportedVersions, ['GREASE', 'TLSv1.3', '0x7f1c']);
    assert.deepEqual(ch.keyShareGroups?.map((g) => g.name), ['GREASE', 'x25519']);
    assert.deepEqual(ch.signatureAlgorithms?.map((g) => g.name), ['GREASE', 'ecdsa_secp256r1_sha256', '0x0bad']);
    assert.deepEqual(ch.pskKeyExchangeModes, ['GREASE', 'psk_dhe_ke', '0x77']);
  });

  it('accepts a ClientHello without an extensions block (RFC 5246 §7.4.1.2)', () => {
    const ch = parseClientHello(chRecord(clientHelloBody({ suites: [0xc02b] })));
    assert.deepEqual(ch.extensions, []);
    assert.equal(ch.serverName, undefined);
  });

  it('escapes non-printable bytes of SNI and ALPN', () => {
    const body = clientHelloBody({
      extensions: [ext(0, extData.serverName('evil\x1b[31m.example\\')), ext(16, extData.alpn(['h\x002']))],
    });
    const ch = parseClientHello(chRecord(body));
    assert.equal(ch.serverName, 'evil\\x1b[31m.example\\x5c');
    assert.deepEqual(ch.alpn, ['h\\x002']);
  });

  const malformedBodies: [string, Uint8Array, string?][] = [
    ['session id of 33 bytes', clientHelloBody({ sessionId: new Uint8Array(33) })],
    ['odd cipher_suites length', clientHelloBody({ suitesRaw: Uint8Array.of(0x13, 0x01, 0x13) })],
    ['empty cipher_suites', clientHelloBody({ suitesRaw: new Uint8Array(0) })],
    ['no compression methods', clientHelloBody({ compression: [] })],
    ['duplicate extension', clientHelloBody({ extensions: [ext(23), ext(23)] }), 'illegal_parameter'],
    [
      'pre_shared_key not last',
      clientHelloBody({ extensions: [ext(41, extData.preSharedKey(1)), ext(23)] }),
      'illegal_parameter',
    ],
    ['psk identities without binders', clientHelloBody({ extensions: [ext(41, Uint8Array.of(0, 0, 0, 0))] })],
    ['trailing bytes after extensions', concatBytes([clientHelloBody({ extensions: [] }), Uint8Array.of(0)])],
    ['extension longer than its block', clientHelloBody({ extensions: [Uint8Array.of(0, 23, 0, 5)] })],
    ['bad SNI list length', clientHelloBody({ extensions: [ext(0, Uint8Array.of(0, 9, 0))] })],
    ['empty ALPN name', clientHelloBody({ extensions: [ext(16, Uint8Array.of(0, 1, 0))] })],
    ['odd supported_versions', clientHelloBody({ extensions: [ext(43, Uint8Array.of(3, 3, 4, 3))] })],
    ['early_data with content', clientHelloBody({ extensions: [ext(42, Uint8Array.of(0))] })],
    ['key share with trailing bytes', clientHelloBody({ extensions: [ext(51, Uint8Array.of(0, 0, 9))] })],
    ['truncated random', Uint8Array.of(3, 3, 1, 2)],
  ];
  for (const [what, body, alert] of malformedBodies) {
    it(`rejects a ClientHello with ${what}, and inspectFlight reports it without throwing`, () => {
      throwsCode(() => parseClientHello(chRecord(body)), 'MALFORMED_RECORD', alert);
      const s = inspectFlight(chRecord(body));
      assert.equal(s.error?.code, 'MALFORMED_RECORD');
      assert.equal(s.clientHello, undefined);
      assert.deepEqual(s.records[0]!.handshake, ['client_hello']);
    });
  }

  it('parses a PSK offer, early_data and a TLS 1.3 cookie echo', () => {
    const ch = parseClientHelloBody(
      clientHelloBody({
        extensions: [ext(44, Uint8Array.of(0, 2, 9, 9)), ext(42), ext(41, extData.preSharedKey(2))],
      }),
    );
    assert.equal(ch.hasCookie, true);
    assert.equal(ch.hasEarlyData, true);
    assert.equal(ch.pskIdentities, 2);
  });

  it('ServerHello: rejects two ALPN protocols and names a TLS 1.1 downgrade sentinel', () => {
    const two = serverHelloBody({ extensions: [ext(16, extData.alpn(['a', 'b']))] });
    throwsCode(() => parseServerHello(tlsRecord(22, 0x0303, handshake(2, two))), 'MALFORMED_RECORD');
    const random = new Uint8Array(32);
    random.set(Buffer.from('444f574e47524400', 'hex'), 24);
    const sh = parseServerHello(tlsRecord(22, 0x0303, handshake(2, serverHelloBody({ version: 0x0302, random }))));
    assert.equal(sh.downgradeSentinel, 'TLSv1.1');
    assert.equal(sh.selectedVersion, 'TLSv1.1');
    assert.deepEqual(sh.extensions, []);
  });

  it('bounds handshake message length and count', () => {
    const rec = tlsRecord(22, 0x0303, Uint8Array.of(1, 0x10, 0, 0));
    throwsCode(() => parseClientHello(rec, { maxHandshakeLength: 1000 }), 'MALFORMED_RECORD');
    // Within the limit but not present: incomplete.
    throwsCode(() => parseClientHello(rec, { maxHandshakeLength: 2 ** 24 - 1 }), 'TRUNCATED_FLIGHT');
    // 1025 empty hello_request messages.
    const many = tlsRecord(22, 0x0303, new Uint8Array(4 * 1025));
    throwsCode(() => readHandshakeMessages(splitRecords(many)), 'MALFORMED_RECORD');
    assert.equal(inspectFlight(many).error?.code, 'MALFORMED_RECORD');
    // A handshake header cut short at the end of the flight.
    throwsCode(() => readHandshakeMessages(splitRecords(tlsRecord(22, 0x0303, Uint8Array.of(1, 0)))), 'TRUNCATED_FLIGHT');
  });

  it('inspects plaintext alerts and encrypted ones', () => {
    const plain = inspectFlight(tlsRecord(21, 0x0303, Uint8Array.of(2, 40)));
    assert.deepEqual(plain.records[0]!.alert, { level: 2, description: 40, name: 'handshake_failure' });
    assert.equal(plain.records[0]!.note, 'fatal alert handshake_failure');
    const enc = inspectFlight(
      concatBytes([tlsRecord(20, 0x0303, Uint8Array.of(1)), tlsRecord(21, 0x0303, new Uint8Array(26))]),
    );
    assert.equal(enc.records[1]!.encrypted, true);
    assert.equal(enc.records[1]!.alert, undefined);
  });

  it('reports an inner error without throwing when a handshake record holds garbage', () => {
    const s = inspectFlight(tlsRecord(22, 0x0303, Uint8Array.of(1, 0, 0, 2, 0xff, 0xff)));
    assert.equal(s.error?.code, 'MALFORMED_RECORD');
    assert.equal(s.records.length, 1);
  });
});
