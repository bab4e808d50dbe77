/**
 * `npm run bench`: every figure of issue 6 in one run, printed as one table
 * and written as JSON to bench/out/. `BENCH_QUICK=1` runs a smoke-sized
 * version (seconds); `BENCH_ONLY=1,2` picks figures (6: the Go client, 7: workers and Redis); `BENCH_SESSIONS`
 * overrides the largest session count of figure 4 (default 100000).
 * See bench/README.md for the method and the figures.
 * @module
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { benchPki } from './lib/pki.js';
import { defaultEngine } from '../src/engines/index.js';
import { canPin, LOAD_CPU, SERVER_CPU } from './lib/procs.js';
import { formatTable, type BenchRow } from './lib/stats.js';
import { cryptoSection } from './sections/crypto.js';
import { breakEvenRows, handshakeSection, requestSection, type LoadOptions } from './sections/load.js';
import { memorySection } from './sections/memory.js';
import { wireSection } from './sections/wire.js';
import { independentSection } from './sections/independent.js';
import { scaleSection } from './sections/scale.js';

/** Sizes of a run. */
export interface BenchPlan {
  quick: boolean;
  cryptoMs: number;
  load: LoadOptions;
  ecdsaSessions: number[];
  pskSessions: number[];
  /** Established records-mode (architecture a) session counts of figure 4. */
  recordsSessions: number[];
  only: Set<string>;
}

/** The plan for this environment (`BENCH_QUICK`, `BENCH_ONLY`, `BENCH_SESSIONS`). */
export function plan(env: Record<string, string | undefined> = process.env): BenchPlan {
  const quick = env.BENCH_QUICK === '1';
  const big = Number(env.BENCH_SESSIONS ?? (quick ? 1000 : 100_000));
  const sizes = [100, 64 * 1024];
  return {
    quick,
    cryptoMs: quick ? 100 : 1000,
    load: quick
      ? { warmupMs: 200, durationMs: 600, hsConcurrency: 4, reqConcurrency: 8, sizes }
      : { warmupMs: 1000, durationMs: 3000, hsConcurrency: 8, reqConcurrency: 16, sizes },
    ecdsaSessions: [Math.min(quick ? 200 : 10_000, big)],
    pskSessions: [...new Set([Math.min(quick ? 200 : 10_000, big), big])],
    recordsSessions: [Math.min(quick ? 200 : 10_000, big)],
    only: new Set((env.BENCH_ONLY ?? '1,2,3,4,5,6,7').split(',').map((s) => s.trim())),
  };
}

async function main(): Promise<void> {
  const p = plan();
  const started = new Date();
  const machine = {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    node: process.version,
    openssl: process.versions.openssl,
    loadAverageAtStart: loadavg(),
    engine: defaultEngine().name,
    pinned: canPin() ? { server: SERVER_CPU, load: LOAD_CPU } : null,
  };
  console.log(
    `atls bench${p.quick ? ' (quick)' : ''}: ${machine.cpus} cores (${machine.cpuModel}), node ${machine.node}, OpenSSL ${machine.openssl}, ATLS engine ${machine.engine}; ` +
      `server pinned to core ${SERVER_CPU}, load generator to core ${LOAD_CPU}${canPin() ? '' : ' (NOT pinned: taskset or a 2nd core missing)'}; ` +
      `load average ${machine.loadAverageAtStart.map((l) => l.toFixed(2)).join(' ')}`,
  );
  const pki = await benchPki();
  const rows: BenchRow[] = [];
  const step = async (id: string, title: string, fn: () => Promise<BenchRow[]>): Promise<void> => {
    if (!p.only.has(id)) return;
    const t = performance.now();
    process.stderr.write(`[bench] ${title}...`);
    const got = await fn();
    rows.push(...got);
    process.stderr.write(` ${((performance.now() - t) / 1000).toFixed(1)} s\n`);
  };
  // Crypto first: the other figures are given as shares of it.
  const crypto = await cryptoSection(p.cryptoMs, p.load.sizes);
  if (p.only.has('5')) rows.push(...crypto.rows);
  await step('3', 'bytes on the wire', () => wireSection(pki));
  await step('1', 'handshakes', () => handshakeSection(pki, p.load, crypto.costs));
  await step('2', 'requests', () => requestSection(pki, p.load, crypto.costs));
  await step('4', 'server memory', () => memorySection(pki, p.ecdsaSessions, p.pskSessions, p.recordsSessions));
  await step('6', 'independent client (Go)', () => independentSection(pki, p.load));
  await step('7', 'scaling: workers, memory and Redis stores', () => scaleSection(pki, { ...p.load, concurrency: p.load.reqConcurrency }));
  rows.push(...breakEvenRows(rows));
  const order = ['1', '2', '3', '4', '5', '6', '7'];
  rows.sort((a, b) => order.indexOf(a.section[0]!) - order.indexOf(b.section[0]!));
  console.log(formatTable(rows));
  const outDir = fileURLToPath(new URL('./out/', import.meta.url));
  mkdirSync(outDir, { recursive: true });
  const json = JSON.stringify({ started: started.toISOString(), quick: p.quick, machine, loadAverageAtEnd: loadavg(), rows }, null, 2);
  const name = `bench-${started.toISOString().replace(/[:.]/g, '-')}.json`;
  writeFileSync(`${outDir}${name}`, json);
  writeFileSync(`${outDir}latest.json`, json);
  console.log(`\nJSON: bench/out/${name} (and bench/out/latest.json)`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
