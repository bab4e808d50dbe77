/**
 * `npm run bench:instructions`: server instructions per operation, counted by
 * valgrind's callgrind, for the rows of figures 1, 2 and 6 that the Go client
 * (`bench/go-client`) can drive. CPU seconds move by 2-3x on a shared
 * machine; instruction counts do not, so ratios between rows are steady.
 * Each server runs under callgrind with instrumentation off; the Go client warms
 * it up, then instrumentation is switched on for exactly `count` operations.
 * Threads are counted apart and the ratios use the main thread's count: V8's
 * background compiler threads were still compiling after 10,000 warm-up
 * requests and made up half of all threads' instructions, moving the rows by
 * 5-10 % between runs. Needs `valgrind` and `go`. BENCH_QUICK=1 for smaller counts;
 * BENCH_CG_ROWS=arch picks rows whose name contains a word; BENCH_CG_DIR=dir
 * keeps the callgrind dumps there (`callgrind_annotate dir/cg-*.out.1-01`, the main thread).
 * @module
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Child, goClient } from './lib/procs.js';
import { benchPki } from './lib/pki.js';
import type { ServerSpec } from './lib/scenarios.js';
import { fmt } from './lib/stats.js';

interface Variant {
  name: string;
  spec: ServerSpec;
  tls: boolean;
  args: string[];
  /** Operations counted (after {@link WARMUP} times as many for warm-up). */
  count: number;
}

const quick = process.env.BENCH_QUICK === '1';
const REQ = quick ? 200 : 2000;
const HS = quick ? 30 : 200;
/**
 * Warm-up operations per counted one: with 200 warm-up requests, 43 % of the counted instructions
 * were V8's optimising compiler still at work (callgrind_annotate of a kept dump).
 */
const WARMUP = 5;

const VARIANTS: Variant[] = [
  { name: 'plain HTTP keep-alive, 100 B', spec: { kind: 'http' }, tls: false, args: ['-job', 'http-req'], count: REQ },
  { name: 'HTTPS keep-alive, 100 B', spec: { kind: 'https' }, tls: true, args: ['-job', 'https-req'], count: REQ },
  { name: 'ATLS arch (b), 100 B', spec: { kind: 'atls', mode: 'exported' }, tls: false, args: ['-job', 'atls-req', '-mode', 'exported'], count: REQ },
  { name: 'ATLS arch (b) over node:http, 100 B', spec: { kind: 'atls', mode: 'exported', front: false }, tls: false, args: ['-job', 'atls-req', '-mode', 'exported'], count: REQ },
  { name: 'ATLS arch (a), 100 B', spec: { kind: 'atls', mode: 'records' }, tls: false, args: ['-job', 'atls-req', '-mode', 'records'], count: REQ },
  { name: 'ATLS arch (a) TLS 1.2, 100 B', spec: { kind: 'atls', mode: 'records', tls12: true }, tls: false, args: ['-job', 'atls-req', '-mode', 'records', '-tls12'], count: REQ },
  { name: 'HTTPS new connection + 1 request', spec: { kind: 'https' }, tls: true, args: ['-job', 'https-fresh'], count: HS },
  { name: 'ATLS (b) fresh session + 1 request', spec: { kind: 'atls', mode: 'exported' }, tls: false, args: ['-job', 'atls-fresh', '-mode', 'exported'], count: HS },
  { name: 'ATLS (b) fresh session + 1 request over node:http', spec: { kind: 'atls', mode: 'exported', front: false }, tls: false, args: ['-job', 'atls-fresh', '-mode', 'exported'], count: HS },
  { name: 'ATLS (a) fresh session + 1 request', spec: { kind: 'atls', mode: 'records' }, tls: false, args: ['-job', 'atls-fresh', '-mode', 'records'], count: HS },
];

/** Instructions of one callgrind dump part, per thread (`--separate-threads=yes`: `<out>.<part>-<thread>`, thread 01 the main one). */
interface Dumped {
  main: number;
  all: number;
}

