/**
 * Figures 1 and 2 over real sockets: handshakes per second (ATLS HTTP
 * endpoint against `node:https` with a fresh TLS connection per request) and
 * requests per second with latency percentiles over established sessions
 * (architecture b, architecture a, plain HTTP and HTTPS keep-alive).
 * @module
 */
import { startServer, runLoad, type LoadSummary, type LoadTiming } from '../lib/procs.js';
import type { BenchPki, LoadJob, ServerSpec } from '../lib/scenarios.js';
import { fmt, ratio, type BenchRow } from '../lib/stats.js';
import { label, type CryptoCosts } from './crypto.js';

/** Knobs of the load sections. */
export interface LoadOptions extends LoadTiming {
  /** Concurrent handshake loops. */
  hsConcurrency: number;
  /** Concurrent connections / sessions for requests. */
  reqConcurrency: number;
  sizes: readonly number[];
}

async function measure(spec: ServerSpec, job: Omit<LoadJob, 'port'>, pki: BenchPki, t: LoadTiming): Promise<LoadSummary> {
  const server = await startServer(spec, pki);
  try {
    return await runLoad({ ...job, port: server.port }, pki, server, t);
  } finally {
    await server.stop();
  }
}

function note(r: LoadSummary, extra = ''): string {
  const parts = [
    `server ${fmt(r.serverUsPerOp)} µs CPU/op (main thread ${fmt(r.serverMainUsPerOp)}), busy ${(r.serverBusy * 100).toFixed(0)}%`,
    `load busy ${(r.loadBusy * 100).toFixed(0)}%`,
  ];
  if (r.errors) parts.push(`${r.errors} errors: ${r.firstError ?? ''}`);
  if (extra) parts.push(extra);
  return parts.join('; ');
}

function summary(r: LoadSummary): Record<string, unknown> {
  return { ...r };
}

/** Figure 1. */
export async function handshakeSection(pki: BenchPki, o: LoadOptions, crypto: CryptoCosts): Promise<BenchRow[]> {
  const S = '1 handshakes';
  const rows: BenchRow[] = [];
  for (const mutual of [false, true]) {
    for (const resumed of [false, true]) {
      const what = `${mutual ? 'mutual' : 'server-only'}, ${resumed ? 'resumed' : 'full'}`;
      const base = { concurrency: o.hsConcurrency, size: 100, mutual, resumed };
      const atls = await measure({ kind: 'atls', mode: 'exported', mutual }, { ...base, kind: 'hs-atls', mode: 'exported' }, pki, o);
      const https = await measure({ kind: 'https', mutual }, { ...base, kind: 'hs-https' }, pki, o);
      const cryptoUs = resumed ? crypto.handshake.resumed : mutual ? crypto.handshake.mutual : crypto.handshake.serverOnly;
      const res = (r: LoadSummary): string => (resumed ? `, ${r.resumed ?? 0}/${r.ops} resumed` : '');
      rows.push({
        section: S,
        name: `ATLS endpoint (b), ${what}`,
        value: atls.capacity,
        unit: 'hs/server-CPU-s',
        note: `wall ${fmt(atls.rate)}/s, p50 ${fmt(atls.p50Us / 1000)} ms${res(atls)}; ${note(atls)}; ${((atls.capacity * cryptoUs) / 1e4).toFixed(1)}% of crypto-only`,
        extra: { atls: summary(atls) },
      });
      rows.push({
        section: S,
        name: `node:https new conn/request, ${what}`,
        value: https.capacity,
        unit: 'hs/server-CPU-s',
        note: `wall ${fmt(https.rate)}/s, p50 ${fmt(https.p50Us / 1000)} ms${res(https)}; ${note(https)}`,
        extra: { https: summary(https) },
      });
      rows.push({
        section: S,
        name: `ratio ATLS / HTTPS, ${what}`,
        value: atls.capacity / https.capacity,
        unit: 'x',
        note: `per server CPU-second (target >= 1.0); wall-rate ratio ${ratio(atls.rate, https.rate)}`,
      });
    }
  }
  return rows;
}

