/**
 * The sidecars forward what they received. A raw HTTP client (node:http,
 * which adds nothing but Host and the body's framing) talks to the forward
 * sidecar, which sends through ATLS to the reverse sidecar, which reaches a
 * plain upstream that records the raw field lines it got. Also: bodies over
 * the limit reach every client as a 413.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import type { AddressInfo } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsServer, toNodeListener } from '../../src/http/node.js';
import { createAtlsClient } from '../../src/http/client.js';
import { echoApp, forwardHandler, upstreamApp } from '../../src/http/apps.js';
import { AtlsError } from '../../src/errors.js';

interface Seen {
  method: string;
  url: string;
  /** Raw field lines, names lower-cased. */
  fields: Array<[string, string]>;
  body: string;
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return (server.address() as AddressInfo).port;
}

/** A request by node:http with exactly these field lines; resolves with status, raw fields and body. */
function rawRequest(
  port: number,
  method: string,
  path: string,
  fields: Array<[string, string]>,
  body?: Uint8Array,
): Promise<{ status: number; fields: Array<[string, string]>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    // Field lines as an array are sent exactly so; node:http then adds no Host of its own.
    const lines = [['host', `127.0.0.1:${port}`], ...fields].flat();
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: lines }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const out: Array<[string, string]> = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) out.push([res.rawHeaders[i]!.toLowerCase(), res.rawHeaders[i + 1]!]);
        resolve({ status: res.statusCode ?? 0, fields: out, body: Buffer.concat(chunks) });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('sidecars forward faithfully', async () => {
  const pki = await testPki();
  const tls = tlsPair(pki, 'TLSv1.3', 'cert');
  const servers: http.Server[] = [];
  const seen: Seen[] = [];
  let upstreamPort = 0;
  let forwardPort = 0;
  const client = createAtlsClient({ tls: tls.client, proxy: false });

  before(async () => {
    const upstream = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const fields: Array<[string, string]> = [];
        for (let i = 0; i < req.rawHeaders.length; i += 2) fields.push([req.rawHeaders[i]!.toLowerCase(), req.rawHeaders[i + 1]!]);
        seen.push({ method: req.method ?? '', url: req.url ?? '', fields, body: Buffer.concat(chunks).toString() });
        if (req.url === '/moved') {
          res.writeHead(302, { location: '/elsewhere', 'x-up': '1' });
          res.end();
        } else if (req.url === '/gzip') {
          res.writeHead(200, { 'content-encoding': 'gzip', 'content-type': 'text/plain', connection: 'x-up-private', 'x-up-private': 'no' });
          res.end(gzipSync('compressed upstream text'));
        } else {
          res.setHeader('set-cookie', ['a=1; Path=/', 'b=2; Path=/']);
          res.end('ok');
        }
      });
    });
    servers.push(upstream);
    upstreamPort = await listen(upstream);
    const reverse = createAtlsServer({ tls: tls.server, app: upstreamApp(`http://127.0.0.1:${upstreamPort}`) });
    servers.push(reverse);
    const reversePort = await listen(reverse);
    const forward = http.createServer(toNodeListener(forwardHandler(client, `http://localhost:${reversePort}`)));
    servers.push(forward);
    forwardPort = await listen(forward);
  });

  after(async () => {
    await client.close();
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
  });

  it('the upstream gets the client request as sent, plus Forwarded and X-Forwarded-For, without hop-by-hop fields', async () => {
    const sent: Array<[string, string]> = [
      ['content-type', 'application/x-custom'],
      ['x-trace', 'abc'],
      ['accept', 'text/plain'],
      ['x-forwarded-for', '203.0.113.9'],
      ['forwarded', 'for=203.0.113.9'],
      ['connection', 'keep-alive, x-hop'],
      ['x-hop', 'for the first hop only'],
      ['te', 'trailers'],
      ['proxy-authorization', 'Basic c2VjcmV0'],
      ['expect', '100-continue'],
    ];
    const res = await rawRequest(forwardPort, 'PUT', '/api/items?id=7', sent, new TextEncoder().encode('body bytes'));
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.body.toString(), 'ok');
    const got = seen.at(-1)!;
    assert.equal(got.method, 'PUT');
    assert.equal(got.url, '/api/items?id=7');
    assert.equal(got.body, 'body bytes');
    const names = got.fields.map(([n]) => n).sort();
    // What undici's fetch would have added, and what must not cross a hop.
    for (const absent of ['sec-fetch-mode', 'accept-language', 'accept-encoding', 'user-agent', 'x-hop', 'te', 'proxy-authorization', 'expect']) {
      assert.ok(!names.includes(absent), `${absent} reached the upstream: ${JSON.stringify(got.fields)}`);
    }
    const field = (n: string): string | undefined => got.fields.find(([k]) => k === n)?.[1];
    assert.equal(field('content-type'), 'application/x-custom');
    assert.equal(field('x-trace'), 'abc');
    assert.equal(field('accept'), 'text/plain');
    assert.equal(field('host'), `127.0.0.1:${upstreamPort}`);
    // Each sidecar appends its hop: the forward sidecar names the local client, the reverse one the ATLS client.
    assert.equal(field('x-forwarded-for'), '203.0.113.9, 127.0.0.1, 127.0.0.1');
    assert.match(field('forwarded')!, /^for=203\.0\.113\.9, for=127\.0\.0\.1;host="127\.0\.0\.1:\d+";proto=http, for=127\.0\.0\.1;host="localhost:\d+";proto=http$/);
    // Only the body's framing and the connection's own fields are new.
    const allowed = new Set(['content-type', 'x-trace', 'accept', 'host', 'x-forwarded-for', 'forwarded', 'content-length', 'transfer-encoding', 'connection']);
    assert.deepEqual(names.filter((n) => !allowed.has(n)), []);
    // Both Set-Cookie lines come back as two lines.
    assert.deepEqual(res.fields.filter(([n]) => n === 'set-cookie').map(([, v]) => v), ['a=1; Path=/', 'b=2; Path=/']);
  });

  it('redirects and content codings come back untouched', async () => {
    const moved = await rawRequest(forwardPort, 'GET', '/moved', []);
    assert.equal(moved.status, 302, moved.body.toString());
    assert.equal(moved.fields.find(([n]) => n === 'location')?.[1], '/elsewhere');
    assert.equal(seen.at(-1)!.url, '/moved'); // not followed by either sidecar
    const gz = await rawRequest(forwardPort, 'GET', '/gzip', [['accept-encoding', 'gzip']]);
    assert.equal(gz.status, 200);
    assert.equal(gz.fields.find(([n]) => n === 'content-encoding')?.[1], 'gzip');
    assert.deepEqual(gz.body, gzipSync('compressed upstream text'));
    assert.ok(!gz.fields.some(([n]) => n === 'x-up-private'), 'a field named by Connection crossed a hop');
    assert.equal(seen.at(-1)!.fields.find(([n]) => n === 'accept-encoding')?.[1], 'gzip');
  });
});

