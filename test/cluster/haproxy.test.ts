/**
 * examples/haproxy.cfg, as shipped, in front of three `atls serve` processes
 * sharing one Redis: protected requests round-robin over all three, flights
 * of a handshake routed by the session cookie's routing tag. 200 clients x 10
 * requests, zero failures, and every process answered a share of them.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createAtlsClient } from '../../src/http/index.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { redisIfInstalled, type RedisServer } from '../helpers/redis.js';
import { startServe, type ServeProcess } from '../helpers/serve.js';
import { findTool, freePort, REQUIRE_INTEROP, type ToolProcess } from '../helpers/tools.js';
import { startTool, tempDir, waitForPort } from '../helpers/middlebox.js';

const EXAMPLE = join(import.meta.dirname, '..', '..', 'examples', 'haproxy.cfg');
const haproxy = findTool('haproxy');
const skip = !haproxy && !REQUIRE_INTEROP ? 'haproxy not installed (Debian package haproxy)' : false;

describe('haproxy (examples/haproxy.cfg) in front of three processes sharing Redis', { skip }, () => {
  let redis: RedisServer | undefined;
  let pki: TestPki;
  const servers: ServeProcess[] = [];
  let lb: ToolProcess | undefined;
  let lbUrl = '';
  let statsUrl = '';
  let dir: { path: string; remove(): Promise<void> };

  before(async () => {
    if (!haproxy) throw new Error('haproxy not installed and ATLS_REQUIRE_INTEROP=1');
    redis = await redisIfInstalled();
    if (!redis) return;
    pki = await testPki();
    servers.push(...(await Promise.all(['a', 'b', 'c'].map((tag) => startServe(['--echo', '--store', redis!.url, '--routing-tag', tag])))));
    dir = await tempDir('haproxy-cluster');
    // A second configuration file adds a stats page (the example stays as shipped).
    const statsConf = join(dir.path, 'stats.cfg');
    writeFileSync(statsConf, 'frontend stats\n  bind "${ATLS_LB_STATS}"\n  stats enable\n  stats uri /stats\n');
    for (let attempt = 0; attempt < 3 && !lb; attempt++) {
      const [port, stats] = [await freePort(), await freePort()];
      Object.assign(process.env, {
        ATLS_LB_BIND: `127.0.0.1:${port}`,
        ATLS_LB_STATS: `127.0.0.1:${stats}`,
        ATLS_A: `127.0.0.1:${servers[0]!.port}`,
        ATLS_B: `127.0.0.1:${servers[1]!.port}`,
        ATLS_C: `127.0.0.1:${servers[2]!.port}`,
      });
      try {
        const p = await startTool(haproxy, ['-db', '-f', EXAMPLE, '-f', statsConf], { port });
        await waitForPort(stats, 5000, p);
        lb = p;
        lbUrl = `http://127.0.0.1:${port}`;
        statsUrl = `http://127.0.0.1:${stats}/stats;csv`;
      } catch (e) {
        if (attempt === 2) throw e; // a port taken in between: try others
      }
    }
  });

  after(async () => {
    await lb?.kill();
    await Promise.all(servers.map((s) => s.stop('SIGKILL')));
    await redis?.stop();
    await dir?.remove();
  });

  /** HTTP requests each process answered, from haproxy's stats. */
  async function perServer(): Promise<Record<string, number>> {
    const csv = await (await fetch(statsUrl)).text();
    const [head, ...rows] = csv.trim().split('\n');
    const cols = head!.replace(/^# /, '').split(',');
    const at = (name: string): number => cols.indexOf(name);
    const out: Record<string, number> = {};
    for (const r of rows.map((l) => l.split(','))) {
      if (r[at('pxname')] === 'atls_processes' && ['a', 'b', 'c'].includes(r[at('svname')]!)) {
        out[r[at('svname')]!] = Number(r[at('hrsp_2xx')]);
      }
    }
    return out;
  }

  it('200 clients x 10 requests: zero failures, every process answers its share', async (t) => {
    if (!redis) return t.skip('redis-server not installed');
    const before = await perServer();
    const failures: string[] = [];
    let answered = 0;
    const client = async (n: number): Promise<void> => {
      const c = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, transport: { connections: 2 } });
      try {
        for (let i = 0; i < 10; i++) {
          const body = `client ${n} request ${i}`;
          const res = await c.fetch(`${lbUrl}/echo`, { method: 'POST', body });
          const got = await res.text();
          if (res.status !== 200 || got !== body) failures.push(`${body}: ${res.status} ${got.slice(0, 80)}`);
          else answered++;
        }
      } catch (e) {
        failures.push(`client ${n}: ${String(e)}`);
      } finally {
        await c.close();
      }
    };
    // 40 clients at a time: a handshake storm of 200 at once would only measure the machine.
    for (let wave = 0; wave < 5; wave++) await Promise.all(Array.from({ length: 40 }, (_, i) => client(wave * 40 + i)));
    // haproxy's log line of every request that did not end well (its termination state is not "--").
    const odd = lb!.stdout.split('\n').filter((l) => /atls_processes/.test(l) && !/ --[-\w]{2} \d+\/\d+\/\d+\/\d+\/\d+ /.test(l));
    assert.deepEqual(failures, [], `haproxy: ${odd.slice(0, 20).join('\n')}`);
    assert.equal(answered, 2000);
    const after = await perServer();
    const share = Object.fromEntries(Object.keys(after).map((k) => [k, after[k]! - (before[k] ?? 0)]));
    const total = Object.values(share).reduce((x, y) => x + y, 0);
    // 200 handshakes (2 POSTs each, the second carrying the first request) + 1800 protected requests.
    assert.ok(total >= 2200, `haproxy saw ${total} answered POSTs: ${JSON.stringify(share)}`);
    for (const [name, n] of Object.entries(share)) assert.ok(n > total / 6, `process ${name} answered ${n} of ${total}: ${JSON.stringify(share)}`);
  });
});
