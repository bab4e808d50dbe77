/**
 * Go's crypto/tls and net/http (`bench/go-client`, no code shared with ours)
 * as an ATLS client of our HTTP server on every engine, both modes: fresh
 * sessions whose first request rides on the final flight must take exactly
 * two POSTs each, the exported keys must open and seal the same messages,
 * and the records-mode session must read its tickets and responses.
 * Needs Debian `golang-go`; skips without it unless ATLS_REQUIRE_INTEROP=1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createAtlsServer, echoApp, echoRawApp } from '../../src/http/index.js';
import { availableEngines } from '../../src/engines/index.js';
import type { Mode } from '../../src/session/types.js';
import { testPki } from '../helpers/pki.js';
import { findTool, requireTool } from '../helpers/tools.js';

const run = promisify(execFile);
const SOURCE = fileURLToPath(new URL('../../bench/go-client/', import.meta.url));
const COUNT = 12;

let dir: string;
let binary: string | undefined;
let caFile: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'atls-go-'));
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, (await testPki()).ca.cert);
  if (findTool('go')) {
    binary = join(dir, 'atls-go-client');
    await run('go', ['build', '-o', binary, '.'], { cwd: SOURCE, env: { ...process.env, GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'atls-go-cache') } });
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface GoResult {
  ops: number;
  errors: number;
  firstError?: string;
}

/** Runs the Go client for COUNT operations against a fresh server; returns its result and the outer POSTs the server saw. */
async function drive(engine: string, mode: Mode, args: string[]): Promise<{ result: GoResult; posts: number }> {
  const pki = await testPki();
  let posts = 0;
  const server = createAtlsServer({
    // Every outer request the endpoints answer (the front serves them without node:http's 'request' event).
    onEvent: (e) => {
      if (e.type === 'reply') posts++;
    },
    tls: { cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.3' },
    app: echoApp,
    rawApp: echoRawApp,
    mode,
    engine: availableEngines().find((e) => e.name === engine)!,
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const { stdout } = await run(binary!, ['-url', url, '-ca', caFile, '-conns', '1', '-count', String(COUNT), '-mode', mode, ...args]).catch(
      (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
    );
    return { result: JSON.parse(stdout.trim() || '{}') as GoResult, posts };
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

describe('Go crypto/tls client -> our ATLS HTTP server', () => {
  for (const engine of availableEngines().map((e) => e.name)) {
    for (const mode of ['exported', 'records'] as const) {
      it(`${engine}, ${mode}: fresh sessions answer the piggy-backed request in two round trips`, async (t) => {
        if (!requireTool(t, 'go')) return;
        const { result, posts } = await drive(engine, mode, ['-job', 'atls-fresh']);
        assert.equal(result.errors, 0, result.firstError);
        assert.equal(result.ops, COUNT);
        assert.equal(posts, 2 * COUNT, 'ClientHello, then Finished + the first request');
      });

      it(`${engine}, ${mode}: requests over one established session`, async (t) => {
        if (!requireTool(t, 'go')) return;
        const { result, posts } = await drive(engine, mode, ['-job', 'atls-req']);
        assert.equal(result.errors, 0, result.firstError);
        assert.equal(result.ops, COUNT);
        assert.equal(posts, 2 + COUNT, 'two handshake POSTs, then one per request');
      });
    }
  }

  it('a session without piggy-backing takes a third round trip', async (t) => {
    if (!requireTool(t, 'go')) return;
    const { result, posts } = await drive(availableEngines()[0]!.name, 'exported', ['-job', 'atls-fresh', '-piggyback=false']);
    assert.equal(result.errors, 0, result.firstError);
    assert.equal(posts, 3 * COUNT);
  });
});
