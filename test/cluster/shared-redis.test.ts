/**
 * Three `atls serve` processes on three ports sharing one real Redis
 * (`--store redis://...`): a session established at the first is answered by
 * all three; it survives the first's SIGKILL; a message accepted by one is
 * REPLAYED at another; concurrent requests at two processes never seal two
 * answers under one (key, sequence number). Also: `--store-key` keeps keys
 * out of Redis, one Redis round trip per request, and shared ticket keys
 * resume a session at another process.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import type { AtlsClientSession } from '../../src/session/session.js';
import { MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { requestToBhttp } from '../../src/bhttp/web.js';
import { decodeResponse } from '../../src/bhttp/codec.js';
import { parseHeader } from '../../src/protect/header.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { manualHandshake } from '../helpers/http.js';
import { clientCommandsDuring, redisIfInstalled, type RedisServer } from '../helpers/redis.js';
import { pkiFiles, startServe, type ServeProcess } from '../helpers/serve.js';
import type { AtlsHandler } from '../../src/http/server.js';

let redis: RedisServer | undefined;
let pki: TestPki;
const servers: ServeProcess[] = [];

before(async () => {
  redis = await redisIfInstalled();
  pki = await testPki();
});
after(async () => {
  await Promise.all(servers.map((s) => s.stop('SIGKILL')));
  await redis?.stop();
});

async function serve(extra: string[]): Promise<ServeProcess> {
  const s = await startServe(['--echo', '--store', redis!.url, ...extra]);
  servers.push(s);
  return s;
}

/** One inner POST whose body is `text`, protected for `session`. */
async function protect(session: AtlsClientSession, text: string): Promise<Uint8Array> {
  return session.protect(await requestToBhttp(new Request('http://localhost/echo', { method: 'POST', body: text })));
}

/** Posts a protected message; on 200 returns the raw protected answer. */
async function send(s: ServeProcess, cookie: string, msg: Uint8Array): Promise<{ status: number; error: string | null; body: Uint8Array }> {
  const res = await s.post(msg, { type: MEDIA_TYPE_PROTECTED, cookie });
  return { status: res.status, error: res.headers.get('atls-error'), body: new Uint8Array(await res.arrayBuffer()) };
}

function text(session: AtlsClientSession, answer: Uint8Array): string {
  return new TextDecoder().decode(decodeResponse(session.unprotect(answer)).content);
}

