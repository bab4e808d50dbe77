/**
 * `atls serve` as real processes for the cluster suite (test/cluster/): start
 * one with flags, wait for its start-up line, read its port, kill it with the
 * signal a test wants (SIGKILL: a crash), and a fetch-like function that
 * posts raw ATLS bodies to it.
 *
 * @example
 * ```ts
 * const a = await startServe(['--echo', '--store', redis.url]);
 * t.after(() => a.stop());
 * const res = await a.post(flight, { cookie });
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { COOKIE_NAME, MEDIA_TYPE_FLIGHT } from '../../src/http/constants.js';
import type { AtlsHandler } from '../../src/http/server.js';
import { testPki } from './pki.js';
import { atlsArgv } from './cli.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** A running `atls serve`. */
export interface ServeProcess {
  child: ChildProcess;
  port: number;
  /** The start-up line. */
  line: string;
  /** Everything it wrote to stderr so far. */
  stderr(): string;
  /** `http://127.0.0.1:<port>/.well-known/atls` */
  endpoint: string;
  /** POSTs an ATLS body (flight by default) with an optional session cookie. */
  post(body: Uint8Array, opts?: { type?: string; cookie?: string }): Promise<Response>;
  /** A Web handler over the network, for helpers written against handlers (manualHandshake). */
  asHandler(): AtlsHandler;
  /** Sends `signal` (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Files of the test PKI on disk, written once per process. */
let files: Promise<{ dir: string; cert: string; key: string; ca: string }> | undefined;
export function pkiFiles(): Promise<{ dir: string; cert: string; key: string; ca: string }> {
  files ??= (async () => {
    const pki = await testPki();
    const dir = mkdtempSync(join(tmpdir(), 'atls-cluster-'));
    const f = { dir, cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), ca: join(dir, 'ca.pem') };
    writeFileSync(f.cert, pki.server.cert);
    writeFileSync(f.key, pki.server.key);
    writeFileSync(f.ca, pki.ca.cert);
    return f;
  })();
  return files;
}

/** Starts `atls serve --listen 127.0.0.1:<port or 0> --cert --key <extra flags>` and waits for its line. */
export async function startServe(extra: string[], options: { port?: number } = {}): Promise<ServeProcess> {
  const f = await pkiFiles();
  const args = ['serve', '--listen', `127.0.0.1:${options.port ?? 0}`, '--cert', f.cert, '--key', f.key, ...extra];
  const child = spawn(process.execPath, atlsArgv(args), { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    if (err.length < 1 << 20) err += d.toString();
  });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`atls serve printed no start-up line in 60 s: ${err}`)), 60_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`atls serve exited ${code}: ${err}`));
    });
  });
  const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(line);
  if (!m) throw new Error(`no port in ${line}`);
  const port = Number(m[1]);
  const endpoint = `http://127.0.0.1:${port}/.well-known/atls`;
  const post = (body: Uint8Array, opts: { type?: string; cookie?: string } = {}): Promise<Response> =>
    fetch(endpoint, {
      method: 'POST',
      headers: {
        'content-type': opts.type ?? MEDIA_TYPE_FLIGHT,
        ...(opts.cookie ? { cookie: `${COOKIE_NAME}=${opts.cookie}` } : {}),
      },
      body,
    });
  return {
    child,
    port,
    line,
    endpoint,
    stderr: () => err,
    post,
    asHandler: () =>
      (async (req: Request) =>
        fetch(endpoint, { method: req.method, headers: req.headers, body: new Uint8Array(await req.arrayBuffer()) })) as unknown as AtlsHandler,
    stop: (signal: NodeJS.Signals = 'SIGTERM') =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill(signal);
      }),
  };
}
