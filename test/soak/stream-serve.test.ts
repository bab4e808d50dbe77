/**
 * Streaming through `atls serve --upstream` with bounded memory, both modes
 * (real processes, real sockets): a 1 GiB download from an upstream that
 * starts slowly, and a 256 MiB upload, each through atlsFetch. The resident
 * memory of the `atls serve` process is sampled from /proc and must stay
 * under 200 MB; the first byte of the download must reach the client before
 * the upstream has sent its last; both bodies arrive intact (SHA-256 of the
 * upstream's pattern). Figures are printed: RSS peak, first-byte time,
 * throughput.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { createAtlsClient } from '../../src/http/client.js';
import { forPattern, patternSha256, sampleRss, startAtls, startUpstream, type Upstream } from '../helpers/soak.js';

const MiB = 1024 * 1024;
const DOWN = 1024 * MiB;
const UP = 256 * MiB;
const RSS_LIMIT = 200 * 1000 * 1000;

describe('atls serve --upstream streams with bounded memory', () => {
  let pki: TestPki;
  let dir: string;
  let files: Awaited<ReturnType<typeof writeTestPki>>;
  let upstream: Upstream;
  let downSha: string;
  let upSha: string;
  before(async () => {
    pki = await testPki();
    dir = mkdtempSync(join(tmpdir(), 'atls-stream-serve-'));
    files = await writeTestPki(dir);
    upstream = await startUpstream();
    [downSha, upSha] = [await patternSha256(DOWN), await patternSha256(UP)];
  });
  after(async () => {
    await upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const mode of ['exported', 'records'] as const) {
    it(`mode ${mode}: 1 GiB down from a slow-starting upstream, 256 MiB up; serve RSS < 200 MB`, async () => {
      const serve = await startAtls([
        'serve', '--listen', '127.0.0.1:0', '--cert', files.server.cert, '--key', files.server.key,
        '--upstream', upstream.origin, '--mode', mode, '--request-timeout', '3600', '--log-level', 'error',
      ]);
      const client = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, mode, proxy: false, maxBodyBytes: 2 * DOWN });
      const rss = sampleRss({ serve: serve.child.pid! }, 50);
      try {
        const origin = new URL(serve.url).origin;
        // A first small request establishes the session (atlsFetch reads an answer that rides on the final flight whole).
        assert.equal((await (await client.fetch(`${origin}/download?bytes=10`)).arrayBuffer()).byteLength, 10);
        // Download.
        const t0 = performance.now();
        const res = await client.fetch(`${origin}/download?bytes=${DOWN}&pauseMs=1500`);
        assert.equal(res.status, 200);
        const h = createHash('sha256');
        let got = 0;
        let firstAt: number | undefined;
        for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
          firstAt ??= performance.now();
          got += piece.length;
          h.update(piece);
        }
        const t1 = performance.now();
        assert.equal(got, DOWN);
        assert.equal(h.digest('hex'), downSha, 'the download arrived intact, in order');
        assert.ok(firstAt !== undefined && upstream.download.lastByteAt !== undefined);
        assert.ok(firstAt < upstream.download.lastByteAt!, 'the first byte reached the client before the upstream sent its last');
        // Upload.
        const t2 = performance.now();
        let at = 0;
        const body = new ReadableStream<Uint8Array>({
          async pull(c) {
            if (at >= UP) return c.close();
            await forPattern(Math.min(MiB, UP - at), 64 * 1024, (b) => c.enqueue(b));
            at += MiB;
          },
        });
        // forPattern starts at offset 0 each call: the pattern's period is 1 MiB, so whole-MiB pieces continue it.
        const up = await client.fetch(`${origin}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit);
        const answer = await up.text();
        const t3 = performance.now();
        assert.equal(up.status, 200, answer);
        assert.equal(answer.trim(), `${UP} ${upSha}`, 'the upload arrived intact');
        const peak = rss.stop().serve!;
        const figures = {
          mode,
          serveRssPeakMB: +(peak / 1e6).toFixed(1),
          firstByteMs: +(firstAt - t0).toFixed(0),
          upstreamLastByteMs: +(upstream.download.lastByteAt! - t0).toFixed(0),
          downloadMBps: +(DOWN / 1e6 / ((t1 - t0) / 1000)).toFixed(1),
          uploadMBps: +(UP / 1e6 / ((t3 - t2) / 1000)).toFixed(1),
        };
        console.log(`stream-serve ${JSON.stringify(figures)}`);
        assert.ok(peak < RSS_LIMIT, `atls serve RSS peak ${(peak / 1e6).toFixed(1)} MB must stay under 200 MB`);
      } finally {
        rss.stop();
        await client.close();
        await serve.stop();
      }
    });
  }
});
