/**
 * Interop with Debian's libcoap (libcoap3-bin 4.3.1), an independent CoAP
 * implementation:
 * - `coap-client` carries a whole ATLS exchange to our server: our session
 *   produces the flights, coap-client POSTs them (block sizes 64, 256, 1024;
 *   a new token on every block), and the server flight it brings back is
 *   parsed with src/records.ts and completes the handshake;
 * - our codec decodes coap-client's datagrams and re-encodes them byte for byte;
 * - our client reaches our server through `coap-server -P`, a real forward proxy (Proxy-Uri);
 * - our block-wise client reads a Block2 resource from `coap-server`.
 * Missing tools skip the tests unless ATLS_REQUIRE_INTEROP=1.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { AtlsCoapServer, echoCoapHandler } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode, MessageType, OptionNumber } from '../../src/coap/constants.js';
import { decodeMessage, encodeMessage, getOption, getPath, getUintOption, pathOptions } from '../../src/coap/packet.js';
import { blockwiseRequest, decodeBlock } from '../../src/coap/blockwise.js';
import { decodeInner, encodeInner } from '../../src/coap/inner.js';
import { parseServerHello } from '../../src/records.js';
import { toHex } from '../../src/bytes.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { ToolProcess, freePort, killAllTools } from '../helpers/tools.js';
import { requireLibcoap } from '../helpers/libcoap.js';

const PSK = { identity: 'device-17', key: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') };
const PSK_TLS = { psk: PSK, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' } as const;
const dec = new TextDecoder();
let pki: TestPki;
let server: AtlsCoapServer;
let dir: string;

before(async () => {
  pki = await testPki();
  dir = mkdtempSync(join(tmpdir(), 'atls-libcoap-'));
  server = await AtlsCoapServer.listen({
    tls: { cert: pki.server.cert, key: pki.server.key, pskLookup: (id) => (id === PSK.identity ? PSK.key : undefined) },
    handler: echoCoapHandler,
  });
});
after(async () => {
  await killAllTools();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `coap-client -m post -t FORMAT -b SIZE -f FILE URI` and returns the response body and its Location-Path. */
async function coapPost(tool: string, uri: string, body: Uint8Array, format: number, blockSize: number, name: string): Promise<{ body: Uint8Array; location: string | undefined; log: string }> {
  const inFile = join(dir, `${name}.in`);
  const outFile = join(dir, `${name}.out`);
  writeFileSync(inFile, body);
  writeFileSync(outFile, new Uint8Array(0));
  const p = ToolProcess.spawn(tool, ['-v', '7', '-B', '20', '-m', 'post', '-t', String(format), '-b', String(blockSize), '-f', inFile, '-o', outFile, uri]);
  const exit = await p.exited;
  assert.equal(exit.code, 0, `${p.commandLine} failed:\n${p.tail()}`);
  const loc = /Location-Path:atls, Location-Path:([A-Za-z0-9_-]+)/.exec(p.output);
  return { body: new Uint8Array(readFileSync(outFile)), location: loc ? `atls/${loc[1]}` : undefined, log: p.output };
}

