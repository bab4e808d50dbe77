/**
 * Figure 6: the same servers driven by a client that shares no code with the
 * project (`bench/go-client`: Go's crypto/tls and net/http, 8 connections,
 * 100 B bodies), so the figures of sections 1 and 2 can be checked against
 * an outside view. Rates are per server CPU-second, as everywhere.
 * @module
 */
import { goClient, runGoLoad, startServer, type LoadSummary, type LoadTiming } from '../lib/procs.js';
import type { BenchPki, ServerSpec } from '../lib/scenarios.js';
import { fmt, ratio, type BenchRow } from '../lib/stats.js';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CONNS = 8;

/** Figure 6; no rows (one note) when `go` is missing. */
export async function independentSection(pki: BenchPki, t: LoadTiming): Promise<BenchRow[]> {
  const S = '6 independent client (Go)';
  const bin = goClient();
  if (!bin) return [{ section: S, name: 'skipped', value: 0, unit: '', note: '`go` not found (Debian golang-go)' }];
  const caFile = fileURLToPath(new URL('../out/bench-ca.pem', import.meta.url));
  writeFileSync(caFile, pki.ca.cert);
  const measure = async (spec: ServerSpec, tls: boolean, args: string[]): Promise<LoadSummary> => {
    const server = await startServer(spec, pki);
    try {
      const url = `${tls ? 'https' : 'http'}://127.0.0.1:${server.port}`;
      return await runGoLoad(bin, ['-url', url, '-ca', caFile, '-conns', String(CONNS), '-size', '100', ...args], server, t);
    } finally {
      await server.stop();
    }
  };
  const variants: Array<[string, ServerSpec, boolean, string[]]> = [
    ['plain HTTP keep-alive', { kind: 'http' }, false, ['-job', 'http-req']],
    ['HTTPS keep-alive', { kind: 'https' }, true, ['-job', 'https-req']],
    ['ATLS arch (b) requests', { kind: 'atls', mode: 'exported' }, false, ['-job', 'atls-req', '-mode', 'exported']],
    ['ATLS arch (a) requests', { kind: 'atls', mode: 'records' }, false, ['-job', 'atls-req', '-mode', 'records']],
    ['HTTPS new connection per request', { kind: 'https' }, true, ['-job', 'https-fresh']],
    ['ATLS (b) fresh session + 1 request, piggy-backed', { kind: 'atls', mode: 'exported' }, false, ['-job', 'atls-fresh', '-mode', 'exported']],
    ['ATLS (a) fresh session + 1 request, piggy-backed', { kind: 'atls', mode: 'records' }, false, ['-job', 'atls-fresh', '-mode', 'records']],
    ['ATLS (b) fresh session + 1 request, 3 round trips', { kind: 'atls', mode: 'exported' }, false, ['-job', 'atls-fresh', '-mode', 'exported', '-piggyback=false']],
  ];
  const rows: BenchRow[] = [];
  const got = new Map<string, LoadSummary>();
  for (const [name, spec, tls, args] of variants) {
    const r = await measure(spec, tls, args);
    got.set(name, r);
    rows.push({
      section: S,
      name,
      value: r.capacity,
      unit: 'ops/server-CPU-s',
      note: `wall ${fmt(r.rate)}/s; server ${fmt(r.serverUsPerOp)} µs CPU/op (main thread ${fmt(r.serverMainUsPerOp)}), busy ${(r.serverBusy * 100).toFixed(0)}%; Go client busy ${(r.loadBusy * 100).toFixed(0)}%${r.errors ? `; ${r.errors} errors: ${r.firstError ?? ''}` : ''}`,
      extra: { result: { ...r } },
    });
  }
  const cap = (n: string): number => got.get(n)!.capacity;
  const wall = (n: string): number => got.get(n)!.rate;
  const pairs: Array<[string, string, string]> = [
    ['arch (b) / HTTPS keep-alive', 'ATLS arch (b) requests', 'HTTPS keep-alive'],
    ['arch (b) / plain HTTP keep-alive', 'ATLS arch (b) requests', 'plain HTTP keep-alive'],
    ['arch (b) / arch (a)', 'ATLS arch (b) requests', 'ATLS arch (a) requests'],
    ['fresh (b) / HTTPS new connection', 'ATLS (b) fresh session + 1 request, piggy-backed', 'HTTPS new connection per request'],
    ['fresh (a) / HTTPS new connection', 'ATLS (a) fresh session + 1 request, piggy-backed', 'HTTPS new connection per request'],
  ];
  for (const [name, a, b] of pairs) {
    rows.push({ section: S, name: `ratio ${name}`, value: cap(a) / cap(b), unit: 'x', note: `per server CPU-second; wall ${ratio(wall(a), wall(b))}` });
  }
  return rows;
}
