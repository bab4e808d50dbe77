/**
 * Floods against `atls serve --echo --coap` in its own process, each for a
 * bounded time while honest clients keep handshaking: replayed ClientHellos
 * at 2,000 per second over HTTP and over CoAP (from other addresses, many
 * ports), 20,000 idle TCP connections (two flooders of 10,000: each process
 * stays under the descriptor limit), and never-finished Block1 transfers at
 * 2,000 per second (20 s, longer when a loaded machine slows the honest
 * clients below 40 attempts). The flooders run in processes of their own
 * (test/helpers/flooder.ts), so their rate does not depend on the honest
 * clients' handshakes. Honest handshakes must succeed at least 99 % of the
 * time and the server's memory stay bounded. The rates reached, the honest
 * success rates and the server's memory are printed as diagnostics.
 */
import { describe, it, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { atlsArgv } from '../helpers/cli.js';
import type { FloodPlan, FloodResult } from '../helpers/flooder.js';
import { createAtlsClient } from '../../src/http/client.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { rssOf as rssOrGone } from '../helpers/soak.js';

const FLOODER = join(import.meta.dirname, '..', 'helpers', 'flooder.ts');
const FLOOD_MS = 20_000;
const MAX_FLOOD_MS = 60_000;
const RATE = 2000;
const HONEST_LOOPS = 4;
const MIN_TRIES = 40;
const MIB = 2 ** 20;

/** RSS in bytes; 0 once the process is gone. */
const rssOf = (pid: number): number => rssOrGone(pid) ?? 0;

/** Starts a flooder process; `ready` resolves when it floods, `done` with its result; `stop()` ends it early. */
function startFlooder(plan: FloodPlan): { ready: Promise<void>; done: Promise<FloodResult>; stop: () => void; child: ChildProcess } {
  const child = spawn(process.execPath, ['--import', 'tsx', FLOODER, JSON.stringify(plan)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  const done = new Promise<FloodResult>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) onReady();
    });
    child.on('exit', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code === 0 && last.startsWith('{')) resolve(JSON.parse(last) as FloodResult);
      else reject(new Error(`flooder ${plan.kind} exited ${code}: ${out}`));
    });
  });
  return { ready, done, stop: () => child.stdin!.end('stop\n'), child };
}

interface Outcome {
  ok: number;
  tries: number;
  startRss: number;
  peakRss: number;
  endRss: number;
  floods: FloodResult[];
}

/**
 * Runs the flooders; while they flood, `HONEST_LOOPS` honest clients loop.
 * The flood lasts FLOOD_MS, and longer (up to MAX_FLOOD_MS) until the
 * honest clients made MIN_TRIES attempts: a loaded machine slows the
 * honest handshakes, not the verdict.
 */
async function during(plans: FloodPlan[], honest: () => Promise<boolean>, pid: number): Promise<Outcome> {
  const flooders = plans.map((p) => startFlooder({ ...p, durationMs: MAX_FLOOD_MS }));
  await Promise.all(flooders.map((f) => f.ready));
  const start = Date.now();
  const startRss = rssOf(pid);
  let peakRss = startRss;
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssOf(pid))), 250);
  let finished = false;
  const all = Promise.all(flooders.map((f) => f.done)).finally(() => (finished = true));
  let ok = 0;
  let tries = 0;
  const enough = (): boolean => Date.now() - start >= FLOOD_MS && tries >= MIN_TRIES;
  try {
    await Promise.all(Array.from({ length: HONEST_LOOPS }, async () => {
      while (!finished && !enough()) {
        tries++;
        if (await honest()) ok++;
      }
    }));
    for (const f of flooders) f.stop();
    return { ok, tries, startRss, peakRss, endRss: rssOf(pid), floods: await all };
  } finally {
    clearInterval(sampler);
    for (const f of flooders) f.child.kill('SIGKILL');
  }
}

function report(t: TestContext, what: string, r: Outcome, failures: string[], paced = true): void {
  const sent = r.floods.reduce((n, f) => n + f.sent, 0);
  const answered = r.floods.reduce((n, f) => n + f.answered, 0);
  const seconds = Math.max(...r.floods.map((f) => f.elapsedMs)) / 1000;
  const perS = (n: number): string => (n / seconds).toFixed(0);
  t.diagnostic(
    `${what}: ${seconds.toFixed(1)} s, sent ${sent} (${perS(sent)}/s), answered ${answered} (${perS(answered)}/s); honest ${r.ok}/${r.tries} ` +
      `(${((100 * r.ok) / Math.max(1, r.tries)).toFixed(1)} %); server RSS ${(r.startRss / MIB).toFixed(0)} -> peak ` +
      `${(r.peakRss / MIB).toFixed(0)} -> end ${(r.endRss / MIB).toFixed(0)} MiB`,
  );
  if (failures.length > 0) t.diagnostic(`honest failures: ${failures.splice(0).join('; ')}`);
  assert.ok(r.tries >= MIN_TRIES, `only ${r.tries} honest attempts`);
  assert.ok(r.ok / r.tries >= 0.99, `honest success ${r.ok}/${r.tries}`);
  assert.ok(r.peakRss < 1024 * MIB, `server RSS peaked at ${r.peakRss}`);
  if (paced) assert.ok(sent / seconds >= 0.95 * RATE, `the flood reached only ${perS(sent)}/s`);
}

