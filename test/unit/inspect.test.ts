// The annotated text rendering of an inspection, and the `atls inspect` action.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AtlsError } from '../../src/errors.js';
import { concatBytes, fromHex, toHex } from '../../src/bytes.js';
import { inspectFlight } from '../../src/records.js';
import { formatInspection } from '../../src/inspect.js';
import { decodeInspectInput, runInspect } from '../../src/cli/inspect.js';
import { captureHandshake, type CapturedHandshake } from '../helpers/tls-capture.js';
import { clientHelloBody, dtlsHandshakeFragment, dtlsRecord, ext, extData, handshake, tlsRecord } from '../helpers/tls-builders.js';
import { DTLS_CLIENT_HELLO_FRAGMENTS_HEX, DTLS_CLIENT_HELLO_HEX } from '../vectors/records-dtls.js';

let tls13: CapturedHandshake;
let hrr: CapturedHandshake;
let dir: string;

before(async () => {
  [tls13, hrr] = await Promise.all([
    captureHandshake({
      client: { servername: 'api.example', ALPNProtocols: ['h2', 'http/1.1'] },
      server: { ALPNProtocols: ['h2'] },
    }),
    captureHandshake({ client: { servername: 'hrr.example', ecdhCurve: 'X25519:P-256' }, server: { ecdhCurve: 'P-256' } }),
  ]);
  dir = await mkdtemp(join(tmpdir(), 'atls-inspect-'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const text = (body: Uint8Array, dtls?: boolean): string =>
  formatInspection(inspectFlight(body, dtls === undefined ? {} : { dtls }));

/** Collects what runInspect writes. */
function sink(): { stdout: { write(s: string): boolean }; output: () => string } {
  let out = '';
  return {
    stdout: {
      write: (s: string) => {
        out += s;
        return true;
      },
    },
    output: () => out,
  };
}

describe('formatInspection', () => {
  it('annotates a real ClientHello: header fields, SNI, ALPN, versions, suites, groups', () => {
    const body = tls13.flights[0]!.bytes;
    const t = text(body);
    const lines = t.split('\n');
    assert.equal(lines[0], `TLS flight: 1 record, ${body.length} bytes`);
    const h = toHex(body.subarray(0, 5));
    assert.ok(lines[1]!.startsWith(`@0    ${h.slice(0, 2)} ${h.slice(2, 6)} ${h.slice(6, 10)}  handshake`), lines[1]);
    assert.match(lines[1]!, /client_hello$/);
    assert.match(t, /^ {9}client_hello {2}\d+ B$/m);
    assert.match(t, /^ {11}server_name {5}api\.example$/m);
    assert.match(t, /^ {11}alpn {12}h2, http\/1\.1$/m);
    assert.match(t, /^ {11}versions {8}TLSv1\.3, TLSv1\.2$/m);
    assert.match(t, /TLS_AES_128_GCM_SHA256 \(0x1301\)/);
    assert.match(t, /^ {11}key_share {7}x25519$/m);
    assert.match(t, /^ {11}groups {10}x25519, secp256r1/m);
    assert.match(t, /^ {11}sig_algs {8}ecdsa_secp256r1_sha256/m);
    assert.ok(t.endsWith('\n'));
    for (const line of lines) assert.ok(line.length <= 100, `line too long: ${line}`);
  });

  it('annotates a TLS 1.3 server flight and a HelloRetryRequest', () => {
    const t = text(tls13.flights[1]!.bytes);
    assert.match(t, /server_hello\n {9}server_hello/);
    assert.match(t, /^ {11}version {9}TLSv1\.3 \(legacy TLSv1\.2\)$/m);
    assert.match(t, /^@\d+ +17 0303 [0-9a-f]{4} +application_data +TLSv1\.2 +\d+ B +encrypted$/m);
    assert.match(t, /^@\d+ +14 0303 0001 +change_cipher_spec/m);
    assert.match(t, /^note: application_data records are encrypted/m);

    const h = text(hrr.flights[1]!.bytes);
    assert.match(h, /hello_retry_request/);
    assert.match(h, /^ {11}wants group {5}secp256r1$/m);
    assert.match(h, /^note: HelloRetryRequest/m);
    assert.doesNotMatch(h, /random/);
  });

  it('annotates DTLS: 13-byte header split into its fields, epoch and sequence, cookie', () => {
    const t = text(fromHex(DTLS_CLIENT_HELLO_HEX));
    assert.match(t, /^DTLS flight: 1 record, 237 bytes$/m);
    assert.match(t, /^@0 +16 feff 0000 000000000000 00e0 +handshake +DTLSv1\.0 +224 B +epoch 0 seq 0 +client_hello$/m);
    assert.match(t, /^ {9}client_hello {2}212 B, message_seq 0$/m);
    assert.match(t, /^ {11}cookie {10}\(empty\)$/m);
    assert.match(t, /^ {11}server_name {5}dtls\.example$/m);
    assert.match(t, /^ {11}legacy_version {2}DTLSv1\.2 \(0xfefd\)$/m);
    const frag = text(concatBytes(DTLS_CLIENT_HELLO_FRAGMENTS_HEX.map(fromHex)));
    assert.match(frag, /seq 1$/m);
    assert.match(frag, /client_hello {2}330 B/);
    // A HelloVerifyRequest.
    const hvr = text(dtlsRecord(22, dtlsHandshakeFragment(3, Uint8Array.of(0xfe, 0xfd, 2, 0xab, 0xcd), 0)));
    assert.match(hvr, /^ {11}cookie {10}abcd$/m);
  });

  it('shows the empty flight, plaintext alerts and inner errors', () => {
    assert.equal(text(new Uint8Array(0)), 'TLS flight: 0 records, 0 bytes\n  (empty flight)\n');
    assert.match(text(tlsRecord(21, 0x0303, Uint8Array.of(2, 112))), /fatal alert unrecognized_name$/m);
    const bad = text(tlsRecord(22, 0x0303, handshake(1, Uint8Array.of(3, 3))));
    assert.match(bad, /^error: MALFORMED_RECORD: /m);
  });

  it('never lets peer bytes reach the terminal as control characters', () => {
    const body = clientHelloBody({
      extensions: [ext(0, extData.serverName('a\x1b]0;pwned\x07\x9b.example')), ext(16, extData.alpn(['\r\n']))],
    });
    const t = text(tlsRecord(22, 0x0301, handshake(1, body)));
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(t.replace(/\n/g, ''), /[\x00-\x1f\x7f-\x9f]/);
    assert.match(t, /server_name {5}a\\x1b\]0;pwned\\x07\\x9b\.example/);
    assert.match(t, /alpn {12}\\x0d\\x0a/);
  });
});

describe('runInspect (atls inspect)', () => {
  it('reads a binary file and prints text or JSON', async () => {
    const body = tls13.flights[0]!.bytes;
    const file = join(dir, 'flight.bin');
    await writeFile(file, body);
    const t = sink();
    await runInspect({ file }, { stdin: Readable.from([]), stdout: t.stdout });
    assert.equal(t.output(), text(body));
    const j = sink();
    await runInspect({ file, json: true }, { stdin: Readable.from([]), stdout: j.stdout });
    assert.deepEqual(JSON.parse(j.output()), inspectFlight(body));
  });

  it('reads hex text from stdin, recognised or declared', async () => {
    const body = hrr.flights[2]!.bytes;
    const hex = toHex(body).replace(/(.{64})/g, '$1\n');
    for (const hexFlag of [undefined, true]) {
      const s = sink();
      await runInspect(
        { json: true, ...(hexFlag ? { hex: hexFlag } : {}) },
        { stdin: Readable.from([Buffer.from(hex.slice(0, 100)), Buffer.from(hex.slice(100))]), stdout: s.stdout },
      );
      assert.deepEqual(JSON.parse(s.output()), inspectFlight(body));
    }
    const s = sink();
    await runInspect({ file: '-', dtls: true }, { stdin: Readable.from([DTLS_CLIENT_HELLO_HEX]), stdout: s.stdout });
    assert.match(s.output(), /^DTLS flight/);
  });

  it('recognises hex text only when it is hex text', () => {
    const body = tls13.flights[0]!.bytes;
    assert.equal(decodeInspectInput(body), body);
    assert.deepEqual(decodeInspectInput(new TextEncoder().encode(' 1603 01\n')), Uint8Array.of(0x16, 0x03, 0x01));
    assert.throws(() => decodeInspectInput(new TextEncoder().encode('abc'), true), (e: unknown) => e instanceof AtlsError);
  });

  it('fails with a typed error for a malformed record layer or a missing file', async () => {
    await assert.rejects(
      runInspect({}, { stdin: Readable.from([Buffer.from([0x16, 0x03, 0x03, 0xff, 0xff])]), stdout: sink().stdout }),
      (e: unknown) => e instanceof AtlsError && e.code === 'MALFORMED_RECORD',
    );
    await assert.rejects(
      runInspect({}, { stdin: Readable.from([Buffer.from([0x16, 0x03, 0x03, 0x00, 0x10, 1])]), stdout: sink().stdout }),
      (e: unknown) => e instanceof AtlsError && e.code === 'TRUNCATED_FLIGHT',
    );
    await assert.rejects(
      runInspect({ file: join(dir, 'missing.bin') }, { stdin: Readable.from([]), stdout: sink().stdout }),
      (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT' && e.source === 'local',
    );
  });
});
