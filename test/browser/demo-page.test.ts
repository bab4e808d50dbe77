/**
 * ATLS from a real browser through a TLS-intercepting middlebox: Debian's
 * chromium (driven by playwright-core) loads the demo page of `atls serve
 * --demo-page --echo` through mitmdump, which terminates the outer HTTPS
 * with its own forged certificate (reverse mode, as a TLS terminator in
 * front of a service; the browser accepts the middlebox's certificate as an
 * enterprise-installed CA would make it). The page runs the webcrypto TLS
 * engine and sends inner requests as protected Binary HTTP messages.
 *
 * Checks: the handshake completes (TLS 1.3, server certificate verified),
 * each inner request gets its echo back, and nothing mitmdump recorded (every
 * outer request and response body and header) contains the inner plaintext.
 * A screenshot of the page goes to test-artifacts/browser/ (gitignored).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED } from '../../src/http/index.js';
import { inspectFlight } from '../../src/records.js';
import { writeTestPki } from '../helpers/pki.js';
import { DUMP_ADDON, readDump, startTool, tempDir } from '../helpers/middlebox.js';
import { findTool, REQUIRE_INTEROP, type ToolProcess } from '../helpers/tools.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const ARTIFACTS = join(root, 'test-artifacts', 'browser');
const CHROMIUM = process.env.ATLS_CHROMIUM ?? '/usr/bin/chromium';
/** Inner data that must never show in anything the middlebox sees. */
const SECRETS = ['meter reading 4711 kWh (inner secret)', 'x-inner-path-31337', 'second inner secret: PUT 0815'];

const mitmdump = findTool('mitmdump');
const missing = !mitmdump ? 'mitmdump (Debian package mitmproxy)' : !existsSync(CHROMIUM) ? `${CHROMIUM} (Debian package chromium)` : undefined;
const skip = missing && !REQUIRE_INTEROP ? `${missing} not installed` : false;

describe('the demo page in chromium, through mitmproxy intercepting the outer HTTPS', { skip, timeout: 120_000 }, () => {
  let dir: { path: string; remove(): Promise<void> };
  let serve: ToolProcess;
  let proxy: ToolProcess;
  let browser: Browser;
  let pageUrl: string;
  let dumpFile: string;

  before(async () => {
    if (missing) throw new Error(`${missing} not installed and ATLS_REQUIRE_INTEROP=1`);
    // The CLI runs dist/: the page's bundle must be the current one.
    if (!existsSync(join(root, 'dist', 'browser', 'atls.js'))) {
      const built = spawnSync(process.execPath, [join(root, 'scripts', 'build-browser.mjs')], { stdio: 'inherit' });
      assert.equal(built.status, 0, 'browser bundle built');
    }
    dir = await tempDir('browser');
    const files = await writeTestPki(dir.path);
    serve = await startTool(
      process.execPath,
      [join(root, 'bin', 'atls.js'), 'serve', '--listen', '127.0.0.1:0', '--echo', '--cert', files.server.cert, '--key', files.server.key,
        '--demo-page', '--demo-ca', files.ca.cert],
      /demo page at http:\/\/127\.0\.0\.1:(\d+)\//,
    );
    const servePort = /demo page at http:\/\/127\.0\.0\.1:(\d+)\//.exec(serve.output)![1]!;
    dumpFile = join(dir.path, 'dump.jsonl');
    await writeFile(join(dir.path, 'dump.py'), DUMP_ADDON(dumpFile));
    proxy = await startTool(
      mitmdump!,
      ['--mode', `reverse:http://127.0.0.1:${servePort}`, '--listen-host', '127.0.0.1', '--listen-port', '0',
        '--set', `confdir=${join(dir.path, 'conf')}`, '-s', join(dir.path, 'dump.py')],
      /Proxy server listening at 127\.0\.0\.1:(\d+)/,
    );
    const proxyPort = /listening at 127\.0\.0\.1:(\d+)/.exec(proxy.output)![1]!;
    // The ATLS certificate is for localhost; the outer one is mitmdump's forgery for the same name.
    pageUrl = `https://localhost:${proxyPort}/`;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  after(async () => {
    await browser?.close();
    await proxy?.kill();
    await serve?.kill();
    await dir?.remove();
  });

  async function send(page: Page, method: string, path: string, body: string): Promise<string> {
    await page.selectOption('#method', method);
    await page.fill('#path', path);
    await page.fill('#body', body);
    await page.$eval('#answer', (el) => el.removeAttribute('data-status'));
    await page.click('#send');
    await page.waitForSelector('#answer[data-status]', { timeout: 30_000 });
    return (await page.textContent('#answer')) ?? '';
  }

  it('completes ATLS from the page, gets the inner answers, and the middlebox sees no inner plaintext', async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true }); // the middlebox's CA, as if installed
    const page = await context.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    await page.goto(pageUrl);

    const first = await send(page, 'POST', `/meter?id=${SECRETS[1]}`, SECRETS[0]!);
    assert.match(first, /^200\n/, first);
    assert.ok(first.endsWith(SECRETS[0]!), `the echo of the first request: ${first}`);
    const second = await send(page, 'PUT', '/meter', SECRETS[2]!);
    assert.match(second, /^200\n/, second);
    assert.ok(second.endsWith(SECRETS[2]!), `the echo of the second request: ${second}`);

    const log = (await page.textContent('#log')) ?? '';
    assert.match(log, /handshake done: TLSv1\.3 TLS_AES_\d+_GCM_SHA\d+, server certificate verified/);
    assert.match(log, /page -> server \d+ B: handshake \[client_hello\]/);
    assert.match(log, /server -> page \d+ B \(HTTP 200\): handshake .*\[server_hello\]/);
    assert.deepEqual(consoleErrors, []);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, 'demo-page.png'), fullPage: true });
    await context.close();

    // What mitmdump saw: the page, the bundle, and ATLS POSTs only.
    const flows = await readDump(dumpFile);
    const atls = flows.filter((f) => f.url.endsWith('/.well-known/atls'));
    assert.ok(flows.some((f) => f.method === 'GET' && new URL(f.url).pathname === '/' && f.status === 200), 'the page went through the middlebox');
    assert.ok(atls.length >= 3, `ATLS exchanges intercepted: ${atls.length}`);
    for (const f of atls) {
      assert.equal(f.method, 'POST');
      assert.equal(f.status, 200);
      assert.ok([MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED].includes(f.requestType), f.requestType);
    }
    const hello = inspectFlight(atls[0]!.requestBody);
    assert.equal(hello.clientHello?.serverName, 'localhost', 'the ClientHello names the ATLS service');
    assert.ok(atls.some((f) => f.requestType === MEDIA_TYPE_PROTECTED), 'a request went as a protected message');
    // No inner byte in the clear, in any body or header of any flow.
    for (const f of flows) {
      const text = JSON.stringify({ ...f, requestBody: undefined, responseBody: undefined });
      for (const secret of SECRETS) {
        assert.ok(!text.includes(secret), `${f.method} ${f.url}: headers or URL show ${secret}`);
        for (const body of [f.requestBody, f.responseBody]) {
          assert.ok(!Buffer.from(body).includes(secret), `${f.method} ${f.url}: a body shows ${secret}`);
        }
      }
    }
  });
});