describe('floods', { concurrency: 1 }, () => {
  let pki: TestPki;
  let server: ChildProcess;
  let httpPort: number;
  let coapPort: number;
  const dir = mkdtempSync(join(tmpdir(), 'atls-floods-'));
  const tls = () => ({ ca: pki.ca.cert, serverName: 'localhost' });
  const helloHex = async (): Promise<string> => Buffer.from((await new AtlsClientSession({ tls: tls() }).start()).flight).toString('hex');

  before(async () => {
    pki = await testPki();
    const files = await writeTestPki(dir);
    server = spawn(
      process.execPath,
      atlsArgv(['serve', '--listen', '127.0.0.1:0', '--coap', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key, '--log-level', 'error']),
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
    httpPort = Number(/127\.0\.0\.1:(\d+)\/\.well-known/.exec(line)![1]);
    coapPort = Number(/coap:\/\/127\.0\.0\.1:(\d+)/.exec(line)![1]);
  });

  after(() => {
    server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** Why honest attempts failed (the first few), printed with the figures. */
  const failures: string[] = [];
  const failed = (e: unknown): false => {
    if (failures.length < 5) failures.push(e instanceof Error ? `${e.name}: ${e.message}${e.cause instanceof Error ? ` (${e.cause.message})` : ''}` : String(e));
    return false;
  };

  const honestHttp = async (): Promise<boolean> => {
    const client = createAtlsClient({ tls: tls() });
    try {
      const res = await client.fetch(`http://127.0.0.1:${httpPort}/x`, { method: 'POST', body: 'honest', signal: AbortSignal.timeout(15_000) });
      return (await res.text()) === 'honest';
    } catch (e) {
      return failed(e);
    } finally {
      await client.close();
    }
  };

  const honestCoap = async (): Promise<boolean> => {
    const client = new AtlsCoapClient({ url: `coap://127.0.0.1:${coapPort}`, tls: tls() });
    try {
      const res = await client.request({ method: 'POST', pathname: '/x', payload: 'honest' });
      return new TextDecoder().decode(res.payload) === 'honest';
    } catch (e) {
      return failed(e);
    } finally {
      await client.close();
    }
  };

  it('HTTP: replayed ClientHellos at 2,000/s from another address', async (t) => {
    const r = await during([{ kind: 'http-hello', port: httpPort, rate: RATE, durationMs: FLOOD_MS, from: ['127.0.0.2'], hello: await helloHex() }], honestHttp, server.pid!);
    report(t, 'HTTP ClientHello flood', r, failures);
  });

  it('CoAP: replayed ClientHellos at 2,000/s from another address and 64 ports', async (t) => {
    const r = await during([{ kind: 'coap-hello', port: coapPort, rate: RATE, durationMs: FLOOD_MS, from: ['127.0.0.2'], hello: await helloHex() }], honestCoap, server.pid!);
    report(t, 'CoAP ClientHello flood', r, failures);
  });

  it('CoAP: never-finished Block1 transfers at 2,000/s from another address', async (t) => {
    const r = await during([{ kind: 'coap-block1', port: coapPort, rate: RATE, durationMs: FLOOD_MS, from: ['127.0.0.2'] }], honestCoap, server.pid!);
    report(t, 'CoAP Block1 flood', r, failures);
  });

  it('HTTP: 20,000 idle connections from 100 addresses (two flooders of 10,000)', async (t) => {
    const from = (base: number): string[] => Array.from({ length: 50 }, (_, i) => `127.0.1.${base + i}`);
    const plan = (base: number): FloodPlan => ({ kind: 'idle', port: httpPort, rate: RATE / 2, durationMs: FLOOD_MS, from: from(base), count: 10_000 });
    // Each flooder opens 1,000 a second (2,000 together), 10,000 in all, and holds what the server leaves open.
    const r = await during([plan(1), plan(51)], honestHttp, server.pid!);
    const peak = r.floods.reduce((n, f) => n + (f.peakOpen ?? 0), 0);
    const closed = r.floods.reduce((n, f) => n + (f.closedByServer ?? 0), 0);
    t.diagnostic(`idle connections: held at most ${peak} at once (the flooders' view), closed by the server ${closed}`);
    report(t, 'HTTP idle connections (sent: connections opened)', r, failures, false);
    assert.ok(r.floods.every((f) => f.sent === 10_000), 'each flooder opened its 10,000');
  });
});