/** Figure 2. */
export async function requestSection(pki: BenchPki, o: LoadOptions, crypto: CryptoCosts): Promise<BenchRow[]> {
  const S = '2 requests';
  const rows: BenchRow[] = [];
  for (const size of o.sizes) {
    const base = { concurrency: o.reqConcurrency, size };
    const variants: Array<[string, ServerSpec, Omit<LoadJob, 'port'>]> = [
      ['plain HTTP keep-alive (node:http)', { kind: 'http' }, { ...base, kind: 'req-http' }],
      ['HTTPS keep-alive (node:https)', { kind: 'https' }, { ...base, kind: 'req-https' }],
      ['ATLS arch (b), exported keys', { kind: 'atls', mode: 'exported' }, { ...base, kind: 'req-atls', mode: 'exported' }],
      ['ATLS arch (b) over node:http (front off)', { kind: 'atls', mode: 'exported', front: false }, { ...base, kind: 'req-atls', mode: 'exported' }],
      ['ATLS arch (a), TLS records', { kind: 'atls', mode: 'records' }, { ...base, kind: 'req-atls', mode: 'records' }],
      ['same application: node:http + toNodeListener + Web echo', { kind: 'http-web' }, { ...base, kind: 'req-http' }],
      ['ATLS arch (b), Web echo app', { kind: 'atls', mode: 'exported', app: 'web' }, { ...base, kind: 'req-atls', mode: 'exported' }],
      ['Oblivious HTTP gateway (RFC 9458, @hpke/core)', { kind: 'ohttp' }, { ...base, kind: 'req-ohttp' }],
    ];
    const got: LoadSummary[] = [];
    for (const [name, spec, job] of variants) {
      const r = await measure(spec, job, pki, o);
      got.push(r);
      rows.push({
        section: S,
        name: `${name}, ${label(size)}`,
        value: r.capacity,
        unit: 'req/server-CPU-s',
        note: `wall ${fmt(r.rate)}/s, p50 ${fmt(r.p50Us / 1000)} ms, p99 ${fmt(r.p99Us / 1000)} ms; ${note(r)}`,
        extra: { result: summary(r), size },
      });
    }
    const [plain, https, b, bNode, a, sameApp, bWeb, ohttp] = got;
    const aeadUs = crypto.aead[size];
    rows.push({
      section: S,
      name: `ratio arch (b) / plain HTTP, ${label(size)}`,
      value: b!.capacity / plain!.capacity,
      unit: 'x',
      note: `per server CPU-second (target >= 0.85); wall ${ratio(b!.rate, plain!.rate)}; arch (a) ${ratio(a!.capacity, plain!.capacity)}${
        aeadUs ? `; arch (b) = ${((b!.capacity * aeadUs) / 1e4).toFixed(2)}% of the AEAD-only limit` : ''
      }`,
    });
    rows.push({
      section: S,
      name: `ratio arch (b) / HTTPS keep-alive, ${label(size)}`,
      value: b!.capacity / https!.capacity,
      unit: 'x',
      note: `per server CPU-second (target >= 1.0); wall ${ratio(b!.rate, https!.rate)}; arch (b) / arch (a) ${ratio(b!.capacity, a!.capacity)} (target >= 1.0)`,
    });
    rows.push({
      section: S,
      name: `ratio arch (b) front / over node:http, ${label(size)}`,
      value: b!.capacity / bNode!.capacity,
      unit: 'x',
      note: `per server CPU-second: the lean HTTP/1.1 front against node:http reading every request (${fmt(b!.serverUsPerOp)} against ${fmt(bNode!.serverUsPerOp)} µs per request); over node:http / HTTPS ${ratio(bNode!.capacity, https!.capacity)}`,
    });
    rows.push({
      section: S,
      name: `ratio arch (b) / Oblivious HTTP, ${label(size)}`,
      value: b!.capacity / ohttp!.capacity,
      unit: 'x',
      note: `per server CPU-second: ${fmt(b!.serverUsPerOp)} against ${fmt(ohttp!.serverUsPerOp)} µs per request (OHTTP: one HPKE decapsulation per request, no session); wall ${ratio(b!.rate, ohttp!.rate)}`,
      extra: { bUs: b!.serverUsPerOp, ohttpUs: ohttp!.serverUsPerOp, size },
    });
    rows.push({
      section: S,
      name: `ratio arch (b) Web app / same application, ${label(size)}`,
      value: bWeb!.capacity / sameApp!.capacity,
      unit: 'x',
      note: `the same Web echo app behind ATLS and behind plain node:http + toNodeListener; wall ${ratio(bWeb!.rate, sameApp!.rate)}`,
    });
  }
  return rows;
}

/**
 * The number of requests N from which one ATLS session (a full handshake
 * carrying the first request, then N - 1 protected requests) costs the server
 * less CPU than N Oblivious HTTP requests: the smallest N with
 * hs + (N - 1) b < N o, i.e. N > (hs - b) / (o - b). Needs figure 1's full
 * server-only handshake row and figure 2's 100 B OHTTP row of the same run.
 */
export function breakEvenRows(rows: readonly BenchRow[]): BenchRow[] {
  const hs = rows.find((r) => r.name === 'ATLS endpoint (b), server-only, full')?.extra?.atls as LoadSummary | undefined;
  const cmp = rows.find((r) => r.name === 'ratio arch (b) / Oblivious HTTP, 100 B')?.extra as { bUs: number; ohttpUs: number } | undefined;
  if (!hs || !cmp) return [];
  const { bUs, ohttpUs } = cmp;
  const n = ohttpUs > bUs ? Math.max(1, Math.floor((hs.serverUsPerOp - bUs) / (ohttpUs - bUs)) + 1) : Infinity;
  return [
    {
      section: '2 requests',
      name: 'break-even N: ATLS session (handshake + N requests) < N OHTTP requests, 100 B',
      value: n,
      unit: 'requests',
      note: `server CPU: handshake with the first request ${fmt(hs.serverUsPerOp)} µs, arch (b) ${fmt(bUs)} µs, OHTTP ${fmt(ohttpUs)} µs per request`,
    },
  ];
}
