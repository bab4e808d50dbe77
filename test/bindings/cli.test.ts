/**
 * The `atls` command contract, run as a user would: real sockets, files on
 * disk; the commands run in the test's process where the process is not
 * what is checked (helpers/cli.ts: atlsInProcess, startInProcess), as real
 * processes where it is (test/cli/). Each
 * subcommand of the fixed contract is exercised;
 * the scenarios of several daemons each (cipher choices, body limits through
 * the proxy, the gateway, libcoap's proxy) are in test/cli/ (`npm run test:cli`).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, statSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { captureHandshake } from '../helpers/tls-capture.js';
import { atlsInProcess, startInProcess, startJsonUpstream, type InProcessDaemon } from '../helpers/cli.js';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'atls.js');

describe('atls command', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atls-cli-'));
  const certs = join(dir, 'pki');
  const daemons: InProcessDaemon[] = [];
  let upstream: Server;
  let upstreamUrl: string;
  let echo: Promise<string> | undefined;
  /** The origin (as localhost) of one `serve --echo` (TLS 1.3, exported mode) that the tests share; started by the first that needs it. */
  const echoOrigin = (): Promise<string> =>
    (echo ??= startInProcess([
      'serve', '--listen', '127.0.0.1:0', '--cert', join(certs, 'server.pem'), '--key', join(certs, 'server.key'), '--echo',
    ]).then((d) => {
      daemons.push(d);
      const line = d.line;
      const url = /(http:\/\/[^\s]+)/.exec(line)?.[1];
      assert.ok(url, `ready line names the endpoint URL: ${line}`);
      return new URL(url).origin.replace('127.0.0.1', 'localhost');
    }));

  before(async () => {
    ({ server: upstream, url: upstreamUrl } = await startJsonUpstream());
  });

  after(async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('certs --out DIR writes the development PKI', async () => {
    const r = await atlsInProcess(['certs', '--out', certs]);
    assert.equal(r.status, 0, r.stderr);
    for (const f of ['ca.pem', 'server.pem', 'server.key', 'client.pem', 'client.key']) {
      assert.ok(existsSync(join(certs, f)), f);
    }
    assert.equal(statSync(join(certs, 'server.key')).mode & 0o077, 0, 'keys are private');
  });

  it('serve --echo answers fetch, with -v describing the handshake', async () => {
    const origin = await echoOrigin();
    const r = await atlsInProcess(['fetch', `${origin}/hello`, '-X', 'POST', '-H', 'Content-Type: text/plain', '-d', 'hi there', '--ca', join(certs, 'ca.pem'), '-v']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'hi there');
    assert.match(r.stderr, /handshake: TLSv1\.3 TLS_[A-Z0-9_]+, \d round trips/);
    assert.match(r.stderr, /> round trip 1: sent \d+ B.*client_hello/);

    // Architecture (a) against a records-mode endpoint, TLS 1.2.
    const rec = await startInProcess([
      'serve', '--listen', '127.0.0.1:0', '--cert', join(certs, 'server.pem'), '--key', join(certs, 'server.key'),
      '--echo', '--mode', 'records', '--tls-version', '1.2',
    ]);
    daemons.push(rec);
    const recOrigin = new URL(/(http:\/\/[^\s]+)/.exec(rec.line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const data = join(dir, 'body.bin');
    writeFileSync(data, 'from a file');
    const r2 = await atlsInProcess(['fetch', `${recOrigin}/x`, '-X', 'PUT', '-d', `@${data}`, '--ca', join(certs, 'ca.pem'), '--mode', 'records', '-v']);
    assert.equal(r2.status, 0, r2.stderr);
    assert.equal(r2.stdout, 'from a file');
    assert.match(r2.stderr, /TLSv1\.2/);
    // The other mode against it: one line naming --mode.
    const mismatch = await atlsInProcess(['fetch', `${recOrigin}/x`, '-d', 'm', '--ca', join(certs, 'ca.pem')]);
    assert.equal(mismatch.status, 1, mismatch.stderr);
    assert.match(mismatch.stderr, /^atls: .*mode "records".*\[[A-Z_]+\]; the service runs the other mode: try --mode records\n$/);
  });

  it('fetch fails with a one-line reason when the service is not trusted or not there', async () => {
    const others = join(dir, 'other');
    assert.equal((await atlsInProcess(['certs', '--out', others])).status, 0);
    const origin = await echoOrigin();
    const r = await atlsInProcess(['fetch', `${origin}/x`, '--ca', join(others, 'ca.pem')]);
    assert.equal(r.status, 60, 'curl: certificate not trusted');
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^atls: .*CERTIFICATE_UNTRUSTED/);
    // Port 9 is on the Fetch standard's blocklist, which undici applies: said so, not only "bad port".
    const gone = await atlsInProcess(['fetch', 'http://localhost:9/none', '--ca', join(others, 'ca.pem')]);
    assert.equal(gone.status, 7, gone.stderr);
    assert.match(gone.stderr, /^atls: .*bad port \[CLOSED\]; the port is one the Fetch standard blocks .*: serve on another port\n$/);
  });

  it('serve --upstream is a reverse sidecar and proxy a forward sidecar for plain HTTP clients', async () => {
    const started = await startInProcess([
      'serve', '--listen', '127.0.0.1:0', '--cert', join(certs, 'server.pem'), '--key', join(certs, 'server.key'),
      '--ca', join(certs, 'ca.pem'), '--require-client-cert', '--upstream', upstreamUrl,
    ]);
    daemons.push(started);
    const { line } = started;
    const service = new URL(/(http:\/\/[^\s]+)/.exec(line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const proxy = await startInProcess([
      'proxy', '--listen', '127.0.0.1:0', '--to', service, '--ca', join(certs, 'ca.pem'),
      '--cert', join(certs, 'client.pem'), '--key', join(certs, 'client.key'),
    ]);
    daemons.push(proxy);
    const local = /(http:\/\/[^\s]+)/.exec(proxy.line)![1]!;
    const res = await fetch(new URL('/api/items?id=3', local), { method: 'POST', body: 'plain in' });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { upstream: true, method: 'POST', path: '/api/items?id=3', body: 'plain in' });

    // Without the client certificate the service refuses: the proxy says why.
    const anon = await startInProcess(['proxy', '--listen', '127.0.0.1:0', '--to', service, '--ca', join(certs, 'ca.pem')]);
    daemons.push(anon);
    const refused = await fetch(new URL('/api/items', /(http:\/\/[^\s]+)/.exec(anon.line)![1]!));
    assert.equal(refused.status, 502);
    assert.match(await refused.text(), /certificate/i);
  });

  it('fetch and proxy take --policy: auto over http: uses ATLS and says so; never sends plain HTTP', async () => {
    const origin = await echoOrigin();
    const auto = await atlsInProcess(['fetch', `${origin}/p`, '-X', 'POST', '-d', 'auto', '--ca', join(certs, 'ca.pem'), '--policy', 'auto', '-v']);
    assert.equal(auto.status, 0, auto.stderr);
    assert.equal(auto.stdout, 'auto');
    assert.match(auto.stderr, /\* policy auto: ATLS \(transport none: http\)/);
    // never: a plain request, which this ATLS-only endpoint does not serve (404 from the handler).
    const never = await atlsInProcess(['fetch', `${origin}/p`, '--policy', 'never', '-v']);
    assert.equal(never.status, 0, never.stderr);
    assert.match(never.stderr, /\* policy never: plain HTTP\(S\), no ATLS/);
    assert.doesNotMatch(never.stderr, /round trip/);
    assert.match(never.stdout, /not an ATLS endpoint/);
    const proxy = await startInProcess(['proxy', '--listen', '127.0.0.1:0', '--to', origin, '--ca', join(certs, 'ca.pem'), '--policy', 'auto']);
    daemons.push(proxy);
    const res = await fetch(new URL('/q', /(http:\/\/[^\s]+)/.exec(proxy.line)![1]!), { method: 'POST', body: 'via auto proxy' });
    assert.equal(await res.text(), 'via auto proxy');
    assert.notEqual((await atlsInProcess(['fetch', `${origin}/p`, '--policy', 'sometimes'])).status, 0);
  });

  it('serve --coap with a PSK answers fetch coap://, block-wise included', async () => {
    const psk = ['--psk-identity', 'sensor-1', '--psk', '00112233445566778899aabbccddeeff'];
    const started = await startInProcess([
      'serve', '--listen', '127.0.0.1:0', '--coap', '127.0.0.1:0', '--cert', join(certs, 'server.pem'),
      '--key', join(certs, 'server.key'), '--echo', ...psk,
    ]);
    daemons.push(started);
    const { line } = started;
    const coap = /(coap:\/\/[^\s]+)/.exec(line)?.[1];
    assert.ok(coap, `ready line names the CoAP endpoint: ${line}`);
    const r = await atlsInProcess(['fetch', `${coap}/temperature`, '-X', 'POST', '-d', '21.5 C', ...psk]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, '21.5 C');
    // Certificates: the flights need block-wise transfer at 64-byte blocks.
    const big = 'x'.repeat(300);
    const r2 = await atlsInProcess(['fetch', `${coap.replace('127.0.0.1', 'localhost')}/echo`, '-X', 'PUT', '-d', big, '--ca', join(certs, 'ca.pem'), '--block-size', '64']);
    assert.equal(r2.status, 0, r2.stderr);
    assert.equal(r2.stdout, big);
    const wrong = await atlsInProcess(['fetch', `${coap}/t`, '--psk-identity', 'sensor-1', '--psk', 'ffffffffffffffffffffffffffffffff']);
    assert.notEqual(wrong.status, 0);
    assert.equal(wrong.stderr.trim().split('\n').length, 1, wrong.stderr);
    // An identity the service does not know: it answers with its certificate, and the line names the PSK flags.
    const unknown = await atlsInProcess(['fetch', `${coap}/t`, '--psk-identity', 'sensor-9', '--psk', '00112233445566778899aabbccddeeff']);
    assert.equal(unknown.status, 60, unknown.stderr);
    assert.match(unknown.stderr, /^atls: .*; the service did not accept PSK identity "sensor-9" .*check --psk-identity and --psk\n$/);
    // The other mode over CoAP: the 4.xx names the mode, and so does the fix.
    const mismatch = await atlsInProcess(['fetch', `${coap}/t`, '-d', 'm', '--mode', 'records', ...psk]);
    assert.equal(mismatch.status, 1, mismatch.stderr);
    assert.match(mismatch.stderr, /^atls: server answered 4\.00: INVALID_STATE: this session runs mode "exported".*; the service runs the other mode: try --mode exported\n$/);
    assert.equal((await atlsInProcess(['fetch', `${coap}/t`, '--block-size', '100', ...psk])).status, 1);
  });

  it('inspect decodes a flight without keys, as text and JSON', async () => {
    const capture = await captureHandshake({ client: { servername: 'inspect.example', ALPNProtocols: ['h2'] } });
    const hello = capture.flights[0]!.bytes;
    const file = join(dir, 'hello.bin');
    writeFileSync(file, hello);
    const text = await atlsInProcess(['inspect', file]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /client_hello/);
    assert.match(text.stdout, /inspect\.example/);
    const json = await atlsInProcess(['inspect', '--json', '-'], hello);
    assert.equal(json.status, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as { clientHello: { serverName: string; alpn: string[] } };
    assert.equal(parsed.clientHello.serverName, 'inspect.example');
    assert.deepEqual(parsed.clientHello.alpn, ['h2']);
    const bad = await atlsInProcess(['inspect', '-'], Uint8Array.from([22, 3, 3, 0, 9, 1]));
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /TRUNCATED_FLIGHT/);
  });

  it('doctor reports the engines and the default', async () => {
    const r = await atlsInProcess(['doctor', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { defaultEngine: string; engines: { name: string; available: boolean }[] };
    assert.ok(report.engines.some((e) => e.name === 'node' && e.available));
    assert.ok(['node', 'openssl'].includes(report.defaultEngine));
    const text = await atlsInProcess(['doctor']);
    assert.match(text.stdout, /default engine: /);
  });

  it('demo runs the Figure 8 scenario end to end', async () => {
    const r = await atlsInProcess(['demo']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\[middlebox\].*client_hello/);
    assert.match(r.stdout, /\[middlebox\].*protected message/);
    assert.match(r.stdout, /could read none of the inner data/);
  });

  it('usage errors exit 2; bad flag values exit 1 with a reason', async () => {
    assert.equal((await atlsInProcess(['serve'])).status, 2);
    const r = await atlsInProcess(['serve', '--listen', 'nonsense', '--echo', '--cert', 'x', '--key', 'y']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--listen wants HOST:PORT/);
  });

  it('the installed bin runs the compiled command', (t) => {
    if (!existsSync(join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js'))) {
      if (process.env.CI) assert.fail('dist/ missing: npm ci should have built it');
      t.skip('dist/ not built (run npm run build)');
      return;
    }
    const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /certs[\s\S]*serve[\s\S]*proxy[\s\S]*fetch[\s\S]*inspect/);
  });
});
