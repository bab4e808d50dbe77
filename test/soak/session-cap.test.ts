/**
 * The session cap at full size: `atls serve --max-sessions 10000` (the CoAP
 * default) in its own process. One client (127.0.0.2) completes 10,000
 * handshakes over HTTP and then over CoAP and holds every session; honest
 * clients (127.0.0.1) still get in, keep their sessions while the heavy
 * client goes on, and the server's memory stays bounded. The handshake
 * rates and the server's memory per session are printed as diagnostics.
 */
import { describe, it, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { atlsArgv } from '../helpers/cli.js';
import { socketHandshake } from '../helpers/http.js';
import { createAtlsClient } from '../../src/http/client.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { rssOf as rssOrGone } from '../helpers/soak.js';

const CAP = 10_000;
const HEAVY = 10_000;
const HONEST = 50;
const PARALLEL = 8;
const MIB = 2 ** 20;

/** RSS in bytes; 0 once the process is gone. */
const rssOf = (pid: number): number => rssOrGone(pid) ?? 0;

/** Runs `one` `n` times, `PARALLEL` at a time; returns the handshakes per second. */
async function repeat(n: number, one: () => Promise<void>): Promise<number> {
  const start = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < n) {
      next++;
      await one();
    }
  }));
  return (n * 1000) / (performance.now() - start);
}

describe('session cap at full size', { concurrency: 1 }, () => {
  let pki: TestPki;
  let server: ChildProcess;
  let httpPort: number;
  let coapPort: number;
  const dir = mkdtempSync(join(tmpdir(), 'atls-session-cap-'));
  const tls = () => ({ ca: pki.ca.cert, serverName: 'localhost' });
  const logs: Array<Record<string, unknown>> = [];

  before(async () => {
    pki = await testPki();
    const files = await writeTestPki(dir);
    server = spawn(
      process.execPath,
      atlsArgv(['serve', '--listen', '127.0.0.1:0', '--coap', '127.0.0.1:0', '--echo', '--max-sessions', String(CAP),
        '--cert', files.server.cert, '--key', files.server.key, '--log-format', 'json', '--log-level', 'warn']),
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      server.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      server.on('exit', (c) => reject(new Error(`server exited ${c}`)));
    });
    let rest = '';
    server.stdout!.on('data', (d: Buffer) => {
      rest += d.toString();
      const lines = rest.split('\n');
      rest = lines.pop()!;
      for (const l of lines) if (l.startsWith('{')) logs.push(JSON.parse(l) as Record<string, unknown>);
    });
    httpPort = Number(/127\.0\.0\.1:(\d+)\/\.well-known/.exec(line)![1]);
    coapPort = Number(/coap:\/\/127\.0\.0\.1:(\d+)/.exec(line)![1]);
  });

  after(() => {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  const limitLogged = (transport: string): boolean =>
    logs.some((l) => l.event === 'limit.hit' && l.limit === 'sessions' && l.transport === transport && l.peer === '127.0.0.2');

  function note(t: TestContext, what: string, rate: number, before: number, after: number): void {
    t.diagnostic(
      `${what}: ${HEAVY} handshakes from one address at ${rate.toFixed(0)}/s; server RSS ${(before / MIB).toFixed(0)} -> ` +
        `${(after / MIB).toFixed(0)} MiB (${((after - before) / HEAVY / 1024).toFixed(1)} KiB per session)`,
    );
    assert.ok(after < 1024 * MIB, `server RSS ${after}`);
  }

  it(`HTTP: ${HEAVY} completed handshakes from one address, then honest clients get in and keep their sessions`, async (t) => {
    const heavy = new http.Agent({ keepAlive: true, maxSockets: PARALLEL, localAddress: '127.0.0.2' } as http.AgentOptions);
    let handshakes = 0;
    const honest = Array.from({ length: HONEST }, () =>
      createAtlsClient({ tls: tls(), proxy: false, reportTransport: false, onEvent: (e) => void (e.type === 'handshake' && handshakes++) }));
    try {
      const before = rssOf(server.pid!);
      const rate = await repeat(HEAVY, () => socketHandshake(httpPort, heavy, tls()));
      note(t, 'HTTP', rate, before, rssOf(server.pid!));
      for (const [i, c] of honest.entries()) {
        const res = await c.fetch(`http://127.0.0.1:${httpPort}/in`, { method: 'POST', body: `honest ${i}` });
        assert.equal(await res.text(), `honest ${i}`);
      }
      await repeat(1000, () => socketHandshake(httpPort, heavy, tls()));
      for (const [i, c] of honest.entries()) {
        const res = await c.fetch(`http://127.0.0.1:${httpPort}/again`, { method: 'POST', body: `again ${i}` });
        assert.equal(await res.text(), `again ${i}`);
      }
      assert.equal(handshakes, HONEST, 'one handshake per honest client: their sessions survived');
      assert.ok(limitLogged('http'), 'limit.hit sessions logged with the heavy peer');
    } finally {
      heavy.destroy();
      for (const c of honest) await c.close();
    }
  });

  it(`CoAP: ${HEAVY} completed handshakes from one address, then honest clients get in and keep their sessions`, async (t) => {
    const heavy = await CoapEndpoint.bind({ host: '127.0.0.2' });
    const honest = Array.from({ length: HONEST }, () => new AtlsCoapClient({ url: `coap://127.0.0.1:${coapPort}`, tls: tls() }));
    try {
      const before = rssOf(server.pid!);
      // The heavy client's sessions are held, never closed.
      const one = async (): Promise<void> => void (await new AtlsCoapClient({ url: `coap://127.0.0.1:${coapPort}`, tls: tls(), endpoint: heavy }).connect());
      const rate = await repeat(HEAVY, one);
      note(t, 'CoAP', rate, before, rssOf(server.pid!));
      for (const [i, c] of honest.entries()) {
        const res = await c.request({ method: 'POST', pathname: '/in', payload: `honest ${i}` });
        assert.equal(new TextDecoder().decode(res.payload), `honest ${i}`);
      }
      const sessions = honest.map((c) => c.resource);
      await repeat(1000, one);
      for (const [i, c] of honest.entries()) {
        const res = await c.request({ method: 'POST', pathname: '/again', payload: `again ${i}` });
        assert.equal(new TextDecoder().decode(res.payload), `again ${i}`);
      }
      assert.deepEqual(honest.map((c) => c.resource), sessions, 'the honest sessions survived');
      assert.ok(limitLogged('coap'), 'limit.hit sessions logged with the heavy peer');
    } finally {
      for (const c of honest) await c.close();
      await heavy.close();
    }
  });
});
