/**
 * Shared pieces of the middlebox suite (test/middlebox/): an ATLS service on
 * loopback (http or https, both modes) that records every outer status it
 * answered, an inner app whose secrets must never show on the wire, temp
 * directories for tool configurations, and a tool launcher that waits until
 * the tool is ready and kills it afterwards.
 *
 * @example
 * ```ts
 * const svc = await startService({ https: true, mode: 'exported' });
 * t.after(() => svc.close());
 * const res = await client.fetch(svc.url('/meter'), { method: 'POST', body: SECRET_REQUEST });
 * assert.ok(svc.statuses.every((s) => s < 500));
 * ```
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, chmod, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAtlsHandler, toNodeListener } from '../../src/http/index.js';
import type { AtlsHandler, AtlsServerEvent } from '../../src/http/index.js';
import type { TlsServerConfig } from '../../src/engines/types.js';
import type { Mode } from '../../src/session/types.js';
import { testPki } from './pki.js';
import { ToolProcess } from './tools.js';

/** Inner request body: must never appear in anything a middlebox sees. */
export const SECRET_REQUEST = 'meter-reading: 4711 kWh (inner secret)';
/** Inner response body prefix: must never appear in anything a middlebox sees. */
export const SECRET_RESPONSE = 'account balance: 42.17 EUR (inner secret)';
/** An inner request header that must stay inside the protected message. */
export const SECRET_HEADER = ['x-inner-secret', 'inner-header-value-31337'] as const;

/** A running ATLS service. */
export interface Service {
  /** The instance's name, echoed by the inner app (`backend=<name>`). */
  name: string;
  port: number;
  /** `http(s)://<host>:<port><path>` (host default 127.0.0.1). */
  url(path?: string, host?: string): string;
  /** Outer HTTP status of every ATLS endpoint response, in order. */
  statuses: number[];
  /** Events of the ATLS handler. */
  events: AtlsServerEvent[];
  /** Outer request headers of every ATLS endpoint request, in order (what the proxies added). */
  requestHeaders: Headers[];
  handler: AtlsHandler;
  close(): Promise<void>;
}

/** Options of {@link startService}. */
export interface ServiceOptions {
  name?: string;
  /** Serve over https with the test PKI's server certificate (default false). */
  https?: boolean;
  mode?: Mode;
  routingTag?: string;
  /** Merged into the ATLS TLS configuration (certificate: the test PKI's `server`). */
  tls?: Partial<TlsServerConfig>;
  /** Answers requests to any other path (the same service over plain HTTP(S), for the policy layer). */
  plain?: (request: Request) => Response | Promise<Response>;
}

/**
 * Starts an ATLS service on 127.0.0.1. Its inner app answers
 * `SECRET_RESPONSE backend=<name> resumed=<bool> echo=<request body>`.
 */
export async function startService(options: ServiceOptions = {}): Promise<Service> {
  const pki = await testPki();
  const name = options.name ?? 'svc';
  const events: AtlsServerEvent[] = [];
  const statuses: number[] = [];
  const requestHeaders: Headers[] = [];
  const handler = createAtlsHandler({
    tls: { cert: pki.server.cert, key: pki.server.key, ...options.tls },
    ...(options.mode ? { mode: options.mode } : {}),
    ...(options.routingTag ? { routingTag: options.routingTag } : {}),
    onEvent: (e) => events.push(e),
    app: async (request, peer) => {
      const body = await request.text();
      return new Response(`${SECRET_RESPONSE} backend=${name} resumed=${peer.resumed} echo=${body}`, {
        headers: { 'content-type': 'text/plain' },
      });
    },
  });
  const listener = toNodeListener(async (request) => {
    if (options.plain && !handler.matches(new URL(request.url).pathname)) return options.plain(request);
    requestHeaders.push(new Headers(request.headers));
    const res = await handler(request);
    statuses.push(res.status);
    return res;
  });
  const server: http.Server = options.https
    ? https.createServer({ cert: pki.server.cert, key: pki.server.key }, listener)
    : http.createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const scheme = options.https ? 'https' : 'http';
  return {
    name,
    port,
    url: (path = '/', host = '127.0.0.1') => `${scheme}://${host}:${port}${path}`,
    statuses,
    events,
    requestHeaders,
    handler,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await handler.close();
    },
  };
}

/** A fresh directory under the OS temp dir, readable by tools that drop privileges. */
export async function tempDir(prefix: string): Promise<{ path: string; remove(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), `atls-${prefix}-`));
  // squid started as root switches to an unprivileged user and must still write its logs here.
  await chmod(path, 0o777);
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/**
 * Spawns a tool and waits for `ready` in its output (or, with a port, until
 * the port accepts connections). Kills it if it does not get ready in time.
 */
export async function startTool(
  command: string,
  args: readonly string[],
  ready: RegExp | { port: number },
  timeoutMs = 15_000,
  options: { cwd?: string } = {},
): Promise<ToolProcess> {
  const p = ToolProcess.spawn(command, args, options);
  try {
    if (ready instanceof RegExp) await p.waitFor(ready, timeoutMs);
    else await waitForPort(ready.port, timeoutMs, p);
  } catch (e) {
    await p.kill();
    throw e;
  }
  return p;
}

/** Resolves once 127.0.0.1:`port` accepts a TCP connection. */
export async function waitForPort(port: number, timeoutMs: number, proc?: ToolProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc?.hasExited) throw new Error(`${proc.command} exited before listening on ${port}:\n${proc.tail()}`);
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms${proc ? `:\n${proc.tail()}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** True when `needle` (UTF-8) occurs in `haystack`. */
export function containsText(haystack: Uint8Array | string, needle: string): boolean {
  const hay = typeof haystack === 'string' ? Buffer.from(haystack) : Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength);
  return hay.includes(Buffer.from(needle));
}

/** One intercepted exchange as dump.py wrote it. */
export interface Dumped {
  method: string;
  url: string;
  requestType: string;
  requestHeaders: Record<string, string>;
  requestBody: Uint8Array;
  status: number;
  responseType: string;
  responseHeaders: Record<string, string>;
  responseBody: Uint8Array;
}

/** One line per response, JSON; bodies in base64 (they are binary). */
export const DUMP_ADDON = (out: string): string => `
import base64, json
from mitmproxy import http

OUT = ${JSON.stringify(out)}

class Dump:
    def response(self, flow: http.HTTPFlow) -> None:
        req, res = flow.request, flow.response
        rec = {
            "method": req.method,
            "url": req.pretty_url,
            "requestType": req.headers.get("content-type", ""),
            "requestHeaders": dict(req.headers.items()),
            "requestBody": base64.b64encode(req.raw_content or b"").decode(),
            "status": res.status_code,
            "responseType": res.headers.get("content-type", ""),
            "responseHeaders": dict(res.headers.items()),
            "responseBody": base64.b64encode(res.raw_content or b"").decode(),
        }
        with open(OUT, "a") as f:
            f.write(json.dumps(rec) + "\\n")

addons = [Dump()]
`;

export async function readDump(path: string): Promise<Dumped[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const r = JSON.parse(l) as Record<string, unknown>;
      return {
        ...(r as unknown as Dumped),
        requestBody: Buffer.from(String(r.requestBody), 'base64'),
        responseBody: Buffer.from(String(r.responseBody), 'base64'),
      };
    });
}