describe('three processes, one Redis', () => {
  it('a session made at the first is answered round-robin by all three, survives SIGKILL of the first, and a replay at another process is refused', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const [a, b, c] = await Promise.all([serve([]), serve([]), serve([])]);
    const { session, cookie } = await manualHandshake(a!.asHandler(), { ca: pki.ca.cert, serverName: 'localhost' });
    const ring = [a!, b!, c!];
    for (let i = 0; i < 9; i++) {
      const r = await send(ring[i % 3]!, cookie, await protect(session, `round-robin ${i}`));
      assert.equal(r.status, 200, `request ${i} at process ${i % 3}: ${r.error}`);
      assert.equal(text(session, r.body), `round-robin ${i}`);
    }
    // A message accepted by b is REPLAYED at c (and at b).
    const once = await protect(session, 'only once');
    assert.equal((await send(b!, cookie, once)).status, 200);
    for (const other of [c!, b!]) {
      const again = await send(other, cookie, once);
      assert.equal(again.status, 400);
      assert.equal(again.error, 'REPLAYED');
    }
    // The first process dies without a word; the session goes on at the other two.
    await a!.stop('SIGKILL');
    for (let i = 0; i < 6; i++) {
      const r = await send([b!, c!][i % 2]!, cookie, await protect(session, `after the crash ${i}`));
      assert.equal(r.status, 200, `after SIGKILL, request ${i}: ${r.error}`);
      assert.equal(text(session, r.body), `after the crash ${i}`);
    }
  });

  it('concurrent requests of one session at two processes never seal two answers under one sequence number', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const [a, b] = await Promise.all([serve([]), serve([])]);
    const { session, cookie } = await manualHandshake(a!.asHandler(), { ca: pki.ca.cert, serverName: 'localhost' });
    const sealed = new Map<bigint, number>(); // server's send sequence number -> how many answers carried it
    const N = 400;
    // In waves of 40 (inside the replay window of 64), half to each process, all in flight at once.
    for (let wave = 0; wave < N / 40; wave++) {
      const msgs = await Promise.all(Array.from({ length: 40 }, (_, i) => protect(session, `w${wave} m${i}`)));
      const answers = await Promise.all(msgs.map((m, i) => send(i % 2 ? a! : b!, cookie, m)));
      for (const [i, r] of answers.entries()) {
        assert.equal(r.status, 200, `wave ${wave} message ${i}: ${r.error}`);
        // One key per direction and session: the (key, seq) pair is this session's server seq.
        const seq = parseHeader(r.body).seq;
        sealed.set(seq, (sealed.get(seq) ?? 0) + 1);
        assert.equal(text(session, r.body), `w${wave} m${i}`);
      }
    }
    assert.equal(sealed.size, N, `${N} answers, ${N} distinct sequence numbers`);
    assert.ok([...sealed.values()].every((n) => n === 1));
  });

  it('one Redis round trip per protected request (MONITOR, commands from Lua left out)', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const [a, b] = await Promise.all([serve([]), serve([])]);
    const { session, cookie } = await manualHandshake(a!.asHandler(), { ca: pki.ca.cert, serverName: 'localhost' });
    // Warm up: each process loads the session's keys once (one HGET each) and Redis caches the script.
    for (const s of [a!, b!]) assert.equal((await send(s, cookie, await protect(session, 'warm'))).status, 200);
    const msgs = await Promise.all(Array.from({ length: 40 }, (_, i) => protect(session, `m${i}`)));
    const seen = await clientCommandsDuring(redis, async () => {
      for (const [i, m] of msgs.entries()) assert.equal((await send(i % 2 ? a! : b!, cookie, m)).status, 200);
    });
    assert.deepEqual([...seen], [['evalsha', 40]], `commands per 40 requests: ${JSON.stringify([...seen])}`);
  });

  it('--store-key: Redis holds no session keys; processes with the key serve each other\'s sessions', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const f = await pkiFiles();
    const keyFile = join(f.dir, 'store.key');
    writeFileSync(keyFile, randomBytes(32).toString('hex'));
    const [a, b] = await Promise.all([serve(['--store-key', keyFile]), serve(['--store-key', keyFile])]);
    const { session, cookie } = await manualHandshake(a!.asHandler(), { ca: pki.ca.cert, serverName: 'localhost' });
    const r = await send(b!, cookie, await protect(session, 'wrapped'));
    assert.equal(r.status, 200);
    assert.equal(text(session, r.body), 'wrapped');
    const peek = new Redis(redis.url);
    try {
      const record = await peek.hgetBuffer(`atls:s:${cookie}`, 'st');
      assert.ok(record && record.length > 50 && record[0] === 1, 'a wrapped record');
      assert.ok(!record.toString('latin1').includes('"secrets"'), 'no JSON, no keys in clear');
    } finally {
      peek.disconnect();
    }
  });

  it('--ticket-keys: a ticket issued by one process resumes the session at another', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const f = await pkiFiles();
    const ticketFile = join(f.dir, 'tickets.key');
    writeFileSync(ticketFile, randomBytes(48));
    const [a, b] = await Promise.all([serve(['--ticket-keys', ticketFile]), serve(['--ticket-keys', ticketFile])]);
    const trust = { ca: pki.ca.cert, serverName: 'localhost' };
    const first = await manualHandshake(a!.asHandler(), trust);
    const ticket = first.session.resumptionTicket;
    assert.ok(ticket, 'the first process issued a ticket');
    const { session } = await manualHandshake(b!.asHandler(), { ...trust, session: ticket });
    assert.equal(session.handshakeInfo?.resumed, true, 'resumed at the other process');
    // Without the shared file each process makes its own ticket keys: no resumption there.
    const [c, d] = await Promise.all([serve([]), serve([])]);
    const other = (await manualHandshake(c!.asHandler(), trust)).session.resumptionTicket;
    assert.ok(other);
    const { session: full } = await manualHandshake(d!.asHandler(), { ...trust, session: other });
    assert.equal(full.handshakeInfo?.resumed, false);
  });

  it('fair shares of established sessions are per process: a flood from one peer at two processes stays within 2 x --max-sessions and locks nobody out', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    await redis.command('FLUSHALL');
    const cap = 20;
    const [a, b] = await Promise.all([serve(['--max-sessions', String(cap), '--trusted-proxy', '127.0.0.1']), serve(['--max-sessions', String(cap), '--trusted-proxy', '127.0.0.1'])]);
    const trust = { ca: pki.ca.cert, serverName: 'localhost' };
    /** `s` as seen from client address `address` (through a trusted proxy's X-Forwarded-For). */
    const from = (s: ServeProcess, address: string): AtlsHandler =>
      (async (req: Request) => {
        const headers = new Headers(req.headers);
        headers.set('x-forwarded-for', address);
        return fetch(s.endpoint, { method: req.method, headers, body: new Uint8Array(await req.arrayBuffer()) });
      }) as unknown as AtlsHandler;
    const honest = await manualHandshake(from(a!, '10.0.0.1'), trust);
    // 3 x the cap of completed handshakes from one peer, spread over both processes.
    for (let i = 0; i < 3 * cap; i++) await manualHandshake(from(i % 2 ? b! : a!, '10.0.0.66'), trust);
    const client = new Redis(redis.url);
    const stored = (await client.keys('atls:s:*')).length;
    await client.quit();
    assert.ok(stored <= 2 * cap, `Redis holds ${stored} sessions: each process keeps its own share (<= ${2 * cap} in all)`);
    assert.ok(stored >= cap, `and the flood did fill both processes' shares (${stored})`);
    // The honest session survives (the flooder's own sessions gave way) and is answered at either process.
    for (const s of [b!, a!]) {
      const r = await send(s, honest.cookie, await protect(honest.session, 'still here'));
      assert.equal(r.status, 200, `honest session at ${s.port}: ${r.error}`);
      assert.equal(text(honest.session, r.body), 'still here');
    }
    // New honest peers get in at both processes.
    for (const s of [a!, b!]) await manualHandshake(from(s, '10.0.0.2'), trust);
  });
});
