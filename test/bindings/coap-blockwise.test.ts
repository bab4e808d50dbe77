/**
 * Block-wise transfer (RFC 7959) without sockets: our client layer against
 * our server layer with a token that changes on every block (as libcoap
 * does), every block size, and the abuse cases (out-of-order and missing
 * blocks, a block for a finished transfer, too many transfers, oversized).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { CoapCode, MessageType, OptionNumber } from '../../src/coap/constants.js';
import { getOption, getUintOption, pathOptions, uintOption, type CoapMessage, type CoapOption } from '../../src/coap/packet.js';
import {
  BlockwiseServer,
  blockOption,
  blockwiseRequest,
  decodeBlock,
  type AssembledHandler,
  type OutgoingRequest,
  type Peer,
} from '../../src/coap/blockwise.js';

const PEER: Peer = { address: '127.0.0.1', port: 40000 };
let mid = 0;

function msg(code: number, options: CoapOption[], payload: Uint8Array = new Uint8Array(0)): CoapMessage {
  // A new token on every message, like libcoap.
  return { type: MessageType.CON, code, messageId: mid++ & 0xffff, token: new Uint8Array(randomBytes(4)), options, payload };
}

function link(server: BlockwiseServer, app: AssembledHandler, peer = PEER, log?: OutgoingRequest[]) {
  return async (req: OutgoingRequest): Promise<CoapMessage> => {
    log?.push(req);
    const res = await server.handle(msg(req.code, req.options, req.payload), peer, app);
    return { type: MessageType.ACK, code: res.code, messageId: 0, token: new Uint8Array(0), options: res.options ?? [], payload: res.payload ?? new Uint8Array(0) };
  };
}

const path = pathOptions('/echo');

void describe('CoAP block-wise', () => {
  for (const size of [16, 64, 256, 1024]) {
    void it(`round-trips a 2500-byte body both ways at block size ${size}, handler called once`, async () => {
      const server = new BlockwiseServer();
      let calls = 0;
      const app: AssembledHandler = (req) => {
        calls++;
        return { code: CoapCode.Changed, options: [uintOption(OptionNumber.ContentFormat, 65000)], payload: req.payload };
      };
      const body = new Uint8Array(randomBytes(2500));
      const log: OutgoingRequest[] = [];
      const res = await blockwiseRequest(link(server, app, PEER, log), { code: CoapCode.POST, options: path, payload: body }, { blockSize: size });
      assert.equal(calls, 1);
      assert.equal(res.code, CoapCode.Changed);
      assert.deepEqual(res.payload, body);
      assert.equal(getUintOption(res, OptionNumber.ContentFormat), 65000);
      assert.equal(log.length, 2 * Math.ceil(2500 / size) - 1);
      // Every request block carried the same Request-Tag.
      const tags = new Set(log.map((r) => Buffer.from(getOption(r, OptionNumber.RequestTag)!.value).toString('hex')));
      assert.equal(tags.size, 1);
      assert.equal(server.stats.transfers, 0);
    });
  }

  void it('keeps Content-Format on every Block2 block', async () => {
    const server = new BlockwiseServer({ maxBlockSize: 64 });
    const app: AssembledHandler = () => ({ code: CoapCode.Content, options: [uintOption(OptionNumber.ContentFormat, 65000)], payload: new Uint8Array(200) });
    const first = await server.handle(msg(CoapCode.POST, path), PEER, app);
    assert.deepEqual(decodeBlock(getOption(first, OptionNumber.Block2)!.value), { num: 0, more: true, szx: 2 });
    assert.equal(getUintOption(first, OptionNumber.Size2), 200);
    for (let n = 1; n < 4; n++) {
      const next = await server.handle(msg(CoapCode.POST, [...path, blockOption(OptionNumber.Block2, { num: n, more: false, szx: 2 })]), PEER, app);
      assert.equal(next.code, CoapCode.Content);
      assert.equal(getUintOption(next, OptionNumber.ContentFormat), 65000);
      assert.equal(decodeBlock(getOption(next, OptionNumber.Block2)!.value).more, n < 3);
    }
  });

  void it('asks for smaller blocks when the client sends larger ones than it allows', async () => {
    const server = new BlockwiseServer({ maxBlockSize: 64 });
    const body = new Uint8Array(randomBytes(700));
    const log: OutgoingRequest[] = [];
    const res = await blockwiseRequest(link(server, (r) => ({ code: CoapCode.Changed, payload: r.payload }), PEER, log), { code: CoapCode.POST, options: path, payload: body }, { blockSize: 256 });
    assert.deepEqual(res.payload, body);
    assert.equal(decodeBlock(getOption(log[1]!, OptionNumber.Block1)!.value).szx, 2);
  });

  void describe('abuse', () => {
    const app: AssembledHandler = () => ({ code: CoapCode.Changed });
    const b1 = (num: number, more: boolean, szx = 0): CoapOption => blockOption(OptionNumber.Block1, { num, more, szx });

    void it('out-of-order and missing blocks get 4.08 and free the transfer', async () => {
      const s = new BlockwiseServer();
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, b1(0, true)], new Uint8Array(16)), PEER, app)).code, CoapCode.Continue);
      assert.equal(s.stats.transfers, 1);
      const r = await s.handle(msg(CoapCode.POST, [...path, b1(2, true)], new Uint8Array(16)), PEER, app);
      assert.equal(r.code, CoapCode.RequestEntityIncomplete);
      assert.equal(s.stats.transfers, 0);
      // A continuation with no transfer at all.
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, b1(1, false)], new Uint8Array(3)), PEER, app)).code, CoapCode.RequestEntityIncomplete);
    });

    void it('a block for a finished transfer gets 4.08, the handler is not run again', async () => {
      const s = new BlockwiseServer();
      let calls = 0;
      const counting: AssembledHandler = () => ({ code: CoapCode.Changed, payload: new Uint8Array([++calls]) });
      await s.handle(msg(CoapCode.POST, [...path, b1(0, true)], new Uint8Array(16)), PEER, counting);
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, b1(1, false)], new Uint8Array(4)), PEER, counting)).code, CoapCode.Changed);
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, b1(1, false)], new Uint8Array(4)), PEER, counting)).code, CoapCode.RequestEntityIncomplete);
      assert.equal(calls, 1);
    });

    void it('a short non-final block is 4.00; SZX 7 is 4.02', async () => {
      const s = new BlockwiseServer();
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, b1(0, true)], new Uint8Array(10)), PEER, app)).code, CoapCode.BadRequest);
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, { number: OptionNumber.Block1, value: new Uint8Array([0x0f]) }], new Uint8Array(10)), PEER, app)).code, CoapCode.BadOption);
    });

    void it('oversized bodies get 4.13 with Size1, by Size1, by a single payload or by accumulation', async () => {
      const s = new BlockwiseServer({ maxBodyBytes: 100 });
      const bySize1 = await s.handle(msg(CoapCode.POST, [...path, b1(0, true), uintOption(OptionNumber.Size1, 5000)], new Uint8Array(16)), PEER, app);
      assert.equal(bySize1.code, CoapCode.RequestEntityTooLarge);
      assert.equal(getUintOption(bySize1, OptionNumber.Size1), 100);
      assert.equal((await s.handle(msg(CoapCode.POST, path, new Uint8Array(101)), PEER, app)).code, CoapCode.RequestEntityTooLarge);
      for (let n = 0; n < 6; n++) {
        const r = await s.handle(msg(CoapCode.POST, [...path, b1(n, true)], new Uint8Array(16)), PEER, app);
        assert.equal(r.code, CoapCode.Continue);
      }
      const over = await s.handle(msg(CoapCode.POST, [...path, b1(6, true)], new Uint8Array(16)), PEER, app);
      assert.equal(over.code, CoapCode.RequestEntityTooLarge);
      assert.equal(s.stats.transfers, 0);
    });

    void it('too many concurrent transfers: 5.03 per peer; at the global cap the busiest peer gives way', async () => {
      const s = new BlockwiseServer({ maxTransfersPerPeer: 3, maxTransfers: 5 });
      const start = (peer: Peer, tag: number) =>
        s.handle(msg(CoapCode.POST, [...path, { number: OptionNumber.RequestTag, value: new Uint8Array([tag]) }, b1(0, true)], new Uint8Array(16)), peer, app);
      for (let i = 0; i < 3; i++) assert.equal((await start(PEER, i)).code, CoapCode.Continue);
      assert.equal((await start(PEER, 9)).code, CoapCode.ServiceUnavailable);
      const other: Peer = { address: '127.0.0.2', port: 1 };
      assert.equal((await start(other, 1)).code, CoapCode.Continue);
      assert.equal((await start(other, 2)).code, CoapCode.Continue);
      // The global cap: PEER holds the most (3), so its oldest transfer makes room.
      assert.equal((await start({ address: '127.0.0.3', port: 1 }, 1)).code, CoapCode.Continue);
      assert.equal(s.stats.transfers, 5);
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, { number: OptionNumber.RequestTag, value: new Uint8Array([0]) }, b1(1, false)], new Uint8Array(1)), PEER, app)).code, CoapCode.RequestEntityIncomplete, 'PEER\'s oldest is gone');
      assert.ok(s.stats.bufferedBytes <= 5 * 16);
    });

    void it('stale transfers expire', async () => {
      let now = 0;
      const s = new BlockwiseServer({ transferTimeoutMs: 1000, now: () => now });
      await s.handle(msg(CoapCode.POST, [...path, b1(0, true)], new Uint8Array(16)), PEER, app);
      now = 2000;
      assert.equal((await s.handle(msg(CoapCode.POST, [...path, b1(1, false)], new Uint8Array(1)), PEER, app)).code, CoapCode.RequestEntityIncomplete);
      assert.equal(s.stats.transfers, 0);
    });

    void it('a Block2 continuation with nothing cached is 4.08 and never reaches the handler', async () => {
      const s = new BlockwiseServer();
      let called = false;
      const r = await s.handle(msg(CoapCode.POST, [...path, blockOption(OptionNumber.Block2, { num: 3, more: false, szx: 2 })]), PEER, () => {
        called = true;
        return { code: CoapCode.Changed };
      });
      assert.equal(r.code, CoapCode.RequestEntityIncomplete);
      assert.equal(called, false);
    });
  });

  describe('fair shares under a flood from other ports and addresses', () => {
    const big = new Uint8Array(randomBytes(3000));
    const bigApp: AssembledHandler = () => ({ code: CoapCode.Content, payload: big });

    it('260 requests from 260 ports of another address do not evict a victim\'s cached Block2 response', async () => {
      const server = new BlockwiseServer();
      const victim: Peer = { address: '192.0.2.1', port: 5000 };
      const first = await server.handle(msg(CoapCode.POST, path, new Uint8Array(10)), victim, bigApp);
      assert.equal(decodeBlock(getOption(first, OptionNumber.Block2)!.value).more, true);
      for (let i = 0; i < 260; i++) await server.handle(msg(CoapCode.POST, path, new Uint8Array(10)), { address: '198.51.100.9', port: 20000 + i }, bigApp);
      const next = await server.handle(msg(CoapCode.POST, [...path, blockOption(OptionNumber.Block2, { num: 1, more: false, szx: 6 })]), victim, bigApp);
      assert.equal(next.code, CoapCode.Content, 'the victim\'s next block is served');
      assert.ok(server.stats.cachedResponses <= 256);
    });

    it('256 never-finished Block1 transfers from 20 ports do not lock out another client', async () => {
      const server = new BlockwiseServer();
      const echo: AssembledHandler = (req) => ({ code: CoapCode.Changed, payload: req.payload });
      for (let i = 0; i < 256; i++) {
        const tag = { number: OptionNumber.RequestTag, value: Uint8Array.of(i >> 8, i & 255) };
        const r = await server.handle(
          msg(CoapCode.POST, [...path, tag, blockOption(OptionNumber.Block1, { num: 0, more: true, szx: 0 })], new Uint8Array(16)),
          { address: '198.51.100.9', port: 30000 + (i % 20) },
          echo,
        );
        assert.equal(r.code, CoapCode.Continue);
      }
      const body = new Uint8Array(randomBytes(100));
      const res = await blockwiseRequest(link(server, echo, { address: '192.0.2.1', port: 5000 }), { code: CoapCode.POST, options: path, payload: body }, { blockSize: 16 });
      assert.equal(res.code, CoapCode.Changed);
      assert.deepEqual(res.payload, body);
      assert.ok(server.stats.transfers <= 256);
    });
  });
});
