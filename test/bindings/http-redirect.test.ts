/**
 * atlsFetch follows redirects as fetch does. Each case runs twice: through
 * atlsFetch against two ATLS servers (two origins), and through Node's own
 * fetch (undici) against two plain servers running the same application;
 * the two outcomes must be equal: status, statusText, url, redirected, the
 * method, body and credentials the final request carried, or the error.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsServer, toNodeListener } from '../../src/http/node.js';
import { atlsFetch, createAtlsClient, type AtlsClientOptions } from '../../src/http/client.js';
import type { Mode } from '../../src/session/types.js';

/** Two origins of one kind: `origins[i]` is server i's. */
interface Pair {
  origins: string[];
  servers: http.Server[];
}

/**
 * The application both kinds of server run: `/r/<code>/<0|1>` redirects with
 * <code> to `/final?n=1` on server 0 or 1; `/r/<code>/none` has no Location;
 * `/loop` redirects to itself; everything else reports the request.
 */
function app(index: number, origins: () => string[]) {
  return async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const parts = url.pathname.split('/');
    if (parts[1] === 'r') {
      const status = Number(parts[2]);
      const headers = new Headers({ 'content-type': 'text/plain' });
      if (parts[3] !== 'none') headers.set('location', `${origins()[Number(parts[3])]!}/final?n=1`);
      return new Response('moved', { status, headers });
    }
    if (url.pathname === '/loop') return new Response(null, { status: 302, headers: { location: '/loop' } });
    if (url.pathname === '/relative') return new Response(null, { status: 307, headers: { location: 'final#frag' } });
    if (url.pathname === '/scheme') return new Response(null, { status: 302, headers: { location: 'ftp://example.com/' } });
    return Response.json({
      server: index,
      path: url.pathname + url.search,
      method: req.method,
      body: req.method === 'GET' || req.method === 'HEAD' ? '' : await req.text(),
      contentType: req.headers.get('content-type'),
      authorization: req.headers.get('authorization'),
      cookie: req.headers.get('cookie'),
      custom: req.headers.get('x-custom'),
    });
  };
}

