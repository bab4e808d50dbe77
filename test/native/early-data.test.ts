// TLS 1.3 early data (0-RTT, RFC 8446 §4.2.10) end to end on the native
// engine: accepted, rejected (the engine does not send the data again, RFC 8446
// §4.2.10: the caller sees earlyData != 'accepted' and decides),
// replay of a ticket refused (single-use tickets, RFC 8446 §8.1), and the
// documented limit: a second server instance does not know the first one's tickets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { EngineConnection, TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { testPki } from '../helpers/pki.js';
import { nodeEngine } from '../../src/engines/node.js';
import { drive, nativeEngineOrSkip, text } from '../helpers/native-drive.js';

const pki = await testPki();
const enc = new TextEncoder();
const client = (extra: Partial<TlsClientConfig> = {}): TlsClientConfig => ({
  serverName: 'localhost',
  ca: pki.ca.cert,
  ...extra,
});
const serverCfg = (extra: Partial<TlsServerConfig> = {}): TlsServerConfig => ({
  cert: pki.server.cert,
  key: pki.server.key,
  maxEarlyData: 4096,
  ...extra,
});

void test('0-RTT accepted: data rides with the ClientHello and reaches the server in its first receive', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const cfg = serverCfg({ sessionIdContext: 'early-accepted' });
  const first = await drive(e.createClient(client()), e.createServer(cfg));
  const ticket = first.client.tickets[0];
  assert.ok(ticket, 'a ticket allowing early data');

  const c = e.createClient(client({ session: ticket, earlyData: enc.encode('GET /status') }));
  const s = e.createServer(cfg);
  const hello = await c.start();
  const reply = await s.receive(hello.flight);
  const early = reply.events.find((x) => x.type === 'data');
  assert.ok(early && early.type === 'data');
  assert.equal(early.early, true, 'marked as early (replayable) data');
  assert.equal(Buffer.from(early.data).toString(), 'GET /status');
  // The server may answer in its first flight, before the handshake completes.
  const fin = await c.receive(reply.flight);
  const hs = fin.events.find((x) => x.type === 'handshake');
  assert.ok(hs && hs.type === 'handshake');
  assert.equal(hs.info.earlyData, 'accepted');
  assert.equal(hs.info.resumed, true);
  const done = await s.receive(fin.flight);
  const shs = done.events.find((x) => x.type === 'handshake');
  assert.ok(shs && shs.type === 'handshake');
  assert.equal(shs.info.earlyData, 'accepted');
  assert.ok(!done.events.some((x) => x.type === 'data'), 'the data is not delivered twice');
});

/** The caller's part after a handshake whose early data was not accepted: send it now, as ordinary data, if it wants to. */
async function resend(c: EngineConnection, s: EngineConnection, data: Uint8Array): Promise<string> {
  const out = await c.write(data);
  const got = await s.receive(out.flight);
  return got.events.flatMap((x) => (x.type === 'data' ? [Buffer.from(x.data).toString()] : [])).join('');
}

void test('0-RTT rejected: the engine does not send the data again; the caller may, and the server gets it once', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const keys = randomBytes(48);
  // Ticket from a server without early data: no early data allowed, so none sent.
  const plain = serverCfg({ maxEarlyData: 0, ticketKeys: keys });
  const first = await drive(e.createClient(client()), e.createServer(plain));
  const c0 = e.createClient(client({ session: first.client.tickets[0]!, earlyData: enc.encode('late') }));
  const s0 = e.createServer(plain);
  const r = await drive(c0, s0);
  assert.equal(r.client.handshake?.earlyData, 'none');
  assert.equal(r.client.handshake?.resumed, true);
  assert.equal(text(r.server), '', 'nothing was sent behind the caller\'s back');
  assert.equal(await resend(c0, s0, enc.encode('late')), 'late');

  // Ticket allowed early data but this server refuses it (its configuration changed).
  const cfg = serverCfg({ sessionIdContext: 'early-rejected' });
  const t1 = await drive(e.createClient(client()), e.createServer(cfg));
  const refusing = e.createServer(serverCfg({ sessionIdContext: 'early-rejected', maxEarlyData: 0 }));
  const c2 = e.createClient(client({ session: t1.client.tickets[0]!, earlyData: enc.encode('again') }));
  const r2 = await drive(c2, refusing);
  assert.equal(r2.client.handshake?.earlyData, 'rejected');
  assert.equal(r2.server.handshake?.earlyData, 'rejected');
  assert.equal(text(r2.server), '', 'rejected early data is dropped by the server and not resent by the engine');
  assert.equal(await resend(c2, refusing, enc.encode('again')), 'again');
  assert.ok(
    r2.server.events.every((x) => x.type !== 'data' || x.early !== true),
    'nothing was delivered as early data',
  );
});