/** Reads dump `part` of every thread, waiting until the main thread's is written. */
async function dumpedInstructions(out: string, part: number): Promise<Dumped> {
  const totalOf = (file: string): number | undefined => {
    try {
      const m = /^totals: (\d+)/m.exec(readFileSync(file, 'utf8'));
      return m ? Number(m[1]) : undefined;
    } catch {
      return undefined; // not written yet
    }
  };
  const dir = dirname(out);
  const prefix = `${basename(out)}.${part}-`;
  for (let i = 0; i < 600; i++) {
    const main = totalOf(`${out}.${part}-01`);
    if (main !== undefined) {
      await new Promise((r) => setTimeout(r, 500)); // the other threads' files follow the first
      let all = 0;
      for (const f of readdirSync(dir)) if (f.startsWith(prefix)) all += totalOf(join(dir, f)) ?? 0;
      return { main, all };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no callgrind dump ${out}.${part}-01`);
}

async function measure(go: string, caFile: string, dir: string, v: Variant): Promise<Dumped> {
  const out = join(dir, `cg-${v.name.replace(/\W+/g, '-')}.out`);
  const child = Child.fork('../procs/server.ts', undefined, [], {
    execPath: 'valgrind',
    prefix: ['--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes', `--callgrind-out-file=${out}`, process.execPath],
  });
  try {
    const ready = await child.ask({ type: 'start-server', spec: v.spec, pki: await benchPki() });
    if (ready.type !== 'ready' || ready.port === undefined) throw new Error('server did not start');
    const url = `${v.tls ? 'https' : 'http'}://127.0.0.1:${ready.port}`;
    const drive = (count: number): void => {
      execFileSync(go, ['-url', url, '-ca', caFile, '-conns', '1', '-size', '100', '-count', String(count), ...v.args], { stdio: ['ignore', 'ignore', 'inherit'] });
    };
    drive(WARMUP * v.count); // warm-up: JIT, caches, session tables
    // A second client run, as long as the count: the first requests of a new connection or session
    // deoptimise code that was optimised on the first one (--trace-deopt: wrong map, insufficient type
    // feedback), and until it is optimised again it runs as baseline code. Counting that made a third
    // of plain HTTP's and a fifth of arch (b)'s count; figure 6 measures a steady state with no new connection.
    drive(v.count);
    const pid = String(child.proc.pid);
    execFileSync('callgrind_control', ['--zero', pid], { stdio: 'ignore' });
    execFileSync('callgrind_control', ['--instr=on', pid], { stdio: 'ignore' });
    drive(v.count);
    execFileSync('callgrind_control', ['--instr=off', pid], { stdio: 'ignore' });
    execFileSync('callgrind_control', ['--dump', pid], { stdio: 'ignore' });
    const d = await dumpedInstructions(out, 1);
    return { main: d.main / v.count, all: d.all / v.count };
  } finally {
    child.tell({ type: 'stop' });
    await Promise.race([child.exited, new Promise((r) => setTimeout(r, 10_000))]);
    child.kill();
  }
}

async function main(): Promise<void> {
  const go = goClient();
  if (!go) throw new Error('`go` not found (Debian golang-go)');
  const keep = process.env.BENCH_CG_DIR;
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'atls-cg-'));
  const pick = process.env.BENCH_CG_ROWS;
  try {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, (await benchPki()).ca.cert);
    const got = new Map<string, number>();
    console.log(`${''.padEnd(40)} ${'main thread'.padStart(12)} ${'all threads'.padStart(12)}   (k instructions per operation)`);
    for (const v of VARIANTS.filter((x) => !pick || x.name.includes(pick))) {
      const t = performance.now();
      const per = await measure(go, caFile, dir, v);
      got.set(v.name, per.main);
      console.log(`${v.name.padEnd(40)} ${fmt(per.main / 1000).padStart(12)} ${fmt(per.all / 1000).padStart(12)}   (${v.count} ops, ${((performance.now() - t) / 1000).toFixed(0)} s)`);
    }
    if (pick) return;
    const r = (a: string, b: string): string => (got.get(b)! / got.get(a)!).toFixed(3);
    console.log(`\nratios of main-thread instructions (V8's compiler and GC helper threads left out; higher is better for the first):`);
    console.log(`arch (b) / HTTPS keep-alive        ${r('ATLS arch (b), 100 B', 'HTTPS keep-alive, 100 B')}`);
    console.log(`arch (b) / plain HTTP keep-alive   ${r('ATLS arch (b), 100 B', 'plain HTTP keep-alive, 100 B')}`);
    console.log(`arch (b) / arch (a)                ${r('ATLS arch (b), 100 B', 'ATLS arch (a), 100 B')}`);
    console.log(`fresh (b) / HTTPS new connection   ${r('ATLS (b) fresh session + 1 request', 'HTTPS new connection + 1 request')}`);
    console.log(`fresh (a) / HTTPS new connection   ${r('ATLS (a) fresh session + 1 request', 'HTTPS new connection + 1 request')}`);
  } finally {
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
