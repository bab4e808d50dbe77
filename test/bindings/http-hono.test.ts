/**
 * The Hono middleware: ATLS endpoints answered, inner requests served by the
 * app's own routes with the peer in `c.get('atls')`, other routes untouched.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { Hono } from 'hono';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { atls, type AtlsVariables } from '../../src/http/hono.js';
import { createAtlsClient } from '../../src/http/client.js';

describe('Hono middleware', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  function build(requireAtls = false, mount: 'global' | 'path' = 'global') {
    const tls = tlsPair(pki, 'TLSv1.3', 'mutual');
    const app = new Hono<{ Variables: AtlsVariables }>();
    const mw = atls({ tls: tls.server, app, requireAtls });
    if (mount === 'global') app.use(mw);
    else app.use('/.well-known/atls', mw);
    app.get('/hello', (c) => c.json({ via: c.get('atls') ? 'atls' : 'plain', subject: c.get('atls')?.subject ?? null }));
    app.post('/items', async (c) => c.json({ got: await c.req.json<unknown>() }, 201));
    const client = createAtlsClient({
      tls: tls.client,
      transport: { fetch: async (req) => app.fetch(req) },
    });
    return { app, client, mw };
  }

  it('serves inner requests through the existing routes with the peer set', async () => {
    const { client, mw } = build();
    const res = await client.fetch('http://localhost/hello');
    const j = (await res.json()) as { via: string; subject: string };
    assert.equal(j.via, 'atls');
    assert.match(j.subject, /CN=atls-test-client/);
    const post = await client.fetch('http://localhost/items', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"n":1}',
    });
    assert.equal(post.status, 201);
    assert.deepEqual(await post.json(), { got: { n: 1 } });
    const missing = await client.fetch('http://localhost/nope');
    assert.equal(missing.status, 404, 'Hono’s own 404, carried protected');
    assert.equal(mw.handler.stats().sessions, 1);
    await client.close();
  });

  it('leaves other routes alone, and a plain request cannot pose as an ATLS one', async () => {
    const { app } = build();
    const plain = await app.request('/hello', { headers: { 'x-atls-peer': 'CN=admin' } });
    assert.deepEqual(await plain.json(), { via: 'plain', subject: null });
    const get = await app.request('/.well-known/atls');
    assert.equal(get.status, 405);
    const bad = await app.request('/atls', { method: 'POST', body: 'x', headers: { 'content-type': 'application/atls' } });
    assert.equal(bad.status, 400);
  });

  it('requireAtls refuses plain requests to the routes', async () => {
    const { app, client } = build(true);
    assert.equal((await app.request('/hello')).status, 403);
    assert.equal(((await (await client.fetch('http://localhost/hello')).json()) as { via: string }).via, 'atls');
    await client.close();
  });

  for (const mount of ['global', 'path'] as const) {
    it(`mounted ${mount === 'path' ? 'on the endpoint path' : 'globally'}: requireAtls holds and c.get('atls') is set`, async () => {
      const { app, client } = build(true, mount);
      const plain = await app.request('/hello');
      assert.equal(plain.status, 403, 'a plain request never reaches a route');
      assert.equal((await app.request('/items', { method: 'POST', body: '{}' })).status, 403);
      const inner = (await (await client.fetch('http://localhost/hello')).json()) as { via: string; subject: string };
      assert.equal(inner.via, 'atls');
      assert.match(inner.subject, /CN=atls-test-client/);
      await client.close();
    });
  }

  it('mounted on the endpoint path without requireAtls: plain routes stay plain', async () => {
    const { app, client } = build(false, 'path');
    assert.deepEqual(await (await app.request('/hello')).json(), { via: 'plain', subject: null });
    assert.equal(((await (await client.fetch('http://localhost/hello')).json()) as { via: string }).via, 'atls');
    await client.close();
  });
});
