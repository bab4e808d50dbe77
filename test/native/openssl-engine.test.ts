// The native engine's own behaviour beyond the shared conformance suite:
// exact flights, ticket count, exporter context control, verification
// details, shared ticket keys, PSK, hostile input and the SSL_CTX cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { AtlsError } from '../../src/errors.js';
import { clearOpensslContextCache, nativeLiveObjects } from '../../src/engines/openssl.js';
import type { TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { testPki } from '../helpers/pki.js';
import { drive, nativeEngineOrSkip, text } from '../helpers/native-drive.js';
import { prng } from '../helpers/prng.js';

const pki = await testPki();
const client = (extra: Partial<TlsClientConfig> = {}): TlsClientConfig => ({
  serverName: 'localhost',
  ca: pki.ca.cert,
  ...extra,
});
const server = (extra: Partial<TlsServerConfig> = {}): TlsServerConfig => ({
  cert: pki.server.cert,
  key: pki.server.key,
  ...extra,
});

async function rejects(p: Promise<unknown>, code: string): Promise<AtlsError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof AtlsError, `expected AtlsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return e;
  }
  assert.fail(`expected ${code}`);
}

void test('TLS 1.3 ECDSA: four exact flights, equal exporter output, two tickets by default', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const c = e.createClient(client());
  const s = e.createServer(server());
  const r = await drive(c, s);
  assert.deepEqual(
    r.flights.map((f) => f.from),
    ['client', 'server', 'client', 'server'],
  );
  assert.equal(r.client.handshake?.version, 'TLSv1.3');
  assert.equal(r.server.handshake?.version, 'TLSv1.3');
  assert.equal(r.client.handshake?.peerVerified, true);
  assert.equal(r.client.handshake?.verifiedChain?.length, 2);
  assert.equal(r.client.handshake?.serverName, 'localhost');
  assert.equal(r.server.handshake?.serverName, 'localhost');
  assert.equal(r.client.tickets.length, 2);
  assert.deepEqual(c.exportKeyingMaterial(32, 'EXPORTER-test'), s.exportKeyingMaterial(32, 'EXPORTER-test'));
  c.destroy();
  s.destroy();
});

void test('ticketCount 0, 1 and 3 (RFC 8446 §4.6.1); zero saves the last flight entirely', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  for (const n of [0, 1, 3]) {
    const r = await drive(e.createClient(client()), e.createServer(server({ ticketCount: n })));
    assert.equal(r.client.tickets.length, n, `ticketCount ${n}`);
    assert.equal(r.flights.length, n === 0 ? 3 : 4, `flights with ticketCount ${n}`);
  }
});

void test('exporter: no context differs from empty context in TLS 1.2 (RFC 5705 §4), not in TLS 1.3', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
    const c = e.createClient(client({ maxVersion: v }));
    const s = e.createServer(server());
    await drive(c, s);
    const none = c.exportKeyingMaterial(16, 'EXPORTER-x');
    const empty = c.exportKeyingMaterial(16, 'EXPORTER-x', new Uint8Array(0));
    assert.deepEqual(none, s.exportKeyingMaterial(16, 'EXPORTER-x'));
    assert.deepEqual(empty, s.exportKeyingMaterial(16, 'EXPORTER-x', new Uint8Array(0)));
    if (v === 'TLSv1.2') assert.notDeepEqual(none, empty);
    else assert.deepEqual(none, empty);
    assert.throws(() => c.exportKeyingMaterial(0, 'EXPORTER-x'), { code: 'INVALID_ARGUMENT' });
  }
  const early = e.createClient(client());
  assert.throws(() => early.exportKeyingMaterial(16, 'EXPORTER-x'), { code: 'NOT_ESTABLISHED' });
  early.destroy();
});

void test('resumption: shared ticketKeys resume across server contexts; other keys do not', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const keys = randomBytes(48);
  const first = await drive(e.createClient(client()), e.createServer(server({ ticketKeys: keys, ticketCount: 1 })));
  const ticket = first.client.tickets[0];
  assert.ok(ticket);
  // A different configuration (so a different SSL_CTX) with the same keys.
  const again = await drive(
    e.createClient(client({ session: ticket })),
    e.createServer(server({ ticketKeys: keys, ticketCount: 2 })),
  );
  assert.equal(again.client.handshake?.resumed, true);
  assert.equal(again.server.handshake?.resumed, true);
  const other = await drive(
    e.createClient(client({ session: ticket })),
    e.createServer(server({ ticketKeys: randomBytes(48) })),
  );
  assert.equal(other.client.handshake?.resumed, false);
  // TLS 1.2 ticket resumption ends on a client flight.
  const t12 = await drive(e.createClient(client({ maxVersion: 'TLSv1.2' })), e.createServer(server({ ticketKeys: keys })));
  const r12 = await drive(
    e.createClient(client({ maxVersion: 'TLSv1.2', session: t12.client.tickets[0]! })),
    e.createServer(server({ ticketKeys: keys })),
  );
  assert.equal(r12.server.handshake?.resumed, true);
  assert.equal(r12.flights.at(-1)?.from, 'client');
});

void test('client certificates: verified by OpenSSL, chain and result exposed', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const ok = await drive(
    e.createClient(client({ cert: pki.client.cert, key: pki.client.key })),
    e.createServer(server({ requireClientCert: true, ca: pki.ca.cert })),
  );
  assert.equal(ok.server.handshake?.peerVerified, true);
  assert.equal(ok.server.handshake?.peerCertificates.length, 1);
  assert.equal(ok.server.handshake?.verifiedChain?.length, 2);

  // Untrusted: the server rejects with an alert that the client then receives.
  const c = e.createClient(client({ cert: pki.untrustedClient.cert, key: pki.untrustedClient.key }));
  const s = e.createServer(server({ requireClientCert: true, ca: pki.ca.cert }));
  const hello = await c.start();
  const sflight = await s.receive(hello.flight);
  const cfin = await c.receive(sflight.flight);
  const err = await rejects(s.receive(cfin.flight), 'CERTIFICATE_UNTRUSTED');
  assert.ok(err.alertFlight.length > 0);
  assert.equal(err.alert?.name, 'unknown_ca');
  const cerr = await rejects(c.receive(err.alertFlight), 'CERTIFICATE_UNTRUSTED');
  assert.equal(cerr.source, 'remote');
  // Sticky: the same error again.
  await assert.rejects(s.receive(new Uint8Array(5)), (x) => x === err);

  const expired = e.createClient(client({ cert: pki.expiredClient.cert, key: pki.expiredClient.key }));
  const s2 = e.createServer(server({ requireClientCert: true, ca: pki.ca.cert }));
  const h2 = await expired.start();
  const f2 = await expired.receive((await s2.receive(h2.flight)).flight);
  await rejects(s2.receive(f2.flight), 'CERTIFICATE_EXPIRED');

  const none = e.createClient(client());
  const s3 = e.createServer(server({ requireClientCert: true, ca: pki.ca.cert }));
  const h3 = await none.start();
  const f3 = await none.receive((await s3.receive(h3.flight)).flight);
  const e3 = await rejects(s3.receive(f3.flight), 'CERTIFICATE_REQUIRED');
  await rejects(none.receive(e3.alertFlight), 'CERTIFICATE_REQUIRED');

  // Requested, not required: no certificate is fine; one that is sent must verify.
  const none2 = await drive(e.createClient(client()), e.createServer(server({ requestClientCert: true, ca: pki.ca.cert })));
  assert.equal(none2.server.handshake?.peerCertificates.length, 0);
  assert.equal(none2.server.handshake?.peerVerified, undefined);
  const c5 = e.createClient(client({ cert: pki.untrustedClient.cert, key: pki.untrustedClient.key }));
  const s5 = e.createServer(server({ requestClientCert: true, ca: pki.ca.cert }));
  const f5 = await c5.receive((await s5.receive((await c5.start()).flight)).flight);
  await rejects(s5.receive(f5.flight), 'CERTIFICATE_UNTRUSTED');
});

void test('server certificate failures map to the node engine codes', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const cases = [
    [pki.untrustedServer, 'CERTIFICATE_UNTRUSTED'],
    [pki.expiredServer, 'CERTIFICATE_EXPIRED'],
    [pki.wrongNameServer, 'CERTIFICATE_NAME_MISMATCH'],
  ] as const;
  for (const [pair, code] of cases) {
    const c = e.createClient(client());
    const s = e.createServer({ cert: pair.cert, key: pair.key });
    const sflight = await s.receive((await c.start()).flight);
    const err = await rejects(c.receive(sflight.flight), code);
    assert.ok(err.alertFlight.length > 0, 'the client alert is delivered');
    await assert.rejects(s.receive(err.alertFlight), (x: unknown) => x instanceof AtlsError && x.source === 'remote');
  }
  // verifyPeer false (tests only) accepts anything.
  const r = await drive(e.createClient({ verifyPeer: false }), e.createServer({ cert: pki.untrustedServer.cert, key: pki.untrustedServer.key }));
  assert.equal(r.client.handshake?.version, 'TLSv1.3');
  // An IP address is matched against IP SANs and never sent as SNI (RFC 6066 §3).
  const ip = await drive(e.createClient(client({ serverName: '127.0.0.1' })), e.createServer(server()));
  assert.equal(ip.server.handshake?.serverName, undefined);
});

void test('PSK: TLS 1.3 external PSK and TLS 1.2 PSK suites; unknown identities fail', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const key = randomBytes(32);
  const lookup = (id: string): Uint8Array | undefined => (id === 'device-1' ? key : undefined);
  const r13 = await drive(
    e.createClient({ psk: { identity: 'device-1', key }, verifyPeer: false }),
    e.createServer({ pskLookup: lookup }),
  );
  assert.equal(r13.server.handshake?.pskIdentity, 'device-1');
  assert.equal(r13.client.handshake?.pskIdentity, 'device-1');
  assert.equal(r13.client.handshake?.resumed, false);
  assert.ok(r13.flights.every((f) => f.bytes.length < 500), 'PSK flights carry no certificates');

  const ciphers = 'PSK-AES128-GCM-SHA256:ECDHE-PSK-CHACHA20-POLY1305';
  const r12 = await drive(
    e.createClient({ psk: { identity: 'device-1', key }, verifyPeer: false, maxVersion: 'TLSv1.2', ciphers }),
    e.createServer({ pskLookup: lookup, ciphers, pskHint: 'hint' }),
  );
  assert.equal(r12.server.handshake?.version, 'TLSv1.2');
  assert.equal(r12.server.handshake?.pskIdentity, 'device-1');
  assert.equal(r12.client.handshake?.pskIdentity, 'device-1');

  // TLS 1.2 sends the identity in the ClientKeyExchange (RFC 4279 §2), the second client flight.
  const c = e.createClient({ psk: { identity: 'nobody', key }, verifyPeer: false, maxVersion: 'TLSv1.2', ciphers });
  const s = e.createServer({ pskLookup: lookup, ciphers });
  const h = await c.start();
  const cke = await c.receive((await s.receive(h.flight)).flight);
  const err = await rejects(s.receive(cke.flight), 'PSK_UNKNOWN');
  assert.equal(err.alert?.name, 'unknown_psk_identity');
  await rejects(c.receive(err.alertFlight), 'PSK_UNKNOWN');

  const c13 = e.createClient({ psk: { identity: 'nobody', key }, verifyPeer: false });
  const s13 = e.createServer({ pskLookup: lookup });
  const e13 = await rejects(s13.receive((await c13.start()).flight), 'PSK_UNKNOWN');
  assert.equal(e13.alert?.name, 'unknown_psk_identity');
  await rejects(c13.receive(e13.alertFlight), 'PSK_UNKNOWN');

  // A lookup that throws is a local failure, never a crash.
  const s4 = e.createServer({
    pskLookup: () => {
      throw new Error('database down');
    },
  });
  await rejects(s4.receive((await e.createClient({ psk: { identity: 'x', key }, verifyPeer: false }).start()).flight), 'INTERNAL');
});

void test('ALPN, SNI certificates, application data and close_notify', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const s = e.createServer(
    server({
      alpn: ['atls/1', 'h2'],
      sniCertificates: { 'rsa.localhost': { cert: pki.serverRsa.cert, key: pki.serverRsa.key } },
    }),
  );
  const c = e.createClient(client({ alpn: ['h2', 'atls/1'] }));
  const r = await drive(c, s);
  assert.equal(r.client.handshake?.alpn, 'atls/1');
  assert.equal(r.server.handshake?.alpn, 'atls/1');
  const w = await c.write(new TextEncoder().encode('ping'));
  const got = await s.receive(w.flight);
  assert.deepEqual(got.events.map((x) => x.type), ['data']);
  const closing = await s.close();
  const end = await c.receive(closing.flight);
  assert.ok(end.events.some((x) => x.type === 'closed'));

  // SNI picks the RSA certificate; the client check then fails on the name.
  const c2 = e.createClient(client({ serverName: 'rsa.localhost' }));
  const s2 = e.createServer(server({ sniCertificates: { 'rsa.localhost': { cert: pki.serverRsa.cert, key: pki.serverRsa.key } } }));
  const sf = await s2.receive((await c2.start()).flight);
  await rejects(c2.receive(sf.flight), 'CERTIFICATE_NAME_MISMATCH');

  // No common ALPN protocol: no_application_protocol (RFC 7301 §3.2).
  const c3 = e.createClient(client({ alpn: ['other'] }));
  const s3 = e.createServer(server({ alpn: ['atls/1'] }));
  const err = await rejects(s3.receive((await c3.start()).flight), 'HANDSHAKE_FAILED');
  assert.equal(err.alert?.name, 'no_application_protocol');

  // Data after the handshake flows in both directions with a mutual close.
  const big = randomBytes(100_000);
  const c4 = e.createClient(client());
  const s4 = e.createServer(server());
  await drive(c4, s4);
  const wbig = await s4.write(big);
  const rb = await c4.receive(wbig.flight);
  assert.equal(Buffer.concat(rb.events.flatMap((x) => (x.type === 'data' ? [x.data] : []))).length, big.length);
  assert.equal(text({ events: [], handshake: undefined, tickets: [], data: [new TextEncoder().encode('ok')] }), 'ok');
});

void test('hostile input: garbage and mutated flights raise AtlsError only, with bounded work', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const s = e.createServer(server());
  await rejects(s.receive(new TextEncoder().encode('GET / HTTP/1.1\r\n\r\n')), 'MALFORMED_RECORD');
  const s2 = e.createServer(server());
  await rejects(s2.receive(Uint8Array.from([22, 3, 3, 0xff, 0xff, 1, 2, 3])), 'MALFORMED_RECORD');

  const rnd = prng(42);
  const hello = (await e.createClient(client()).start()).flight;
  const c0 = e.createClient(client());
  const sflight = (await e.createServer(server()).receive((await c0.start()).flight)).flight;
  for (let i = 0; i < 600; i++) {
    const base = i % 2 === 0 ? hello : sflight;
    const m = Uint8Array.from(base);
    const flips = 1 + Math.floor(rnd.next() * 4);
    for (let k = 0; k < flips; k++) m[Math.floor(rnd.next() * m.length)] = Math.floor(rnd.next() * 256);
    const cut = rnd.next() < 0.2 ? m.subarray(0, Math.floor(rnd.next() * m.length)) : m;
    const target = i % 2 === 0 ? e.createServer(server()) : e.createClient(client());
    try {
      if (i % 2 === 1) await target.start();
      await target.receive(cut);
    } catch (x) {
      assert.ok(x instanceof AtlsError, `iteration ${i}: ${String(x)}`);
    } finally {
      target.destroy();
    }
  }
});

void test('misuse: start on a server, calls after destroy, bad config', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const s = e.createServer(server());
  await rejects(s.start(), 'INVALID_STATE');
  s.destroy();
  s.destroy();
  await rejects(s.receive(new Uint8Array(1)), 'CLOSED');
  const c = e.createClient(client());
  await rejects(c.write(new Uint8Array(1)), 'NOT_ESTABLISHED');
  assert.throws(() => e.createServer({ cert: pki.server.cert, key: pki.client.key }), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => e.createServer(server({ ticketKeys: new Uint8Array(47) })), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => e.createServer(server({ ciphers: 'NO-SUCH-CIPHER' })), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => e.createClient(client({ session: randomBytes(64) })), { code: 'INVALID_ARGUMENT' });
});

void test('SSL_CTX cache: many connections with one configuration share one context', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  clearOpensslContextCache();
  const cfg = server({ ticketCount: 5 });
  const before = nativeLiveObjects().contexts;
  const conns = Array.from({ length: 200 }, () => e.createServer({ ...cfg }));
  assert.ok(nativeLiveObjects().contexts - before <= 1);
  for (const c of conns) c.destroy();
});

void test('cross-engine resumption: node and openssl servers sharing ticketKeys resume each other, both ways', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const { getEngine } = await import('../../src/engines/index.js');
  const node = getEngine('node');
  const keys = randomBytes(48);
  const s = server({ ticketKeys: keys });
  for (const [a, b] of [
    [node, e],
    [e, node],
  ] as const) {
    for (const v of ['TLSv1.2', 'TLSv1.3'] as const) {
      const first = await drive(a.createClient(client({ maxVersion: v })), a.createServer(s));
      const ticket = first.client.tickets.at(-1);
      assert.ok(ticket, `${a.name} ${v} ticket`);
      const again = await drive(b.createClient(client({ maxVersion: v, session: ticket })), b.createServer(s));
      assert.equal(again.server.handshake?.resumed, true, `${a.name} -> ${b.name} ${v}`);
      assert.equal(again.client.handshake?.resumed, true, `${a.name} -> ${b.name} ${v}`);
    }
  }
});
