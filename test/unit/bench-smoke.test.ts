// Keeps the benchmark code from rotting: the table, the rate loop, the load
// loop against a real server, flight sizes and the memory driver all run on
// trivial workloads. No timing assertions: only shapes and counts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { formatTable, measureRate, percentile, type BenchRow } from '../../bench/lib/stats.js';
import { plan } from '../../bench/run.js';
import { buildServer } from '../../bench/procs/server.js';
import { LoadRun } from '../../bench/procs/load.js';
import { runMemory } from '../../bench/procs/memory.js';
import { benchPki } from '../../bench/lib/pki.js';
import { credentials, handshakeFlights } from '../../bench/sections/wire.js';
import { handshakeCryptoUs } from '../../bench/sections/crypto.js';
import { getEngine } from '../../src/engines/index.js';
import type { LoadJob } from '../../bench/lib/scenarios.js';

describe('bench smoke', () => {
  it('formats one table grouped by section', async () => {
    const r = await measureRate(() => undefined, { minMs: 5, warmup: 1 });
    assert.ok(r.iterations >= 10);
    const rows: BenchRow[] = [
      { section: '5 crypto-only', name: 'noop', value: r.opsPerSec, unit: 'op/s' },
      { section: '5 crypto-only', name: 'noop again', value: 1234.5, unit: 'op/s', note: 'x' },
      { section: '3 bytes', name: 'flight', value: 243, unit: 'B' },
    ];
    const t = formatTable(rows);
    assert.equal(t.split('\n').length, 2 + 3 + 1);
    assert.match(t, /1,235 +op\/s +x/);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.ok(Number.isNaN(percentile([], 99)));
  });

  it('plans a quick run from the environment', () => {
    const q = plan({ BENCH_QUICK: '1', BENCH_ONLY: '2,3' });
    assert.equal(q.quick, true);
    assert.deepEqual([...q.only], ['2', '3']);
    assert.ok(q.load.durationMs < 1000);
    assert.deepEqual(plan({}).pskSessions, [10_000, 100_000]);
    const hs = handshakeCryptoUs({ x25519: 1, ecdsaSign: 2, ecdsaVerify: 3 });
    assert.deepEqual(hs, { serverOnly: 3, mutual: 9, resumed: 1 });
  });

  const serverFor = { 'req-http': { kind: 'http' }, 'req-ohttp': { kind: 'ohttp' } } as const;
  for (const kind of ['req-http', 'req-atls', 'hs-atls', 'req-ohttp'] as const) {
    it(`runs the ${kind} load loop in-process`, async () => {
      const pki = await benchPki();
      const server = await buildServer(kind in serverFor ? serverFor[kind as keyof typeof serverFor] : { kind: 'atls', mode: 'exported', engine: 'node' }, pki);
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      try {
        const job: LoadJob = { kind, port: (server.address() as AddressInfo).port, concurrency: 2, size: 100, engine: 'node' };
        const run = new LoadRun(job, pki);
        run.start();
        run.mark();
        // Until something completed, however slow the machine (no time limit).
        while (run.completed === 0 && run.failed === 0) await new Promise((r) => setTimeout(r, 50));
        const res = await run.stop();
        assert.equal(res.errors, 0, res.firstError);
        assert.ok(res.ops > 0 && res.elapsedMs > 0, `${res.ops} operations`);
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });
  }

  it('measures flight sizes and the memory driver', async () => {
    const pki = await benchPki();
    const [, cc, sc] = credentials(pki).find(([n]) => n.startsWith('PSK'))!;
    const f = await handshakeFlights(getEngine('node'), cc, sc);
    assert.equal(f.flights.length % 2, 0);
    assert.equal(f.overheadA, 22); // RFC 8446 §5.2: 5 B header + 1 B type + 16 B tag
    const points = await runMemory({ pki, credential: 'psk', checkpoints: [3], halfOpen: false }).catch((e: unknown) => {
      assert.match(String(e), /expose-gc/); // the test runner has no --expose-gc: the guard must say so
      return [];
    });
    assert.ok(Array.isArray(points));
  });
});
