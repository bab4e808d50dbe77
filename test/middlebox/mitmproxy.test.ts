/**
 * mitmproxy (`mitmdump`) as the TLS-intercepting forward proxy of the draft's
 * Figure 8: the client's outer HTTPS is terminated by mitmdump with a forged
 * certificate (the client does not verify the transport, draft §6.3), every
 * HTTP message is readable there, and the ATLS session still runs end to end
 * to the service, whose CA is the only one ATLS trusts.
 *
 * Two addons, written to the tool's temp dir: `dump.py` records every
 * intercepted exchange (bodies, content types) for the assertions; `flip.py`
 * flips one byte of chosen messages, driven by a rules file the test rewrites
 * between cases.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAtlsClient, MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED, HEADER_FLIGHT_LENGTH } from '../../src/http/index.js';
import type { AtlsClient, AtlsClientEvent } from '../../src/http/index.js';
import { AtlsError } from '../../src/errors.js';
import { inspectFlight } from '../../src/records.js';
import { testPki, writeTestPki, type TestPki } from '../helpers/pki.js';
import { findTool, REQUIRE_INTEROP, type ToolProcess } from '../helpers/tools.js';
import {
  SECRET_HEADER,
  SECRET_REQUEST,
  SECRET_RESPONSE,
  containsText,
  startService,
  startTool,
  readDump,
  tempDir,
  DUMP_ADDON,
  type Service,
} from '../helpers/middlebox.js';

/**
 * Flips one byte of the n-th message matching a rule. Rules are re-read from
 * a JSON file on every message so that one mitmdump serves every case:
 * { id, direction: "request"|"response", contentType, nth, at: "end"|"flight-end" }.
 * "flight-end" is the last byte of the TLS flight part (before a piggy-backed
 * protected message, per the ATLS-Flight-Length header).
 */
const FLIP_ADDON = (rules: string, log: string): string => `
import json
from mitmproxy import http

RULES = ${JSON.stringify(rules)}
LOG = ${JSON.stringify(log)}
seen = {}

def rules():
    try:
        with open(RULES) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []

def flip(direction, msg):
    ctype = msg.headers.get("content-type", "").split(";")[0].strip().lower()
    for r in rules():
        if r["direction"] != direction or r["contentType"] != ctype:
            continue
        seen[r["id"]] = seen.get(r["id"], 0) + 1
        if seen[r["id"]] != r["nth"]:
            continue
        body = bytearray(msg.raw_content or b"")
        if not body:
            continue
        end = len(body)
        if r["at"] == "flight-end" and "${HEADER_FLIGHT_LENGTH}" in msg.headers:
            end = int(msg.headers["${HEADER_FLIGHT_LENGTH}"])
        body[end - 1] ^= 0x01
        msg.raw_content = bytes(body)
        with open(LOG, "a") as f:
            f.write(json.dumps({"id": r["id"], "direction": direction, "offset": end - 1, "length": len(body)}) + "\\n")

class Flip:
    def request(self, flow: http.HTTPFlow) -> None:
        flip("request", flow.request)

    def response(self, flow: http.HTTPFlow) -> None:
        flip("response", flow.response)

addons = [Flip()]
`;

interface FlipRule {
  id: string;
  direction: 'request' | 'response';
  contentType: string;
  nth: number;
  at: 'end' | 'flight-end';
}


const mitmdump = findTool('mitmdump');
const skip = !mitmdump && !REQUIRE_INTEROP ? 'mitmdump not installed (Debian package mitmproxy)' : false;

