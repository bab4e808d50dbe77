/**
 * The `atls` command's scenarios of several daemons each, run as a user
 * would (real processes, real sockets, curl and libcoap): cipher choices on
 * serve, fetch and proxy; body limits through the proxy; the CoAP gateway;
 * libcoap's forward proxy. The rest of the command's contract is in
 * test/bindings/cli*.test.ts (`npm test`); these take longer.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireLibcoap } from '../helpers/libcoap.js';
import { ToolProcess, freePort } from '../helpers/tools.js';
import { atls, atlsAsync, startDaemon, stop , startJsonUpstream } from '../helpers/cli.js';
import { postClientHello } from '../helpers/coap-hello.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode } from '../../src/coap/constants.js';

describe('atls command, several processes', () => {
  const dir = mkdtempSync(join(tmpdir(), 'atls-cli-'));
  const certs = join(dir, 'pki');
  const daemons: ChildProcess[] = [];
  let upstream: Server;
  let upstreamUrl: string;

  before(async () => {
    assert.equal(atls(['certs', '--out', certs]).status, 0);
    ({ server: upstream, url: upstreamUrl } = await startJsonUpstream());
  });

  after(async () => {
    await Promise.all(daemons.map(stop));
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('--max-body: a refused body is a 413 for atls fetch and for curl through atls proxy; a raised one passes', async () => {
    const curl = spawnSync('curl', ['--version']);
    assert.equal(curl.status, 0, 'curl is needed (Debian package curl)');
    const ca = join(certs, 'ca.pem');
    const { child, line } = await startDaemon([
      'serve', '--listen', '127.0.0.1:0', '--cert', join(certs, 'server.pem'), '--key', join(certs, 'server.key'), '--echo', '--max-body', '64k',
    ]);
    daemons.push(child);
    const service = new URL(/(http:\/\/[^\s]+)/.exec(line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const big = join(dir, 'big.bin');
    writeFileSync(big, Buffer.alloc(300 * 1024, 0x61));
    const refused = await atlsAsync(['fetch', `${service}/x`, '-X', 'POST', '-d', `@${big}`, '--ca', ca]);
    assert.equal(refused.status, 63, 'curl: maximum file size exceeded');
    assert.match(refused.stderr, /^atls: .*answered 413: .*\[TOO_LARGE\]; the body exceeds a size limit/);
    const proxy = await startDaemon(['proxy', '--listen', '127.0.0.1:0', '--to', service, '--ca', ca, '--max-body', '1M']);
    daemons.push(proxy.child);
    const local = /(http:\/\/[^\s]+)/.exec(proxy.line)![1]!;
    const viaCurl = (file: string): Promise<string> =>
      new Promise((resolve) => {
        const c = spawn('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--data-binary', `@${file}`, new URL('/x', local).href]);
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.on('close', () => resolve(out));
      });
    assert.equal(await viaCurl(big), '413');
    const small = join(dir, 'small.bin');
    writeFileSync(small, 'small body');
    assert.equal(await viaCurl(small), '200');
    // The proxy's own limit.
    const huge = join(dir, 'huge.bin');
    writeFileSync(huge, Buffer.alloc(2 * 1024 * 1024, 0x62));
    assert.equal(await viaCurl(huge), '413');
    // A raised limit on serve lets the large body through.
    const roomy = await startDaemon([
      'serve', '--listen', '127.0.0.1:0', '--cert', join(certs, 'server.pem'), '--key', join(certs, 'server.key'), '--echo', '--max-body', '4M',
    ]);
    daemons.push(roomy.child);
    const roomyOrigin = new URL(/(http:\/\/[^\s]+)/.exec(roomy.line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const passed = await atlsAsync(['fetch', `${roomyOrigin}/x`, '-X', 'POST', '-d', `@${big}`, '--ca', ca]);
    assert.equal(passed.status, 0, passed.stderr);
    assert.equal(passed.stdout.length, 300 * 1024);
    assert.notEqual(atls(['serve', '--listen', '127.0.0.1:0', '--echo', '--max-body', 'lots']).status, 0);
  });

  it('serve, fetch and proxy take --ciphers (TLS 1.2) and --ciphersuites (TLS 1.3)', async () => {
    const serverCert = ['--cert', join(certs, 'server.pem'), '--key', join(certs, 'server.key'), '--echo'];
    const ca = ['--ca', join(certs, 'ca.pem')];
    const ccm8 = await startDaemon(['serve', '--listen', '127.0.0.1:0', ...serverCert, '--ciphersuites', 'TLS_AES_128_CCM_8_SHA256']);
    daemons.push(ccm8.child);
    const origin13 = new URL(/(http:\/\/[^\s]+)/.exec(ccm8.line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const r13 = atls(['fetch', `${origin13}/x`, '-X', 'POST', '-d', 'ccm8', ...ca, '--ciphersuites', 'TLS_AES_128_CCM_8_SHA256', '-v']);
    assert.equal(r13.status, 0, r13.stderr);
    assert.equal(r13.stdout, 'ccm8');
    assert.match(r13.stderr, /handshake: TLSv1\.3 TLS_AES_128_CCM_8_SHA256,/);

    const aes256ccm8 = await startDaemon([
      'serve', '--listen', '127.0.0.1:0', ...serverCert, '--tls-version', '1.2', '--ciphers', 'ECDHE-ECDSA-AES256-CCM8',
    ]);
    daemons.push(aes256ccm8.child);
    const origin12 = new URL(/(http:\/\/[^\s]+)/.exec(aes256ccm8.line)![1]!).origin.replace('127.0.0.1', 'localhost');
    const r12 = atls(['fetch', `${origin12}/x`, '-X', 'POST', '-d', 'ccm8 256', ...ca, '--ciphers', 'ECDHE-ECDSA-AES256-CCM8', '-v']);
    assert.equal(r12.status, 0, r12.stderr);
    assert.equal(r12.stdout, 'ccm8 256');
    assert.match(r12.stderr, /handshake: TLSv1\.2 TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8,/);

    // The proxy offers what its flags say: the CCM_8-only service accepts one and refuses the defaults.
    const good = await startDaemon(['proxy', '--listen', '127.0.0.1:0', '--to', origin13, ...ca, '--ciphersuites', 'TLS_AES_128_CCM_8_SHA256']);
    const plain = await startDaemon(['proxy', '--listen', '127.0.0.1:0', '--to', origin13, ...ca, '--tls-version', '1.3']);
    daemons.push(good.child, plain.child);
    const ok = await fetch(new URL('/y', /(http:\/\/[^\s]+)/.exec(good.line)![1]!), { method: 'POST', body: 'via proxy' });
    assert.equal(ok.status, 200);
    assert.equal(await ok.text(), 'via proxy');
    const refused = await fetch(new URL('/y', /(http:\/\/[^\s]+)/.exec(plain.line)![1]!));
    assert.equal(refused.status, 502);

    const bad13 = atls(['fetch', `${origin13}/x`, ...ca, '--ciphersuites', 'TLS_AES_128_CCM_SHA384']);
    assert.equal(bad13.status, 1);
    assert.match(bad13.stderr, /--ciphersuites: unknown TLS 1\.3 suite "TLS_AES_128_CCM_SHA384"/);
    const bad12 = atls(['fetch', `${origin12}/x`, ...ca, '--ciphers', 'TLS_AES_128_GCM_SHA256']);
    assert.equal(bad12.status, 1);
    assert.match(bad12.stderr, /give it with --ciphersuites/);
    const unknown12 = atls(['fetch', `${origin12}/x`, ...ca, '--ciphers', 'NO-SUCH-CIPHER']);
    assert.equal(unknown12.status, 1);
    assert.match(unknown12.stderr, /OpenSSL knows no cipher "NO-SUCH-CIPHER"/);
  });

  it('fetch coap:// --coap-proxy goes through libcoap coap-server -P', async (t) => {
    const tool = requireLibcoap(t, 'coap-server');
    if (!tool) return;
    const psk = ['--psk-identity', 'sensor-2', '--psk', '0102030405060708090a0b0c0d0e0f10'];
    const { child, line } = await startDaemon([
      'serve', '--listen', '127.0.0.1:0', '--coap', '127.0.0.1:0', '--echo', ...psk,
    ]);
    daemons.push(child);
    const coap = /(coap:\/\/[^\s]+)/.exec(line)![1]!;
    const proxyPort = await freePort();
    // ",atls-proxy": no upstream proxy, and a name that 127.0.0.1 does not match, so requests are forwarded.
    const proxy = ToolProcess.spawn(tool, ['-v', '7', '-A', '127.0.0.1', '-p', String(proxyPort), '-P', ',atls-proxy']);
    t.after(() => proxy.kill());
    await new Promise((r) => setTimeout(r, 300));
    const r = await atlsAsync(['fetch', `${coap}/via-proxy`, '-X', 'POST', '-d', 'through libcoap', '--coap-proxy', `coap://127.0.0.1:${proxyPort}`, ...psk]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'through libcoap');
    assert.match(proxy.output, /Proxy-Uri:coap:\/\/127\.0\.0\.1:\d+\/\.well-known\/atls/);
  });

  it('gateway carries a CoAP device to an HTTP service it cannot read; serve --coap --upstream too', async () => {
    const svc = await startDaemon([
      'serve', '--listen', '127.0.0.1:0', '--coap', '127.0.0.1:0', '--cert', join(certs, 'server.pem'),
      '--key', join(certs, 'server.key'), '--upstream', upstreamUrl,
    ]);
    daemons.push(svc.child);
    const http = /(http:\/\/[^\s]+)/.exec(svc.line)![1]!;
    const coap = /(coap:\/\/[^\s]+)/.exec(svc.line)![1]!;
    // Inner CoAP request mapped to the upstream HTTP service.
    const direct = await atlsAsync(['fetch', `${coap}/sensors?id=9`, '-X', 'POST', '-d', 'reading', '--ca', join(certs, 'ca.pem')]);
    assert.equal(direct.status, 0, direct.stderr);
    assert.deepEqual(JSON.parse(direct.stdout), { upstream: true, method: 'POST', path: '/sensors?id=9', body: 'reading' });

    const gw = await startDaemon(['gateway', '--listen', '127.0.0.1:0', '--to', new URL(http).origin]);
    daemons.push(gw.child);
    const gwUrl = /(coap:\/\/[^\s]+)/.exec(gw.line)![1]!;
    const seen: string[] = [];
    gw.child.stdout!.on('data', (d: Buffer) => seen.push(d.toString()));
    const via = await atlsAsync(['fetch', `${gwUrl}/meter`, '--inner', 'http', '-X', 'POST', '-d', 'secret 4711', '--ca', join(certs, 'ca.pem')]);
    assert.equal(via.status, 0, via.stderr);
    assert.deepEqual(JSON.parse(via.stdout), { upstream: true, method: 'POST', path: '/meter', body: 'secret 4711' });
    await new Promise((r) => setTimeout(r, 200));
    const log = seen.join('');
    // The gateway's structured log: what it forwards, by media type, never the data.
    assert.match(log, /gateway\.to-service .*format=application\/atls\+octet-stream/);
    assert.match(log, /gateway\.to-service .*format=application\/atls-protected/);
    assert.doesNotMatch(log, /secret 4711/);

    // --address-check (default on): a lone ClientHello gets 4.01 + Echo (RFC 9175 §2.4); off, it is forwarded.
    const open = await startDaemon(['gateway', '--listen', '127.0.0.1:0', '--to', new URL(http).origin, '--address-check', 'off']);
    daemons.push(open.child);
    const ep = await CoapEndpoint.bind();
    try {
      const at = (line: string) => ({ address: '127.0.0.1', port: Number(/coap:\/\/127\.0\.0\.1:(\d+)/.exec(line)![1]) });
      assert.equal((await postClientHello(ep, at(gw.line))).code, CoapCode.Unauthorized);
      assert.equal((await postClientHello(ep, at(open.line))).code, CoapCode.Created);
    } finally {
      await ep.close();
    }
  });

  it('the default waits end a fetch that gets no answer: coap:// after --connect-timeout 10 s, a silent HTTP server after 60 s; exit 28', async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((c) => sockets.push(c)); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const started = Date.now();
      const [coap, http] = await Promise.all([
        atlsAsync(['fetch', `coap://127.0.0.1:${await freePort()}/t`, '--psk-identity', 'a', '--psk', '00112233445566778899aabbccddeeff']),
        atlsAsync(['fetch', `http://127.0.0.1:${(silent.address() as AddressInfo).port}/x`]),
      ]);
      assert.equal(coap.status, 28, coap.stderr);
      assert.match(coap.stderr, /^atls: no CoAP answer .* within --connect-timeout 10 s \[TIMEOUT\]/);
      assert.equal(http.status, 28, http.stderr);
      assert.match(http.stderr, /^atls: .*raise --max-time/);
      const waited = Date.now() - started;
      assert.ok(waited >= 59_000 && waited < 200_000, `the HTTP wait is the 60 s default, not undici's 300 s: ${waited} ms`);
    } finally {
      for (const c of sockets) c.destroy();
      silent.close();
    }
  });
});
