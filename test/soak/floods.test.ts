/**
 * Floods against `atls serve --echo --coap` in its own process, each for a
 * bounded time while honest clients keep handshaking: replayed ClientHellos
 * at 2,000 per second over HTTP and over CoAP (from another address, many
 * ports), 20,000 idle TCP connections (or as many as the descriptor limit
 * allows), and never-finished Block1 transfers. Honest handshakes must
 * succeed at least 99 % of the time and the server's memory stay bounded.
 * The rates sent and answered and the success rates are printed as diagnostics.
 */
import { describe, it, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { createAtlsClient } from '../../src/http/client.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { MEDIA_TYPE_FLIGHT } from '../../src/http/constants.js';
import { encodeMessage } from '../../src/coap/packet.js';
import { CoapCode, MessageType, OptionNumber } from '../../src/coap/constants.js';
import { blockOption } from '../../src/coap/blockwise.js';
import { pathOptions, uintOption } from '../../src/coap/packet.js';
import { atlsArgv } from '../helpers/cli.js';

const FLOOD_MS = 20_000;
const RATE = 2000;

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Runs `tick` RATE times a second for FLOOD_MS (in 10 ms steps) while `honest` loops; returns what happened. */
async function during(
  tick: () => void,
  honest: () => Promise<boolean>,
  pid: number,
): Promise<{ ok: number; tries: number; peakRss: number; startRss: number }> {
  const startRss = rssOf(pid);
  let peakRss = startRss;
  const perStep = RATE / 100;
  const timer = setInterval(() => {
    for (let i = 0; i < perStep; i++) tick();
  }, 10);
  const rss = setInterval(() => (peakRss = Math.max(peakRss, rssOf(pid))), 500);
  const end = Date.now() + FLOOD_MS;
  let ok = 0;
  let tries = 0;
  try {
    while (Date.now() < end) {
      tries++;
      if (await honest()) ok++;
    }
  } finally {
    clearInterval(timer);
    clearInterval(rss);
  }
  return { ok, tries, peakRss, startRss };
}

function report(t: TestContext, what: string, r: { ok: number; tries: number; peakRss: number; startRss: number }, sent: number, answered: number): void {
  const rate = (n: number): string => (n / (FLOOD_MS / 1000)).toFixed(0);
  t.diagnostic(
    `${what}: sent ${sent} (${rate(sent)}/s), answered ${answered} (${rate(answered)}/s); honest ${r.ok}/${r.tries} ` +
      `(${((100 * r.ok) / Math.max(1, r.tries)).toFixed(1)} %); server RSS ${(r.startRss / 2 ** 20).toFixed(0)} -> peak ${(r.peakRss / 2 ** 20).toFixed(0)} MiB`,
  );
  assert.ok(r.tries >= 10, `only ${r.tries} honest attempts`);
  assert.ok(r.ok / r.tries >= 0.99, `honest success ${r.ok}/${r.tries}`);
  assert.ok(r.peakRss < 1024 * 2 ** 20, `server RSS peaked at ${r.peakRss}`);
}

describe('floods', { concurrency: 1 }, () => {
  let pki: TestPki;
  let server: ChildProcess;
  let httpPort: number;
  let coapPort: number;
  const dir = mkdtempSync(join(tmpdir(), 'atls-floods-'));
  const tls = () => ({ ca: pki.ca.cert, serverName: 'localhost' });

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

  const honestHttp = async (): Promise<boolean> => {
    const client = createAtlsClient({ tls: tls() });
    try {
      const res = await client.fetch(`http://127.0.0.1:${httpPort}/x`, { method: 'POST', body: 'honest', signal: AbortSignal.timeout(15_000) });
      return (await res.text()) === 'honest';
    } catch {
      return false;
    } finally {
      await client.close();
    }
  };

  const honestCoap = async (): Promise<boolean> => {
    const client = new AtlsCoapClient({ url: `coap://127.0.0.1:${coapPort}`, tls: tls() });
    try {
      const res = await client.request({ method: 'POST', pathname: '/x', payload: 'honest' });
      return new TextDecoder().decode(res.payload) === 'honest';
    } catch {
      return false;
    } finally {
      await client.close();
    }
  };

  it('HTTP: replayed ClientHellos at 2,000/s from another address', async (t) => {
    const hello = (await new AtlsClientSession({ tls: tls() }).start()).flight;
    const agent = new http.Agent({ keepAlive: true, maxSockets: 64, localAddress: '127.0.0.2' } as http.AgentOptions);
    let sent = 0;
    let answered = 0;
    let outstanding = 0;
    const tick = (): void => {
      if (outstanding >= 256) return; // bounded: the flooder does not queue without end
      outstanding++;
      sent++;
      const req = http.request({ host: '127.0.0.1', port: httpPort, method: 'POST', path: '/.well-known/atls', agent, headers: { 'content-type': MEDIA_TYPE_FLIGHT } }, (res) => {
        res.resume();
        res.on('end', () => {
          outstanding--;
          answered++;
        });
      });
      req.on('error', () => outstanding--);
      req.end(hello);
    };
    const r = await during(tick, honestHttp, server.pid!);
    agent.destroy();
    report(t, 'HTTP ClientHello flood', r, sent, answered);
  });

  it('CoAP: replayed ClientHellos at 2,000/s from another address and 64 ports', async (t) => {
    const hello = (await new AtlsClientSession({ tls: tls() }).start()).flight;
    const sockets = await Promise.all(
      Array.from({ length: 64 }, () => new Promise<ReturnType<typeof createSocket>>((resolve) => {
        const s = createSocket('udp4');
        s.bind(0, '127.0.0.2', () => resolve(s));
      })),
    );
    let sent = 0;
    let answered = 0;
    for (const s of sockets) s.on('message', () => answered++);
    let mid = 0;
    const tick = (): void => {
      const s = sockets[sent % sockets.length]!;
      sent++;
      const datagram = encodeMessage({
        type: MessageType.NON,
        code: CoapCode.POST,
        messageId: mid++ & 0xffff,
        token: new Uint8Array(randomBytes(4)),
        options: [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000)],
        payload: hello,
      });
      s.send(datagram, coapPort, '127.0.0.1');
    };
    const r = await during(tick, honestCoap, server.pid!);
    for (const s of sockets) s.close();
    report(t, 'CoAP ClientHello flood', r, sent, answered);
  });

  it('CoAP: never-finished Block1 transfers at 2,000/s from another address', async (t) => {
    const sockets = await Promise.all(
      Array.from({ length: 20 }, () => new Promise<ReturnType<typeof createSocket>>((resolve) => {
        const s = createSocket('udp4');
        s.bind(0, '127.0.0.2', () => resolve(s));
      })),
    );
    let sent = 0;
    let answered = 0;
    for (const s of sockets) s.on('message', () => answered++);
    let mid = 0;
    const tick = (): void => {
      const s = sockets[sent % sockets.length]!;
      sent++;
      const datagram = encodeMessage({
        type: MessageType.NON,
        code: CoapCode.POST,
        messageId: mid++ & 0xffff,
        token: new Uint8Array(randomBytes(4)),
        options: [
          ...pathOptions('/.well-known/atls'),
          { number: OptionNumber.RequestTag, value: new Uint8Array(randomBytes(4)) },
          uintOption(OptionNumber.ContentFormat, 65000),
          blockOption(OptionNumber.Block1, { num: 0, more: true, szx: 0 }),
        ],
        payload: new Uint8Array(16),
      });
      s.send(datagram, coapPort, '127.0.0.1');
    };
    const r = await during(tick, async () => honestCoap(), server.pid!);
    for (const s of sockets) s.close();
    report(t, 'CoAP Block1 flood', r, sent, answered);
  });

  it('HTTP: 20,000 idle connections (as many as the descriptor limit allows) from 100 addresses', async (t) => {
    const limit = Number(/Max open files\s+(\d+)/.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? 1024);
    const target = Math.min(20_000, limit - 500);
    const sockets = new Set<net.Socket>();
    let opened = 0;
    let closedByServer = 0;
    const tick = (): void => {
      if (opened >= target || sockets.size >= limit - 500) return;
      opened++;
      const s = net.connect({ host: '127.0.0.1', port: httpPort, localAddress: `127.0.1.${1 + (opened % 100)}` });
      sockets.add(s);
      s.on('error', () => undefined);
      s.resume(); // read what the server sends so that its close is seen
      s.on('close', () => {
        closedByServer++;
        sockets.delete(s);
      });
    };
    const r = await during(tick, honestHttp, server.pid!);
    for (const s of sockets) s.destroy();
    t.diagnostic(`idle connections: opened ${opened} (target ${target}, descriptor limit ${limit}), closed by the server ${closedByServer}`);
    report(t, 'HTTP idle connections', r, opened, closedByServer);
  });
});
