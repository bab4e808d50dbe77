/**
 * squid as a plain (non-intercepting) forward proxy: http targets are
 * forwarded in absolute form (the client's undici ProxyAgent runs with
 * `proxyTunnel: false`, src/http/transport.ts), https targets are tunnelled
 * with CONNECT and the transport is verified end to end through the tunnel.
 * A second squid refuses CONNECT: the client fails with a clear error.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAtlsClient } from '../../src/http/index.js';
import type { AtlsClient, AtlsClientOptions } from '../../src/http/index.js';
import { AtlsError } from '../../src/errors.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { findTool, freePort, REQUIRE_INTEROP, type ToolProcess } from '../helpers/tools.js';
import { SECRET_REQUEST, startService, startTool, tempDir, type Service } from '../helpers/middlebox.js';

/** The whole squid.conf (see test/middlebox/README.md). */
function squidConf(dir: string, port: number, refuseConnect: boolean): string {
  return [
    `http_port 127.0.0.1:${port}`,
    'pid_filename none',
    'cache_log stdio:/dev/stderr',
    `access_log stdio:${join(dir, 'access.log')} squid`,
    `coredump_dir ${dir}`,
    'cache deny all',
    'pinger_enable off',
    // SIGTERM ends squid at once instead of after the default 30 s grace.
    'shutdown_lifetime 0 seconds',
    'acl CONNECT method CONNECT',
    ...(refuseConnect ? ['http_access deny CONNECT'] : []),
    'http_access allow localhost',
    'http_access deny all',
    '',
  ].join('\n');
}

interface Squid {
  url: string;
  proc: ToolProcess;
  accessLog(): Promise<string[]>;
  stop(): Promise<void>;
}

async function startSquid(squid: string, name: string, refuseConnect: boolean): Promise<Squid> {
  const dir = await tempDir(`squid-${name}`);
  const conf = join(dir.path, 'squid.conf');
  let lastError: unknown;
  // freePort() is racy: another process may take the port before squid binds it.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    await writeFile(conf, squidConf(dir.path, port, refuseConnect));
    // -n: a service name of our own, so that parallel squids (and leftovers of
    // other users) do not share the shared-memory segments /dev/shm/<name>-cf__*.
    const service = `atls${process.pid}${name}${attempt}`;
    try {
      const proc = await startTool(squid, ['-n', service, '-N', '-d', '1', '-f', conf], /Accepting HTTP Socket connections/, 15_000);
      return {
        url: `http://127.0.0.1:${port}`,
        proc,
        // squid writes a line when a transaction ends; the client has its answer by then.
        accessLog: async () => (await readFile(join(dir.path, 'access.log'), 'utf8').catch(() => '')).split('\n').filter(Boolean),
        stop: async () => {
          // squid acts on SIGTERM at its next 1 s tick; SIGKILL would leave its /dev/shm segments behind.
          await proc.kill(5000);
          await removeShm(service);
          await dir.remove();
        },
      };
    } catch (e) {
      lastError = e;
      await removeShm(service);
    }
  }
  await dir.remove();
  throw lastError;
}

/** Removes what a killed squid left in /dev/shm under our own service name. */
async function removeShm(service: string): Promise<void> {
  const names = await readdir('/dev/shm').catch(() => [] as string[]);
  await Promise.all(names.filter((n) => n.startsWith(`${service}-`)).map((n) => rm(join('/dev/shm', n), { force: true })));
}

const squidPath = findTool('squid');
const skip = !squidPath && !REQUIRE_INTEROP ? 'squid not installed (Debian package squid)' : false;

/** Waits briefly for squid's access log to show a line matching `re` (it is written after the response). */
async function logLine(sq: Squid, re: RegExp): Promise<string> {
  for (let i = 0; i < 40; i++) {
    const hit = (await sq.accessLog()).find((l) => re.test(l));
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`no squid access.log line matches ${re}:\n${(await sq.accessLog()).join('\n')}`);
}

