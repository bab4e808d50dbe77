/**
 * What the operator of `atls serve` sees: one JSON log line per event
 * (sessions created, established, failed with their code and peer address;
 * limits hit; evictions) and a Prometheus endpoint, never a session id in
 * full or any plaintext; `--log-format text` and `--log-level`. The same
 * for `atls proxy` and `atls gateway`.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import http from 'node:http';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { createAtlsClient } from '../../src/http/client.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { atlsArgv, startDaemon, startInProcess, stop, type InProcessDaemon } from '../helpers/cli.js';
import { METRICS_CONNECTION_LIMITS } from '../../src/cli/observe.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { findTool, REQUIRE_INTEROP } from '../helpers/tools.js';

function post(port: number, body: Uint8Array, headers: Record<string, string>, localAddress = '127.0.0.1'): Promise<{ status: number; cookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, localAddress, method: 'POST', path: '/.well-known/atls', headers }, (res) => {
      res.resume();
      const cookie = res.headers['set-cookie']?.[0]?.split(';')[0]?.split('=')[1];
      res.on('end', () => resolve({ status: res.statusCode ?? 0, cookie }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('atls serve: logs and metrics', () => {
  let pki: TestPki;
  const dir = mkdtempSync(join(tmpdir(), 'atls-observe-'));
  let files: Awaited<ReturnType<typeof writeTestPki>>;
  const daemons: ChildProcess[] = [];
  const services: InProcessDaemon[] = [];
  before(async () => {
    pki = await testPki();
    files = await writeTestPki(dir);
  });
  after(async () => {
    await Promise.all([...daemons.map(stop), ...services.map((d) => d.stop())]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('JSON lines for sessions, failures with code and peer, limits and evictions; Prometheus metrics', async () => {
    const d = await startDaemon([
      'serve', '--listen', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key,
      '--max-half-open', '4', '--log-format', 'json', '--metrics', '127.0.0.1:0',
    ]);
    daemons.push(d.child);
    const port = Number(/127\.0\.0\.1:(\d+)\/\.well-known/.exec(d.line)![1]);
    const metricsUrl = /metrics at (http:\S+)/.exec(d.line)![1]!;
    const client = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const secret = 'plaintext-that-must-not-be-logged';
    const res = await client.fetch(`http://127.0.0.1:${port}/x`, { method: 'POST', body: secret });
    assert.equal(await res.text(), secret);
    await client.close();
    // Ten replayed ClientHellos from another address: the half-open cap of 4 is hit, its oldest give way.
    const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
    const cookies: string[] = [];
    for (let i = 0; i < 10; i++) {
      const fresh = i === 0 ? hello : (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
      const r = await post(port, fresh, { 'content-type': MEDIA_TYPE_FLIGHT }, '127.0.0.2');
      assert.equal(r.status, 200);
      if (r.cookie) cookies.push(r.cookie);
    }
    // A protected message for a session that does not exist: 410 CLOSED.
    assert.equal((await post(port, new Uint8Array(40), { 'content-type': MEDIA_TYPE_PROTECTED, cookie: `atls-session=${cookies[0]}` }, '127.0.0.3')).status, 410);
    // A flood of garbage flights from one address: 40 failures of one kind fold to about one line a second.
    for (let i = 0; i < 40; i++) {
      assert.equal((await post(port, new TextEncoder().encode('garbage'), { 'content-type': MEDIA_TYPE_FLIGHT }, '127.0.0.6')).status, 400);
    }
    // A flood of fresh ClientHellos from one address: 40 sessions created, their lines fold too.
    const hellos = await Promise.all(Array.from({ length: 40 }, async () => (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight));
    for (const h of hellos) assert.equal((await post(port, h, { 'content-type': MEDIA_TYPE_FLIGHT }, '127.0.0.7')).status, 200);
    const metrics = await (await fetch(metricsUrl)).text();
    await new Promise((r) => setTimeout(r, 200));
    const events = d.lines.slice(1).map((l) => JSON.parse(l) as Record<string, unknown>);
    const has = (pred: (e: Record<string, unknown>) => boolean, what: string): void => assert.ok(events.some(pred), `${what}\n${d.lines.join('\n')}`);
    has((e) => e.event === 'session.created' && e.peer === '127.0.0.1' && e.transport === 'http', 'session.created with peer');
    has((e) => e.event === 'session.established' && e.peer === '127.0.0.1' && e.version === 'TLSv1.3', 'session.established');
    has((e) => e.event === 'limit.hit' && e.limit === 'half-open' && e.peer === '127.0.0.2', 'limit.hit half-open');
    has((e) => e.event === 'half-open.evicted' && e.peer === '127.0.0.2', 'half-open.evicted');
    has((e) => e.event === 'session.failed' && e.code === 'CLOSED' && e.peer === '127.0.0.3' && e.status === 410, 'session.failed');
    const flood = events.filter((e) => e.event === 'session.failed' && e.peer === '127.0.0.6');
    assert.ok(flood.length >= 1 && flood.length <= 10, `${flood.length} lines for 40 failures of one peer`);
    assert.match(metrics, /atls_failures_total\{transport="http",code="[A-Z_]+"\} 40/, 'every failure is still counted');
    const created = events.filter((e) => e.event === 'session.created' && e.peer === '127.0.0.7');
    assert.ok(created.length >= 1 && created.length <= 20, `${created.length} session.created lines for 40 ClientHellos of one peer`);
    for (const e of events) assert.equal(typeof e.time, 'string');
    const all = d.lines.join('\n');
    assert.ok(!all.includes(secret), 'no plaintext in the log');
    for (const c of cookies) assert.ok(!all.includes(c), 'no session id in full');
    assert.match(metrics, /atls_handshakes_total\{transport="http"\} 1/);
    assert.match(metrics, /atls_limit_hits_total\{transport="http",limit="half-open"\} [1-9]/);
    assert.match(metrics, /atls_failures_total\{transport="http",code="CLOSED"\} 1/);
    assert.match(metrics, /atls_sessions\{transport="http",state="half_open"\} 4/);
    assert.match(metrics, /atls_request_duration_seconds_count\{transport="http"\} \d+/);
    assert.match(metrics, /process_resident_memory_bytes \d+/);
  });

  it('atls proxy and atls gateway: the same JSON lines and metrics, never the data', async () => {
    // The service is only talked to: it runs in this process; the logging commands are processes.
    const svc = await startInProcess(['serve', '--listen', '127.0.0.1:0', '--coap', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key]);
    services.push(svc);
    const origin = new URL(/(http:\/\/\S+)/.exec(svc.line)![1]!).origin;
    const proxy = await startDaemon(['proxy', '--listen', '127.0.0.1:0', '--to', origin, '--ca', files.ca.cert, '--server-name', 'localhost', '--log-format', 'json', '--metrics', '127.0.0.1:0']);
    daemons.push(proxy.child);
    const gw = await startDaemon(['gateway', '--listen', '127.0.0.1:0', '--to', origin, '--log-format', 'json', '--metrics', '127.0.0.1:0']);
    daemons.push(gw.child);
    const secret = 'proxied-plaintext-not-for-logs';
    const proxyUrl = /(http:\/\/127\.0\.0\.1:\d+)/.exec(proxy.line)![1]!;
    const res = await fetch(`${proxyUrl}/x`, { method: 'POST', body: secret });
    assert.equal(await res.text(), secret);
    const device = new AtlsCoapClient({ url: /(coap:\/\/\S+)/.exec(gw.line)![1]!, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const viaGateway = await device.fetch(new Request('https://service.example/y', { method: 'POST', body: secret }));
    assert.equal(await viaGateway.text(), secret);
    await device.close();
    await new Promise((r) => setTimeout(r, 200));
    for (const [d, transport, event] of [[proxy, 'proxy', 'session.established'], [gw, 'gateway', 'gateway.to-service']] as const) {
      const metrics = await (await fetch(/metrics at (http:\S+)/.exec(d.line)![1]!)).text();
      const events = d.lines.slice(1).map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.ok(events.some((e) => e.event === event), `${transport}: ${event}\n${d.lines.join('\n')}`);
      assert.ok(!d.lines.join('\n').includes(secret), `${transport}: no plaintext in the log`);
      assert.match(metrics, /process_resident_memory_bytes \d+/, transport);
      if (transport === 'proxy') assert.match(metrics, /atls_handshakes_total\{transport="proxy"\} 1/);
    }
  });

  it('the metrics page parses with the Prometheus project\'s own parser (python3 prometheus_client): HELP and TYPE for every family, counters named _total, units in names', async (t) => {
    // Debian's python3-prometheus-client lives under /usr/bin/python3 (a python3 earlier on PATH may not see it).
    const python = ['/usr/bin/python3', findTool('python3')].find((p) => p !== undefined && existsSync(p) && spawnSync(p, ['-c', 'import prometheus_client']).status === 0);
    if (python === undefined) {
      if (REQUIRE_INTEROP) throw new Error('python3 with prometheus_client (Debian python3-prometheus-client) not installed and ATLS_REQUIRE_INTEROP=1');
      return t.skip('python3-prometheus-client not installed');
    }
    const d = await startDaemon(['serve', '--listen', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key, '--metrics', '127.0.0.1:0', '--log-level', 'error']);
    daemons.push(d.child);
    const port = Number(/127\.0\.0\.1:(\d+)\/\.well-known/.exec(d.line)![1]);
    const metricsUrl = /metrics at (http:\S+)/.exec(d.line)![1]!;
    const client = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    assert.equal(await (await client.fetch(`http://127.0.0.1:${port}/x`, { method: 'POST', body: 'x' })).text(), 'x');
    await client.close();
    assert.equal((await post(port, new Uint8Array(40), { 'content-type': MEDIA_TYPE_PROTECTED, cookie: 'atls-session=none' })).status, 410);
    const page = await fetch(metricsUrl);
    assert.match(page.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await page.text();
    // The parser names a counter family without its _total; each family as [name, type, help, sample names].
    const script = [
      'import sys, json',
      'from prometheus_client.parser import text_string_to_metric_families',
      'print(json.dumps([[f.name, f.type, f.documentation, sorted({s.name for s in f.samples})] for f in text_string_to_metric_families(sys.stdin.read())]))',
    ].join('\n');
    const parsed = spawnSync(python, ['-c', script], { input: text, encoding: 'utf8' });
    assert.equal(parsed.status, 0, parsed.stderr);
    const families = JSON.parse(parsed.stdout) as Array<[string, string, string, string[]]>;
    const ours = families.filter(([name]) => name.startsWith('atls_'));
    assert.deepEqual(
      ours.map(([name, type]) => `${name} ${type}`).sort(),
      [
        'atls_address_checks counter',
        'atls_evictions counter',
        'atls_failures counter',
        'atls_handshakes counter',
        'atls_intercepted_sessions counter',
        'atls_limit_hits counter',
        'atls_request_duration_seconds histogram',
        'atls_sessions gauge',
        'atls_timeouts counter',
      ],
    );
    for (const [name, type, help, samples] of families) {
      assert.notEqual(type, 'unknown', `${name} has a TYPE line`);
      assert.ok(help.length > 0, `${name} has a HELP line`);
      if (type === 'counter') for (const s of samples) assert.ok(s === `${name}_total` || s === `${name}_created`, `counter sample ${s} of ${name}`);
    }
    const samplesOf = (n: string): string[] => ours.find(([name]) => name === n)?.[3] ?? [];
    assert.deepEqual(samplesOf('atls_handshakes'), ['atls_handshakes_total']);
    assert.deepEqual(samplesOf('atls_request_duration_seconds'), ['atls_request_duration_seconds_bucket', 'atls_request_duration_seconds_count', 'atls_request_duration_seconds_sum']);
    assert.match(text, /^atls_failures_total\{transport="http",code="CLOSED"\} 1$/m);
  });

  it('text lines, and --log-level warn keeps session lines out', async () => {
    const d = await startDaemon(['serve', '--listen', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key, '--log-level', 'warn', '--max-half-open', '1']);
    daemons.push(d.child);
    const port = Number(/127\.0\.0\.1:(\d+)\/\.well-known/.exec(d.line)![1]);
    const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
    await post(port, hello, { 'content-type': MEDIA_TYPE_FLIGHT }, '127.0.0.4');
    for (let i = 0; i < 2; i++) {
      const fresh = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
      await post(port, fresh, { 'content-type': MEDIA_TYPE_FLIGHT }, '127.0.0.4');
    }
    await new Promise((r) => setTimeout(r, 200));
    const rest = d.lines.slice(1);
    assert.ok(rest.some((l) => / warn limit\.hit .*limit=half-open peer=127\.0\.0\.4/.test(l)), rest.join('\n'));
    assert.ok(!rest.some((l) => /session\.created/.test(l)), 'info lines are below warn');
  });

  it('a flood of idle connections to the metrics endpoint neither exhausts the process\'s descriptors nor stops the service', async () => {
    // 512 descriptors for the whole process, 600 connections to its metrics port from 8 addresses: without a
    // cap of their own they would take every descriptor and the ATLS port could accept nobody.
    const shell = ['ulimit -n 512 && exec "$0" "$@"', process.execPath, ...atlsArgv([
      'serve', '--listen', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key, '--metrics', '127.0.0.1:0',
    ])];
    const child = spawn('bash', ['-c', ...shell], { stdio: ['ignore', 'pipe', 'pipe'] });
    daemons.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', () => /\n/.test(out) && resolve());
      child.on('exit', (code) => reject(new Error(`atls serve exited ${code}`)));
    });
    const port = Number(/127\.0\.0\.1:(\d+)\/\.well-known/.exec(out)![1]);
    const metricsUrl = /metrics at (http:\S+)/.exec(out)![1]!;
    const metricsPort = Number(new URL(metricsUrl).port);
    const sockets: net.Socket[] = [];
    let closedByServer = 0;
    try {
      for (let i = 0; i < 600; i++) {
        const socket = net.connect({ port: metricsPort, host: '127.0.0.1', localAddress: `127.0.0.${10 + (i % 8)}` });
        socket.on('error', () => undefined);
        socket.on('close', () => closedByServer++);
        await new Promise<void>((r) => socket.once('connect', () => r()).once('error', () => r()));
        sockets.push(socket);
      }
      // The service still accepts and answers (a garbage flight: 400), and so does a scrape.
      const answer = await fetch(`http://127.0.0.1:${port}/.well-known/atls`, {
        method: 'POST',
        headers: { 'content-type': MEDIA_TYPE_FLIGHT },
        body: 'garbage',
        signal: AbortSignal.timeout(20_000), // a service out of descriptors never answers
      });
      assert.equal(answer.status, 400);
      const scrape = await fetch(metricsUrl, { signal: AbortSignal.timeout(20_000) });
      assert.equal(scrape.status, 200);
      assert.match(await scrape.text(), /atls_handshakes_total/);
      await new Promise((r) => setTimeout(r, 200));
      // The metrics endpoint kept at most its cap of the flood's connections.
      assert.ok(closedByServer >= 600 - METRICS_CONNECTION_LIMITS.maxConnections!, `closed ${closedByServer} of 600`);
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });
});
