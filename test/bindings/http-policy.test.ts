/**
 * The policy layer (draft §6.2, docs/protocol.md §5.11) over real https
 * sockets: `auto` sends plain HTTPS when the transport verifies end to end
 * and ATLS otherwise; the client reports the transport chain inside the
 * session; the service sees it next to the authenticated peer, counts
 * interceptions by issuer, and the reverse sidecar passes it upstream.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { X509Certificate } from 'node:crypto';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsHandler, type AtlsServerEvent } from '../../src/http/server.js';
import { atlsNodeListener, toNodeListener } from '../../src/http/node.js';
import { createAtlsClient, type AtlsClientEvent } from '../../src/http/client.js';
import { upstreamApp, HEADER_UPSTREAM_INTERCEPTED, HEADER_UPSTREAM_ISSUER } from '../../src/http/apps.js';
import { parseTransportReport, transportReportFields, HEADER_TRANSPORT_CHAIN } from '../../src/http/transport-report.js';
import { AtlsError } from '../../src/errors.js';
import { Hono } from 'hono';
import { atls, type AtlsVariables } from '../../src/http/hono.js';

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

describe('policy layer', () => {
  let pki: TestPki;
  let server: https.Server;
  let port: number;
  const events: AtlsServerEvent[] = [];
  let handler: ReturnType<typeof createAtlsHandler>;
  let plainRequests = 0;

  before(async () => {
    pki = await testPki();
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    handler = createAtlsHandler({
      tls: tls.server,
      onEvent: (e) => events.push(e),
      app: (_req, peer) =>
        Response.json({
          via: 'atls',
          transport: peer.transport
            ? { verified: peer.transport.verified, intercepted: peer.transport.intercepted, issuer: peer.transport.issuer, certificates: peer.transport.chain.length }
            : null,
        }),
    });
    // The same service over plain HTTPS: what `auto` uses when nothing is in between.
    const plain = (): Response => {
      plainRequests++;
      return Response.json({ via: 'https' });
    };
    server = https.createServer({ cert: pki.server.cert, key: pki.server.key }, atlsNodeListener(handler, { fallback: plain }));
    port = await listen(server);
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await handler.close();
  });

  function client(options: Parameters<typeof createAtlsClient>[0]) {
    const seen: AtlsClientEvent[] = [];
    const c = createAtlsClient({ tls: tlsPair(pki, 'TLSv1.3', 'cert').client, ...options, onEvent: (e) => seen.push(e) });
    return { c, seen };
  }

  it('auto, transport verifies for the name: plain HTTPS, no ATLS flight, the caller is told', async () => {
    const sessionsBefore = events.filter((e) => e.type === 'session').length;
    const { c, seen } = client({ policy: 'auto', transport: { ca: pki.ca.cert } });
    const res = await c.fetch(`https://localhost:${port}/hello`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { via: 'https' });
    assert.equal(plainRequests, 1);
    assert.equal(seen.filter((e) => e.type === 'flight').length, 0, 'no ATLS flight sent');
    assert.equal(events.filter((e) => e.type === 'session').length, sessionsBefore);
    const decision = seen.find((e) => e.type === 'policy');
    assert.ok(decision && decision.type === 'policy');
    assert.equal(decision.use, 'plain');
    assert.equal(decision.transport?.verified, true);
    await c.close();
  });

  it('auto, transport does not verify (unknown CA or wrong name): ATLS, and the report reaches the app', async () => {
    // The client trusts another CA for the transport (as with an intercepting middlebox whose CA it lacks).
    const { c, seen } = client({ policy: 'auto', transport: { ca: pki.otherCa.cert, insecure: true } });
    const res = await c.fetch(`https://localhost:${port}/x`);
    const body = (await res.json()) as { via: string; transport: { verified: boolean; intercepted: boolean; issuer: string; certificates: number } };
    assert.equal(body.via, 'atls');
    assert.equal(body.transport.verified, false);
    assert.equal(body.transport.intercepted, true);
    assert.equal(body.transport.issuer, new X509Certificate(pki.ca.cert).subject);
    assert.ok(body.transport.certificates >= 1);
    const decision = seen.find((e) => e.type === 'policy');
    assert.ok(decision && decision.type === 'policy' && decision.use === 'atls');
    assert.equal(handler.stats().intercepted[new X509Certificate(pki.ca.cert).subject], 1);
    const reported = events.filter((e) => e.type === 'transport');
    assert.equal(reported.length, 1);
    // Later requests of the session no longer carry it; the peer keeps it.
    const again = (await (await c.fetch(`https://localhost:${port}/y`)).json()) as { transport: { intercepted: boolean } };
    assert.equal(again.transport.intercepted, true);
    assert.equal(events.filter((e) => e.type === 'transport').length, 1);
    await c.close();
  });

  it('always (default) with a verified transport: ATLS, reported as not intercepted', async () => {
    const { c } = client({ transport: { ca: pki.ca.cert } });
    const body = (await (await c.fetch(`https://127.0.0.1:${port}/z`)).json()) as { via: string; transport: { verified: boolean; intercepted: boolean } };
    // 127.0.0.1 is in the server certificate's SANs: verified for that name too.
    assert.equal(body.via, 'atls');
    assert.deepEqual({ v: body.transport.verified, i: body.transport.intercepted }, { v: true, i: false });
    await c.close();
  });

  it('never: plain HTTPS; reportTransport false: no report', async () => {
    const before = plainRequests;
    const { c } = client({ policy: 'never', transport: { ca: pki.ca.cert } });
    assert.deepEqual(await (await c.fetch(`https://localhost:${port}/n`)).json(), { via: 'https' });
    assert.equal(plainRequests, before + 1);
    await c.close();
    const quiet = client({ reportTransport: false, transport: { ca: pki.ca.cert } });
    const body = (await (await quiet.c.fetch(`https://localhost:${port}/q`)).json()) as { transport: unknown };
    assert.equal(body.transport, null);
    await quiet.c.close();
  });

  it('the service that knows its own transport certificate judges by the leaf, and the sidecar passes it upstream', async () => {
    const upstreamSeen: Headers[] = [];
    const upstream = http.createServer((req, res) => {
      upstreamSeen.push(new Headers(req.headers as Record<string, string>));
      res.end('up');
    });
    const upPort = await listen(upstream);
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const sidecar = createAtlsHandler({
      tls: tls.server,
      app: upstreamApp(`http://127.0.0.1:${upPort}`),
      // Its transport presents pki.server: a client shown pki.untrustedServer was intercepted, whatever it trusts.
      transportCertificates: pki.server.cert,
    });
    const outer = https.createServer({ cert: pki.untrustedServer.cert, key: pki.untrustedServer.key }, toNodeListener(sidecar));
    const outerPort = await listen(outer);
    const { c } = client({ transport: { ca: pki.otherCa.cert } }); // otherCa issued untrustedServer: it verifies
    const res = await c.fetch(`https://localhost:${outerPort}/api`, { headers: { [HEADER_UPSTREAM_INTERCEPTED]: '?0' } });
    assert.equal(await res.text(), 'up');
    assert.equal(upstreamSeen[0]!.get(HEADER_UPSTREAM_INTERCEPTED), '?1', 'the client-supplied field was replaced');
    assert.equal(upstreamSeen[0]!.get(HEADER_UPSTREAM_ISSUER), new X509Certificate(pki.otherCa.cert).subject.split('\n').join(', '));
    assert.equal(upstreamSeen[0]!.get(HEADER_TRANSPORT_CHAIN), null, 'the report itself stays with the ATLS layer');
    await c.close();
    outer.closeAllConnections();
    await new Promise<void>((resolve) => outer.close(() => resolve()));
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
    await sidecar.close();
  });

  it('Hono: the report is in c.get(\'atls\').transport', async () => {
    const tls = tlsPair(pki, 'TLSv1.3', 'cert');
    const app = new Hono<{ Variables: AtlsVariables }>();
    app.use(atls({ tls: tls.server, app }));
    app.get('/who', (c) => c.json({ intercepted: c.get('atls')?.transport?.intercepted ?? null, issuer: c.get('atls')?.transport?.issuer ?? null }));
    const outer = https.createServer({ cert: pki.server.cert, key: pki.server.key }, toNodeListener((req) => app.fetch(req)));
    const outerPort = await listen(outer);
    const { c } = client({ transport: { ca: pki.otherCa.cert, insecure: true } });
    const body = (await (await c.fetch(`https://localhost:${outerPort}/who`)).json()) as { intercepted: boolean; issuer: string };
    assert.deepEqual(body, { intercepted: true, issuer: new X509Certificate(pki.ca.cert).subject });
    await c.close();
    outer.closeAllConnections();
    await new Promise<void>((resolve) => outer.close(() => resolve()));
  });

  for (const policy of ['never', 'auto'] as const) {
    it(`${policy}: a request body given as a stream leaves as it is produced (bounded memory), bytes keep their Content-Length`, async () => {
      // A plain HTTPS service that counts what it has received and answers with the total.
      let received = 0;
      let lengths: (string | undefined)[] = [];
      const sink = https.createServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
        lengths.push(req.headers['content-length']);
        let n = 0;
        req.on('data', (chunk: Buffer) => {
          n += chunk.length;
          received += chunk.length;
        });
        req.on('end', () => res.end(String(n)));
      });
      const sinkPort = await listen(sink);
      const { c, seen } = client({ policy, transport: { ca: pki.ca.cert } });
      try {
        const total = 64 * 1024 * 1024;
        const piece = new Uint8Array(64 * 1024).fill(0x61);
        let produced = 0;
        let mostAhead = 0; // produced but not yet at the service: what the client side holds
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            mostAhead = Math.max(mostAhead, produced - received);
            if (produced === total) return controller.close();
            produced += piece.length;
            controller.enqueue(piece.slice());
          },
        });
        const res = await c.fetch(`https://localhost:${sinkPort}/upload`, { method: 'POST', body, duplex: 'half' } as RequestInit);
        assert.equal(await res.text(), String(total));
        assert.ok(seen.some((e) => e.type === 'policy' && e.use === 'plain'), 'sent plain');
        // Held whole, the client would be 64 MiB ahead of the service before the first byte left.
        assert.ok(mostAhead < 16 * 1024 * 1024, `the client was ${mostAhead} bytes ahead of the service`);
        // A body given as bytes still goes with its Content-Length, not chunked.
        lengths = [];
        const small = await c.fetch(`https://localhost:${sinkPort}/bytes`, { method: 'POST', body: 'hello' });
        assert.equal(await small.text(), '5');
        assert.deepEqual(lengths, ['5']);
      } finally {
        await c.close();
        sink.closeAllConnections();
        await new Promise<void>((resolve) => sink.close(() => resolve()));
      }
    });
  }

  it('a malformed report is the peer’s error; a well-formed one round-trips', () => {
    const der = new Uint8Array(new X509Certificate(pki.server.cert).raw);
    const fields = Object.fromEntries(transportReportFields({ chain: [der], verified: true }));
    const r = parseTransportReport(fields['atls-transport-chain'], fields['atls-transport-verified']);
    assert.deepEqual(r?.chain, [der]);
    assert.equal(r?.verified, true);
    assert.equal(parseTransportReport(undefined, undefined), undefined);
    for (const [chain, verified] of [
      [fields['atls-transport-chain'], 'true'],
      ['MIIB', '?1'],
      [':not base64!:', '?0'],
      [':AAAA:', '?0'],
      [Array.from({ length: 11 }, () => fields['atls-transport-chain']).join(', '), '?0'],
      [undefined, '?0'],
    ] as const) {
      assert.throws(() => parseTransportReport(chain, verified), (e: unknown) => e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE');
    }
  });
});
