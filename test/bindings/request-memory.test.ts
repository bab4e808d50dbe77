/**
 * What a raw app's request content may show (docs/decisions.md, "Request
 * cost: what is pooled"): the decrypted message is an array of its own, never
 * a view into memory shared with other requests, so an app that keeps
 * `content` or reads its `.buffer` sees that request's message and nothing else.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { atlsNodeListener } from '../../src/http/node.js';
import { createAtlsHandler, type AtlsRawApp } from '../../src/http/server.js';
import { createAtlsClient } from '../../src/http/client.js';
import { decodeRequest } from '../../src/bhttp/codec.js';
import type { BhttpRequest } from '../../src/bhttp/codec.js';

describe('HTTP binding: the memory behind a request', () => {
  let pki: TestPki;
  let server: http.Server;
  before(async () => {
    pki = await testPki();
  });
  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  it("a raw app's content is backed by its own message alone, a new buffer per request", async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'psk');
    const kept: BhttpRequest[] = [];
    const rawApp: AtlsRawApp = (req) => {
      kept.push(req);
      return { status: 200, headers: [], content: new TextEncoder().encode('ok') };
    };
    server = http.createServer(atlsNodeListener(createAtlsHandler({ tls: tls.server, rawApp })));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as AddressInfo).port;
    const client = createAtlsClient({ tls: tls.client, proxy: false });
    try {
      const bodies = ['first secret', 'second', 'x'.repeat(3000), 'fourth'];
      for (const [i, body] of bodies.entries()) {
        const res = await client.fetch(`http://127.0.0.1:${port}/r/${i}`, { method: 'POST', body });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), 'ok');
      }
    } finally {
      await client.close();
    }
    assert.equal(kept.length, 4);
    const seen = new Set<ArrayBufferLike>();
    for (const [i, req] of kept.entries()) {
      const whole = new Uint8Array(req.content.buffer);
      // The whole buffer is one Binary HTTP request (zero padding at most): no other request's bytes around it.
      const again = decodeRequest(whole);
      assert.equal(again.path, `/r/${i}`);
      assert.deepEqual(new Uint8Array(again.content), new Uint8Array(req.content));
      assert.ok(!seen.has(req.content.buffer), `request ${i} shares a buffer`);
      seen.add(req.content.buffer);
    }
    // Kept content is not overwritten by later requests.
    assert.equal(new TextDecoder().decode(kept[0]!.content), 'first secret');
  });
});
