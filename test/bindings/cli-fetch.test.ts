/**
 * `atls fetch` behaves like curl where curl has an answer: flags, exit codes by
 * class of failure, `-v` with the outer HTTP exchange, timeouts; and every
 * failure is one line with the typed code and the likely fix. Real sockets;
 * `atls` is a process where the process itself is tested (the engine
 * fallback notice, -s, exit statuses); elsewhere `atls fetch` and the `atls
 * serve` services run in the test's process (helpers/cli.ts, atlsInProcess,
 * startInProcess).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeDevPki, type DevPkiFiles } from '../../src/pki.js';
import { atlsNodeListener, createAtlsHandler, echoApp } from '../../src/http/index.js';
import { atlsArgv, atlsAsync, atlsInProcess, startInProcess, stop, urlIn, type CliResult, type InProcessDaemon } from '../helpers/cli.js';
import { freePort, requireTool } from '../helpers/tools.js';

const portOf = (s: Server | TcpServer): number => (s.address() as AddressInfo).port;

/** One line on stderr: `atls: reason [CODE...]; fix`. */
function assertOneLine(r: CliResult, code: RegExp, fix: RegExp): void {
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, /^atls: /);
  assert.match(lines[0]!, code);
  assert.match(lines[0]!, fix);
}

describe('atls fetch, as curl users expect it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atls-fetch-'));
  let pki: DevPkiFiles;
  const daemons: ChildProcess[] = [];
  const services: InProcessDaemon[] = [];
  const servers: Array<Server | TcpServer> = [];
  const sockets: Socket[] = [];
  let echo = ''; // origin of `atls serve --echo`, as localhost
  let sidecar = ''; // origin of `atls serve --upstream` in front of `upstream`
  let direct = ''; // origin of `upstream` itself, where curl goes
  let releaseSlow: () => void = () => undefined; // lets /slow send its second half

  before(async () => {
    pki = await writeDevPki(join(dir, 'pki'));
    // The service behind the sidecar: 404, a redirect, and an answer.
    const upstream = createServer((req, res) => {
      if (req.url === '/missing') res.writeHead(404, { 'content-type': 'text/plain' }).end('no such thing');
      else if (req.url === '/moved') res.writeHead(302, { location: '/final' }).end();
      else if (req.url === '/loop') res.writeHead(302, { location: '/loop' }).end();
      else if (req.url === '/slow') {
        // Half now, half once the client has printed the first half (or after 10 s, so that a
        // client holding the body whole fails the test instead of hanging it).
        res.writeHead(200, { 'content-type': 'application/octet-stream' }).write(Buffer.alloc(256 * 1024, 0x31));
        const later = setTimeout(() => releaseSlow(), 10_000);
        releaseSlow = () => {
          clearTimeout(later);
          res.end(Buffer.alloc(256 * 1024, 0x32));
        };
      }
      else res.writeHead(200, { 'content-type': 'text/plain' }).end(`at ${req.url}`);
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    servers.push(upstream);
    direct = `http://127.0.0.1:${portOf(upstream)}`;
    const started = await Promise.all([
      startInProcess(['serve', '--listen', '127.0.0.1:0', '--cert', pki.server, '--key', pki.serverKey, '--echo']),
      startInProcess(['serve', '--listen', '127.0.0.1:0', '--cert', pki.server, '--key', pki.serverKey, '--upstream', `127.0.0.1:${portOf(upstream)}`]),
    ]);
    services.push(...started);
    [echo, sidecar] = started.map((s) => new URL(urlIn(s.line)).origin.replace('127.0.0.1', 'localhost')) as [string, string];
  });

  after(async () => {
    await Promise.all([...daemons.map(stop), ...services.map((d) => d.stop())]);
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('-V / --version print the version', async () => {
    for (const r of [await atlsAsync(['-V']), await atlsInProcess(['--version'])]) {
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^atls \d+\.\d+\.\d+ \(node v\d+/);
    }
  });

  it('a URL without a scheme is http://; -d implies POST; -i prints the inner head', async () => {
    const r = await atlsInProcess(['fetch', echo.replace('http://', '') + '/x', '-d', 'a=1', '-d', 'b=2', '-i', '--ca', pki.ca]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(r.stdout, /content-type: application\/x-www-form-urlencoded\r\n/);
    assert.ok(r.stdout.endsWith('\r\n\r\na=1&b=2'), r.stdout); // the echo: POSTed, joined with & as curl does
  });

  it('-d @- reads stdin, --data @FILE drops newlines, --data-binary @FILE keeps them, --data-raw keeps @, -T PUTs a file, -o writes a file (exit 23 when it cannot)', async () => {
    const stdin = await atlsInProcess(['fetch', `${echo}/in`, '-d', '@-', '--ca', pki.ca], 'from stdin\n');
    assert.equal(stdin.status, 0, stdin.stderr);
    assert.equal(stdin.stdout, 'from stdin');
    const file = join(dir, 'body.txt');
    writeFileSync(file, 'line 1\r\nline 2\n');
    const stripped = await atlsInProcess(['fetch', `${echo}/f`, '--data', `@${file}`, '--ca', pki.ca]);
    assert.equal(stripped.stdout, 'line 1line 2');
    const out = join(dir, 'out.bin');
    const binary = await atlsInProcess(['fetch', `${echo}/f`, '--data-binary', `@${file}`, '-o', out, '--ca', pki.ca]);
    assert.equal(binary.status, 0, binary.stderr);
    assert.equal(binary.stdout, '');
    assert.equal(readFileSync(out, 'utf8'), 'line 1\r\nline 2\n');
    const unwritable = await atlsInProcess(['fetch', `${echo}/f`, '-d', 'x', '-o', join(dir, 'no-such-folder', 'out'), '--ca', pki.ca]);
    assert.equal(unwritable.status, 23);
    assertOneLine(unwritable, /cannot write \(ENOENT\)/, /check the folder exists/);
    const raw = await atlsInProcess(['fetch', `${echo}/f`, '--data-raw', `@${join(dir, 'nope')}`, '--ca', pki.ca]);
    assert.equal(raw.status, 0, raw.stderr);
    assert.equal(raw.stdout, `@${join(dir, 'nope')}`, '--data-raw sends a leading @ as it is, as curl does');
    // -T: PUT, the file streamed, to URL/FILE when the URL ends with /; from stdin with -; exit 26 without the file.
    const put = await atlsInProcess(['fetch', `${echo}/up/`, '-T', file, '-w', ' %{method} %{url_effective}', '--ca', pki.ca]);
    assert.equal(put.status, 0, put.stderr);
    assert.equal(put.stdout, `line 1\r\nline 2\n PUT ${echo}/up/body.txt`);
    const putStdin = await atlsInProcess(['fetch', `${echo}/up/`, '-T', '-', '-w', ' %{method} %{url_effective}', '--ca', pki.ca], 'piped');
    assert.equal(putStdin.stdout, `piped PUT ${echo}/up/`);
    const putMissing = await atlsInProcess(['fetch', `${echo}/up/`, '-T', join(dir, 'nope'), '--ca', pki.ca]);
    assert.equal(putMissing.status, 26);
    assertOneLine(putMissing, /-T .*cannot read/, /check the file name/);
    const missing = await atlsInProcess(['fetch', `${echo}/f`, '-d', `@${join(dir, 'nope')}`, '--ca', pki.ca]);
    assert.equal(missing.status, 26);
    assertOneLine(missing, /cannot read/, /check the file name/);
  });

  it('-f exits 22 on an inner 4xx without printing the body; -L follows inner redirects; -s is silent', async () => {
    const plain = await atlsInProcess(['fetch', `${sidecar}/missing`, '--ca', pki.ca]);
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(plain.stdout, 'no such thing');
    const failed = await atlsInProcess(['fetch', `${sidecar}/missing`, '-f', '--ca', pki.ca]);
    assert.equal(failed.status, 22);
    assert.equal(failed.stdout, '');
    assertOneLine(failed, /404/, /--fail/);
    const silent = await atlsInProcess(['fetch', `${sidecar}/missing`, '-f', '-s', '--ca', pki.ca]);
    assert.equal(silent.status, 22);
    assert.equal(silent.stderr, '');

    const moved = await atlsInProcess(['fetch', `${sidecar}/moved`, '-i', '--ca', pki.ca]);
    assert.equal(moved.status, 0, moved.stderr);
    assert.match(moved.stdout, /^HTTP\/1\.1 302 /);
    assert.match(moved.stdout, /location: \/final/i);
    const followed = await atlsInProcess(['fetch', `${sidecar}/moved`, '-L', '--ca', pki.ca]);
    assert.equal(followed.status, 0, followed.stderr);
    assert.equal(followed.stdout, 'at /final');
    const loop = await atlsInProcess(['fetch', `${sidecar}/loop`, '-L', '--ca', pki.ca]);
    assert.equal(loop.status, 47, loop.stderr);
    assertOneLine(loop, /redirect/, /drop -L/);
  });

  it('-I, -o -, -O, -w and --fail-with-body print what curl prints for the same answer (curl against the service itself)', async (t) => {
    const curl = requireTool(t, 'curl');
    if (!curl) return;
    const run = (args: string[], cwd?: string): Promise<CliResult> =>
      new Promise((resolve) => {
        execFile(curl, args, { cwd, encoding: 'utf8' }, (error, stdout, stderr) =>
          resolve({ status: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      });
    const write = '%{http_code} %{content_type} %{size_download} %{method}\\n';
    for (const [path, flags] of [
      ['/missing', ['--fail-with-body', '-w', write]],
      ['/missing', ['-o', '-', '-w', write]],
      ['/x', ['-w', write, '-d', 'ignored']],
      ['/missing', ['-f', '-w', '[%{http_code}]']],
    ] as const) {
      const theirs = await run(['-s', ...flags, direct + path]);
      const ours = await atlsInProcess(['fetch', '-s', ...flags, sidecar + path, '--ca', pki.ca]);
      assert.deepEqual({ status: ours.status, stdout: ours.stdout }, { status: theirs.status, stdout: theirs.stdout }, `${flags.join(' ')} ${path}`);
    }
    // Nothing listening: exit 7 and -w still written, with http_code 000 (scripts read the code from it).
    const closed = `http://127.0.0.1:${await freePort()}/x`;
    const theirsClosed = await run(['-s', '-w', '%{http_code}', closed]);
    const oursClosed = await atlsInProcess(['fetch', '-s', '-w', '%{http_code}', closed]);
    assert.deepEqual({ status: oursClosed.status, stdout: oursClosed.stdout }, { status: theirsClosed.status, stdout: theirsClosed.stdout });
    // -I: HEAD, the head only (the sidecar's fields differ from the service's, the status line does not).
    const theirs = await run(['-s', '-I', `${direct}/x`]);
    const ours = await atlsInProcess(['fetch', '-I', `${sidecar}/x`, '--ca', pki.ca]);
    assert.equal(ours.status, 0, ours.stderr);
    assert.equal(ours.stdout.split('\r\n')[0], theirs.stdout.split('\r\n')[0]);
    assert.match(ours.stdout, /\r\ncontent-type: text\/plain\r\n/);
    assert.ok(ours.stdout.endsWith('\r\n\r\n'), 'nothing after the head');
    // -O: the file named as the URL's last segment, in the current folder; none: exit 23 as curl.
    const folder = mkdtempSync(join(dir, 'remote-name-'));
    const saved = await atlsAsync(['fetch', '-O', `${sidecar}/files/report%20one.txt`, '--ca', pki.ca], undefined, undefined, folder);
    assert.equal(saved.status, 0, saved.stderr);
    assert.equal(readFileSync(join(folder, 'report one.txt'), 'utf8'), 'at /files/report%20one.txt');
    const nameless = await atlsInProcess(['fetch', '-O', `${sidecar}/`, '--ca', pki.ca]);
    assert.equal(nameless.status, (await run(['-s', '-O', `${direct}/`], folder)).status);
    assertOneLine(nameless, /no file name/, /-o FILE/);
    // An unknown flag: exit 2 as curl, with one line pointing at --help, not the whole help.
    const unknown = await atlsInProcess(['fetch', '--no-such-flag', `${sidecar}/x`]);
    assert.equal(unknown.status, (await run(['--no-such-flag', `${direct}/x`])).status);
    assert.deepEqual(unknown.stderr.trim().split('\n'), ["error: unknown option '--no-such-flag'", '(--help lists the options)']);
  });

  it('the answer is written as it arrives, not held until its end', async () => {
    const child = spawn(process.execPath, atlsArgv(['fetch', `${sidecar}/slow`, '--ca', pki.ca]), { stdio: ['ignore', 'pipe', 'pipe'] });
    let printed = 0;
    let printedBeforeEnd = 0;
    let released = false;
    child.stdout.on('data', (d: Buffer) => {
      printed += d.length;
      if (!released) printedBeforeEnd = printed;
      if (printed >= 256 * 1024 && !released) {
        released = true;
        releaseSlow();
      }
    });
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(status, 0);
    assert.equal(printed, 512 * 1024);
    assert.equal(printedBeforeEnd, 256 * 1024, 'the first half was printed before the service sent the second');
  });

  it('-s hides the notice of the engine fallback as well; -sS still prints the error line', async () => {
    const noAddon = { ATLS_NATIVE_ADDON: join(dir, 'no-such-addon.node') };
    const chatty = await atlsAsync(['fetch', `${echo}/s`, '-d', 'x', '--ca', pki.ca], undefined, noAddon);
    assert.equal(chatty.status, 0, chatty.stderr);
    assert.match(chatty.stderr, /native OpenSSL engine unavailable .*using the node engine/);
    const silent = await atlsAsync(['fetch', `${echo}/s`, '-d', 'quiet', '-s', '--ca', pki.ca], undefined, noAddon);
    assert.equal(silent.status, 0);
    assert.equal(silent.stdout, 'quiet');
    assert.equal(silent.stderr, '');
    const failed = await atlsAsync(['fetch', `${echo}/s`, '-sS'], undefined, noAddon);
    assert.equal(failed.status, 60);
    assertOneLine(failed, /\[CERTIFICATE_UNTRUSTED/, /--ca FILE/);
    const hushed = await atlsAsync(['fetch', `${echo}/s`, '-s'], undefined, noAddon);
    assert.equal(hushed.status, 60);
    assert.equal(hushed.stderr, '');
  });

  it('-v shows the outer HTTP requests (>) and responses (<) next to the flights', async () => {
    const r = await atlsInProcess(['fetch', `${echo}/v`, '-d', 'x', '-v', '--ca', pki.ca]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^> POST \/\.well-known\/atls HTTP\/1\.1$/m);
    assert.match(r.stderr, /^> Host: localhost:\d+$/m);
    assert.match(r.stderr, /^> content-type: application\/atls\+octet-stream$/m);
    assert.match(r.stderr, /^< HTTP\/1\.1 200 OK$/m);
    assert.match(r.stderr, /^< set-cookie: atls-session=/m);
    assert.match(r.stderr, /^> round trip 1: sent \d+ B.*client_hello/m);
    assert.match(r.stderr, /^\* handshake: TLSv1\.3/m);
    // In order, as it happened: request head, flight, response head, flight.
    const order = ['> POST', '> round trip 1', '< HTTP/1.1 200', '< round trip 1', '* handshake'].map((s) => r.stderr.indexOf(s));
    assert.deepEqual([...order].sort((a, b) => a - b), order);
  });

  it('exit codes say the class of failure, each with one line naming the fix', async () => {
    const noCa = await atlsInProcess(['fetch', `${echo}/x`]);
    assert.equal(noCa.status, 60);
    assertOneLine(noCa, /\[CERTIFICATE_UNTRUSTED/, /--ca FILE/);
    const resolve = await atlsInProcess(['fetch', 'http://no-such-host.invalid/x']);
    assert.equal(resolve.status, 6, resolve.stderr);
    assertOneLine(resolve, /ENOTFOUND|EAI_AGAIN/, /host name/);
    const closed = await atlsInProcess(['fetch', `http://127.0.0.1:${await freePort()}/x`]);
    assert.equal(closed.status, 7, closed.stderr);
    assertOneLine(closed, /ECONNREFUSED.*\[CLOSED\]/, /start the service/);
    const https = await atlsInProcess(['fetch', `${echo.replace('http:', 'https:')}/x`, '--ca', pki.ca]);
    assert.equal(https.status, 35, https.stderr);
    assertOneLine(https, /does not speak TLS/, /use http:\/\//);
    const web = createServer((_req, res) => res.writeHead(404, { 'content-type': 'text/html' }).end('<html><body>Not Found</body></html>'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    servers.push(web);
    const notAtls = await atlsInProcess(['fetch', `http://127.0.0.1:${portOf(web)}/x`, '--ca', pki.ca]);
    assert.equal(notAtls.status, 8, notAtls.stderr);
    assertOneLine(notAtls, /404 text\/html.*\[NOT_ATLS\]/, /atls serve/);
    assert.doesNotMatch(notAtls.stderr, /<html/);
  });

  it('timeouts: a server that accepts and never answers ends with exit 28 after --max-time', async () => {
    const silent = createTcpServer((s) => sockets.push(s));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    servers.push(silent);
    const r = await atlsInProcess(['fetch', `http://127.0.0.1:${portOf(silent)}/x`, '--max-time', '1', '-v']);
    assert.equal(r.status, 28, r.stderr);
    assert.match(r.stderr, /^> POST \/\.well-known\/atls/m, 'the request went out before the wait');
    assert.match(r.stderr.trim().split('\n').pop()!, /^atls: .*\[TIMEOUT\].*--max-time/);
    const bad = await atlsInProcess(['fetch', `${echo}/x`, '--max-time', 'soon']);
    assert.equal(bad.status, 1);
    assertOneLine(bad, /--max-time wants a number of seconds/, /INVALID_ARGUMENT/);
  });

  it('exit 56: a connection that breaks while the answer is awaited or arriving, one line naming it', async () => {
    // Three ways a server (or a box in between) breaks it after taking the request.
    const breakers: Record<string, (s: Socket) => void> = {
      'answer cut short': (s) => {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: application/atls+octet-stream\r\ncontent-length: 1000\r\n\r\n' + 'x'.repeat(10));
        s.end();
      },
      'reset': (s) => s.resetAndDestroy(),
      'closed without an answer': (s) => s.end(),
    };
    for (const [name, breaks] of Object.entries(breakers)) {
      const broken = createTcpServer((s) => s.once('data', () => breaks(s)));
      await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
      servers.push(broken);
      const r = await atlsInProcess(['fetch', `http://127.0.0.1:${portOf(broken)}/x`, '--ca', pki.ca]);
      assert.equal(r.status, 56, `${name}: ${r.stderr}`);
      assertOneLine(r, /other side closed|ECONNRESET/, /the connection broke/);
    }
  });

  it('exit 28: an HTTP connect that never completes (a listener whose accept queue is full) ends after --connect-timeout', async () => {
    // A listener that never accepts: its process blocks its event loop once listening.
    const listener = spawn(
      process.execPath,
      ['-e', "require('net').createServer().listen({ port: 0, host: '127.0.0.1', backlog: 1 }, function () { console.log(this.address().port); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })"],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    daemons.push(listener);
    const port = await new Promise<number>((resolve) => listener.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
    // Linux queues backlog + 1 completed connections; then it drops SYNs, so a connect waits for good.
    for (let i = 0; i < 2; i++) {
      const filler = connect(port, '127.0.0.1');
      sockets.push(filler);
      await new Promise<void>((resolve, reject) => filler.once('connect', resolve).once('error', reject));
    }
    const r = await atlsInProcess(['fetch', `http://127.0.0.1:${port}/x`, '--connect-timeout', '1', '--ca', pki.ca]);
    assert.equal(r.status, 28, r.stderr);
    assertOneLine(r, /Connect Timeout.*\[TIMEOUT\]/, /--connect-timeout/);
  });

  it('coap:// with nothing listening: retransmissions under -v as they happen, then exit 28', async () => {
    const port = await freePort();
    const r = await atlsInProcess(['fetch', `coap://127.0.0.1:${port}/t`, '--connect-timeout', '5', '-v', '--psk-identity', 'a', '--psk', '00112233445566778899aabbccddeeff']);
    assert.equal(r.status, 28, r.stderr);
    assert.match(r.stderr, /^\* CoAP retransmission 1 of message 127\.0\.0\.1:\d+ #\d+/m);
    assert.match(r.stderr.trim().split('\n').pop()!, /^atls: .*--connect-timeout 5 s.*\[TIMEOUT\]/);
  });

  it('--transport-ca trusts an outer HTTPS certificate from a private CA; without it: exit 60 naming the flag', async () => {
    const handler = createAtlsHandler({ tls: { cert: readFileSync(pki.server, 'utf8'), key: readFileSync(pki.serverKey, 'utf8') }, app: echoApp });
    const tlsServer = createHttpsServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey) }, atlsNodeListener(handler));
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    servers.push(tlsServer);
    const url = `https://localhost:${portOf(tlsServer)}/t`;
    const refused = await atlsInProcess(['fetch', url, '-d', 'x', '--ca', pki.ca]);
    assert.equal(refused.status, 60, refused.stderr);
    assertOneLine(refused, /outer HTTPS certificate is not trusted/, /--transport-ca FILE/);
    const ok = await atlsInProcess(['fetch', url, '-d', 'over https', '--ca', pki.ca, '--transport-ca', pki.ca]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout, 'over https');
  });
});
