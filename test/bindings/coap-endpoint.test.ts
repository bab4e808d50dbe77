/**
 * The UDP endpoint (RFC 7252 §4): piggy-backed and separate responses, NON,
 * retransmission through a lossy relay with the handler run once
 * (deduplication), timeouts, pings, resets and malformed datagrams.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { AtlsError } from '../../src/errors.js';
import { fromHex } from '../../src/bytes.js';
import { CoapEndpoint } from '../../src/coap/endpoint.js';
import { CoapCode, MessageType } from '../../src/coap/constants.js';
import { decodeMessage, pathOptions } from '../../src/coap/packet.js';
import type { Peer } from '../../src/coap/blockwise.js';

const FAST = { ackTimeout: 50, ackRandomFactor: 1.5, maxRetransmit: 4 };
const endpoints: CoapEndpoint[] = [];
const sockets: Socket[] = [];
after(async () => {
  await Promise.all(endpoints.map((e) => e.close()));
  for (const s of sockets) s.close();
});

async function ep(options: Parameters<typeof CoapEndpoint.bind>[0] = {}): Promise<CoapEndpoint> {
  const e = await CoapEndpoint.bind({ transmission: FAST, ...options });
  endpoints.push(e);
  return e;
}

/** A UDP relay in front of `target` that drops the datagrams `drop(n, direction)` selects. */
async function lossyRelay(target: Peer, drop: (n: number, toServer: boolean) => boolean): Promise<Peer> {
  const s = createSocket('udp4');
  sockets.push(s);
  let client: Peer | undefined;
  let n = 0;
  s.on('message', (buf, r) => {
    const toServer = !(r.port === target.port && r.address === target.address);
    if (toServer) client = { address: r.address, port: r.port };
    if (drop(n++, toServer)) return;
    const to = toServer ? target : client;
    if (to) s.send(buf, to.port, to.address);
  });
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', () => res()));
  return { address: '127.0.0.1', port: s.address().port };
}

function rawSocket(): Promise<{ s: Socket; next: () => Promise<Buffer> }> {
  const s = createSocket('udp4');
  sockets.push(s);
  const queue: Buffer[] = [];
  const waiters: ((b: Buffer) => void)[] = [];
  s.on('message', (b) => {
    const w = waiters.shift();
    if (w) w(b);
    else queue.push(b);
  });
  return new Promise((res) =>
    s.bind(0, '127.0.0.1', () =>
      res({ s, next: () => new Promise<Buffer>((r) => { const q = queue.shift(); if (q) r(q); else waiters.push(r); }) }),
    ),
  );
}

void describe('CoAP UDP endpoint', () => {
  void it('piggy-backs a response on the ACK', async () => {
    const server = await ep();
    server.handle((m) => ({ code: CoapCode.Content, payload: m.payload }));
    const client = await ep();
    const res = await client.request(server.address, { code: CoapCode.POST, options: pathOptions('/x'), payload: fromHex('0102') });
    assert.equal(res.type, MessageType.ACK);
    assert.equal(res.code, CoapCode.Content);
    assert.deepEqual(res.payload, fromHex('0102'));
  });

  void it('answers a NON request with a NON response', async () => {
    const server = await ep();
    server.handle(() => ({ code: CoapCode.Content }));
    const client = await ep();
    const res = await client.request(server.address, { code: CoapCode.GET, options: [], payload: new Uint8Array(0) }, { nonConfirmable: true });
    assert.equal(res.type, MessageType.NON);
  });

  void it('retransmits lost requests and responses; the handler runs once', async () => {
    const server = await ep();
    let calls = 0;
    server.handle(() => ({ code: CoapCode.Changed, payload: new Uint8Array([++calls]) }));
    // Drop the first request and the first response.
    const relay = await lossyRelay(server.address, (n) => n === 0 || n === 2);
    const client = await ep();
    const res = await client.request(relay, { code: CoapCode.POST, options: [], payload: new Uint8Array(0) });
    assert.deepEqual(res.payload, new Uint8Array([1]));
    assert.equal(calls, 1);
    assert.ok(server.stats.duplicates >= 1);
    assert.ok(client.stats.retransmissions >= 2);
  });

  void it('times out after MAX_RETRANSMIT with TIMEOUT', async () => {
    const client = await ep({ transmission: { ackTimeout: 10, maxRetransmit: 2 } });
    const dead = await rawSocket(); // never answers
    await assert.rejects(
      client.request({ address: '127.0.0.1', port: dead.s.address().port }, { code: CoapCode.GET, options: [], payload: new Uint8Array(0) }),
      (e: unknown) => e instanceof AtlsError && e.code === 'TIMEOUT',
    );
  });

  void it('sends a separate response when the handler is slow', async () => {
    const server = await ep({ separateResponseAfterMs: 20 });
    server.handle(async () => {
      await new Promise((r) => setTimeout(r, 100));
      return { code: CoapCode.Content, payload: fromHex('aa') };
    });
    const client = await ep();
    const res = await client.request(server.address, { code: CoapCode.GET, options: [], payload: new Uint8Array(0) });
    assert.equal(res.type, MessageType.CON);
    assert.deepEqual(res.payload, fromHex('aa'));
  });

  void it('answers a ping with RST, a malformed CON with RST, ignores malformed NON, rejects unknown critical options', async () => {
    const server = await ep();
    server.handle(() => ({ code: CoapCode.Content }));
    const raw = await rawSocket();
    const send = (hex: string) => raw.s.send(fromHex(hex), server.port, '127.0.0.1');
    send('40000007'); // CON ping
    let m = decodeMessage(new Uint8Array(await raw.next()));
    assert.equal(m.type, MessageType.RST);
    assert.equal(m.messageId, 7);
    send('50010009f0'); // malformed NON: ignored
    send('40010008f0'); // malformed CON: RST
    m = decodeMessage(new Uint8Array(await raw.next()));
    assert.equal(m.type, MessageType.RST);
    assert.equal(m.messageId, 8);
    send('4001000ad1f401'); // CON GET with critical option 2013
    m = decodeMessage(new Uint8Array(await raw.next()));
    assert.equal(m.code, CoapCode.BadOption);
    assert.ok(server.stats.malformed >= 2);
  });

  void it('keeps the deduplication cache bounded', async () => {
    const server = await ep({ dedupCapacity: 8 });
    server.handle(() => ({ code: CoapCode.Content }));
    const client = await ep();
    for (let i = 0; i < 20; i++) await client.request(server.address, { code: CoapCode.GET, options: [], payload: new Uint8Array(0) });
    assert.ok(server.stats.dedupEntries <= 8);
  });

  void it('rejects a request when the peer resets it', async () => {
    const raw = await rawSocket();
    const client = await ep();
    const p = client.request({ address: '127.0.0.1', port: raw.s.address().port }, { code: CoapCode.GET, options: [], payload: new Uint8Array(0) });
    const req = decodeMessage(new Uint8Array(await raw.next()));
    const rst = Buffer.from([0x70, 0, req.messageId >> 8, req.messageId & 0xff]);
    raw.s.send(rst, client.port, '127.0.0.1');
    await assert.rejects(p, (e: unknown) => e instanceof AtlsError && e.code === 'CLOSED');
  });
});
