// DTLS 1.2 on the native engine: cookie exchange (HelloVerifyRequest,
// RFC 6347 §4.2.1), MTU, retransmission driven by the caller's timer
// (RFC 6347 §4.2.4), and interop of handshakes and key export with
// `openssl s_server -dtls1_2` / `s_client -dtls1_2` through a UDP bridge.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EngineConnection, EngineStep, TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { AtlsError } from '../../src/errors.js';
import { testPki, writeTestPki } from '../helpers/pki.js';
import { drive, nativeEngineOrSkip, text } from '../helpers/native-drive.js';
import { ToolProcess, requireTool } from '../helpers/tools.js';

const pki = await testPki();
const secret = new Uint8Array(32).fill(9);
const client = (extra: Partial<TlsClientConfig> = {}): TlsClientConfig => ({
  dtls: true,
  serverName: 'localhost',
  ca: pki.ca.cert,
  ...extra,
});
const server = (extra: Partial<TlsServerConfig> = {}): TlsServerConfig => ({
  dtls: true,
  cert: pki.server.cert,
  key: pki.server.key,
  ...extra,
});
const HEADER = 13; // DTLS record header (RFC 6347 §4.1)

void test('DTLS 1.2 in memory: cookie exchange first, then the handshake; data and exporter agree', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const c = e.createClient(client());
  const s = e.createServer(server({ dtlsCookieSecret: secret, dtlsPeer: '192.0.2.1:5683' }));
  const r = await drive(c, s);
  // Flight 2 is a lone HelloVerifyRequest (handshake type 3) and the server kept no handshake state.
  const hvr = r.flights[1]!;
  assert.equal(hvr.from, 'server');
  assert.equal(hvr.bytes[0], 22);
  assert.equal(hvr.bytes[HEADER], 3);
  assert.ok(hvr.bytes.length < 80);
  assert.equal(r.client.handshake?.version, 'DTLSv1.2');
  assert.equal(r.server.handshake?.version, 'DTLSv1.2');
  assert.deepEqual(c.exportKeyingMaterial(32, 'EXPERIMENTAL-atls'), s.exportKeyingMaterial(32, 'EXPERIMENTAL-atls'));
  const w = await c.write(new TextEncoder().encode('coap payload'));
  const got = await s.receive(w.flight);
  assert.deepEqual(got.events.map((x) => x.type), ['data']);
});

void test('DTLS cookie: a ClientHello replayed from another peer identity is refused', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const c = e.createClient(client());
  const s1 = e.createServer(server({ dtlsCookieSecret: secret, dtlsPeer: 'peer-a' }));
  const hello = await c.start();
  const hvr = await s1.receive(hello.flight);
  const hello2 = await c.receive(hvr.flight);
  // The same cookie presented by another address: HMAC mismatch.
  const s2 = e.createServer(server({ dtlsCookieSecret: secret, dtlsPeer: 'peer-b' }));
  const first = await s2.receive(hello.flight); // no cookie: HVR again, no state
  assert.equal(first.flight[HEADER], 3);
  await assert.rejects(s2.receive(hello2.flight), (x: unknown) => x instanceof AtlsError && x.code === 'HANDSHAKE_FAILED');
  // The right peer goes on.
  const next = await s1.receive(hello2.flight);
  assert.ok(next.flight.length > 500);
});

void test('DTLS MTU: every datagram of a certificate flight fits the configured MTU', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const mtu = 300;
  const r = await drive(e.createClient(client({ dtlsMtu: mtu })), e.createServer(server({ dtlsMtu: mtu, cert: pki.serverRsa.cert, key: pki.serverRsa.key })));
  assert.equal(r.client.handshake?.version, 'DTLSv1.2');
  const big = r.flights.find((f) => f.from === 'server' && f.bytes.length > 1000);
  assert.ok(big?.datagrams && big.datagrams.length > 3, 'the certificate flight is fragmented');
  for (const f of r.flights) for (const d of f.datagrams ?? []) assert.ok(d.length <= mtu, `datagram of ${d.length} > ${mtu}`);
  assert.throws(() => e.createClient(client({ dtlsMtu: 100 })), { code: 'INVALID_ARGUMENT' });
});

