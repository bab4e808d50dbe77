/**
 * What the benchmark processes agree on: the certificates (sent to every
 * child), the server kinds, the load jobs, and the echo applications.
 *
 * @example
 * ```ts
 * const pki = await benchPki();
 * const server = await startServer({ kind: 'http' }, pki);
 * ```
 * @module
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Mode } from '../../src/session/types.js';
import { encodeRequest } from '../../src/bhttp/index.js';

/** A PEM certificate (or chain) and its key. */
export interface Pair {
  cert: string;
  key: string;
}

/** The certificates every benchmark uses (ECDSA P-256 unless named RSA). */
export interface BenchPki {
  ca: Pair;
  server: Pair;
  serverRsa: Pair;
  client: Pair;
  /** 32-byte external PSK (hex) and its identity. */
  psk: { identity: string; keyHex: string };
}

/** A server to start in the server process. */
export type ServerSpec =
  /** `app`: the inner echo as a raw app (`echoRawApp`, what `atls serve --echo` runs; default) or the Web echo. */
  /** `front: false`: every request through `node:http` (createAtlsServer's `front` option), for comparison with the lean front. */
  /** `tls12`: the server offers TLS 1.2 only (the default TLS 1.2 suites: ECDHE + AEAD). */
  | { kind: 'atls'; mode: Mode; mutual?: boolean; engine?: 'openssl' | 'node'; app?: 'raw' | 'web'; front?: false; tls12?: true }
  | { kind: 'https'; mutual?: boolean }
  | { kind: 'http' }
  /** An Oblivious HTTP gateway (RFC 9458, `bench/lib/ohttp.ts`) on `node:http` serving the raw echo app. */
  | { kind: 'ohttp' }
  /** `node:http` + `toNodeListener` + the Web echo app: the same application as ATLS with `app: 'web'`, without ATLS. */
  | { kind: 'http-web' };

/** A load job run by each load process. */
export interface LoadJob {
  kind: 'hs-atls' | 'hs-https' | 'req-atls' | 'req-http' | 'req-https' | 'req-ohttp';
  port: number;
  /** Concurrent loops (connections / sessions) in this process. */
  concurrency: number;
  /** Inner request body size (requests) or piggy-backed request size (handshakes). */
  size: number;
  mode?: Mode;
  mutual?: boolean;
  resumed?: boolean;
  engine?: 'openssl' | 'node';
}

/** What a load process reports for the measured window. */
export interface LoadResult {
  ops: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  p50Us: number;
  p99Us: number;
  /** CPU the load process used during the window (user + system, µs). */
  cpuUs: number;
  /** Handshakes: how many of the measured ones were resumed. */
  resumed?: number;
}

/** Messages from the orchestrator to a child. */
export type ToChild =
  | { type: 'start-server'; spec: ServerSpec; pki: BenchPki }
  | { type: 'cpu' }
  | { type: 'run'; job: LoadJob; pki: BenchPki }
  | { type: 'mark' }
  | { type: 'stop' };

/** Messages from a child to the orchestrator. */
export type FromChild =
  | { type: 'ready'; port?: number }
  | { type: 'cpu'; cpuUs: number; /** The main (JS) thread alone: no GC helper or compiler threads. */ mainUs: number; rss: number }
  | { type: 'result'; result: LoadResult }
  | { type: 'error'; message: string };

/** The inner request every request benchmark sends: POST /echo with `size` bytes (Binary HTTP, known length). */
export function innerRequest(size: number): Uint8Array {
  return encodeRequest({
    method: 'POST',
    scheme: 'https',
    authority: 'localhost',
    path: '/echo',
    headers: [['content-type', 'application/octet-stream']],
    content: new Uint8Array(size).fill(0x61),
  });
}

/** The Web echo app: answers with the request body. */
export async function webEcho(request: Request): Promise<Response> {
  const body = await request.arrayBuffer();
  return new Response(body, { headers: { 'content-type': 'application/octet-stream' } });
}

/** The `node:http` echo listener, the plain baseline. */
export function nodeEcho(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const b = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': b.length });
    res.end(b);
  });
}
