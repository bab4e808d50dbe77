/**
 * Streaming through both sidecars, as real processes: curl -> `atls proxy`
 * -> `atls serve --upstream` -> a plain HTTP upstream, in both modes. A
 * 1 GiB download and a 256 MiB upload go through whole and unchanged
 * (SHA-256), the resident memory of each atls process stays under 200 MB
 * (sampled from /proc every 100 ms), and the first byte reaches the far end
 * before the near end has sent its last. Figures (first byte, MB/s, RSS
 * peaks) are printed for the README.
 *
 * Run: npm run build && node scripts/run-tests.mjs test/soak/stream-proxy.test.ts
 * (ATLS_SOAK_DOWNLOAD / ATLS_SOAK_UPLOAD change the sizes, in bytes).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { pkiFiles } from '../helpers/serve.js';
import { ATLS_BIN, forPattern, patternSha256, sampleRss, startAtls, startUpstream, type AtlsProcess, type Upstream } from '../helpers/soak.js';

const DOWNLOAD = Number(process.env['ATLS_SOAK_DOWNLOAD'] ?? 1024 ** 3);
const UPLOAD = Number(process.env['ATLS_SOAK_UPLOAD'] ?? 256 * 1024 ** 2);
const RSS_LIMIT = 200 * 1000 * 1000;
const MB = 1000 * 1000;

interface CurlRun {
  status: number | null;
  stderr: string;
  /** Bytes curl wrote to stdout, and their SHA-256. */
  bytes: number;
  sha256: string;
  /** From `-w`: seconds from curl's start to the first response byte; bytes/s. */
  startTransfer: number;
  speed: number;
  /** When curl was started (performance.now()). */
  startedAt: number;
  /** When this process wrote the last byte of the upload into curl (performance.now()). */
  lastWrittenAt: number | undefined;
}

