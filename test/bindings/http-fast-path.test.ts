/**
 * The byte-level core of the HTTP binding: raw inner apps (`rawApp`,
 * `echoRawApp`) give the same inner bytes as their fetch-style twins, a
 * failing raw app becomes an inner 500, and `atlsNodeListener` serves the
 * endpoints straight from `node:http` (the app still gets `context.outer`).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { makePair, tlsPair } from '../helpers/http.js';
import { atlsNodeListener } from '../../src/http/node.js';
import { createAtlsHandler, type AtlsRawApp, type AtlsRawRequest } from '../../src/http/server.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { AtlsError } from '../../src/errors.js';
import { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { createAtlsClient } from '../../src/http/client.js';
import { echoApp, echoRawApp } from '../../src/http/apps.js';
import { decodeResponse, encodeRequest, encodeResponse } from '../../src/bhttp/codec.js';
import { responseToBhttp, bhttpToRequest } from '../../src/bhttp/web.js';
import type { AtlsPeer } from '../../src/http/peer.js';

describe('HTTP binding: byte-level core and raw apps', () => {
  let pki: TestPki;
  const servers: http.Server[] = [];
  before(async () => {
    pki = await testPki();
  });
  after(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });

  it('echoRawApp encodes the same inner response as echoApp', async () => {
    const peer = {} as AtlsPeer;
    for (const headers of [[['content-type', 'text/x']], [], [['content-type', 'a/b'], ['content-type', 'c/d']]] as Array<Array<[string, string]>>) {
      for (const content of [new Uint8Array(0), new TextEncoder().encode('hello')]) {
        const bytes = encodeRequest({ method: 'POST', scheme: 'https', authority: 'a.example', path: '/e', headers, content });
        const web = await responseToBhttp(await echoApp(bhttpToRequest(bytes), peer, { outer: new Request('http://x/') }));
        const rawRes = await echoRawApp(
          { method: 'POST', scheme: 'https', authority: 'a.example', path: '/e', headers, content, trailers: [] },
          peer,
          { outer: new Request('http://x/') },
        );
        assert.deepEqual(encodeResponse(rawRes), web);
      }
    }
  });

  it('rawApp replaces app; scheme and authority are filled in; a throwing raw app is an inner 500', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const seen: string[] = [];
    const rawApp: AtlsRawApp = (req) => {
      seen.push(`${req.method} ${req.scheme}://${req.authority}${req.path}`);
      if (req.path === '/boom') throw new Error('boom');
      return { status: 201, headers: [['x-raw', '1']], content: new TextEncoder().encode(`raw ${req.path}`) };
    };
    const p = makePair({ tls: tls.server, rawApp, app: () => new Response('web') }, { tls: tls.client });
    const r = await p.client.fetch('http://localhost/hello?q=1', { method: 'POST', body: 'x' });
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('x-raw'), '1');
    assert.equal(await r.text(), 'raw /hello?q=1');
    const boom = await p.client.fetch('http://localhost/boom');
    assert.equal(boom.status, 500);
    assert.equal(await boom.text(), 'internal server error\n');
    assert.deepEqual(seen, ['POST http://localhost/hello?q=1', 'GET http://localhost/boom']);
  });

  it('createAtlsHandler refuses options with neither app nor rawApp', () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    assert.throws(() => createAtlsHandler({ tls: tls.server }), /app or rawApp/);
  });

  it('atlsNodeListener: the fast path serves handshakes and requests; context.outer is built on demand', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const handler = createAtlsHandler({
      tls: tls.server,
      app: async (req, _peer, ctx) =>
        new Response(`${await req.text()} via ${ctx.outer.method} ${new URL(ctx.outer.url).pathname} ${ctx.outer.headers.get('content-type')}`),
    });
    const server = http.createServer(atlsNodeListener(handler, { fallback: () => new Response('plain') }));
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    for (let i = 0; i < 3; i++) {
      const res = await client.fetch(`http://127.0.0.1:${port}/n/${i}`, { method: 'POST', body: `b${i}` });
      assert.equal(res.status, 200);
      assert.match(await res.text(), new RegExp(`^b${i} via POST /.well-known/atls application/atls`));
    }
    await client.close();
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/other`)).text(), 'plain');
    const q = await fetch(`http://127.0.0.1:${port}/atls?x=1`, { method: 'POST', body: 'zz', headers: { 'content-type': 'text/plain' } });
    assert.equal(q.status, 415);
  });

  it('a front may hand over the body at once (no promise) or refuse it at once; both are served as a promised body is', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const handler = createAtlsHandler({ tls: tls.server, rawApp: echoRawApp, limits: { maxWholeBodyBytes: 4096 } });
    const raw = (headers: Record<string, string>, body: () => Uint8Array | Promise<Uint8Array>): AtlsRawRequest => ({
      method: 'POST',
      pathname: '/.well-known/atls',
      header: (name) => headers[name],
      body,
      https: false,
      authority: 'localhost',
      outer: () => {
        throw new Error('no outer request');
      },
    });
    const read = async (b: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array> => (b instanceof Uint8Array ? b : new Uint8Array(await new Response(b).arrayBuffer()));
    const c = new AtlsClientSession({ tls: tls.client });
    const hello = (await c.start()).flight;
    const r1 = await handler.serve(raw({ 'content-type': MEDIA_TYPE_FLIGHT }, () => Promise.resolve(hello)));
    const cookie = (r1.headers.find(([n]) => n === 'set-cookie')?.[1] ?? '').split(';')[0]!;
    const fin = await c.receive(await read(r1.body));
    const r2 = await handler.serve(raw({ 'content-type': MEDIA_TYPE_FLIGHT, cookie }, () => fin.flight)); // at once
    await c.receive(await read(r2.body));
    assert.equal(c.state, 'established');
    const headers = { 'content-type': MEDIA_TYPE_PROTECTED, cookie };
    for (const [i, at] of [true, false, true].entries()) {
      const sealed = c.protect(encodeRequest({ method: 'POST', scheme: 'http', authority: 'localhost', path: `/${i}`, content: new TextEncoder().encode(`m${i}`) }));
      const reply = await handler.serve(raw(headers, at ? () => sealed : () => Promise.resolve(sealed)));
      assert.equal(reply.status, 200);
      assert.equal(new TextDecoder().decode(decodeResponse(c.unprotect(await read(reply.body))).content), `m${i}`);
    }
    const refused = await handler.serve(
      raw(headers, () => {
        throw new AtlsError('TOO_LARGE', 'body of 5000 bytes exceeds 4096', { source: 'remote' });
      }),
    );
    assert.equal(refused.status, 413);
    c.destroy();
    await handler.close();
  });
});

