// The development and test PKI must be accepted by OpenSSL 3 as Node's TLS uses
// it: these tests run real handshakes over loopback TCP with node:tls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { testPki, writeTestPki, TEST_PKI_NAMES } from '../helpers/pki.js';
import type { TestPair } from '../helpers/pki.js';
import { createCa, createDevPki, issueCertificate, loadCa, writeDevPki } from '../../src/pki.js';
import { isAtlsError } from '../../src/errors.js';

interface Outcome {
  /** Error code seen by the client, if the handshake failed there. */
  clientError?: string;
  /** Server's view of the client certificate (requestCert only). */
  serverAuthorized?: boolean;
  serverAuthError?: string;
  clientCertCn?: string;
}

/**
 * One handshake over loopback. The server never rejects client certificates
 * itself (rejectUnauthorized: false) so the test reads its verdict instead.
 */
async function handshake(
  server: TestPair,
  client: { ca: string; servername?: string; cert?: TestPair; maxVersion?: tls.SecureVersion },
  serverCa?: string,
): Promise<Outcome> {
  const outcome: Outcome = {};
  const srv = tls.createServer({
    cert: server.cert,
    key: server.key,
    ...(serverCa ? { requestCert: true, rejectUnauthorized: false, ca: serverCa } : {}),
  });
  const serverDone = new Promise<void>((resolve) => {
    srv.on('secureConnection', (s: tls.TLSSocket) => {
      outcome.serverAuthorized = s.authorized;
      if (s.authorizationError) outcome.serverAuthError = String(s.authorizationError);
      const peer = s.getPeerCertificate();
      const cn = peer?.subject?.CN;
      if (cn !== undefined) outcome.clientCertCn = Array.isArray(cn) ? cn.join(',') : cn;
      s.end();
      resolve();
    });
    srv.on('tlsClientError', () => resolve());
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  try {
    await new Promise<void>((resolve) => {
      const sock = tls.connect({
        host: '127.0.0.1',
        port,
        ca: client.ca,
        servername: client.servername ?? 'localhost',
        ...(client.cert ? { cert: client.cert.cert, key: client.cert.key } : {}),
        ...(client.maxVersion ? { maxVersion: client.maxVersion } : {}),
      });
      sock.on('secureConnect', () => {
        sock.on('data', () => undefined);
        sock.on('end', () => {
          sock.end();
          resolve();
        });
      });
      sock.on('error', (e: NodeJS.ErrnoException) => {
        outcome.clientError = e.code ?? e.message;
        resolve();
      });
    });
    if (!outcome.clientError) await serverDone;
  } finally {
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  }
  return outcome;
}

void test('ECDSA and RSA servers verify against the CA with servername localhost', async () => {
  const pki = await testPki();
  for (const name of ['server', 'serverRsa', 'serverViaIntermediate'] as const) {
    for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
      const r = await handshake(pki[name], { ca: pki.ca.cert, maxVersion });
      assert.equal(r.clientError, undefined, `${name} ${maxVersion}`);
    }
  }
});

void test('server certificate also matches IP 127.0.0.1', async () => {
  const pki = await testPki();
  // servername must not be an IP for SNI; checkServerIdentity gets the host.
  const x = new X509Certificate(pki.server.cert);
  assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(x.checkHost('localhost'), 'localhost');
  assert.equal(tls.checkServerIdentity('127.0.0.1', x.toLegacyObject()), undefined);
});

void test('expired server fails with CERT_HAS_EXPIRED', async () => {
  const pki = await testPki();
  const r = await handshake(pki.expiredServer, { ca: pki.ca.cert });
  assert.equal(r.clientError, 'CERT_HAS_EXPIRED');
});

void test('wrong name fails with ERR_TLS_CERT_ALTNAME_INVALID', async () => {
  const pki = await testPki();
  const r = await handshake(pki.wrongNameServer, { ca: pki.ca.cert });
  assert.equal(r.clientError, 'ERR_TLS_CERT_ALTNAME_INVALID');
});

void test('server by an unrelated CA is untrusted', async () => {
  const pki = await testPki();
  const r = await handshake(pki.untrustedServer, { ca: pki.ca.cert });
  assert.equal(r.clientError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  // And the other way round: trusting only otherCa rejects the good server.
  const r2 = await handshake(pki.server, { ca: pki.otherCa.cert });
  assert.equal(r2.clientError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

void test('intermediate chain needs the intermediate: leaf alone does not verify', async () => {
  const pki = await testPki();
  const leafOnly = pki.serverViaIntermediate.cert.split(/(?<=-----END CERTIFICATE-----\n)/)[0] ?? '';
  assert.match(leafOnly, /BEGIN CERTIFICATE/);
  const r = await handshake({ cert: leafOnly, key: pki.serverViaIntermediate.key }, { ca: pki.ca.cert });
  // OpenSSL reports a one-certificate chain whose issuer is missing this way.
  assert.equal(r.clientError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

void test('client certificates verify on a server with requestCert', async () => {
  const pki = await testPki();
  for (const maxVersion of ['TLSv1.2', 'TLSv1.3'] as const) {
    const ok = await handshake(pki.server, { ca: pki.ca.cert, cert: pki.client, maxVersion }, pki.ca.cert);
    assert.equal(ok.clientError, undefined);
    assert.equal(ok.serverAuthorized, true, ok.serverAuthError);
    assert.equal(ok.clientCertCn, 'atls-test-client');
    const rsa = await handshake(pki.server, { ca: pki.ca.cert, cert: pki.clientRsa, maxVersion }, pki.ca.cert);
    assert.equal(rsa.serverAuthorized, true, rsa.serverAuthError);
  }
  const expired = await handshake(pki.server, { ca: pki.ca.cert, cert: pki.expiredClient }, pki.ca.cert);
  assert.equal(expired.serverAuthorized, false);
  assert.equal(expired.serverAuthError, 'CERT_HAS_EXPIRED');
  const untrusted = await handshake(pki.server, { ca: pki.ca.cert, cert: pki.untrustedClient }, pki.ca.cert);
  assert.equal(untrusted.serverAuthorized, false);
  assert.equal(untrusted.serverAuthError, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

void test('certificate contents: extensions, serial, key types', async () => {
  const pki = await testPki();
  const ca = new X509Certificate(pki.ca.cert);
  assert.equal(ca.ca, true);
  assert.equal(ca.publicKey.asymmetricKeyType, 'ec');
  const server = new X509Certificate(pki.server.cert);
  assert.equal(server.ca, false);
  assert.equal(server.checkIssued(ca), true);
  assert.equal(server.verify(ca.publicKey), true);
  assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']); // Node's keyUsage is the EKU list
  assert.match(server.subjectAltName ?? '', /DNS:localhost/);
  assert.match(server.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
  assert.ok(/^[0-7]/.test(server.serialNumber), 'serial is positive');
  assert.equal(new X509Certificate(pki.client.cert).keyUsage?.[0], '1.3.6.1.5.5.7.3.2');
  assert.equal(new X509Certificate(pki.serverRsa.cert).publicKey.asymmetricKeyDetails?.modulusLength, 2048);
  for (const name of TEST_PKI_NAMES) {
    assert.match(pki[name].key, /^-----BEGIN PRIVATE KEY-----\n/, name);
  }
});

void test('openssl x509 -text parses every certificate', async (t) => {
  const probe = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    t.skip('openssl CLI not found; skipping the external parse check');
    return;
  }
  const pki = await testPki();
  for (const name of TEST_PKI_NAMES) {
    const r = spawnSync('openssl', ['x509', '-noout', '-text'], { input: pki[name].cert, encoding: 'utf8' });
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    assert.match(r.stdout, /Signature Algorithm: (ecdsa-with-SHA256|sha256WithRSAEncryption)/, name);
    assert.match(r.stdout, /X509v3 Authority Key Identifier/, name);
    const k = spawnSync('openssl', ['pkey', '-noout'], { input: pki[name].key, encoding: 'utf8' });
    assert.equal(k.status, 0, `${name} key: ${k.stderr}`);
  }
});

void test('writeDevPki writes the six files, keys 0600, and they verify', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'atls-pki-'));
  try {
    const files = await writeDevPki(join(dir, 'out'));
    const names = (await readdir(join(dir, 'out'))).sort();
    assert.deepEqual(names, ['ca.key', 'ca.pem', 'client.key', 'client.pem', 'server.key', 'server.pem']);
    for (const k of [files.caKey, files.serverKey, files.clientKey]) {
      assert.equal((await stat(k)).mode & 0o777, 0o600);
    }
    const read = (p: string): Promise<string> => readFile(p, 'utf8');
    const ca = await read(files.ca);
    const r = await handshake(
      { cert: await read(files.server), key: await read(files.serverKey) },
      { ca, cert: { cert: await read(files.client), key: await read(files.clientKey) } },
      ca,
    );
    assert.equal(r.clientError, undefined);
    assert.equal(r.serverAuthorized, true, r.serverAuthError);
    // The CA written to disk can be loaded back and issue more certificates.
    const loaded = await loadCa(ca, await read(files.caKey));
    const more = await issueCertificate({ issuer: loaded, commonName: 'localhost', dnsNames: ['localhost'] });
    const r2 = await handshake(more, { ca });
    assert.equal(r2.clientError, undefined);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('writeTestPki writes <name>.pem and <name>.key for every entry', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'atls-testpki-'));
  try {
    const files = await writeTestPki(dir);
    const pki = await testPki();
    for (const name of TEST_PKI_NAMES) {
      assert.equal(await readFile(files[name].cert, 'utf8'), pki[name].cert);
      assert.equal((await stat(files[name].key)).mode & 0o777, 0o600);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

void test('createDevPki RSA variant verifies', async () => {
  const pki = await createDevPki({ keyType: 'rsa-2048' });
  const r = await handshake(pki.server, { ca: pki.ca.cert, cert: pki.client }, pki.ca.cert);
  assert.equal(r.clientError, undefined);
  assert.equal(r.serverAuthorized, true, r.serverAuthError);
});

void test('usage both gives serverAuth and clientAuth', async () => {
  const ca = await createCa();
  const c = await issueCertificate({ issuer: ca, commonName: 'peer', dnsNames: ['localhost'], usage: 'both' });
  assert.deepEqual(new X509Certificate(c.cert).keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
});

void test('bad arguments raise AtlsError INVALID_ARGUMENT', async () => {
  const ca = await createCa();
  const bad = [
    () => issueCertificate({ issuer: ca, commonName: '' }),
    () => issueCertificate({ issuer: ca, commonName: 'x'.repeat(65) }),
    () => issueCertificate({ issuer: ca, commonName: 'x', dnsNames: ['bad name'] }),
    () => issueCertificate({ issuer: ca, commonName: 'x', ipAddresses: ['300.1.1.1'] }),
    () => issueCertificate({ issuer: ca, commonName: 'x', notBefore: new Date(2), notAfter: new Date(1) }),
    () => issueCertificate({ issuer: { ...ca }, commonName: 'x' }),
    () => createCa({ pathLength: -1 }),
    () => loadCa('not a cert', ''),
    () => loadCa(ca.cert, 'not a key'),
  ];
  for (const f of bad) {
    await assert.rejects(f, (e: unknown) => isAtlsError(e, 'INVALID_ARGUMENT'));
  }
  // A key that does not belong to the CA certificate is refused.
  const other = await createCa();
  await assert.rejects(loadCa(ca.cert, other.key), (e: unknown) => isAtlsError(e, 'INVALID_ARGUMENT'));
  // A leaf is not a CA.
  const leaf = await issueCertificate({ issuer: ca, commonName: 'leaf' });
  await assert.rejects(loadCa(leaf.cert, leaf.key), (e: unknown) => isAtlsError(e, 'INVALID_ARGUMENT'));
});

void test('loadCa turns garbage into INVALID_ARGUMENT, never another exception', async () => {
  const pki = await testPki();
  const body = pki.ca.cert.split('\n').slice(1, -2).join('');
  const inputs = [
    '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
    `-----BEGIN CERTIFICATE-----\n${body.slice(0, 80)}\n-----END CERTIFICATE-----\n`,
    `-----BEGIN CERTIFICATE-----\n${body.replace(/^.{40}/, 'A'.repeat(40))}\n-----END CERTIFICATE-----\n`,
  ];
  for (const cert of inputs) {
    await assert.rejects(loadCa(cert, pki.ca.key), (e: unknown) => isAtlsError(e, 'INVALID_ARGUMENT'));
  }
  await assert.rejects(
    loadCa(pki.ca.cert, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
    (e: unknown) => isAtlsError(e, 'INVALID_ARGUMENT'),
  );
  // The intermediate loads as a non-root CA and issues leaves that verify with the chain.
  const inter = await loadCa(pki.intermediate.cert, pki.intermediate.key);
  assert.equal(inter.selfSigned, false);
  const leaf = await issueCertificate({ issuer: inter, commonName: 'localhost', dnsNames: ['localhost'] });
  assert.equal(leaf.chain, leaf.cert + pki.intermediate.cert);
  const r = await handshake({ cert: leaf.chain, key: leaf.key }, { ca: pki.ca.cert });
  assert.equal(r.clientError, undefined);
});