void describe('libcoap coap-client -> our ATLS server', () => {
  for (const blockSize of [64, 256, 1024]) {
    void it(`a full certificate handshake and a protected request carried by coap-client -b ${blockSize}`, async (t) => {
      const tool = requireLibcoap(t, 'coap-client');
      if (!tool) return;
      const client = new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      const hello = await client.start();
      const base = `coap://127.0.0.1:${server.port}`;
      const first = await coapPost(tool, `${base}/.well-known/atls`, hello.flight, 65000, blockSize, `hello-${blockSize}`);
      assert.ok(first.location, 'a Location-Path in the 2.01 response');
      // The server flight as coap-client received it, parsed without keys.
      const sh = parseServerHello(first.body);
      assert.equal(sh.selectedVersion, 'TLSv1.3');
      assert.ok(first.body.length > 600, `server flight of ${first.body.length} bytes carries the certificate`);
      if (blockSize < 1024) assert.match(first.log, new RegExp(`Block2:1/M/${blockSize}`), 'the response came block-wise');
      if (blockSize < 512) assert.match(first.log, new RegExp(`Block1:1/[M_]/${blockSize}`), 'the request went block-wise');
      const fin = await client.receive(first.body);
      const second = await coapPost(tool, `${base}/${first.location}`, fin.flight, 65000, blockSize, `fin-${blockSize}`);
      await client.receive(second.body);
      assert.equal(client.state, 'established');
      const inner = encodeInner({ code: CoapCode.POST, options: pathOptions('/echo'), payload: new TextEncoder().encode(`hello over libcoap ${blockSize}`) });
      const reply = await coapPost(tool, `${base}/${first.location}`, client.protect(inner), 65001, blockSize, `msg-${blockSize}`);
      const m = decodeInner(client.unprotect(reply.body));
      assert.equal(m.code, CoapCode.Content);
      assert.equal(dec.decode(m.payload), `hello over libcoap ${blockSize}`);
      client.destroy();
    });
  }

  void it('coap-client gets 4.04 for an unknown session and 4.15 for a wrong Content-Format', async (t) => {
    const tool = requireLibcoap(t, 'coap-client');
    if (!tool) return;
    const base = `coap://127.0.0.1:${server.port}`;
    const unknown = await coapPost(tool, `${base}/atls/AAAAAAAAAAAAAAAAAAAAAA`, new Uint8Array([22, 3, 3, 0, 0]), 65000, 1024, 'unknown');
    assert.match(unknown.log, /c:4\.04/);
    const wrong = await coapPost(tool, `${base}/.well-known/atls`, new Uint8Array([1, 2, 3]), 0, 1024, 'wrongcf');
    assert.match(wrong.log, /c:4\.15/);
  });
});

void it('our codec decodes coap-client datagrams and re-encodes them byte for byte', async (t) => {
  const tool = requireLibcoap(t, 'coap-client');
  if (!tool) return;
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const got: Buffer[] = [];
  sock.on('message', (b, rinfo) => {
    got.push(b);
    const m = decodeMessage(new Uint8Array(b));
    // Answer 2.31 Continue so that coap-client sends its second block too.
    const block = decodeBlock(getOption(m, OptionNumber.Block1)!.value);
    const ack = encodeMessage({ type: MessageType.ACK, code: block.more ? CoapCode.Continue : CoapCode.Changed, messageId: m.messageId, token: m.token, options: [getOption(m, OptionNumber.Block1)!], payload: new Uint8Array(0) });
    sock.send(ack, rinfo.port, rinfo.address);
  });
  try {
    const file = join(dir, 'codec.in');
    writeFileSync(file, new Uint8Array(100).fill(0xab));
    const p = ToolProcess.spawn(tool, ['-B', '5', '-m', 'post', '-t', '65000', '-b', '64', '-f', file, `coap://127.0.0.1:${sock.address().port}/.well-known/atls?x=1`]);
    await p.exited;
    assert.ok(got.length >= 2, `got ${got.length} datagrams:\n${p.tail()}`);
    const [a, b] = got.map((d) => decodeMessage(new Uint8Array(d)));
    for (const [i, m] of [a!, b!].entries()) {
      assert.equal(m.type, MessageType.CON);
      assert.equal(m.code, CoapCode.POST);
      assert.deepEqual(getPath(m), ['.well-known', 'atls']);
      assert.equal(getUintOption(m, OptionNumber.ContentFormat), 65000);
      assert.deepEqual(decodeBlock(getOption(m, OptionNumber.Block1)!.value), { num: i, more: i === 0, szx: 2 });
      assert.ok(getOption(m, OptionNumber.RequestTag), 'libcoap sends a Request-Tag');
      assert.equal(toHex(encodeMessage(m)), toHex(new Uint8Array(got[i]!)), 'byte-exact re-encoding');
    }
    assert.equal(getUintOption(a!, OptionNumber.Size1), 100);
    assert.notEqual(toHex(a!.token), toHex(b!.token), 'libcoap changes the token on every block');
    assert.deepEqual(getOption(a!, OptionNumber.RequestTag)!.value, getOption(b!, OptionNumber.RequestTag)!.value);
  } finally {
    sock.close();
  }
});

