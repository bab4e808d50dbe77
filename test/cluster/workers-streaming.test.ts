/**
 * Large bodies through `atls serve --workers 2 --upstream`, both modes, every
 * request on a fresh TCP connection (so node:cluster hands about half of them
 * to the worker that does not hold the session): in records mode those are
 * relayed to the owner, and the relay streams both ways. Two 96 MiB uploads
 * and two 96 MiB downloads per mode arrive intact (SHA-256 of the pattern),
 * and no process (primary, either worker) goes over 200 MB resident. A relay
 * that read bodies whole would hold a 96 MiB upload (and its IPC copies).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { Agent } from 'undici';
import { createAtlsClient } from '../../src/http/index.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { startServe } from '../helpers/serve.js';
import { forPattern, patternSha256, rssOf, startUpstream, type Upstream } from '../helpers/soak.js';

const MiB = 1024 * 1024;
const SIZE = 96 * MiB;
const RSS_LIMIT = 200 * 1000 * 1000;

/** The node worker processes of a cluster primary. */
function workersOf(primary: number): number[] {
  return execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(primary)], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter(([pid, comm]) => Number(pid) > 0 && comm === 'node')
    .map(([pid]) => Number(pid));
}

describe('atls serve --workers 2 streams large bodies with bounded memory', () => {
  let pki: TestPki;
  let upstream: Upstream;
  let sha: string;
  before(async () => {
    pki = await testPki();
    upstream = await startUpstream();
    sha = await patternSha256(SIZE);
  });
  after(() => upstream.close());

  for (const mode of ['records', 'exported'] as const) {
    it(`mode ${mode}: 2 x 96 MiB up and down on fresh connections; every process < 200 MB`, async () => {
      const serve = await startServe(['--upstream', upstream.origin, '--workers', '2', '--mode', mode, '--request-timeout', '3600']);
      const agent = new Agent({ pipelining: 0 }); // keep-alive off: each request on its own connection
      const client = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, mode, proxy: false, maxBodyBytes: 2 * SIZE, transport: { dispatcher: agent } });
      const pids = [serve.child.pid!, ...workersOf(serve.child.pid!)];
      assert.equal(pids.length, 3, 'a primary and two workers');
      const peaks = new Map(pids.map((p) => [p, 0]));
      const sample = (): void => {
        for (const p of pids) peaks.set(p, Math.max(peaks.get(p)!, rssOf(p) ?? 0));
      };
      const timer = setInterval(sample, 50);
      try {
        const origin = `http://127.0.0.1:${serve.port}`;
        assert.equal((await (await client.fetch(`${origin}/download?bytes=10`)).arrayBuffer()).byteLength, 10);
        for (let i = 0; i < 2; i++) {
          const res = await client.fetch(`${origin}/download?bytes=${SIZE}`);
          assert.equal(res.status, 200);
          const h = createHash('sha256');
          let got = 0;
          for await (const piece of res.body as unknown as AsyncIterable<Uint8Array>) {
            got += piece.length;
            h.update(piece);
          }
          assert.equal(got, SIZE, `download ${i}: every byte`);
          assert.equal(h.digest('hex'), sha, `download ${i} arrived intact`);
        }
        for (let i = 0; i < 2; i++) {
          let at = 0;
          const body = new ReadableStream<Uint8Array>({
            async pull(c) {
              if (at >= SIZE) return c.close();
              await forPattern(MiB, 64 * 1024, (b) => c.enqueue(b)); // whole MiB pieces continue the 1 MiB pattern
              at += MiB;
            },
          });
          const up = await client.fetch(`${origin}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit);
          const answer = await up.text();
          assert.equal(up.status, 200, answer);
          assert.equal(answer.trim(), `${SIZE} ${sha}`, `upload ${i} arrived intact`);
        }
        sample();
        const shown = pids.map((p, i) => `${i === 0 ? 'primary' : `worker ${p}`} ${((peaks.get(p) ?? 0) / 1e6).toFixed(1)} MB`).join(', ');
        console.log(`workers-streaming ${mode}: RSS peaks ${shown}`);
        for (const p of pids) assert.ok(peaks.get(p)! < RSS_LIMIT, `RSS peaks must stay under 200 MB: ${shown}`);
      } finally {
        clearInterval(timer);
        await client.close();
        await agent.close();
        await serve.stop();
      }
    });
  }
});