/** Runs curl; with `upload`, that many pattern bytes are written into its stdin as it takes them. */
async function curl(args: string[], upload?: number): Promise<CurlRun> {
  const startedAt = performance.now();
  const child = spawn('curl', ['-s', '-S', '-o', '-', '-w', '%{stderr}\\nWRITEOUT %{time_starttransfer} %{speed_download} %{speed_upload}\\n', ...args], {
    stdio: [upload === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  const hash = createHash('sha256');
  let bytes = 0;
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    bytes += d.length;
    hash.update(d);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  let lastWrittenAt: number | undefined;
  if (upload !== undefined) {
    const stdin = child.stdin!;
    stdin.on('error', () => undefined); // curl may stop reading (a refusal); the exit status tells
    // A curl that has exited takes no more: stop writing then, instead of waiting for a drain that never comes.
    const gone = new Promise<void>((r) => stdin.once('close', r));
    await forPattern(upload, 256 * 1024, (b) => {
      if (stdin.destroyed) return;
      return stdin.write(b) ? undefined : Promise.race([new Promise<void>((r) => stdin.once('drain', r)), gone]);
    });
    lastWrittenAt = performance.now();
    stdin.end();
  }
  const status = await closed;
  const m = /WRITEOUT (\S+) (\S+) (\S+)/.exec(stderr);
  return {
    status,
    stderr,
    bytes,
    sha256: hash.digest('hex'),
    startTransfer: Number(m?.[1] ?? NaN),
    speed: Math.max(Number(m?.[2] ?? 0), Number(m?.[3] ?? 0)),
    startedAt,
    lastWrittenAt,
  };
}

describe('streaming soak: curl -> atls proxy -> atls serve --upstream -> upstream', () => {
  let upstream: Upstream;
  const daemons: AtlsProcess[] = [];

  before(() => {
    assert.equal(spawnSync('curl', ['--version']).status, 0, 'curl is needed (Debian package curl)');
    assert.ok(existsSync(new URL('../../dist/index.js', import.meta.url)), 'run npm run build first: the soak runs bin/atls.js on dist/');
    assert.ok(existsSync(ATLS_BIN));
  });
  before(async () => {
    upstream = await startUpstream();
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await upstream.close();
  });

  for (const mode of ['exported', 'records'] as const) {
    it(`${mode}: ${DOWNLOAD / 1024 ** 2} MiB down and ${UPLOAD / 1024 ** 2} MiB up, memory bounded, first byte early`, async (t) => {
      const f = await pkiFiles();
      const maxBody = 2 * Math.max(DOWNLOAD, UPLOAD);
      const serve = await startAtls(['serve', '--listen', '127.0.0.1:0', '--cert', f.cert, '--key', f.key, '--upstream', upstream.origin, '--mode', mode, '--max-body', String(maxBody), '--request-timeout', '3600']);
      daemons.push(serve);
      const service = new URL(serve.url).origin.replace('127.0.0.1', 'localhost');
      const proxy = await startAtls(['proxy', '--listen', '127.0.0.1:0', '--to', service, '--ca', f.ca, '--mode', mode, '--max-body', String(maxBody), '--request-timeout', '3600']);
      daemons.push(proxy);
      const local = new URL(proxy.url).origin;
      // Sampled per direction; stopped however the test ends (a running sampler would keep this process alive).
      const pids = { serve: serve.child.pid!, proxy: proxy.child.pid! };
      let rss = sampleRss(pids);
      t.after(() => void rss.stop());

      const down = await curl([`${local}/download?bytes=${DOWNLOAD}`]);
      assert.equal(down.status, 0, `curl: ${down.stderr}\nserve: ${serve.stderr()}\nproxy: ${proxy.stderr()}`);
      assert.equal(down.bytes, DOWNLOAD);
      assert.equal(down.sha256, await patternSha256(DOWNLOAD), 'the download arrived changed');
      const firstByteAt = down.startedAt + down.startTransfer * 1000;
      assert.ok(firstByteAt < upstream.download.lastByteAt!, `first byte at ${firstByteAt.toFixed(0)} ms, upstream's last sent at ${upstream.download.lastByteAt!.toFixed(0)} ms`);

      const downPeaks = rss.stop();
      rss = sampleRss(pids);
      const up = await curl(['-T', '-', `${local}/upload`], UPLOAD);
      assert.equal(up.status, 0, `curl: ${up.stderr}\nserve: ${serve.stderr()}\nproxy: ${proxy.stderr()}`);
      const want = await patternSha256(UPLOAD);
      assert.equal(upstream.upload.bytes, UPLOAD);
      assert.equal(upstream.upload.sha256, want, 'the upload arrived changed');
      assert.ok(
        upstream.upload.firstByteAt! < up.lastWrittenAt!,
        `upstream's first byte at ${upstream.upload.firstByteAt!.toFixed(0)} ms, curl given its last at ${up.lastWrittenAt!.toFixed(0)} ms`,
      );

      const upPeaks = rss.stop();
      const mb = (n: number | undefined): string => ((n ?? 0) / MB).toFixed(0);
      const upFirst = upstream.upload.firstByteAt! - up.startedAt;
      process.stdout.write(
        `# ${mode}: download ${(DOWNLOAD / MB).toFixed(0)} MB at ${(down.speed / MB).toFixed(1)} MB/s, first byte after ${(down.startTransfer * 1000).toFixed(0)} ms ` +
          `(upstream sent its last after ${(upstream.download.lastByteAt! - down.startedAt).toFixed(0)} ms); ` +
          `upload ${(UPLOAD / MB).toFixed(0)} MB at ${(up.speed / MB).toFixed(1)} MB/s, upstream's first byte after ${upFirst.toFixed(0)} ms ` +
          `(curl given its last after ${(up.lastWrittenAt! - up.startedAt).toFixed(0)} ms); ` +
          `RSS peaks down/up: serve ${mb(downPeaks.serve)}/${mb(upPeaks.serve)} MB, proxy ${mb(downPeaks.proxy)}/${mb(upPeaks.proxy)} MB\n`,
      );
      for (const [name, peaks] of [['download', downPeaks], ['upload', upPeaks]] as const) {
        assert.ok(peaks.serve! < RSS_LIMIT, `atls serve peaked at ${mb(peaks.serve)} MB during the ${name}`);
        assert.ok(peaks.proxy! < RSS_LIMIT, `atls proxy peaked at ${mb(peaks.proxy)} MB during the ${name}`);
      }
      await Promise.all([serve.stop(), proxy.stop()]);
    });
  }
});
