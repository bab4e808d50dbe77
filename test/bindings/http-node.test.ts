/**
 * The HTTP binding over real sockets: `createAtlsServer` on loopback, the
 * client over undici; an https transport that ATLS does not need to trust;
 * a tiny forwarding proxy written here (absolute-form for http targets,
 * CONNECT for https targets), chosen explicitly and from HTTP_PROXY /
 * HTTPS_PROXY / NO_PROXY.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { TEST_PSK, reportApp, tlsPair } from '../helpers/http.js';
import { createAtlsServer, toNodeListener } from '../../src/http/node.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient, atlsFetch } from '../../src/http/client.js';
import { echoApp, forwardHandler, upstreamApp } from '../../src/http/apps.js';
import { noProxyMatches, proxyFor } from '../../src/http/transport.js';
import { AtlsError } from '../../src/errors.js';

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    (server as http.Server).closeAllConnections?.();
    server.close(() => resolve());
  });
}

/** A forward proxy: absolute-form requests are forwarded, CONNECT is tunnelled. Records what it saw. */
function tinyProxy(): { server: http.Server; seen: string[] } {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const target = new URL(req.url ?? '');
    const up = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: target.pathname + target.search, headers: req.headers },
      (ur) => {
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        ur.pipe(res);
      },
    );
    up.on('error', () => res.writeHead(502).end());
    req.pipe(up);
  });
  server.on('connect', (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, port] = (req.url ?? '').split(':');
    const up = net.connect(Number(port), host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  return { server, seen };
}

describe('HTTP binding over node:http sockets', () => {
  let pki: TestPki;
  const servers: net.Server[] = [];
  before(async () => {
    pki = await testPki();
  });
  after(async () => {
    await Promise.all(servers.map(close));
  });

  async function start(server: net.Server): Promise<number> {
    servers.push(server);
    return listen(server);
  }

  for (const mode of ['exported', 'records'] as const) {
    for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
      it(`${mode} ${version} mutual: requests over loopback`, async () => {
        const tls = tlsPair(pki, version, 'mutual');
        const port = await start(createAtlsServer({ tls: tls.server, app: reportApp, mode }));
        const client = createAtlsClient({ tls: tls.client, mode, proxy: false });
        for (let i = 0; i < 3; i++) {
          const res = await client.fetch(`http://127.0.0.1:${port}/n/${i}`, { method: 'POST', body: `b${i}` });
          const j = (await res.json()) as { path: string; body: string; subject: string; version: string };
          assert.deepEqual([j.path, j.body, j.version], [`/n/${i}`, `b${i}`, version]);
          assert.match(j.subject, /CN=atls-test-client/);
        }
        await client.close();
      });
    }
  }

  it('other paths get 404 or the fallback; the node adapter answers bad requests without crashing', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const port = await start(
      createAtlsServer({ tls: tls.server, app: echoApp, fallback: () => new Response('plain', { status: 200 }) }),
    );
    const plain = await fetch(`http://127.0.0.1:${port}/anything`);
    assert.equal(await plain.text(), 'plain');
    const get = await fetch(`http://127.0.0.1:${port}/.well-known/atls`);
    assert.equal(get.status, 405);
    const wrong = await fetch(`http://127.0.0.1:${port}/atls`, { method: 'POST', body: 'x', headers: { 'content-type': 'text/plain' } });
    assert.equal(wrong.status, 415);
    // Raw garbage on the socket: Node's parser answers, our process survives.
    await new Promise<void>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.end('POST /atls HTTP/1.1\r\nHost: \x01\r\nContent-Length: 3\r\n\r\nabc'));
      s.on('data', () => undefined);
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    const res = await client.fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body: 'hi', headers: { 'content-type': 'text/x' } });
    assert.equal(await res.text(), 'hi');
    assert.equal(res.headers.get('content-type'), 'text/x');
    await client.close();
  });

  it('https transport: verified with transport.ca, or insecure; ATLS trust stays separate', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const handler = createAtlsHandler({ tls: tls.server, app: reportApp });
    // The outer TLS uses a certificate ATLS knows nothing about (a "middlebox").
    const outer = https.createServer({ cert: pki.untrustedServer.cert, key: pki.untrustedServer.key }, toNodeListener(handler));
    const port = await start(outer);
    const url = `https://localhost:${port}/x`;
    const strict = createAtlsClient({ tls: tls.client, proxy: false });
    await assert.rejects(strict.fetch(url), (e: unknown) => e instanceof AtlsError && /transport/.test(e.message));
    await strict.close();
    const pinned = createAtlsClient({ tls: tls.client, proxy: false, transport: { ca: pki.otherCa.cert } });
    assert.equal((await pinned.fetch(url)).status, 200);
    await pinned.close();
    const insecure = createAtlsClient({ tls: tls.client, proxy: false, transport: { insecure: true } });
    const res = await insecure.fetch(url);
    assert.equal(((await res.json()) as { path: string }).path, '/x');
    await insecure.close();
    // The cookie is Secure on https.
    assert.equal(handler.stats().sessions, 2);
  });

  it('through a plain HTTP proxy: absolute-form for http targets, CONNECT for https targets', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const handler = createAtlsHandler({ tls: tls.server, app: reportApp });
    const httpPort = await start(http.createServer(toNodeListener(handler)));
    const httpsPort = await start(https.createServer({ cert: pki.server.cert, key: pki.server.key }, toNodeListener(handler)));
    const proxy = tinyProxy();
    const proxyPort = await start(proxy.server);

    const viaExplicit = createAtlsClient({ tls: tls.client, proxy: `http://127.0.0.1:${proxyPort}` });
    assert.equal((await viaExplicit.fetch(`http://127.0.0.1:${httpPort}/p1`)).status, 200);
    await viaExplicit.close();
    assert.ok(proxy.seen.some((s) => s === `POST http://127.0.0.1:${httpPort}/.well-known/atls`), proxy.seen.join('\n'));

    const env = { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`, NO_PROXY: 'example.invalid' };
    const viaEnv = createAtlsClient({ tls: tls.client, env, transport: { ca: pki.ca.cert } });
    assert.equal((await viaEnv.fetch(`https://localhost:${httpsPort}/p2`)).status, 200);
    assert.ok(proxy.seen.includes(`CONNECT localhost:${httpsPort}`), proxy.seen.join('\n'));
    // HTTP_PROXY is unset in `env`: http targets go direct.
    const before = proxy.seen.length;
    assert.equal((await viaEnv.fetch(`http://127.0.0.1:${httpPort}/p3`)).status, 200);
    assert.equal(proxy.seen.length, before);
    await viaEnv.close();

    const exempt = createAtlsClient({ tls: tls.client, env: { http_proxy: `http://127.0.0.1:${proxyPort}`, no_proxy: '127.0.0.1' } });
    const n = proxy.seen.length;
    assert.equal((await exempt.fetch(`http://127.0.0.1:${httpPort}/p4`)).status, 200);
    assert.equal(proxy.seen.length, n, 'NO_PROXY bypasses the proxy');
    await exempt.close();
  });

  it('proxy selection rules', () => {
    const u = (s: string) => new URL(s);
    assert.equal(proxyFor(u('http://a.example/'), { env: { HTTP_PROXY: 'http://p:1' } }), 'http://p:1');
    assert.equal(proxyFor(u('https://a.example/'), { env: { HTTP_PROXY: 'http://p:1' } }), undefined);
    assert.equal(proxyFor(u('https://a.example/'), { env: { https_proxy: 'http://p:2', HTTPS_PROXY: 'http://p:3' } }), 'http://p:2');
    assert.equal(proxyFor(u('http://a.example/'), { proxy: false, env: { HTTP_PROXY: 'http://p:1' } }), undefined);
    assert.equal(proxyFor(u('http://a.example/'), { proxy: 'http://x:9', env: {} }), 'http://x:9');
    assert.ok(noProxyMatches(u('http://a.example/'), 'example'));
    assert.ok(noProxyMatches(u('http://a.example/'), '.example'));
    assert.ok(noProxyMatches(u('http://a.example/'), '*.example'));
    assert.ok(noProxyMatches(u('http://a.example:8080/'), 'a.example:8080'));
    assert.ok(!noProxyMatches(u('http://a.example:8081/'), 'a.example:8080'));
    assert.ok(!noProxyMatches(u('http://ba.example.org/'), 'a.example'));
    assert.ok(noProxyMatches(u('http://x.test/'), '*'));
    assert.ok(noProxyMatches(u('http://[::1]:80/'), '::1'));
    assert.ok(noProxyMatches(u('http://127.0.0.1/'), 'localhost, 127.0.0.1'));
  });

  it('reverse sidecar (upstreamApp) and forward sidecar (forwardHandler) end to end', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    // An existing plain service that knows nothing about ATLS.
    const service = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'text/plain', 'x-seen-host': req.headers.host ?? '' });
        res.end(`${req.method} ${req.url} ${body}`);
      });
    });
    const servicePort = await start(service);
    const sidecarPort = await start(createAtlsServer({ tls: tls.server, app: upstreamApp(`http://127.0.0.1:${servicePort}`) }));
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    const forward = await start(http.createServer(toNodeListener(forwardHandler(client, `http://127.0.0.1:${sidecarPort}/.well-known/atls`))));
    // A plain local HTTP client talks to the forward sidecar.
    const res = await fetch(`http://127.0.0.1:${forward}/orders?x=1`, { method: 'POST', body: 'hello' });
    assert.equal(res.status, 201, await res.clone().text());
    assert.equal(await res.text(), 'POST /orders?x=1 hello');
    assert.equal(res.headers.get('x-seen-host'), `127.0.0.1:${servicePort}`);
    await client.close();
  });

  it('atlsFetch with inline options: equal settings share one client, one handshake and a few sockets', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const server = createAtlsServer({ tls: tls.server, app: () => new Response('hi') });
    let sockets = 0;
    server.on('connection', () => sockets++);
    const port = await start(server);
    let handshakes = 0;
    const onEvent = (e: { type: string }): void => void (e.type === 'handshake' && handshakes++);
    for (let i = 0; i < 200; i++) {
      // A fresh options object (and fresh key bytes) every call, as in the README's example.
      const atls = { tls: { ...tls.client, psk: { ...TEST_PSK, key: Buffer.from(TEST_PSK.key) } }, proxy: false as const, onEvent };
      assert.equal(await (await atlsFetch(`http://127.0.0.1:${port}/`, { atls })).text(), 'hi');
    }
    assert.equal(handshakes, 1);
    assert.ok(sockets <= 4, `${sockets} sockets`);
    // Different trust settings are a different client.
    const other = { tls: { ...tls.client, serverName: 'other.localhost' }, proxy: false as const, onEvent };
    await (await atlsFetch(`http://127.0.0.1:${port}/`, { atls: other })).text();
    assert.equal(handshakes, 2);
  });

  it('a refused connection is a typed error', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const dead = await start(net.createServer());
    await close(servers.pop()!);
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    await assert.rejects(client.fetch(`http://127.0.0.1:${dead}/`), (e: unknown) => e instanceof AtlsError && e.code === 'CLOSED');
    await client.close();
  });

  it('oversized bodies over a socket: 413, with and without Content-Length', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const port = await start(createAtlsServer({ tls: tls.server, app: echoApp, limits: { maxBodyBytes: 1000 } }));
    const fixed = await fetch(`http://127.0.0.1:${port}/atls`, {
      method: 'POST',
      body: new Uint8Array(5_000_000),
      headers: { 'content-type': 'application/atls' },
    });
    assert.equal(fixed.status, 413);
    const chunked = await fetch(`http://127.0.0.1:${port}/atls`, {
      method: 'POST',
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 100; i++) c.enqueue(new Uint8Array(50_000));
          c.close();
        },
      }),
      headers: { 'content-type': 'application/atls' },
      duplex: 'half',
    } as RequestInit);
    assert.equal(chunked.status, 413);
  });
});