describe('mitmproxy (mitmdump) as a TLS-intercepting forward proxy (draft Figure 8)', { skip, timeout: 60_000 }, () => {
  let pki: TestPki;
  let dir: { path: string; remove(): Promise<void> };
  let proxy: ToolProcess;
  let proxyUrl: string;
  let dumpFile: string;
  let rulesFile: string;
  let flipLog: string;
  const services: Service[] = [];

  before(async () => {
    if (!mitmdump) throw new Error('mitmdump not installed and ATLS_REQUIRE_INTEROP=1');
    pki = await testPki();
    dir = await tempDir('mitmproxy');
    const files = await writeTestPki(dir.path);
    dumpFile = join(dir.path, 'dump.jsonl');
    rulesFile = join(dir.path, 'flip-rules.json');
    flipLog = join(dir.path, 'flipped.jsonl');
    await writeFile(join(dir.path, 'dump.py'), DUMP_ADDON(dumpFile));
    await writeFile(join(dir.path, 'flip.py'), FLIP_ADDON(rulesFile, flipLog));
    await writeFile(rulesFile, '[]');
    // The flip addon runs first, so the dump shows what the far side received.
    proxy = await startTool(
      mitmdump,
      [
        '--listen-host', '127.0.0.1',
        '--listen-port', '0',
        '--set', `confdir=${join(dir.path, 'conf')}`,
        // mitmdump verifies the real service against the test CA (it is a trusted middlebox there).
        '--set', `ssl_verify_upstream_trusted_ca=${files.ca.cert}`,
        '-s', join(dir.path, 'flip.py'),
        '-s', join(dir.path, 'dump.py'),
      ],
      /Proxy server listening at 127\.0\.0\.1:(\d+)/,
    );
    const m = /listening at 127\.0\.0\.1:(\d+)/.exec(proxy.output);
    proxyUrl = `http://127.0.0.1:${m![1]!}`;
  });

  after(async () => {
    await proxy?.kill();
    await Promise.all(services.map((s) => s.close()));
    await dir?.remove();
  });

  function client(mode: 'exported' | 'records'): AtlsClient {
    return createAtlsClient({
      // ATLS: trust only the service's CA; the name is the service's, not the middlebox's.
      tls: { ca: pki.ca.cert, serverName: 'localhost' },
      mode,
      proxy: proxyUrl,
      // draft §6.3: the transport is a middlebox we cannot verify (its CA is its own).
      transport: { insecure: true },
    });
  }

  async function post(c: AtlsClient, svc: Service, body: string, path = '/meter'): Promise<Response> {
    return c.fetch(svc.url(path, 'localhost'), {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain', [SECRET_HEADER[0]]: SECRET_HEADER[1] },
      signal: AbortSignal.timeout(10_000),
    });
  }

  it('policy auto through mitmproxy: ATLS, and the service learns the middlebox CA subject (draft §6.2)', async () => {
    const svc = await startService({ https: true, name: 'mitm-policy' });
    services.push(svc);
    const seen: AtlsClientEvent[] = [];
    const c = createAtlsClient({
      tls: { ca: pki.ca.cert, serverName: 'localhost' },
      proxy: proxyUrl,
      policy: 'auto',
      // The client's transport trust store holds the service's CA, not mitmproxy's: the check fails, ATLS is used.
      transport: { ca: pki.ca.cert, insecure: true },
      onEvent: (e) => seen.push(e),
    });
    try {
      const res = await post(c, svc, SECRET_REQUEST);
      assert.equal(res.status, 200);
      assert.match(await res.text(), /backend=mitm-policy/);
      const decision = seen.find((e) => e.type === 'policy');
      assert.ok(decision && decision.type === 'policy');
      assert.equal(decision.use, 'atls');
      assert.equal(decision.transport?.verified, false);
      const report = svc.events.find((e) => e.type === 'transport');
      assert.ok(report && report.type === 'transport', 'the service received a transport report');
      assert.match(report.report.issuer ?? '', /mitmproxy/, `issuer: ${report.report.issuer}`);
      assert.equal(report.report.intercepted, true);
      assert.equal(report.peer.transport, report.report, 'the app sees it next to the authenticated peer');
      const counts = svc.handler.stats().intercepted;
      assert.deepEqual(Object.values(counts), [1]);
      assert.match(Object.keys(counts)[0]!, /mitmproxy/);
    } finally {
      await c.close();
    }
  });

  it('policy auto without a middlebox: no ATLS flight, the request succeeds over plain HTTPS', async () => {
    const svc = await startService({ https: true, name: 'direct', plain: () => new Response('plain https answer') });
    services.push(svc);
    const seen: AtlsClientEvent[] = [];
    const c = createAtlsClient({
      tls: { ca: pki.ca.cert, serverName: 'localhost' },
      proxy: false,
      policy: 'auto',
      transport: { ca: pki.ca.cert },
      onEvent: (e) => seen.push(e),
    });
    try {
      const res = await c.fetch(svc.url('/meter', 'localhost'));
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'plain https answer');
      assert.equal(seen.filter((e) => e.type === 'flight').length, 0, 'no ATLS flight sent');
      assert.deepEqual(svc.statuses, [], 'the ATLS endpoint was never called');
      const decision = seen.find((e) => e.type === 'policy');
      assert.ok(decision && decision.type === 'policy' && decision.use === 'plain' && decision.transport?.verified === true);
    } finally {
      await c.close();
    }
  });

  for (const mode of ['exported', 'records'] as const) {
    it(`mode ${mode}: requests succeed end to end and mitmdump sees only ATLS bodies`, async () => {
      const svc = await startService({ https: true, mode, name: `mitm-${mode}` });
      services.push(svc);
      const before = (await readDump(dumpFile)).length;
      const c = client(mode);
      try {
        for (let i = 0; i < 3; i++) {
          const res = await post(c, svc, `${SECRET_REQUEST} #${i}`);
          assert.equal(res.status, 200);
          const text = await res.text();
          assert.match(text, new RegExp(`^${SECRET_RESPONSE.replace(/[()]/g, '\\$&')} backend=mitm-${mode} .* #${i}$`));
        }
      } finally {
        await c.close();
      }
      const seen = (await readDump(dumpFile)).slice(before).filter((d) => d.url.includes(`:${svc.port}/`));
      assert.ok(seen.length >= 3, `mitmdump intercepted ${seen.length} exchanges`);
      // Every exchange went to the ATLS endpoint as a POST with an ATLS media type, and succeeded.
      for (const d of seen) {
        assert.equal(d.method, 'POST');
        assert.match(d.url, /^https:\/\/localhost:\d+\/\.well-known\/atls$/);
        assert.equal(d.status, 200);
        const types = [MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED];
        assert.ok(types.includes(d.requestType), `request type ${d.requestType}`);
        assert.ok(types.includes(d.responseType), `response type ${d.responseType}`);
      }
      const types = new Set(seen.map((d) => d.requestType));
      if (mode === 'exported') assert.deepEqual([...types].sort(), [MEDIA_TYPE_FLIGHT, MEDIA_TYPE_PROTECTED]);
      else assert.deepEqual([...types], [MEDIA_TYPE_FLIGHT]);

      // The handshake is identifiable: the first body is a ClientHello naming the service.
      const hello = inspectFlight(seen[0]!.requestBody);
      assert.equal(hello.error, undefined);
      assert.deepEqual(hello.records.map((r) => r.contentTypeName), ['handshake']);
      assert.equal(hello.handshake[0]?.name, 'client_hello');
      assert.equal(hello.clientHello?.serverName, 'localhost');
      const serverFlight = inspectFlight(seen[0]!.responseBody);
      assert.equal(serverFlight.serverHello !== undefined, true);

      // Nothing of the inner messages is visible: bodies, or headers the middlebox logged.
      for (const d of seen) {
        for (const body of [d.requestBody, d.responseBody]) {
          for (const secret of [SECRET_REQUEST, SECRET_RESPONSE, SECRET_HEADER[1], '/meter']) {
            assert.equal(containsText(body, secret), false, `inner "${secret}" visible in ${d.requestType} body`);
          }
        }
        const headers = JSON.stringify([d.requestHeaders, d.responseHeaders]);
        assert.equal(headers.includes(SECRET_HEADER[1]), false);
        assert.equal(headers.includes('/meter'), false);
      }
      assert.ok(svc.statuses.every((s) => s === 200), `service statuses ${svc.statuses.join(',')}`);
    });
  }

  /** Runs one tampering case: installs the rule, runs requests, clears the rule. */
  async function withRule<T>(rule: FlipRule, run: () => Promise<T>): Promise<{ result: T; flips: number }> {
    await writeFile(rulesFile, JSON.stringify([rule]));
    try {
      const result = await run();
      const log = await readFile(flipLog, 'utf8').catch(() => '');
      const flips = log.split('\n').filter((l) => l.includes(`"id": "${rule.id}"`)).length;
      return { result, flips };
    } finally {
      await writeFile(rulesFile, '[]');
    }
  }

  async function rejects(p: Promise<unknown>): Promise<AtlsError> {
    try {
      await p;
    } catch (e) {
      assert.ok(e instanceof AtlsError, `expected an AtlsError, got ${String(e)}`);
      return e;
    }
    assert.fail('the request succeeded although a byte was flipped');
  }

  it('mode exported: a flipped byte in a protected request is a 400 and a clear AtlsError; the session survives', async () => {
    const svc = await startService({ https: true, mode: 'exported', name: 'flip-req' });
    services.push(svc);
    const c = client('exported');
    try {
      // The first request rides with the client's final flight; the second travels alone.
      assert.equal((await post(c, svc, 'one')).status, 200);
      const { result: err, flips } = await withRule(
        { id: 'protected-request', direction: 'request', contentType: MEDIA_TYPE_PROTECTED, nth: 1, at: 'end' },
        () => rejects(post(c, svc, 'two')),
      );
      assert.equal(flips, 1);
      assert.equal(err.code, 'DECRYPT_FAILED');
      assert.equal(err.source, 'remote');
      assert.match(err.message, /answered 400/);
      // A forged message costs that message only (the replay window did not advance).
      const res = await post(c, svc, 'three');
      assert.match(await res.text(), /echo=three$/);
      assert.deepEqual(svc.statuses, [200, 200, 400, 200]);
    } finally {
      await c.close();
    }
  });

  it('mode exported: a flipped byte in a protected response fails locally, the next request works', async () => {
    const svc = await startService({ https: true, mode: 'exported', name: 'flip-res' });
    services.push(svc);
    const c = client('exported');
    try {
      assert.equal((await post(c, svc, 'one')).status, 200);
      const { result: err, flips } = await withRule(
        { id: 'protected-response', direction: 'response', contentType: MEDIA_TYPE_PROTECTED, nth: 1, at: 'end' },
        () => rejects(post(c, svc, 'two')),
      );
      assert.equal(flips, 1);
      assert.equal(err.code, 'DECRYPT_FAILED');
      assert.match((await (await post(c, svc, 'three')).text()), /echo=three$/);
      assert.ok(svc.statuses.every((s) => s === 200));
    } finally {
      await c.close();
    }
  });

  for (const mode of ['exported', 'records'] as const) {
    it(`mode ${mode}: a flipped byte in the client's final flight is a 400 with an alert; a new handshake works`, async (t) => {
      const svc = await startService({ https: true, mode, name: `flip-flight-${mode}` });
      services.push(svc);
      const c = client(mode);
      try {
        // Flight 1 is the ClientHello; flight 2 (nth 2) is the client's Finished (+ first request).
        const { result: err, flips } = await withRule(
          { id: `final-flight-${mode}`, direction: 'request', contentType: MEDIA_TYPE_FLIGHT, nth: 2, at: 'flight-end' },
          () => rejects(post(c, svc, 'one')),
        );
        assert.equal(flips, 1);
        t.diagnostic(`client error: ${err.code}: ${err.message}`);
        assert.equal(err.source, 'remote');
        // The server's stack found the bad record and said so (alert in the 400 body, RFC 8446 §5.2).
        assert.equal(err.code, 'BAD_RECORD_MAC');
        assert.deepEqual(svc.statuses, [200, 400]);
        // The failed session is gone on both sides; the client starts afresh.
        const res = await post(c, svc, 'again');
        assert.match(await res.text(), /echo=again$/);
        assert.ok(svc.statuses.every((s) => s < 500), `service statuses ${svc.statuses.join(',')}`);
      } finally {
        await c.close();
      }
    });
  }

  it("mode exported: a flipped byte in the server's flight fails the client's handshake cleanly", async (t) => {
    const svc = await startService({ https: true, mode: 'exported', name: 'flip-server-flight' });
    services.push(svc);
    const c = client('exported');
    try {
      const { result: err, flips } = await withRule(
        { id: 'server-flight', direction: 'response', contentType: MEDIA_TYPE_FLIGHT, nth: 1, at: 'end' },
        () => rejects(post(c, svc, 'one')),
      );
      assert.equal(flips, 1);
      t.diagnostic(`client error: ${err.code}: ${err.message}`);
      assert.equal(err.code, 'BAD_RECORD_MAC');
      // The server never heard of the failure: its half-open session simply expires.
      assert.deepEqual(svc.statuses, [200]);
      assert.match(await (await post(c, svc, 'again')).text(), /echo=again$/);
    } finally {
      await c.close();
    }
  });
});