async function listen(server: http.Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function closeAll(pair: Pair): Promise<void> {
  for (const s of pair.servers) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** What a fetch came to, with origins replaced by their index so both kinds compare. */
async function outcome(pair: Pair, run: () => Promise<Response>): Promise<unknown> {
  const local = (u: string): string => pair.origins.reduce((s, o, i) => s.replaceAll(o, `<origin ${i}>`), u);
  try {
    const res = await run();
    const text = await res.text();
    return { status: res.status, statusText: res.statusText, url: local(res.url), redirected: res.redirected, location: res.headers.get('location') && local(res.headers.get('location')!), text };
  } catch (e) {
    return { error: (e as Error).name, message: (e as Error).message, cause: ((e as Error).cause as Error | undefined)?.message };
  }
}

describe('atlsFetch redirects, compared with fetch', async () => {
  const pki = await testPki();
  const tls = tlsPair(pki, 'TLSv1.3', 'cert');
  const plain: Pair = { origins: [], servers: [] };
  const atlsPairs = new Map<Mode, Pair>();
  const handshakes = new Map<Mode, number[]>();

  before(async () => {
    for (const i of [0, 1]) {
      const s = http.createServer(toNodeListener(app(i, () => plain.origins)));
      plain.servers.push(s);
      plain.origins.push(await listen(s));
    }
    for (const mode of ['exported', 'records'] as const) {
      const pair: Pair = { origins: [], servers: [] };
      const counts = [0, 0];
      for (const i of [0, 1]) {
        const s = createAtlsServer({
          tls: tls.server,
          mode,
          app: app(i, () => pair.origins),
          onEvent: (e) => void (e.type === 'handshake' && counts[i]!++),
        });
        pair.servers.push(s);
        pair.origins.push(await listen(s));
      }
      atlsPairs.set(mode, pair);
      handshakes.set(mode, counts);
    }
  });

  after(async () => {
    await closeAll(plain);
    for (const p of atlsPairs.values()) await closeAll(p);
  });

  const init = (method: string, redirect: 'follow' | 'error' | 'manual'): RequestInit => ({
    method,
    redirect,
    headers: { authorization: 'Bearer first-origin', cookie: 'sid=first-origin', 'x-custom': 'kept', ...(method === 'POST' || method === 'PUT' ? { 'content-type': 'text/plain' } : {}) },
    ...(method === 'POST' || method === 'PUT' ? { body: 'payload' } : {}),
  });

  for (const mode of ['exported', 'records'] as const) {
    it(`mode ${mode}: every code, redirect mode and method, same and cross origin`, async () => {
      const pair = atlsPairs.get(mode)!;
      const client = createAtlsClient({ tls: tls.client, mode, proxy: false });
      let cases = 0;
      for (const code of [301, 302, 303, 307, 308]) {
        for (const redirect of ['follow', 'error', 'manual'] as const) {
          for (const method of ['GET', 'POST', 'PUT']) {
            for (const target of [0, 1]) {
              const path = `/r/${code}/${target}`;
              const want = await outcome(plain, () => fetch(`${plain.origins[0]}${path}`, init(method, redirect)));
              const got = await outcome(pair, () => client.fetch(`${pair.origins[0]}${path}`, init(method, redirect)));
              assert.deepEqual(got, want, `${code} ${redirect} ${method} to origin ${target}`);
              cases++;
            }
          }
        }
      }
      assert.equal(cases, 90);
      // The second origin got its own session (own handshake), and the first origin's cookie never reached it.
      assert.deepEqual([...client.sessions.keys()].sort(), [...pair.origins].sort());
      assert.deepEqual(handshakes.get(mode), [1, 1]);
      await client.close();
    });
  }

  it('no Location, a loop, a relative Location with a fragment, a non-http scheme', async () => {
    const pair = atlsPairs.get('exported')!;
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    for (const path of ['/r/302/none', '/r/307/none', '/loop', '/relative', '/scheme']) {
      const want = await outcome(plain, () => fetch(`${plain.origins[0]}${path}`));
      const got = await outcome(pair, () => client.fetch(`${pair.origins[0]}${path}`));
      assert.deepEqual(got, want, path);
    }
    await client.close();
  });

  it('a 307 after a streamed body fails as in fetch; a 303 after one becomes a GET', async () => {
    const pair = atlsPairs.get('exported')!;
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    const stream = (): ReadableStream<Uint8Array> =>
      new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('streamed'));
          c.close();
        },
      });
    for (const code of [303, 307]) {
      const streamed = (): RequestInit => ({ method: 'POST', body: stream(), duplex: 'half' }) as RequestInit;
      const want = await outcome(plain, () => fetch(`${plain.origins[0]}/r/${code}/0`, streamed()));
      const got = await outcome(pair, () => client.fetch(`${pair.origins[0]}/r/${code}/0`, streamed()));
      assert.deepEqual({ ...(got as object), cause: undefined }, { ...(want as object), cause: undefined }, String(code));
    }
    await client.close();
  });

  it('an input fetch refuses is refused with the same TypeError: a bad URL or method, a GET with a body, a scheme it cannot fetch', async () => {
    const pair = atlsPairs.get('exported')!;
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    const cases: Array<[string, (origin: string) => [string, RequestInit | undefined]]> = [
      ['a URL that does not parse', () => ['http://', undefined]],
      ['a forbidden method', (o) => [`${o}/final`, { method: 'CONNECT' }]],
      ['a method that is no token', (o) => [`${o}/final`, { method: 'G T' }]],
      ['a GET with a body', (o) => [`${o}/final`, { method: 'GET', body: 'x' }]],
      ['a scheme fetch cannot fetch', () => ['ftp://example.com/', undefined]],
    ];
    for (const [what, args] of cases) {
      const want = await outcome(plain, () => fetch(...args(plain.origins[0]!)));
      const got = await outcome(pair, () => client.fetch(...args(pair.origins[0]!)));
      assert.deepEqual({ ...(got as object), cause: undefined }, { ...(want as object), cause: undefined }, what);
      assert.equal((got as { error: string }).error, 'TypeError', what);
    }
    await client.close();
  });

  it('statusText and url without redirects, through atlsFetch with inline options', async () => {
    const pair = atlsPairs.get('exported')!;
    const options = (): AtlsClientOptions => ({ tls: { ...tls.client }, proxy: false });
    const res = await atlsFetch(`${pair.origins[0]}/final#x`, { atls: options() });
    assert.equal(res.statusText, 'OK');
    assert.equal(res.url, `${pair.origins[0]}/final`);
    assert.equal(res.redirected, false);
    await res.text();
  });
});
