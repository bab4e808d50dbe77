/**
 * Figure 7, scaling: architecture-(b) requests per second through the real
 * `atls serve --echo` command with 1 and 2 worker processes, with the
 * in-memory store (with 2 workers: the primary's, over IPC) and with a real
 * redis-server; p50 and p99; server CPU (all the command's processes) and
 * Redis CPU per request; Redis round trips per request, counted with MONITOR
 * (commands Lua scripts run inside Redis are not round trips and are left out).
 * @module
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { runLoad, type LoadSummary, type LoadTiming, type ServerHandle } from '../lib/procs.js';
import { innerRequest, type BenchPki } from '../lib/scenarios.js';
import { fmt, type BenchRow } from '../lib/stats.js';
import { clientCommandsDuring, launchRedis, redisServerPath, type RedisServer } from '../../test/helpers/redis.js';
import { startServe, type ServeProcess } from '../../test/helpers/serve.js';
import { AtlsDriver } from '../lib/atls-driver.js';
import { H1Connection } from '../lib/h1.js';

/** CPU time (user + system, µs) of a process and its node children, from /proc. */
function treeCpuUs(pid: number): number {
  const ticks = (p: number): number => {
    const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime: proc(5) fields 14 and 15
  };
  let children: number[] = [];
  try {
    children = execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((p) => p > 0);
  } catch {
    // ps exits 1 when there are no children
  }
  let total = 0;
  for (const p of [pid, ...children]) {
    try {
      total += ticks(p);
    } catch {
      // exited in between
    }
  }
  return (total * 1e6) / 100; // USER_HZ is 100 on Linux
}

/** The `atls serve` process tree as the load runner's server handle. */
function handleOf(serve: ServeProcess): ServerHandle {
  return {
    port: serve.port,
    cpu: async () => {
      const cpuUs = treeCpuUs(serve.child.pid!);
      return { cpuUs, mainUs: cpuUs, rss: 0 }; // a process tree: no thread split
    },
    stop: () => serve.stop(),
  };
}

/** Figure 7. Skipped, with a row saying so, when redis-server is missing. */
export async function scaleSection(pki: BenchPki, timing: LoadTiming & { concurrency: number }): Promise<BenchRow[]> {
  const S = '7 scale';
  const rows: BenchRow[] = [];
  const bin = redisServerPath();
  let redis: RedisServer | undefined;
  if (bin) redis = await launchRedis(bin);
  try {
    const variants: Array<{ name: string; flags: string[]; redis: boolean }> = [
      { name: 'memory store, 1 process', flags: [], redis: false },
      { name: 'memory store (primary, IPC), 2 workers', flags: ['--workers', '2'], redis: false },
      { name: 'Redis store, 1 process', flags: [], redis: true },
      { name: 'Redis store, 2 workers', flags: ['--workers', '2'], redis: true },
    ];
    for (const v of variants) {
      if (v.redis && !redis) {
        rows.push({ section: S, name: `ATLS arch (b), ${v.name}`, value: 0, unit: 'req/s', note: 'skipped: redis-server not installed' });
        continue;
      }
      const serve = await startServe(['--echo', ...(v.redis ? ['--store', redis!.url] : []), ...v.flags]);
      try {
        const redisCpu0 = redis ? treeCpuUs(redis.process.pid!) : 0;
        const r: LoadSummary = await runLoad(
          { kind: 'req-atls', mode: 'exported', port: serve.port, concurrency: timing.concurrency, size: 100 },
          pki,
          handleOf(serve),
          timing,
        );
        const redisUsPerReq = v.redis ? (treeCpuUs(redis!.process.pid!) - redisCpu0) / r.ops : 0;
        rows.push({
          section: S,
          name: `ATLS arch (b), ${v.name}, 100 B`,
          value: r.rate,
          unit: 'req/s',
          note:
            `p50 ${fmt(r.p50Us / 1000)} ms, p99 ${fmt(r.p99Us / 1000)} ms; atls serve ${fmt(r.serverUsPerOp)} µs CPU/req (all processes), ` +
            `busy ${(r.serverBusy * 100).toFixed(0)}%${v.redis ? `; redis-server ${fmt(redisUsPerReq)} µs CPU/req (includes the load's handshakes)` : ''}` +
            `${r.errors ? `; ${r.errors} errors: ${r.firstError ?? ''}` : ''}`,
          extra: { result: r, redisUsPerReq },
        });
        if (v.redis) {
          const trips = await roundTrips(serve, redis!, pki);
          rows.push({
            section: S,
            name: `Redis round trips per protected request, ${v.name}`,
            value: trips.perRequest,
            unit: 'trips/req',
            note: `MONITOR over ${trips.requests} requests on one established session: ${trips.commands}`,
          });
        }
      } finally {
        await serve.stop();
      }
    }
  } finally {
    await redis?.stop();
  }
  return rows;
}

/** Commands clients sent to Redis per protected request, over `n` requests of one warmed-up session. */
async function roundTrips(serve: ServeProcess, redis: RedisServer, pki: BenchPki, n = 200): Promise<{ perRequest: number; requests: number; commands: string }> {
  const conn = await H1Connection.connect({ port: serve.port });
  try {
    const d = new AtlsDriver(conn, { tls: { serverName: 'localhost', ca: pki.ca.cert, minVersion: 'TLSv1.3' }, mode: 'exported' });
    await d.handshake();
    const inner = innerRequest(100);
    await d.request(inner); // the answering process loads the session's keys once
    const seen = await clientCommandsDuring(redis, async () => {
      for (let i = 0; i < n; i++) await d.request(inner);
    });
    const total = [...seen.values()].reduce((a, b) => a + b, 0);
    return { perRequest: total / n, requests: n, commands: [...seen].map(([c, k]) => `${c} x${k}`).join(', ') || 'none' };
  } finally {
    conn.close();
  }
}