void test('DTLS retransmission is driven by the caller: lost flights are resent on dtlsHandleTimeout', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const c = e.createClient(client({ dtlsInitialTimeoutMs: 50 }));
  const s = e.createServer(server({ dtlsInitialTimeoutMs: 50 }));
  const hello = await c.start();
  const t0 = c.dtlsTimeout!();
  assert.ok(t0 !== undefined && t0 > 0 && t0 <= 50, `timer armed: ${t0}`);
  // The ClientHello is lost. Nothing happens inside the engine until the caller's timer fires.
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(c.dtlsTimeout!(), 0);
  const resent = await c.dtlsHandleTimeout!();
  assert.equal(resent.flight.length, hello.flight.length);
  const t1 = c.dtlsTimeout!();
  assert.ok(t1 !== undefined && t1 > 50, `back-off doubles: ${t1}`);
  // The server's flight is lost once too.
  const sflight = await s.receive(resent.flight);
  await new Promise((r) => setTimeout(r, 60));
  const sresent = await s.dtlsHandleTimeout!();
  assert.equal(sresent.flight.length, sflight.flight.length);
  // A duplicate does no harm: the client answers the first copy and ignores the second.
  const cfin = await c.receive(sflight.flight);
  await c.receive(sresent.flight);
  const done = await s.receive(cfin.flight);
  assert.ok(done.events.some((x) => x.type === 'handshake'));
  // TLS connections have no DTLS timer.
  const tls = e.createClient({ serverName: 'localhost', ca: pki.ca.cert });
  assert.equal(tls.dtlsTimeout?.(), undefined);
});

// ------------------------------------------------------------ UDP bridge

/** Sends engine datagrams over UDP and feeds every received datagram to the engine. */
class UdpBridge {
  private readonly waiters = new Set<() => void>();
  readonly received: EngineStep[] = [];
  error: unknown;
  peer: { address: string; port: number } | undefined;

  private constructor(
    readonly sock: Socket,
    private conn: EngineConnection | undefined,
    private readonly makeConn?: (rinfo: RemoteInfo) => EngineConnection,
  ) {
    sock.on('message', (msg, rinfo) => {
      this.peer ??= { address: rinfo.address, port: rinfo.port };
      this.conn ??= this.makeConn?.(rinfo);
      const conn = this.conn;
      if (!conn) return;
      conn.receive(new Uint8Array(msg)).then(
        (step) => {
          this.received.push(step);
          this.send(step);
          this.notify();
        },
        (err: unknown) => {
          this.error = err;
          this.notify();
        },
      );
    });
  }

  static async open(conn: EngineConnection | undefined, makeConn?: (rinfo: RemoteInfo) => EngineConnection): Promise<UdpBridge> {
    const sock = createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    return new UdpBridge(sock, conn, makeConn);
  }

  get port(): number {
    return this.sock.address().port;
  }

  get connection(): EngineConnection | undefined {
    return this.conn;
  }

  send(step: EngineStep): void {
    if (!this.peer) return;
    for (const d of step.datagrams ?? []) this.sock.send(d, this.peer.port, this.peer.address);
  }

  private notify(): void {
    for (const w of this.waiters) w();
  }

