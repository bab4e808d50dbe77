/**
 * Redis restarted (empty) under load: two `atls serve` processes keep
 * running, answer only 200, 410 (the session Redis lost) or 503 with
 * Retry-After (Redis away, never another 5xx), and every client recovers:
 * the HTTP client handshakes again by itself after the 410.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { AtlsError } from '../../src/errors.js';
import { createAtlsClient } from '../../src/http/index.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { redisIfInstalled, type RedisServer } from '../helpers/redis.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';

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

describe('Redis restarted during a run', () => {
  it('no crash, no 5xx but 503, clients recover', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    servers.push(...(await Promise.all([0, 1].map(() => startServe(['--echo', '--store', redis!.url])))));
    const statuses = new Map<number, number>();
    const retryAfter = new Set<string | null>();
    const outer = async (request: Request): Promise<Response> => {
      const res = await fetch(request);
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      if (res.status === 503) retryAfter.add(res.headers.get('retry-after'));
      return res;
    };
    let phase: 'before' | 'outage' | 'after' = 'before';
    const okIn = { before: 0, outage: 0, after: 0 };
    const errors = new Map<string, number>();
    const client = async (n: number): Promise<number> => {
      // Each client alternates between the two processes: two origins, one session each.
      const c = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, transport: { fetch: outer } });
      let streak = 0;
      try {
        for (let i = 0; phase !== 'after' || streak < 10; i++) {
          const s = servers[i % 2]!;
          const body = `c${n} r${i}`;
          try {
            // PUT: idempotent, so the client resends it by itself after a lost session.
            const res = await c.fetch(`http://127.0.0.1:${s.port}/x`, { method: 'PUT', body });
            assert.equal(await res.text(), body);
            okIn[phase]++;
            streak = phase === 'after' ? streak + 1 : 0;
          } catch (e) {
            const code = e instanceof AtlsError ? e.code : String(e);
            errors.set(code, (errors.get(code) ?? 0) + 1);
            streak = 0;
            await sleep(100);
          }
          await sleep(10);
        }
      } finally {
        await c.close();
      }
      return streak;
    };
    const until = async (what: string, done: () => boolean): Promise<void> => {
      for (let waited = 0; !done(); waited += 50) {
        if (waited > 60_000) throw new Error(`not reached in 60 s: ${what}`);
        await sleep(50);
      }
    };
    const running = Promise.all(Array.from({ length: 12 }, (_, n) => client(n)));
    // Every client has sessions at both processes and uses them; then Redis goes.
    await until('clients established', () => okIn.before >= 12 * 6);
    phase = 'outage';
    await redis.process.kill(0); // SIGTERM then SIGKILL: gone, data and all
    await until('the outage seen by clients', () => (statuses.get(503) ?? 0) >= 12);
    await redis.restart();
    phase = 'after';
    const streaks = await Promise.race([
      running,
      sleep(120_000, undefined, { ref: false }).then(() => Promise.reject(new Error('clients did not recover within 120 s'))),
    ]);
    assert.ok(streaks.every((s) => s >= 10), 'every client completed 10 requests in a row after the restart');
    for (const s of servers) assert.equal(s.child.exitCode, null, `process alive: ${s.stderr()}`);
    const fives = [...statuses.keys()].filter((s) => s >= 500);
    assert.deepEqual(fives, fives.length ? [503] : [], `statuses ${JSON.stringify([...statuses])}`);
    assert.ok((statuses.get(503) ?? 0) > 0, `the outage was seen: ${JSON.stringify([...statuses])}`);
    assert.deepEqual([...retryAfter], ['1'], '503 always with Retry-After');
    assert.ok((statuses.get(410) ?? 0) > 0, 'sessions Redis lost answered 410 (then a new handshake)');
    assert.deepEqual([...errors.keys()].filter((c) => c !== 'STORE_UNAVAILABLE'), [], `client errors ${JSON.stringify([...errors])}`);
    assert.ok(okIn.before > 0 && okIn.after > 0, JSON.stringify(okIn));
  });
});