describe('squid as a plain forward proxy', { skip, timeout: 60_000 }, () => {
  let pki: TestPki;
  let open: Squid;
  let noConnect: Squid;
  const services: Service[] = [];
  const clients: AtlsClient[] = [];

  before(async () => {
    if (!squidPath) throw new Error('squid not installed and ATLS_REQUIRE_INTEROP=1');
    pki = await testPki();
    [open, noConnect] = await Promise.all([startSquid(squidPath, 'open', false), startSquid(squidPath, 'refusing', true)]);
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all([open?.stop(), noConnect?.stop()]);
    await Promise.all(services.map((s) => s.close()));
  });

  function client(options: AtlsClientOptions): AtlsClient {
    const c = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, ...options });
    clients.push(c);
    return c;
  }

  async function exchange(c: AtlsClient, svc: Service, n: number): Promise<void> {
    for (let i = 0; i < n; i++) {
      const res = await c.fetch(svc.url('/meter'), { method: 'POST', body: `${SECRET_REQUEST} #${i}`, signal: AbortSignal.timeout(10_000) });
      assert.equal(res.status, 200);
      assert.match(await res.text(), new RegExp(`backend=${svc.name} .*#${i}$`));
    }
  }

  for (const mode of ['exported', 'records'] as const) {
    it(`mode ${mode}: an http service through squid, forwarded in absolute form (no CONNECT)`, async (t) => {
      const svc = await startService({ mode, name: `squid-http-${mode}` });
      services.push(svc);
      await exchange(client({ mode, proxy: open.url }), svc, 3);
      const endpoint = `http://127.0.0.1:${svc.port}/.well-known/atls`;
      const line = await logLine(open, new RegExp(`POST ${endpoint.replace(/\./g, '\\.')} `));
      assert.match(line, /TCP_MISS\/200 /);
      const lines = (await open.accessLog()).filter((l) => l.includes(`127.0.0.1:${svc.port}`));
      assert.ok(lines.length >= 3, lines.join('\n'));
      assert.ok(lines.every((l) => / POST http:\/\//.test(l)), `not all absolute-form POSTs:\n${lines.join('\n')}`);
      // The service saw the requests arrive through squid.
      t.diagnostic(`Via: ${svc.requestHeaders[0]?.get('via') ?? '(none)'}`);
      assert.ok(svc.requestHeaders.every((h) => /squid/i.test(h.get('via') ?? '')), 'Via: squid missing');
      assert.ok(svc.statuses.every((s) => s === 200));
    });
  }

  it('an https service through squid via CONNECT (from HTTPS_PROXY), transport verified through the tunnel', async () => {
    const svc = await startService({ https: true, name: 'squid-https' });
    services.push(svc);
    // The tunnel is end to end, so the transport can be verified (no `insecure` here).
    const c = client({ env: { https_proxy: open.url }, transport: { ca: pki.ca.cert } });
    await exchange(c, svc, 3);
    await c.close(); // squid logs a tunnel when it closes
    const line = await logLine(open, new RegExp(`CONNECT 127\\.0\\.0\\.1:${svc.port} `));
    assert.match(line, /TCP_TUNNEL\/200 /);
    // Squid never saw the requests themselves, only the tunnel.
    assert.equal((await open.accessLog()).some((l) => l.includes(`https://127.0.0.1:${svc.port}`)), false);
    assert.ok(svc.requestHeaders.every((h) => h.get('via') === null));
  });

  it('squid refusing CONNECT: an https service fails with a clear AtlsError, an http one still works', async (t) => {
    const svc = await startService({ https: true, name: 'squid-refused' });
    services.push(svc);
    const c = client({ proxy: noConnect.url, transport: { ca: pki.ca.cert } });
    const started = Date.now();
    const err = await c.fetch(svc.url('/meter'), { method: 'POST', body: 'x', signal: AbortSignal.timeout(10_000) }).then(
      () => assert.fail('CONNECT was refused, yet the request succeeded'),
      (e: unknown) => e,
    );
    t.diagnostic(`client error: ${String(err)}`);
    assert.ok(err instanceof AtlsError, `expected an AtlsError, got ${String(err)}`);
    assert.equal(err.code, 'CLOSED');
    assert.match(err.message, /transport to https:\/\/127\.0\.0\.1:\d+ failed: .*403/);
    assert.ok(Date.now() - started < 5000, 'the refusal took too long');
    assert.deepEqual(svc.statuses, [], 'nothing reached the service');
    await logLine(noConnect, new RegExp(`TCP_DENIED/403 .*CONNECT 127\\.0\\.0\\.1:${svc.port} `));

    const plain = await startService({ name: 'squid-refused-http' });
    services.push(plain);
    await exchange(client({ proxy: noConnect.url }), plain, 1);
  });
});