  /** Resolves when `pred` holds on the steps received so far (bounded by `ms`). */
  until(pred: (steps: EngineStep[]) => boolean, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (this.error) {
          done();
          reject(this.error instanceof Error ? this.error : new Error(String(this.error)));
        } else if (pred(this.received)) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`UDP bridge: condition not met in ${ms} ms`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  close(): void {
    this.sock.close();
  }
}

const hasHandshake = (steps: EngineStep[]): boolean => steps.some((s) => s.events.some((x) => x.type === 'handshake'));

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

void test('interop: our DTLS client against openssl s_server -dtls1_2 -listen (cookie), key export equal', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const openssl = requireTool(t, 'openssl');
  if (!openssl) return;
  const dir = mkdtempSync(join(tmpdir(), 'atls-dtls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = await writeTestPki(dir);
  const port = await freeUdpPort();
  const srv = ToolProcess.spawn(openssl, [
    's_server', '-dtls1_2', '-listen', '-accept', `127.0.0.1:${port}`, '-naccept', '1',
    '-cert', files.server.cert, '-key', files.server.key,
    '-keymatexport', 'EXPERIMENTAL-atls', '-keymatexportlen', '32',
  ]);
  t.after(() => srv.kill());
  await srv.waitFor(/ACCEPT/, 5000);

  const c = e.createClient(client({ dtlsInitialTimeoutMs: 200 }));
  const bridge = await UdpBridge.open(c);
  t.after(() => bridge.close());
  bridge.peer = { address: '127.0.0.1', port };
  bridge.send(await c.start());
  // Caller-driven retransmission while waiting (UDP may drop; s_server may start late).
  const timer = setInterval(() => {
    const due = c.dtlsTimeout?.();
    if (due === 0) void c.dtlsHandleTimeout!().then((s) => bridge.send(s), () => undefined);
  }, 20);
  t.after(() => clearInterval(timer));
  await bridge.until(hasHandshake, 5000);
  const info = bridge.received.flatMap((s) => s.events).find((x) => x.type === 'handshake');
  assert.ok(info && info.type === 'handshake');
  assert.equal(info.info.version, 'DTLSv1.2');
  const m = await srv.waitFor(/Keying material: ([0-9A-Fa-f]+)/, 5000);
  const ours = Buffer.from(c.exportKeyingMaterial(32, 'EXPERIMENTAL-atls')).toString('hex');
  assert.equal(ours, m[1]!.toLowerCase());
  bridge.send(await c.write(new TextEncoder().encode('hello from atls\n')));
  await srv.waitFor(/hello from atls/, 5000);
  console.log(`# s_server -dtls1_2 -listen: handshake, exporter and data OK (exporter ${ours.slice(0, 16)}...)`);
});

void test('interop: openssl s_client -dtls1_2 against our DTLS server with cookie exchange, key export equal', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const openssl = requireTool(t, 'openssl');
  if (!openssl) return;
  const dir = mkdtempSync(join(tmpdir(), 'atls-dtls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const files = await writeTestPki(dir);
  const bridge = await UdpBridge.open(undefined, (rinfo) =>
    e.createServer(server({ dtlsCookieSecret: secret, dtlsPeer: `${rinfo.address}:${rinfo.port}`, dtlsMtu: 1200 })),
  );
  t.after(() => bridge.close());
  const cli = ToolProcess.spawn(openssl, [
    's_client', '-dtls1_2', '-connect', `127.0.0.1:${bridge.port}`, '-servername', 'localhost',
    '-CAfile', files.ca.cert, '-verify_return_error', '-verify_hostname', 'localhost',
    '-keymatexport', 'EXPERIMENTAL-atls', '-keymatexportlen', '32',
  ]);
  t.after(() => cli.kill());
  await bridge.until(hasHandshake, 8000);
  const m = await cli.waitFor(/Keying material: ([0-9A-Fa-f]+)/, 5000);
  assert.match(cli.output, /Verify return code: 0 \(ok\)/);
  const conn = bridge.connection!;
  const ours = Buffer.from(conn.exportKeyingMaterial(32, 'EXPERIMENTAL-atls')).toString('hex');
  assert.equal(ours, m[1]!.toLowerCase());
  // The first datagram exchange was a HelloVerifyRequest.
  const firstOut = bridge.received[0]!;
  assert.equal(firstOut.flight[HEADER], 3, 'HelloVerifyRequest first');
  cli.write('ping over dtls\n');
  await bridge.until((steps) => steps.some((s) => s.events.some((x) => x.type === 'data')), 5000);
  const data = bridge.received.flatMap((s) => s.events).flatMap((x) => (x.type === 'data' ? [x.data] : []));
  assert.equal(text({ events: [], handshake: undefined, tickets: [], data }), 'ping over dtls\n');
  bridge.send(await conn.write(new TextEncoder().encode('pong\n')));
  await cli.waitFor(/pong/, 5000);
  console.log(`# s_client -dtls1_2: cookie, handshake, exporter and data OK (exporter ${ours.slice(0, 16)}...)`);
});

void test('DTLS hostile input: mutated and truncated datagrams raise AtlsError or are dropped, never crash', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const { prng } = await import('../helpers/prng.js');
  const rnd = prng(7);
  const c = e.createClient(client());
  const hello = await c.start();
  const s0 = e.createServer(server());
  const sflight = await s0.receive(hello.flight);
  for (let i = 0; i < 400; i++) {
    const base = i % 2 === 0 ? hello.flight : sflight.flight;
    const m = Uint8Array.from(base);
    for (let k = 0; k < 1 + rnd.int(4); k++) m[rnd.int(m.length)] = rnd.int(256);
    const cut = rnd.next() < 0.2 ? m.subarray(0, rnd.int(m.length)) : m;
    const target = i % 2 === 0 ? e.createServer(server({ dtlsCookieSecret: secret, dtlsPeer: 'p' })) : e.createClient(client());
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
