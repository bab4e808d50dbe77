/**
 * Streaming soak material (test/soak/): `atls` as built processes (bin/atls.js
 * on dist/, as users run it), a sampler of their resident memory from
 * /proc/PID/status, and an upstream HTTP server that sends a download of any
 * size at full speed (after an optional slow start) and swallows uploads, timestamping first and last bytes.
 *
 * @example
 * ```ts
 * const up = await startUpstream();
 * const serve = await startAtls(['serve', '--upstream', up.origin, ...]);
 * const rss = sampleRss({ serve: serve.child.pid! });
 * ... await rss.stop(); // { serve: peak bytes }
 * ```
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

/** The built command line (npm run build / npm ci make dist/). */
export const ATLS_BIN = join(import.meta.dirname, '..', '..', 'bin', 'atls.js');

/** A running `atls` daemon. */
export interface AtlsProcess {
  child: ChildProcess;
  /** Its start-up line. */
  line: string;
  /** The first http:// URL of the start-up line. */
  url: string;
  stderr(): string;
  stop(): Promise<void>;
}

/** Starts `node bin/atls.js ARGS` and resolves with its first stdout line. */
export function startAtls(args: string[]): Promise<AtlsProcess> {
  const child = spawn(process.execPath, [ATLS_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const line = out.slice(0, nl);
      const m = /(http:\/\/\S+)/.exec(line);
      resolve({
        child,
        line,
        url: m ? m[1]! : '',
        stderr: () => err,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once('exit', () => done());
            child.kill('SIGTERM');
          }),
      });
    });
    child.on('exit', (code) => reject(new Error(`atls ${args[0]} exited ${code}: ${err}`)));
  });
}

/** Resident set size of a process, bytes (VmRSS of /proc/PID/status); undefined once it is gone. */
export function rssOf(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples the RSS of named processes every `everyMs`; `stop()` gives each one's peak in bytes. */
export function sampleRss(pids: Record<string, number>, everyMs = 100): { stop(): Record<string, number> } {
  const peaks: Record<string, number> = Object.fromEntries(Object.keys(pids).map((k) => [k, 0]));
  const sample = (): void => {
    for (const [name, pid] of Object.entries(pids)) peaks[name] = Math.max(peaks[name]!, rssOf(pid) ?? 0);
  };
  sample();
  const timer = setInterval(sample, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      sample();
      return { ...peaks };
    },
  };
}

/** What the upstream saw of one transfer (times from `performance.now()` of this process). */
export interface TransferStats {
  bytes: number;
  firstByteAt: number | undefined;
  lastByteAt: number | undefined;
  sha256: string | undefined;
}

/** The upstream: GET /download?bytes=N[&pauseMs=T] sends N bytes (pausing T ms after the first 64 KiB); PUT or POST /upload counts and hashes what comes. */
export interface Upstream {
  origin: string;
  /** The latest download's sending and the latest upload's receiving. */
  download: TransferStats;
  upload: TransferStats;
  close(): Promise<void>;
}

/** The byte at offset i of every download: a pattern a reordering or a cut cannot keep. */
export function patternPiece(offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) {
    const j = (offset + i) & 0xfffff; // a 1 MiB period, so the upstream can send one buffer again and again
    b[i] = (j * 7 + (j >>> 12)) & 0xff;
  }
  return b;
}

/** The pattern's period: 1 MiB. */
export const PATTERN_UNIT = patternPiece(0, 1 << 20);

/** Calls `write` with the first `n` bytes of the pattern, in pieces of at most `piece` bytes. */
export async function forPattern(n: number, piece: number, write: (b: Uint8Array) => void | Promise<void>): Promise<void> {
  for (let at = 0; at < n; ) {
    const off = at % PATTERN_UNIT.length;
    const len = Math.min(piece, n - at, PATTERN_UNIT.length - off);
    await write(PATTERN_UNIT.subarray(off, off + len));
    at += len;
  }
}

/** SHA-256 (hex) of the first `n` bytes of the pattern. */
export async function patternSha256(n: number): Promise<string> {
  const h = createHash('sha256');
  await forPattern(n, 1 << 20, (b) => void h.update(b));
  return h.digest('hex');
}

/** Starts the upstream on 127.0.0.1 with a free port. */
export async function startUpstream(): Promise<Upstream> {
  const fresh = (): TransferStats => ({ bytes: 0, firstByteAt: undefined, lastByteAt: undefined, sha256: undefined });
  const up: Omit<Upstream, 'origin' | 'close'> = { download: fresh(), upload: fresh() };
  const unit = PATTERN_UNIT;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    if (req.method === 'GET' && url.pathname === '/download') {
      const total = Number(url.searchParams.get('bytes') ?? 0);
      // `pauseMs`: a slow start, one piece and then a pause (a first byte that must not wait for the rest).
      let pause = Number(url.searchParams.get('pauseMs') ?? 0);
      const stats = (up.download = fresh());
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(total) });
      const piece = 64 * 1024;
      const write = (): void => {
        while (stats.bytes < total) {
          const at = stats.bytes % unit.length;
          const n = Math.min(piece, total - stats.bytes, unit.length - at);
          stats.firstByteAt ??= performance.now();
          stats.bytes += n;
          const more = res.write(unit.subarray(at, at + n));
          if (pause > 0) {
            setTimeout(write, pause);
            pause = 0;
            return;
          }
          if (!more) return void res.once('drain', write);
        }
        stats.lastByteAt = performance.now();
        res.end();
      };
      write();
      return;
    }
    if ((req.method === 'PUT' || req.method === 'POST') && url.pathname === '/upload') {
      const stats = (up.upload = fresh());
      const hash = createHash('sha256');
      req.on('data', (d: Buffer) => {
        stats.firstByteAt ??= performance.now();
        stats.bytes += d.length;
        hash.update(d);
      });
      req.on('end', () => {
        stats.lastByteAt = performance.now();
        stats.sha256 = hash.digest('hex');
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`${stats.bytes} ${stats.sha256}\n`);
      });
      return;
    }
    res.writeHead(404).end();
  });
  server.requestTimeout = 0;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return Object.assign(up, {
    origin: `http://127.0.0.1:${port}`,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
}