void test('both engines: early data that is not accepted is never sent; the node engine (no 0-RTT) reports none', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  for (const engine of [e, nodeEngine]) {
    const cfg = serverCfg({ maxEarlyData: engine === e ? 4096 : 0, sessionIdContext: `early-both-${engine.name}` });
    const first = await drive(engine.createClient(client()), engine.createServer(cfg));
    // The ticket's server refuses 0-RTT (native: another server context; node: no 0-RTT at all).
    const c = engine.createClient(client({ session: first.client.tickets[0]!, earlyData: enc.encode('once') }));
    const s = engine.createServer(serverCfg({ maxEarlyData: 0, sessionIdContext: `early-both-${engine.name}` }));
    const r = await drive(c, s);
    assert.notEqual(r.client.handshake?.earlyData, 'accepted', engine.name);
    assert.equal(text(r.server), '', `${engine.name}: nothing sent behind the caller's back`);
    assert.equal(await resend(c, s, enc.encode('once')), 'once', `${engine.name}: the caller sends it, the server gets it once`);
  }
});

void test('anti-replay: a ticket used for 0-RTT once cannot be used for 0-RTT again', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const cfg = serverCfg({ sessionIdContext: 'early-replay' });
  const first = await drive(e.createClient(client()), e.createServer(cfg));
  const ticket = first.client.tickets[0]!;
  const ok = await drive(e.createClient(client({ session: ticket, earlyData: enc.encode('transfer 1') })), e.createServer(cfg));
  assert.equal(ok.server.handshake?.earlyData, 'accepted');
  // The attacker replays the same ClientHello + early data: refused.
  const replayed = await drive(e.createClient(client({ session: ticket, earlyData: enc.encode('transfer 1') })), e.createServer(cfg));
  assert.equal(replayed.server.handshake?.earlyData, 'rejected');
  assert.equal(replayed.server.handshake?.resumed, false);
  // Byte-exact replay of the recorded first flight is refused too.
  const c = e.createClient(client({ session: first.client.tickets[1]!, earlyData: enc.encode('pay') }));
  const hello = await c.start();
  const s1 = e.createServer(cfg);
  const r1 = await s1.receive(hello.flight);
  assert.ok(r1.events.some((x) => x.type === 'data' && x.early === true));
  const s2 = e.createServer(cfg);
  const r2 = await s2.receive(hello.flight);
  assert.ok(!r2.events.some((x) => x.type === 'data'), 'replayed early data is not delivered');
});

void test('limit: single-use tickets live in one server context; another context refuses 0-RTT (full handshake)', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const keys = randomBytes(48);
  const a = serverCfg({ ticketKeys: keys, sessionIdContext: 'early-shared', ticketCount: 1 });
  const b = serverCfg({ ticketKeys: keys, sessionIdContext: 'early-shared', ticketCount: 2 }); // another SSL_CTX
  const first = await drive(e.createClient(client()), e.createServer(a));
  const r = await drive(e.createClient(client({ session: first.client.tickets[0]!, earlyData: enc.encode('x') })), e.createServer(b));
  assert.equal(r.server.handshake?.earlyData, 'rejected');
  assert.equal(r.server.handshake?.resumed, false);
  assert.equal(text(r.server), '');
});

void test('early data larger than the ticket allows is not sent at all (earlyData none)', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const cfg = serverCfg({ maxEarlyData: 16, sessionIdContext: 'early-small' });
  const first = await drive(e.createClient(client()), e.createServer(cfg));
  const big = randomBytes(100);
  const r = await drive(e.createClient(client({ session: first.client.tickets[0]!, earlyData: big })), e.createServer(cfg));
  assert.equal(r.client.handshake?.earlyData, 'none');
  assert.equal(r.server.data.length, 0);
});