describe('bodies over the limit are a 413 for every client', async () => {
  const pki = await testPki();
  const tls = tlsPair(pki, 'TLSv1.3', 'cert');

  for (const mode of ['exported', 'records'] as const) {
    it(`mode ${mode}: atlsFetch sees TOO_LARGE (413), the forward sidecar passes the 413 on, a raised limit lets the body through`, async (t) => {
      const small = createAtlsServer({ tls: tls.server, mode, app: echoApp, limits: { maxBodyBytes: 64 * 1024 } });
      const large = createAtlsServer({ tls: tls.server, mode, app: echoApp, limits: { maxBodyBytes: 4 * 1024 * 1024 } });
      const smallPort = await listen(small);
      const largePort = await listen(large);
      const client = createAtlsClient({ tls: tls.client, mode, proxy: false });
      const opened: http.Server[] = [small, large];
      t.after(async () => {
        await client.close();
        for (const s of opened) {
          s.closeAllConnections();
          await new Promise<void>((resolve) => s.close(() => resolve()));
        }
      });
      const body = new Uint8Array(3 * 1024 * 1024).fill(7);
      await assert.rejects(
        client.fetch(`http://localhost:${smallPort}/x`, { method: 'POST', body }),
        (e: unknown) => e instanceof AtlsError && e.code === 'TOO_LARGE' && e.httpStatus === 413 && /413/.test(e.message),
      );
      // The session survives a refused body.
      assert.equal(await (await client.fetch(`http://localhost:${smallPort}/x`, { method: 'POST', body: 'small' })).text(), 'small');
      const echoed = await client.fetch(`http://localhost:${largePort}/x`, { method: 'POST', body });
      assert.equal((await echoed.arrayBuffer()).byteLength, body.length);

      const forward = http.createServer(toNodeListener(forwardHandler(client, `http://localhost:${smallPort}`, { maxBodyBytes: 8 * 1024 * 1024 })));
      opened.push(forward);
      const forwardPort = await listen(forward);
      const through = await rawRequest(forwardPort, 'POST', '/x', [['content-type', 'application/octet-stream']], body);
      assert.equal(through.status, 413, `${through.body.toString()}`);
      // The forward sidecar's own limit: refused before anything is sent.
      const tight = http.createServer(toNodeListener(forwardHandler(client, `http://localhost:${largePort}`, { maxBodyBytes: 1024 })));
      opened.push(tight);
      const tightPort = await listen(tight);
      assert.equal((await rawRequest(tightPort, 'POST', '/x', [], body)).status, 413);
    });
  }
});
