/**
 * Regressions of attacks on a running endpoint that are cheap to replay:
 * a middlebox that pads the Cookie header, a server started with
 * credentials that cannot work.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsServer } from '../../src/http/node.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient } from '../../src/http/client.js';
import { echoApp } from '../../src/http/apps.js';
import { readCookie } from '../../src/http/cookie.js';
import { AtlsCoapServer, type AtlsCoapServerEvent } from '../../src/coap/server.js';
import { postClientHello } from '../helpers/coap-hello.js';
import { AtlsError } from '../../src/errors.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { MEDIA_TYPE_FLIGHT } from '../../src/http/constants.js';
import { requestToBhttp } from '../../src/bhttp/index.js';
import type { AtlsServerEvent } from '../../src/http/server.js';
import net from 'node:net';
import { cookieOf, manualHandshake, post, protectedRequest } from '../helpers/http.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { atlsInProcess } from '../helpers/cli.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { DELETE_HALF_OPEN } from '../../src/coap/delete.js';
import { echoCoapHandler } from '../../src/coap/server.js';
import { CoapCode, OptionNumber } from '../../src/coap/constants.js';
import { getOption, getUintOption, stringOption, uintOption } from '../../src/coap/packet.js';
import type { OutgoingRequest } from '../../src/coap/blockwise.js';
import { MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { availableEngines, getEngine } from '../../src/engines/index.js';
import type { TlsEngine } from '../../src/engines/types.js';
import { nativeEngineOrSkip } from '../helpers/native-drive.js';

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/**
 * A forward proxy that puts three 3,000-byte cookies in front of the client's
 * own (a tracking middlebox), gives the client a cookie of its own to send
 * back, and records the Cookie headers the client sent.
 */
