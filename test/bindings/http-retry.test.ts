/**
 * The client resends a flight or protected message answered 503 with
 * Retry-After, bounded and only when resending is safe. A real ATLS handler
 * sits behind a tiny node:http front that refuses chosen POSTs with 503.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { toNodeListener } from '../../src/http/node.js';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient } from '../../src/http/client.js';
import { echoApp } from '../../src/http/apps.js';
import { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { AtlsError } from '../../src/errors.js';
import { parseRetryAfter, retryDelayMs, resolveUnavailableRetry } from '../../src/retry.js';

/** What the front refuses: which POSTs, how many times, with which headers. */
interface Refusal {
  /** `flight`: handshake flights; `protected`: protected messages. */
  kind: 'flight' | 'protected';
  times: number;
  headers: Record<string, string>;
}

interface Front {
  url: string;
  /** POSTs of the refused kind that reached the front (refused or not). */
  seen: () => number;
  refuse: (r: Refusal | undefined) => void;
  close: () => Promise<void>;
}

async function front(pki: TestPki): Promise<Front> {
  const tls = tlsPair(pki, 'TLSv1.3', 'cert');
  const listener = toNodeListener(createAtlsHandler({ tls: tls.server, app: echoApp }));
  let refusal: Refusal | undefined;
  let seen = 0;
  let refused = 0;
  const server = http.createServer((req, res) => {
    const isProtected = req.headers['content-type'] === MEDIA_TYPE_PROTECTED;
    if (refusal && req.method === 'POST' && (refusal.kind === 'protected') === isProtected) {
      seen++;
      if (refused < refusal.times) {
        refused++;
        req.resume();
        res.writeHead(503, { 'content-type': 'text/plain', ...refusal.headers });
        res.end('busy\n');
        return;
      }
    }
    listener(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hello`,
    seen: () => seen,
    refuse: (r) => {
      refusal = r;
      seen = 0;
      refused = 0;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('client retries 503 + Retry-After', () => {
  let pki: TestPki;
  let f: Front;
  before(async () => {
    pki = await testPki();
    f = await front(pki);
  });
  after(() => f.close());

  const client = (extra: Parameters<typeof createAtlsClient>[0] = {}) =>
    createAtlsClient({ tls: tlsPair(pki, 'TLSv1.3', 'cert').client, proxy: false, reportTransport: false, ...extra });

  it('a handshake flight refused twice with Retry-After: 1 (seconds form) succeeds on the third try', async () => {
    f.refuse({ kind: 'flight', times: 2, headers: { 'retry-after': '1' } });
    const c = client();
    try {
      const res = await c.fetch(f.url);
      assert.equal(res.status, 200);
      assert.equal(f.seen() >= 3, true); // two refused ClientHellos, then the handshake
    } finally {
      await c.close();
    }
  });

  it('the HTTP-date form is waited for too', async () => {
    f.refuse({ kind: 'flight', times: 1, headers: { 'retry-after': new Date(Date.now() + 1000).toUTCString() } });
    const c = client();
    try {
      assert.equal((await c.fetch(f.url)).status, 200);
    } finally {
      await c.close();
    }
  });

  it('a 503 without Retry-After surfaces at once', async () => {
    f.refuse({ kind: 'flight', times: 1, headers: {} });
    const c = client();
    try {
      await assert.rejects(c.fetch(f.url), (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED');
      assert.equal(f.seen(), 1);
    } finally {
      await c.close();
    }
  });

  it('the bound holds: retries, then the 503 surfaces with its Retry-After', async () => {
    f.refuse({ kind: 'flight', times: 100, headers: { 'retry-after': '0' } });
    const c = client({ unavailableRetry: { retries: 2 } });
    try {
      await assert.rejects(c.fetch(f.url), (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED' && e.retryAfter === 0);
      assert.equal(f.seen(), 3);
    } finally {
      await c.close();
    }
  });

  it('a Retry-After above maxWaitMs is not waited for', async () => {
    f.refuse({ kind: 'flight', times: 1, headers: { 'retry-after': '10' } });
    const c = client();
    try {
      await assert.rejects(c.fetch(f.url), (e: unknown) => e instanceof AtlsError && e.retryAfter === 10);
      assert.equal(f.seen(), 1);
    } finally {
      await c.close();
    }
  });

  it('an idempotent protected request is resent; a POST only on LIMIT_REACHED', async () => {
    const c = client({ piggyback: false });
    try {
      f.refuse(undefined);
      assert.equal((await c.fetch(f.url)).status, 200); // handshake done, session kept
      f.refuse({ kind: 'protected', times: 1, headers: { 'retry-after': '0' } });
      const got = await c.fetch(f.url, { method: 'PUT', body: 'again' });
      assert.equal(got.status, 200);
      assert.equal(await got.text(), 'again');

      // A POST behind a 503 that does not say "refused before processing" may have run: not resent.
      f.refuse({ kind: 'protected', times: 1, headers: { 'retry-after': '0' } });
      await assert.rejects(c.fetch(f.url, { method: 'POST', body: 'once' }), (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED');
      assert.equal(f.seen(), 1);
    } finally {
      await c.close();
    }
  });

  it('an idempotent request of bytes over 64 KiB (a chunk stream) is sealed anew and resent; a stream from the caller is not', async () => {
    const c = client({ piggyback: false });
    const big = new Uint8Array(100 * 1024).map((_, i) => i % 251);
    try {
      f.refuse(undefined);
      assert.equal((await c.fetch(f.url)).status, 200);
      f.refuse({ kind: 'protected', times: 1, headers: { 'retry-after': '0' } });
      const got = await c.fetch(f.url, { method: 'PUT', body: big });
      assert.equal(got.status, 200);
      assert.deepEqual(new Uint8Array(await got.arrayBuffer()), big);
      assert.equal(f.seen(), 2, 'refused once, then answered');
      f.refuse({ kind: 'protected', times: 1, headers: { 'retry-after': '0' } });
      const stream = new ReadableStream<Uint8Array>({ start: (ctl) => (ctl.enqueue(big), ctl.close()) });
      await assert.rejects(
        c.fetch(f.url, { method: 'PUT', body: stream, duplex: 'half' } as RequestInit),
        (e: unknown) => e instanceof AtlsError && e.code === 'LIMIT_REACHED',
      );
      assert.equal(f.seen(), 1, 'a stream cannot be sent again');
    } finally {
      await c.close();
    }
  });

  it('a POST refused with ATLS-Error LIMIT_REACHED (before any processing) is resent', async () => {
    const c = client({ piggyback: false });
    try {
      f.refuse(undefined);
      assert.equal((await c.fetch(f.url)).status, 200);
      f.refuse({ kind: 'protected', times: 1, headers: { 'retry-after': '0', 'atls-error': 'LIMIT_REACHED' } });
      const got = await c.fetch(f.url, { method: 'POST', body: 'once' });
      assert.equal(await got.text(), 'once');
      assert.equal(f.seen(), 2);
    } finally {
      await c.close();
    }
  });
});

describe('client retries the real LIMIT_REACHED 503', () => {
  it('at the session cap (held by a half-open handshake) a handshake waits Retry-After and gets in once it ends (its ClientHello is not a replay)', async () => {
    const pki = await testPki();
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const server = http.createServer(toNodeListener(createAtlsHandler({ tls: tls.server, app: echoApp, mode: 'records', limits: { maxSessions: 1 } })));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const url = `${origin}/in`;
    // A half-open handshake holds the only slot (an established session would give way: fair shares);
    // a fatal alert on it (handshake_failure) ends it.
    const post = (body: Uint8Array, cookie?: string): Promise<Response> =>
      fetch(`${origin}/.well-known/atls`, { method: 'POST', body, headers: { 'content-type': MEDIA_TYPE_FLIGHT, ...(cookie ? { cookie } : {}) } });
    const started = await post((await new AtlsClientSession({ tls: tls.client, mode: 'records' }).start()).flight);
    assert.equal(started.status, 200);
    await started.arrayBuffer();
    const cookie = started.headers.get('set-cookie')!.split(';')[0]!;
    const holder = { close: async () => void (await (await post(Uint8Array.from([21, 3, 3, 0, 2, 2, 40]), cookie)).arrayBuffer()) };
    let refused = 0;
    const waiter = createAtlsClient({
      tls: tls.client,
      mode: 'records',
      proxy: false,
      reportTransport: false,
      onFlight: (e) => {
        if (e.direction !== 'received' || e.status !== 503) return;
        refused++;
        if (refused === 1) void holder.close(); // room is made while the waiter waits
      },
    });
    try {
      const res = await waiter.fetch(url, { method: 'POST', body: 'in' });
      assert.equal(await res.text(), 'in');
      assert.ok(refused >= 1, 'the first ClientHello was refused with 503');
    } finally {
      await waiter.close();
      await holder.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('retry arithmetic', () => {
  it('reads both Retry-After forms and rejects anything else', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('120', now), 120);
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:03 GMT', now), 3);
    assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter(null, now), undefined);
    assert.equal(parseRetryAfter('-1', now), undefined);
    assert.equal(parseRetryAfter('1.5', now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
  });

  it('waits at least what was asked, with bounded jitter, within the bound', () => {
    const o = resolveUnavailableRetry(undefined);
    for (let i = 0; i < 100; i++) {
      const w = retryDelayMs(1, 0, o)!;
      assert.ok(w >= 1000 && w <= 1250, String(w));
    }
    assert.equal(retryDelayMs(1, 3, o), undefined);
    assert.equal(retryDelayMs(6, 0, o), undefined);
    assert.equal(retryDelayMs(undefined, 0, o), undefined);
    assert.equal(retryDelayMs(0, 0, resolveUnavailableRetry({ retries: 0 })), undefined);
  });
});