void describe('our client through libcoap coap-server -P (forward proxy, Proxy-Uri)', () => {
  let proxyPort = 0;
  async function startProxy(t: Parameters<typeof requireLibcoap>[0]): Promise<ToolProcess | undefined> {
    const tool = requireLibcoap(t, 'coap-server');
    if (!tool) return undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      proxyPort = await freePort();
      // ",atls-proxy": no upstream proxy, and a name that 127.0.0.1 does not match, so requests are forwarded.
      const p = ToolProcess.spawn(tool, ['-v', '7', '-A', '127.0.0.1', '-p', String(proxyPort), '-P', ',atls-proxy']);
      await new Promise((r) => setTimeout(r, 300));
      if (!p.hasExited) {
        t.after(() => p.kill());
        return p;
      }
    }
    throw new Error('coap-server -P did not start');
  }

  void it('TLS 1.3 PSK handshake and a request', async (t) => {
    const proxy = await startProxy(t);
    if (!proxy) return;
    const client = new AtlsCoapClient({ url: server.url, proxy: `coap://127.0.0.1:${proxyPort}`, tls: PSK_TLS, timeoutMs: 10_000 });
    const info = await client.connect();
    assert.equal(info.pskIdentity, PSK.identity);
    const r = await client.request({ method: 'POST', pathname: '/via', payload: 'through libcoap' });
    assert.equal(r.codeText, '2.05');
    assert.equal(dec.decode(r.payload), 'through libcoap');
    await client.close();
    assert.match(proxy.output, /Proxy-Uri:coap:\/\/127\.0\.0\.1:\d+\/\.well-known\/atls/);
    assert.ok(client.stats.handshakeBytesSent + client.stats.handshakeBytesReceived < 1000, 'small PSK flights');
  });

  for (const blockSize of [64, 1024]) {
    void it(`certificate handshake (flights > 1 KB, block size ${blockSize})`, async (t) => {
      const proxy = await startProxy(t);
      if (!proxy) return;
      const client = new AtlsCoapClient({ url: server.url, proxy: `coap://127.0.0.1:${proxyPort}`, blockSize, tls: { ca: pki.ca.cert, serverName: 'localhost' }, timeoutMs: 10_000 });
      await client.connect();
      assert.ok(client.stats.handshakeBytesReceived > 1000);
      const r = await client.request({ method: 'POST', pathname: '/via', payload: 'certs through libcoap' });
      assert.equal(dec.decode(r.payload), 'certs through libcoap');
      await client.close();
    });
  }
});

void it('our block-wise client reads a Block2 body from libcoap coap-server', async (t) => {
  const tool = requireLibcoap(t, 'coap-server');
  if (!tool) return;
  const port = await freePort();
  // -d 10: dynamic resources, created by PUT.
  const p = ToolProcess.spawn(tool, ['-A', '127.0.0.1', '-p', String(port), '-d', '10']);
  t.after(() => p.kill());
  await new Promise((r) => setTimeout(r, 300));
  const ep = await CoapEndpoint.bind();
  try {
    const peer = { address: '127.0.0.1', port };
    const body = new Uint8Array(700).map((_, i) => i & 0xff);
    const send = (r: Parameters<typeof ep.request>[1]) => ep.request(peer, r);
    const put = await blockwiseRequest(send, { code: CoapCode.PUT, options: pathOptions('/atls-test'), payload: body }, { blockSize: 64 });
    assert.equal(put.code >> 5, 2, `PUT answered ${put.code}`);
    const get = await blockwiseRequest(send, { code: CoapCode.GET, options: pathOptions('/atls-test'), payload: new Uint8Array(0) }, { blockSize: 64 });
    assert.equal(get.code, CoapCode.Content);
    assert.deepEqual(new Uint8Array(get.payload), body);
  } finally {
    await ep.close();
  }
});