function paddingMiddlebox(): { server: http.Server; seen: string[] } {
  const seen: string[] = [];
  const pad = ['mb1', 'mb2', 'mb3'].map((n) => `${n}=${'x'.repeat(3000)}`).join('; ');
  const server = http.createServer((req, res) => {
    const own = req.headers.cookie;
    if (own) seen.push(own);
    const target = new URL(req.url ?? '');
    const headers = { ...req.headers, cookie: own ? `${pad}; ${own}` : pad };
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: target.pathname, headers },
      (ur) => {
        const out = { ...ur.headers, 'set-cookie': [...(ur.headers['set-cookie'] ?? []), `lb=${'y'.repeat(2000)}; Path=/`] };
        res.writeHead(ur.statusCode ?? 502, out);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  return { server, seen };
}

/** A PEM certificate with one line of its base64 left out: it no longer parses. */
function truncated(pem: string): string {
  const lines = pem.trim().split('\n');
  lines.splice(2, 1);
  return lines.join('\n') + '\n';
}

/** The flooder (127.0.0.2) hit the half-open limit and its own handshakes gave way; no honest one (127.0.0.1) did. */
function assertFlooderGaveWay(events: ReadonlyArray<AtlsServerEvent | AtlsCoapServerEvent>): void {
  assert.ok(events.some((e) => e.type === 'limit' && e.limit === 'half-open' && e.peer === '127.0.0.2'));
  assert.ok(events.some((e) => e.type === 'evicted' && e.what === 'half-open' && e.peer === '127.0.0.2'));
  assert.ok(!events.some((e) => e.type === 'evicted' && e.peer === '127.0.0.1'), 'no honest handshake gave way');
}

describe('hostile input', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  it('finds the session cookie anywhere in a Cookie header up to the HTTP header limit', () => {
    const id = 'a'.repeat(22);
    const padded = `${Array.from({ length: 4 }, (_, i) => `c${i}=${'z'.repeat(3000)}`).join('; ')}; atls-session=${id}`;
    assert.equal(readCookie(padded, 'atls-session'), id);
    assert.equal(readCookie(`atls-session="${id}"; other=1`, 'atls-session'), id);
    assert.equal(readCookie('xatls-session=1; atls-session=2', 'atls-session'), '2');
    assert.equal(readCookie(`${'q'.repeat(20_000)}; atls-session=${id}`, 'atls-session'), undefined, 'beyond the header limit');
  });

  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`${version}: handshakes and requests work through a middlebox that pads the Cookie header`, async () => {
      const tls = tlsPair(pki, version, 'cert');
      const server = createAtlsServer({ tls: tls.server, app: echoApp });
      const port = await listen(server);
      const mb = paddingMiddlebox();
      const mbPort = await listen(mb.server);
      const client = createAtlsClient({ tls: tls.client, proxy: `http://127.0.0.1:${mbPort}` });
      try {
        for (let i = 0; i < 3; i++) {
          const res = await client.fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body: `hello ${i}` });
          assert.equal(res.status, 200);
          assert.equal(await res.text(), `hello ${i}`);
        }
        const withSession = mb.seen.filter((c) => c.includes('atls-session='));
        assert.ok(withSession.length > 0, 'the client sent its session cookie');
        for (const c of withSession) assert.match(c, /^atls-session=/, 'the session cookie comes first');
        assert.ok(mb.seen.some((c) => c.includes('lb=')), 'the middlebox cookie is sent back too');
      } finally {
        await client.close();
        await close(mb.server);
        await close(server);
      }
    });
  }

  it('every server constructor refuses a key that does not match its certificate, or swapped files', async () => {
    const cases: Array<[string, { cert: string; key: string }, RegExp]> = [
      ['another key', { cert: pki.server.cert, key: pki.client.key }, /key does not match the certificate/],
      ['swapped', { cert: pki.server.key, key: pki.server.cert }, /swapped/],
      ['truncated certificate', { cert: truncated(pki.server.cert), key: pki.server.key }, /does not parse/],
      ['chain out of order', { cert: pki.ca.cert + pki.server.cert, key: pki.server.key }, /key does not match|did not issue/],
    ];
    for (const [name, creds, reason] of cases) {
      for (const make of [
        () => createAtlsHandler({ tls: creds, app: echoApp }),
        () => createAtlsServer({ tls: creds, app: echoApp }),
        () => AtlsCoapServer.listen({ tls: creds }),
      ]) {
        await assert.rejects(
          async () => make(),
          (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT' && reason.test(e.message),
          name,
        );
      }
    }
    // The right pair still starts.
    await (await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key } })).close();
  });

  it('atls serve exits non-zero with a one-line reason for a mismatched or swapped key', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'atls-startup-'));
    try {
      const files = await writeTestPki(dir);
      for (const [cert, key, reason] of [
        [files.server.cert, files.client.key, /key does not match the certificate/],
        [files.server.key, files.server.cert, /swapped/],
      ] as const) {
        const r = await atlsInProcess(['serve', '--listen', '127.0.0.1:0', '--echo', '--cert', cert, '--key', key]);
        assert.equal(r.status, 1, r.stderr);
        assert.equal(r.stdout, '', 'it never announced that it serves');
        assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
        assert.match(r.stderr, reason);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a flood of ClientHellos from another address does not lock honest handshakes out; replays are refused at once', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const events: AtlsServerEvent[] = [];
    const server = createAtlsServer({ tls: tls.server, app: echoApp, limits: { maxHalfOpen: 40 }, onEvent: (e) => events.push(e) });
    const port = await listen(server);
    const hello = (await new AtlsClientSession({ tls: tls.client }).start()).flight;
    const agent = new http.Agent({ keepAlive: true, localAddress: '127.0.0.2' } as http.AgentOptions);
    const replay = (body: Uint8Array): Promise<number> =>
      new Promise((resolve) => {
        const req = http.request(
          { host: '127.0.0.1', port, method: 'POST', path: '/.well-known/atls', agent, headers: { 'content-type': MEDIA_TYPE_FLIGHT } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', () => resolve(0));
        req.end(body);
      });
    const client = createAtlsClient({ tls: tls.client });
    try {
      assert.equal(await replay(hello), 200, 'the first copy starts a handshake');
      assert.equal(await replay(hello), 400, 'a replayed ClientHello is refused for the price of a lookup (RFC 8446 §8.2)');
      // Distinct ClientHellos from one address fill the half-open table; its own oldest give way.
      const fresh = await Promise.all(Array.from({ length: 180 }, async () => (await new AtlsClientSession({ tls: tls.client }).start()).flight));
      for (const h of fresh.slice(0, 120)) assert.equal(await replay(h), 200);
      assert.equal(server.atls.stats().halfOpen, 40);
      // Honest handshakes while the flood goes on.
      const flood = Promise.all(fresh.slice(120).map((h) => replay(h)));
      for (let i = 0; i < 5; i++) {
        const res = await client.fetch(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'hi' });
        assert.equal(res.status, 200);
        await client.close();
      }
      await flood;
      assertFlooderGaveWay(events);
    } finally {
      agent.destroy();
      await client.close();
      await close(server);
    }
  });

  it('a flight that is no ClientHello takes no half-open slot: garbage from other addresses does not push an honest handshake out', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const events: AtlsServerEvent[] = [];
    const server = createAtlsServer({ tls: tls.server, app: echoApp, limits: { maxHalfOpen: 2 }, onEvent: (e) => events.push(e) });
    const port = await listen(server);
    const send = (body: Uint8Array, from: string, cookie?: string): Promise<{ status: number; body: Buffer; cookie: string | undefined }> =>
      new Promise((resolve, reject) => {
        const headers: Record<string, string> = { 'content-type': MEDIA_TYPE_FLIGHT, ...(cookie ? { cookie: `atls-session=${cookie}` } : {}) };
        const req = http.request({ host: '127.0.0.1', port, localAddress: from, method: 'POST', path: '/.well-known/atls', headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), cookie: readCookie(res.headers['set-cookie']?.[0], 'atls-session') }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      const honest = new AtlsClientSession({ tls: tls.client });
      const first = await send((await honest.start()).flight, '127.0.0.1');
      assert.equal(first.status, 200);
      // Another address holds the second slot: every group holds one, so a newcomer would push out the oldest (the honest one).
      assert.equal((await send((await new AtlsClientSession({ tls: tls.client }).start()).flight, '127.0.0.3')).status, 200);
      const garbage = [Buffer.from('garbage'), Buffer.from([21, 3, 3, 0, 2, 2, 40]), Buffer.from([23, 3, 3, 0, 5, 1, 2, 3, 4, 5]), Buffer.from([22, 3, 3, 0, 4, 2, 0, 0, 0])];
      for (let i = 0; i < 8; i++) {
        const got = await send(garbage[i % garbage.length]!, `127.0.0.${4 + i}`);
        assert.ok(got.status >= 400 && got.status < 500, `status ${got.status}`);
        assert.equal(got.cookie, undefined, 'no session for a flight that is no ClientHello');
      }
      const second = await honest.receive(new Uint8Array(first.body));
      const last = await send(second.flight, '127.0.0.1', first.cookie);
      assert.equal(last.status, 200, 'the honest handshake completes');
      await honest.receive(new Uint8Array(last.body));
      assert.equal(honest.state, 'established');
      assert.ok(!events.some((e) => e.type === 'evicted'), 'nothing gave way');
    } finally {
      await close(server);
    }
  });

  it('a replayed ClientHello cut into other records is still a replay (the random is read from the handshake bytes)', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const server = createAtlsServer({ tls: tls.server, app: echoApp });
    const port = await listen(server);
    const send = async (body: Uint8Array): Promise<{ status: number; text: string }> => {
      const res = await fetch(`http://127.0.0.1:${port}/.well-known/atls`, { method: 'POST', headers: { 'content-type': MEDIA_TYPE_FLIGHT }, body });
      return { status: res.status, text: res.status === 200 ? '' : await res.text() };
    };
    /** The handshake bytes of a one-record flight, cut into records of the given sizes (RFC 8446 §5.1), the rest in a last one. */
    const refragment = (flight: Uint8Array, sizes: number[]): Uint8Array => {
      const message = Buffer.from(flight.subarray(5));
      const records: Buffer[] = [];
      let at = 0;
      for (const size of [...sizes, message.length]) {
        const piece = message.subarray(at, Math.min(message.length, at + size));
        if (piece.length === 0) break;
        records.push(Buffer.concat([Buffer.from([22, 3, 1, piece.length >> 8, piece.length & 0xff]), piece]));
        at += piece.length;
      }
      return Buffer.concat(records);
    };
    const cuts = [[1], [4], [6], [20], [37], [38], [1, 1, 1, 1, 1, 1, 1, 1, 1, 30]];
    try {
      const hello = (await new AtlsClientSession({ tls: tls.client }).start()).flight;
      assert.equal((await send(hello)).status, 200, 'the first copy starts a handshake');
      for (const sizes of cuts) {
        const got = await send(refragment(hello, sizes));
        assert.equal(got.status, 400, `cut after ${sizes.join('+')}`);
        assert.match(got.text, /REPLAYED|replayed/i, `cut after ${sizes.join('+')}`);
      }
      // A fragmented first copy is a handshake; the same hello in one record after it is the replay.
      const other = (await new AtlsClientSession({ tls: tls.client }).start()).flight;
      assert.equal((await send(refragment(other, [4, 9]))).status, 200);
      assert.equal((await send(other)).status, 400);
      assert.equal(server.atls.stats().halfOpen, 2);
    } finally {
      await close(server);
    }
  });

  it('CoAP: a flood of ClientHellos from another address does not lock honest handshakes out; replays are refused at once', async () => {
    const events: AtlsCoapServerEvent[] = [];
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, maxHalfOpen: 8, onEvent: (e) => events.push(e) });
    const flooder = await CoapEndpoint.bind({ host: '127.0.0.2' });
    const client = new AtlsCoapClient({ url: server.url, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const to = server.endpoint.address;
    try {
      const echo = getOption(await postClientHello(flooder, to), OptionNumber.Echo)!; // RFC 9175: prove the address once
      const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
      const replay = () =>
        flooder.request(to, {
          code: CoapCode.POST,
          options: [stringOption(OptionNumber.UriPath, '.well-known'), stringOption(OptionNumber.UriPath, 'atls'), uintOption(OptionNumber.ContentFormat, 65000), echo],
          payload: hello,
        });
      assert.equal((await replay()).code, CoapCode.Created, 'the first copy starts a handshake');
      assert.equal((await replay()).code, CoapCode.BadRequest, 'a replayed ClientHello is refused for the price of a lookup (RFC 8446 §8.2)');
      // Distinct ClientHellos from one address fill the half-open table; its own oldest give way.
      for (let i = 0; i < 24; i++) assert.equal((await postClientHello(flooder, to, [echo])).code, CoapCode.Created);
      for (let i = 0; i < 3; i++) {
        const flood = Promise.all(Array.from({ length: 8 }, () => postClientHello(flooder, to, [echo])));
        const res = await client.request({ method: 'POST', pathname: '/x', payload: `honest ${i}` });
        assert.equal(new TextDecoder().decode(res.payload), `honest ${i}`);
        await client.close();
        await flood;
      }
      assertFlooderGaveWay(events);
    } finally {
      await client.close();
      await flooder.close();
      await server.close();
    }
  });

  it('CoAP: a flight that is no ClientHello takes no half-open slot: garbage from other addresses does not push an honest handshake out', async () => {
    const events: AtlsCoapServerEvent[] = [];
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, maxHalfOpen: 2, addressCheck: false, onEvent: (e) => events.push(e) });
    const to = server.endpoint.address;
    const honestEp = await CoapEndpoint.bind({ host: '127.0.0.1' });
    const others = await Promise.all(Array.from({ length: 5 }, (_, i) => CoapEndpoint.bind({ host: `127.0.0.${3 + i}` })));
    const post = (ep: CoapEndpoint, payload: Uint8Array, path = ['.well-known', 'atls']) =>
      ep.request(to, { code: CoapCode.POST, options: [...path.map((p) => stringOption(OptionNumber.UriPath, p)), uintOption(OptionNumber.ContentFormat, 65000)], payload });
    try {
      const honest = new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      const first = await post(honestEp, (await honest.start()).flight);
      assert.equal(first.code, CoapCode.Created);
      const location = first.options.filter((o) => o.number === OptionNumber.LocationPath).map((o) => new TextDecoder().decode(o.value));
      // A second address holds the other slot: every group holds one, so a newcomer would push out the oldest (the honest one).
      assert.equal((await postClientHello(others[0]!, to)).code, CoapCode.Created);
      const garbage = [Buffer.from('garbage'), Buffer.from([21, 3, 3, 0, 2, 2, 40]), Buffer.from([22, 3, 3, 0, 4, 2, 0, 0, 0]), Buffer.from([22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 11])];
      for (let i = 0; i < 8; i++) {
        const got = await post(others[1 + (i % 4)]!, garbage[i % garbage.length]!);
        assert.equal(got.code >> 5, 4, `code ${got.code >> 5}.${got.code & 31}`);
      }
      const second = await honest.receive(first.payload);
      const last = await post(honestEp, second.flight, location);
      assert.equal(last.code, CoapCode.Changed, 'the honest handshake completes');
      assert.ok(!events.some((e) => e.type === 'evicted'), 'nothing gave way');
    } finally {
      await honestEp.close();
      await Promise.all(others.map((ep) => ep.close()));
      await server.close();
    }
  });

  it('idle connections beyond the cap make room for clients that send requests; silent ones time out', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const events: AtlsServerEvent[] = [];
    const server = createAtlsServer({
      tls: tls.server,
      app: echoApp,
      connections: { maxConnections: 50, maxConnectionsPerPeer: 20, headersTimeoutMs: 1500 },
      onEvent: (e) => events.push(e),
    });
    const port = await listen(server);
    const sockets: net.Socket[] = [];
    const open = (localAddress: string): Promise<net.Socket> =>
      new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
        s.on('error', () => undefined);
        sockets.push(s);
      });
    const client = createAtlsClient({ tls: tls.client });
    try {
      // 200 idle connections from ten addresses: ten times the per-peer share, four times the cap.
      for (let i = 0; i < 200; i++) await open(`127.0.0.${10 + (i % 10)}`);
      await new Promise((r) => setTimeout(r, 100));
      assert.ok(server.connectionStats().open <= 51, `open ${server.connectionStats().open}`);
      for (let i = 0; i < 3; i++) {
        const res = await client.fetch(`http://127.0.0.1:${port}/x`, { method: 'POST', body: `hi ${i}` });
        assert.equal(await res.text(), `hi ${i}`);
      }
      assert.ok(events.some((e) => e.type === 'limit' && e.limit === 'connections'));
      assert.ok(events.some((e) => e.type === 'evicted' && e.what === 'connection'));
      // A connection that never sends its headers is closed after headersTimeoutMs (Node answers 408).
      const silent = await open('127.0.0.30');
      silent.resume(); // read Node's 408 so that its close is seen
      const closed = await new Promise<number>((resolve) => {
        const t0 = Date.now();
        silent.on('close', () => resolve(Date.now() - t0));
      });
      assert.ok(closed < 10_000, `closed after ${closed} ms`);
    } finally {
      for (const s of sockets) s.destroy();
      await client.close();
      await close(server);
    }
  });

  it('HTTP: a TLS ClientHello sent to the plain port gets 400 at once, not a hold until the head deadline', async () => {
    const server = createAtlsServer({ tls: tlsPair(pki, 'TLSv1.3', 'cert').server, app: echoApp });
    const port = await listen(server);
    try {
      // The start of a TLS handshake record: never an HTTP request line, and no CRLFCRLF ever follows.
      const socket = net.connect(port, '127.0.0.1', () => socket.write(Uint8Array.from([22, 3, 1, 0, 0xa1, 1, 0, 0, 0x9d, 3, 3])));
      const answer = await new Promise<string>((resolve, reject) => {
        socket.once('data', (d: Buffer) => resolve(d.toString('latin1')));
        socket.once('error', reject);
      });
      socket.destroy();
      assert.match(answer, /^HTTP\/1\.1 400 /, 'node:http refuses it (a 408 would mean it waited for the head deadline)');
    } finally {
      await close(server);
    }
  });

  it('HTTP: a ClientHello carrying a session cookie neither ends nor replaces the session it names', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app: echoApp });
    const { session, cookie } = await manualHandshake(h, tls.client);
    const hello = (await new AtlsClientSession({ tls: tls.client }).start()).flight;
    const intruder = await post(h, hello, { cookie });
    assert.equal(intruder.status, 200, 'the intruder gets a handshake of its own');
    assert.notEqual(cookieOf(intruder), cookie);
    // A late Finished (a records body) to the established session: refused, the session goes on.
    assert.equal((await post(h, Uint8Array.from([23, 3, 3, 0, 2, 1, 0]), { cookie })).status, 409);
    const ok = await post(h, await protectedRequest(session), { cookie, type: MEDIA_TYPE_PROTECTED });
    assert.equal(ok.status, 200, 'the established session still answers');
    // A handshake in progress: a ClientHello with its cookie starts another, the first completes.
    const a = new AtlsClientSession({ tls: tls.client });
    const r1 = await post(h, (await a.start()).flight);
    const aCookie = cookieOf(r1)!;
    const hello2 = (await new AtlsClientSession({ tls: tls.client }).start()).flight;
    assert.equal((await post(h, hello2, { cookie: aCookie })).status, 200);
    const fin = await a.receive(new Uint8Array(await r1.arrayBuffer()));
    const r2 = await post(h, fin.flight, { cookie: aCookie });
    assert.equal(r2.status, 200);
    await a.receive(new Uint8Array(await r2.arrayBuffer()));
    assert.equal(a.state, 'established');
    assert.equal((await post(h, await protectedRequest(a), { cookie: aCookie, type: MEDIA_TYPE_PROTECTED })).status, 200);
    await h.close();
  });

  // TLS 1.2: every AEAD suite of the defaults (RFC 5288 AES-GCM, RFC 7905 ChaCha20-Poly1305) and the AES-CCM
  // ones a user may configure (RFC 6655), each with its own nonce and key expansion.
  const recordCases: Array<{ version: 'TLSv1.2' | 'TLSv1.3'; auth: 'cert' | 'psk'; ciphers?: string; suite: string }> = [
    { version: 'TLSv1.3', auth: 'cert', suite: 'TLS_AES_128_GCM_SHA256' },
    { version: 'TLSv1.2', auth: 'cert', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256' },
    { version: 'TLSv1.2', auth: 'cert', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384', suite: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384' },
    { version: 'TLSv1.2', auth: 'cert', ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305', suite: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256' },
    { version: 'TLSv1.2', auth: 'cert', ciphers: 'ECDHE-ECDSA-AES128-CCM', suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM' },
    { version: 'TLSv1.2', auth: 'psk', ciphers: 'ECDHE-PSK-CHACHA20-POLY1305', suite: 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256' },
    { version: 'TLSv1.2', auth: 'psk', ciphers: 'PSK-AES256-CCM8', suite: 'TLS_PSK_WITH_AES_256_CCM_8' },
  ];
  for (const engineName of ['node', 'openssl'] as const)
  for (const { version, auth, ciphers, suite } of recordCases) {
    it(`HTTP, mode records, ${version} ${suite} (${engineName} engine): a forged, replayed, cut-off or plaintext record is refused before the engine and the session goes on`, async (t) => {
      const engine: TlsEngine | undefined = engineName === 'node' ? getEngine('node') : nativeEngineOrSkip(t);
      if (!engine) return;
      const pair = tlsPair(pki, version, auth);
      const tls = ciphers ? { server: { ...pair.server, ciphers }, client: { ...pair.client, ciphers } } : pair;
      const h = createAtlsHandler({ tls: tls.server, mode: 'records', app: echoApp, engine });
      let negotiated: string | undefined;
      let seenCookie: string | undefined;
      let seenBody: Uint8Array | undefined;
      const events: string[] = [];
      const client = createAtlsClient({
        tls: tls.client,
        mode: 'records',
        // The on-path observer: it reads the session cookie and the records off the wire.
        transport: {
          fetch: async (request) => {
            seenCookie = readCookie(request.headers.get('cookie'), 'atls-session') ?? seenCookie;
            seenBody = new Uint8Array(await request.clone().arrayBuffer());
            return h(request);
          },
        },
        onEvent: (e) => {
          if (e.type === 'handshake') negotiated = e.info.cipherSuite;
          if (e.type === 'handshake' || e.type === 'session-lost') events.push(e.type === 'session-lost' ? `lost ${e.status}` : 'handshake');
        },
      });
      try {
        assert.equal(await (await client.fetch('http://localhost/a', { method: 'PUT', body: 'one' })).text(), 'one');
        assert.equal(negotiated, suite);
        assert.equal(await (await client.fetch('http://localhost/b', { method: 'PUT', body: 'two' })).text(), 'two');
        const honest = seenBody!;
        assert.ok(seenCookie, 'the cookie is visible on the wire');
        const refusals: Array<[string, Uint8Array, string]> = [
          ['forged', Uint8Array.from([23, 3, 3, 0, 30, ...new Uint8Array(30)]), 'BAD_RECORD_MAC'],
          ['replayed', honest, 'BAD_RECORD_MAC'],
          ['cut off', honest.subarray(0, honest.length - 3), 'TRUNCATED_FLIGHT'],
          // RFC 8446 §5, RFC 5246 §6.2.3: after the handshake every record is protected; a plaintext fatal alert would end the session in the engine.
          ['plaintext alert', Uint8Array.from([21, 3, 3, 0, 2, 2, 40]), 'BAD_RECORD_MAC'],
          // A protected-looking record of another type: in TLS 1.2 the type is in the clear and in the additional data.
          ['forged alert', Uint8Array.from([21, 3, 3, 0, 26, ...new Uint8Array(26)]), 'BAD_RECORD_MAC'],
          ['honest record, type changed', Uint8Array.from([21, ...honest.subarray(1)]), 'BAD_RECORD_MAC'],
        ];
        for (const [what, body, code] of refusals) {
          // Read as it arrives (no length), and whole (a declared length).
          for (const headers of [{}, { 'content-length': String(body.length) }] as Array<Record<string, string>>) {
            const r = await post(h, body, { cookie: seenCookie, headers });
            assert.equal(r.status, 400, `${what}: 400, never 500`);
            assert.equal(r.headers.get('atls-error'), code, what);
            assert.equal(r.headers.get('set-cookie'), null, `${what}: the cookie stays`);
          }
        }
        assert.equal(await (await client.fetch('http://localhost/c', { method: 'PUT', body: 'three' })).text(), 'three');
        // Many records in one body (streamed to the engine as they are authenticated): the guard keeps step.
        const large = 'x'.repeat(200_000);
        assert.equal(await (await client.fetch('http://localhost/d', { method: 'PUT', body: large })).text(), large);
        assert.deepEqual(events, ['handshake'], 'one session throughout: no session lost, no second handshake');
      } finally {
        await client.close();
        await h.close();
      }
    });
  }

  it('HTTP: a DELETE ends an exported session only with a protected message of it; the cookie alone gets 403', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const h = createAtlsHandler({ tls: tls.server, app: echoApp });
    const { session, cookie } = await manualHandshake(h, tls.client);
    const del = (body: Uint8Array, c = cookie) => post(h, body, { cookie: c, type: MEDIA_TYPE_PROTECTED, method: 'DELETE' });
    assert.equal((await del(new Uint8Array(0))).status, 403, 'the cookie alone proves nothing');
    assert.equal((await del(new Uint8Array(40))).status, 403, 'a forged message proves nothing');
    const used = await protectedRequest(session);
    assert.equal((await post(h, used, { cookie, type: MEDIA_TYPE_PROTECTED })).status, 200);
    assert.equal((await del(used)).status, 403, 'a replayed message proves nothing');
    assert.equal((await post(h, 'x', { cookie, type: 'text/plain', method: 'DELETE' })).status, 415, 'a DELETE carries a proof');
    assert.equal((await post(h, Uint8Array.from([21, 3, 3, 0, 2, 1, 0]), { cookie, method: 'DELETE' })).status, 403, 'records prove no exported session');
    assert.equal((await post(h, await protectedRequest(session), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 200, 'the session goes on');
    const ok = await del(session.protect(new Uint8Array(0)));
    assert.equal(ok.status, 204);
    assert.equal(cookieOf(ok), '', 'the cookie is cleared');
    assert.equal((await post(h, await protectedRequest(session), { cookie, type: MEDIA_TYPE_PROTECTED })).status, 410, 'the session is gone');
    await h.close();
  });

  for (const transport of ['TLS 1.3', 'DTLS 1.2'] as const) {
    it(`CoAP, mode records over ${transport}: a forged or replayed record sent to the session's resource does not end it`, async (t) => {
      const dtls = transport === 'DTLS 1.2';
      const engine = dtls ? availableEngines().find((e) => e.capabilities.dtls) : getEngine('node');
      if (!engine) return t.skip('no engine with DTLS (native addon not built)');
      const psk = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };
      const server = await AtlsCoapServer.listen({
        engine,
        mode: 'records',
        handler: echoCoapHandler,
        tls: dtls
          ? { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', pskLookup: (id) => (id === psk.identity ? psk.key : undefined) }
          : { cert: pki.server.cert, key: pki.server.key },
      });
      const client = new AtlsCoapClient({
        url: server.url,
        engine,
        mode: 'records',
        tls: dtls ? { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', psk } : { ca: pki.ca.cert, serverName: 'localhost' },
      });
      const ep = await CoapEndpoint.bind();
      try {
        assert.equal(new TextDecoder().decode((await client.request({ method: 'POST', pathname: '/echo', payload: 'one' })).payload), 'one');
        const [, prefix, id] = client.resource!.split('/');
        const path = [stringOption(OptionNumber.UriPath, prefix!), stringOption(OptionNumber.UriPath, id!)];
        // An application_data record of epoch 1 (DTLS, RFC 6347 §4.1) or after the handshake (TLS 1.3) that no key made.
        const forged = dtls
          ? Uint8Array.from([23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 40, ...new Uint8Array(40).fill(7)])
          : Uint8Array.from([23, 3, 3, 0, 40, ...new Uint8Array(40).fill(7)]);
        // A plaintext fatal alert (epoch 0 in DTLS) and bytes that are no record at all.
        const alert = dtls ? Uint8Array.from([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 99, 0, 2, 2, 40]) : Uint8Array.from([21, 3, 3, 0, 2, 2, 40]);
        for (const payload of [forged, alert, Uint8Array.from([99, 1, 2, 3])]) {
          const r = await ep.request(server.endpoint.address, { code: CoapCode.POST, options: [...path, uintOption(OptionNumber.ContentFormat, 65000)], payload });
          assert.notEqual(r.code, CoapCode.NotFound, 'the session is still there');
          assert.ok(r.code >> 5 !== 5, 'never a server error');
        }
        assert.equal(new TextDecoder().decode((await client.request({ method: 'POST', pathname: '/echo', payload: 'two' })).payload), 'two');
        assert.equal(client.stats.flights > 0, true);
      } finally {
        await ep.close();
        await client.close();
        await server.close();
      }
    });
  }

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`HTTP, mode records, ${version}: a DELETE ends the session only with its close_notify records; the cookie, a forged alert or a protected message get 403`, async () => {
      const tls = tlsPair(pki, version, 'cert');
      const tls13 = version === 'TLSv1.3';
      const h = createAtlsHandler({ tls: tls.server, app: echoApp, mode: 'records' });
      const { session, cookie } = await manualHandshake(h, tls.client, 'records');
      const del = (body: Uint8Array, type = MEDIA_TYPE_FLIGHT) => post(h, body, { cookie, type, method: 'DELETE' });
      assert.equal((await del(new Uint8Array(0))).status, 403, 'the cookie alone proves nothing');
      // A close_notify alert record of the right shape that no key made (RFC 8446 §5.2: type 23 outside;
      // TLS 1.2 AES-GCM, RFC 5288 §3: type 21, explicit nonce, alert, tag).
      const forged = tls13 ? Uint8Array.from([23, 3, 3, 0, 19, ...new Uint8Array(19).fill(9)]) : Uint8Array.from([21, 3, 3, 0, 26, ...new Uint8Array(26).fill(9)]);
      assert.equal((await del(forged)).status, 403, 'a forged record proves nothing');
      assert.equal((await del(new Uint8Array(40), MEDIA_TYPE_PROTECTED)).status, 403, 'a records-mode session is proved by records');
      const echo = await post(h, await session.send(await requestToBhttp(new Request('http://localhost/x', { method: 'PUT', body: 'hi' }))), { cookie });
      assert.equal(echo.status, 200, 'the session goes on');
      await session.receive(new Uint8Array(await echo.arrayBuffer()));
      // While a streamed request holds the session, a DELETE is not read: 409, and the proof stays good.
      let finish!: () => void;
      const held = h(
        new Request('http://localhost/.well-known/atls', {
          method: 'POST',
          headers: { 'content-type': MEDIA_TYPE_FLIGHT, cookie: `atls-session=${cookie}` },
          body: new ReadableStream({ start: (c) => void (finish = () => c.close()) }),
          duplex: 'half',
        } as RequestInit),
      );
      const closeNotify = await session.close(); // the POST reaches the session meanwhile (no I/O on its way)
      assert.equal((await del(closeNotify)).status, 409, 'busy: the proof was not read');
      finish();
      await held;
      // docs/protocol.md 5.1: TLS 1.3, 24 bytes, `17 03 03 00 13`, alert and content type encrypted, 16-byte tag;
      // TLS 1.2 AES-GCM, 31 bytes, `15 03 03 00 1a`, explicit nonce, alert, tag.
      assert.deepEqual([...closeNotify.subarray(0, 5)], tls13 ? [0x17, 3, 3, 0, 0x13] : [0x15, 3, 3, 0, 0x1a]);
      assert.equal(closeNotify.length, tls13 ? 24 : 31);
      const ok = await del(closeNotify);
      assert.equal(ok.status, 204);
      assert.equal(cookieOf(ok), '', 'the cookie is cleared');
      assert.equal((await del(new Uint8Array(0))).status, 410, 'the session is gone');
      await h.close();
    });
  }

  for (const transport of ['TLS 1.3', 'DTLS 1.2'] as const) {
    it(`CoAP, mode records over ${transport}: a DELETE from the session's own endpoint without its close_notify is refused; the client's DELETE ends it`, async (t) => {
      const dtls = transport === 'DTLS 1.2';
      const engine = dtls ? availableEngines().find((e) => e.capabilities.dtls) : getEngine('node');
      if (!engine) return t.skip('no engine with DTLS (native addon not built)');
      const psk = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };
      const closed: string[] = [];
      const server = await AtlsCoapServer.listen({
        engine,
        mode: 'records',
        handler: echoCoapHandler,
        tls: dtls
          ? { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', pskLookup: (id) => (id === psk.identity ? psk.key : undefined) }
          : { cert: pki.server.cert, key: pki.server.key },
        onEvent: (e) => {
          if (e.type === 'closed') closed.push(e.sessionId);
        },
      });
      // The client's own socket: what a spoofer of its address and port sends arrives from here.
      const ep = await CoapEndpoint.bind();
      let sentDelete: OutgoingRequest | undefined;
      const client = new AtlsCoapClient({
        url: server.url,
        engine,
        mode: 'records',
        endpoint: ep,
        tls: dtls ? { dtls: true, ciphers: 'PSK-AES128-GCM-SHA256', psk } : { ca: pki.ca.cert, serverName: 'localhost' },
        onExchange: ({ request }) => {
          if (request.code === CoapCode.DELETE) sentDelete = request;
        },
      });
      try {
        assert.equal(new TextDecoder().decode((await client.request({ method: 'POST', pathname: '/echo', payload: 'one' })).payload), 'one');
        const [, prefix, id] = client.resource!.split('/');
        const path = [stringOption(OptionNumber.UriPath, prefix!), stringOption(OptionNumber.UriPath, id!)];
        const del = (payload: Uint8Array, cf?: number) =>
          ep.request(server.endpoint.address, { code: CoapCode.DELETE, options: [...path, ...(cf === undefined ? [] : [uintOption(OptionNumber.ContentFormat, cf)])], payload });
        // An encrypted alert record (epoch 1 in DTLS, RFC 6347 §4.1; type 23 in TLS 1.3, RFC 8446 §5.2) that no key made.
        const forgedAlert = dtls
          ? Uint8Array.from([21, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 9, 0, 26, ...new Uint8Array(26).fill(7)])
          : Uint8Array.from([23, 3, 3, 0, 19, ...new Uint8Array(19).fill(7)]);
        for (const [what, payload, cf] of [
          ['no proof', new Uint8Array(0), undefined],
          ['a forged close_notify', forgedAlert, 65000],
          ['a plaintext close_notify', dtls ? Uint8Array.from([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 99, 0, 2, 1, 0]) : Uint8Array.from([21, 3, 3, 0, 2, 1, 0]), 65000],
          ['a protected message', new Uint8Array(40), 65001],
        ] as Array<[string, Uint8Array, number | undefined]>) {
          const res = await del(payload, cf);
          assert.equal(res.code, CoapCode.Forbidden, `${what}: 4.03`);
        }
        assert.deepEqual(closed, [], 'the session was not ended');
        assert.equal(new TextDecoder().decode((await client.request({ method: 'POST', pathname: '/echo', payload: 'two' })).payload), 'two', 'the session goes on');
        const before = server.handler.sessionCount;
        await client.close(); // its DELETE carries its close_notify
        assert.equal(server.handler.sessionCount, before - 1);
        // docs/protocol.md 6.1 and 5.1: Content-Format 65000, one encrypted alert record.
        assert.equal(getUintOption(sentDelete!, OptionNumber.ContentFormat), 65000);
        const proof = sentDelete!.payload;
        if (dtls) {
          assert.deepEqual([...proof.subarray(0, 5)], [0x15, 0xfe, 0xfd, 0, 1], 'alert, DTLS 1.2, epoch 1');
          assert.deepEqual([...proof.subarray(11, 13)], [0, 0x1a]);
          assert.equal(proof.length, 39);
        } else {
          assert.deepEqual([...proof.subarray(0, 5)], [0x17, 3, 3, 0, 0x13]);
          assert.equal(proof.length, 24);
        }
        assert.deepEqual(closed, [id]);
        assert.equal((await del(new Uint8Array(0))).code, CoapCode.NotFound, 'the resource is gone');
      } finally {
        await client.close();
        await ep.close();
        await server.close();
      }
    });
  }

  it('CoAP: a half-open handshake takes no DELETE, not even from the endpoint that started it; it idles out under the half-open limits', async () => {
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, addressCheck: false });
    const ep = await CoapEndpoint.bind();
    try {
      const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
      const created = await ep.request(server.endpoint.address, {
        code: CoapCode.POST,
        options: [stringOption(OptionNumber.UriPath, '.well-known'), stringOption(OptionNumber.UriPath, 'atls'), uintOption(OptionNumber.ContentFormat, 65000)],
        payload: hello,
      });
      assert.equal(created.code, CoapCode.Created);
      const path = created.options.filter((o) => o.number === OptionNumber.LocationPath).map((o) => ({ ...o, number: OptionNumber.UriPath }));
      for (const cf of [undefined, 65000, 65001]) {
        const res = await ep.request(server.endpoint.address, {
          code: CoapCode.DELETE,
          options: [...path, ...(cf === undefined ? [] : [uintOption(OptionNumber.ContentFormat, cf)])],
          payload: cf === 65000 ? Uint8Array.from([21, 3, 3, 0, 2, 1, 0]) : new Uint8Array(0),
        });
        assert.equal(res.code, CoapCode.Forbidden);
        assert.equal(new TextDecoder().decode(res.payload), DELETE_HALF_OPEN);
      }
      assert.equal(server.handler.sessionCount, 1, 'the handshake stays');
    } finally {
      await ep.close();
      await server.close();
    }
  });

  it('CoAP: a records body, a late Finished or a DELETE from another endpoint does not end an established session', async () => {
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler });
    const client = new AtlsCoapClient({ url: server.url, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const ep = await CoapEndpoint.bind();
    try {
      await client.connect();
      const [, prefix, id] = client.resource!.split('/');
      const path = [stringOption(OptionNumber.UriPath, prefix!), stringOption(OptionNumber.UriPath, id!)];
      const records = await ep.request(server.endpoint.address, {
        code: CoapCode.POST,
        options: [...path, uintOption(OptionNumber.ContentFormat, 65000)],
        payload: Uint8Array.from([22, 3, 3, 0, 4, 20, 0, 0, 0]),
      });
      assert.equal(records.code >> 5, 4, 'refused');
      const del = await ep.request(server.endpoint.address, { code: CoapCode.DELETE, options: path, payload: new Uint8Array(0) });
      assert.equal(del.code, CoapCode.Forbidden);
      const forged = await ep.request(server.endpoint.address, {
        code: CoapCode.DELETE,
        options: [...path, uintOption(OptionNumber.ContentFormat, 65001)],
        payload: new Uint8Array(40),
      });
      assert.equal(forged.code, CoapCode.Forbidden, 'a forged protected message proves nothing');
      const res = await client.request({ method: 'POST', pathname: '/echo', payload: 'still here' });
      assert.equal(new TextDecoder().decode(res.payload), 'still here');
      const before = server.handler.sessionCount;
      await client.close(); // its own DELETE carries a protected message: accepted
      assert.equal(server.handler.sessionCount, before - 1);
    } finally {
      await ep.close();
      await client.close();
      await server.close();
    }
  });
});
