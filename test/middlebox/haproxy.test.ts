/**
 * haproxy as an HTTP load balancer in front of two instances of one ATLS
 * service, each with its own in-memory session store. One haproxy process
 * serves four frontends, one per balancing policy (test/middlebox/README.md
 * has the whole haproxy.cfg):
 * - `rr`: round-robin, no stickiness: the handshake's second flight lands on
 *   the instance that never saw the first, which answers 410;
 * - `insert`: `cookie SRV insert indirect nocache`, haproxy's own cookie;
 * - `prefix`: `cookie atls-session prefix`: haproxy prefixes the ATLS cookie's
 *   value with the server name and strips it again on the way in;
 * - `tag`: routing on the ATLS cookie's routing tag (`<tag>.<random>`,
 *   createAtlsHandler's `routingTag`) with `use-server` rules.
 * The instances share TLS ticket keys, so a ticket issued by one resumes on
 * the other.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAtlsClient, COOKIE_NAME, MEDIA_TYPE_FLIGHT } from '../../src/http/index.js';
import type { AtlsClient, AtlsClientOptions } from '../../src/http/index.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { AtlsError } from '../../src/errors.js';
import { testPki, type TestPki } from '../helpers/pki.js';
import { findTool, freePort, REQUIRE_INTEROP, type ToolProcess } from '../helpers/tools.js';
import { startService, startTool, tempDir, waitForPort, type Service } from '../helpers/middlebox.js';

type Policy = 'rr' | 'insert' | 'prefix' | 'tag';

/** One frontend of the haproxy process: a policy over two instances. */
interface Frontend {
  name: string;
  policy: Policy;
  /** Server names (= the instances' routing tags) and ports. */
  servers: ReadonlyArray<{ name: string; port: number }>;
}

/** The backend lines of a policy. */
function backend(f: Frontend): string[] {
  const servers = (extra: (name: string) => string): string[] =>
    f.servers.map((s) => `  server ${s.name} 127.0.0.1:${s.port}${extra(s.name)}`);
  switch (f.policy) {
    case 'rr':
      return ['  balance roundrobin', ...servers(() => '')];
    case 'insert':
      return ['  balance roundrobin', '  cookie SRV insert indirect nocache', ...servers((n) => ` cookie ${n}`)];
    case 'prefix':
      return ['  balance roundrobin', `  cookie ${COOKIE_NAME} prefix`, ...servers((n) => ` cookie ${n}`)];
    case 'tag':
      // Sessions of the instance with routingTag `a` have cookie values `a.<random>`.
      return [
        '  balance roundrobin',
        ...f.servers.map((s) => `  use-server ${s.name} if { req.cook(${COOKIE_NAME}) -m beg ${s.name}. }`),
        ...servers(() => ''),
      ];
  }
}

/** The whole haproxy.cfg. */
function haproxyConf(frontends: ReadonlyArray<Frontend & { port: number }>): string {
  return [
    'global',
    '  maxconn 200',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 10s',
    '  timeout server 10s',
    ...frontends.flatMap((f) => [
      `frontend fe_${f.name}`,
      `  bind 127.0.0.1:${f.port}`,
      `  default_backend be_${f.name}`,
      `backend be_${f.name}`,
      ...backend(f),
    ]),
    '',
  ].join('\n');
}

const haproxyPath = findTool('haproxy');
const skip = !haproxyPath && !REQUIRE_INTEROP ? 'haproxy not installed (Debian package haproxy)' : false;

describe('haproxy load-balancing two ATLS service instances', { skip, timeout: 90_000 }, () => {
  let pki: TestPki;
  let a: Service;
  let b: Service;
  let ra: Service;
  let rb: Service;
  let proc: ToolProcess | undefined;
  let dir: { path: string; remove(): Promise<void> };
  /** Frontend URL by frontend name. */
  const front: Record<string, string> = {};
  const clients: AtlsClient[] = [];
  const ticketKeys = randomBytes(48);
  const sessionIdContext = 'atls-haproxy-test';

  before(async () => {
    if (!haproxyPath) throw new Error('haproxy not installed and ATLS_REQUIRE_INTEROP=1');
    pki = await testPki();
    // Two instances of one service: same certificate, same ticket keys, separate session stores.
    const tls = { ticketKeys, sessionIdContext };
    [a, b, ra, rb] = await Promise.all([
      startService({ name: 'a', routingTag: 'a', tls }),
      startService({ name: 'b', routingTag: 'b', tls }),
      startService({ name: 'ra', routingTag: 'ra', mode: 'records' }),
      startService({ name: 'rb', routingTag: 'rb', mode: 'records' }),
    ]);
    const pair = [
      { name: 'a', port: a.port },
      { name: 'b', port: b.port },
    ];
    const frontends: Frontend[] = [
      { name: 'rr', policy: 'rr', servers: pair },
      { name: 'insert', policy: 'insert', servers: pair },
      { name: 'prefix', policy: 'prefix', servers: pair },
      { name: 'tag', policy: 'tag', servers: pair },
      { name: 'tag_records', policy: 'tag', servers: [{ name: 'ra', port: ra.port }, { name: 'rb', port: rb.port }] },
    ];
    dir = await tempDir('haproxy');
    const conf = join(dir.path, 'haproxy.cfg');
    let lastError: unknown;
    for (let attempt = 0; attempt < 3 && !proc; attempt++) {
      const bound = await Promise.all(frontends.map(async (f) => ({ ...f, port: await freePort() })));
      await writeFile(conf, haproxyConf(bound));
      try {
        // -db: stay in the foreground; ready when every frontend accepts connections.
        const p = await startTool(haproxyPath, ['-db', '-f', conf], { port: bound[0]!.port });
        await Promise.all(bound.map((f) => waitForPort(f.port, 5000, p)));
        proc = p;
        for (const f of bound) front[f.name] = `http://127.0.0.1:${f.port}`;
      } catch (e) {
        lastError = e; // most likely a port taken in between: try other ports
      }
    }
    if (!proc) throw lastError;
  });

  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await proc?.kill();
    await Promise.all([a, b, ra, rb].map((svc) => svc?.close()));
    await dir?.remove();
  });

  function client(options: AtlsClientOptions = {}): AtlsClient {
    const c = createAtlsClient({ tls: { ca: pki.ca.cert, serverName: 'localhost' }, proxy: false, ...options });
    clients.push(c);
    return c;
  }

  function post(c: AtlsClient, frontend: string, body: string): Promise<Response> {
    return c.fetch(`${front[frontend]!}/api`, { method: 'POST', body, signal: AbortSignal.timeout(10_000) });
  }

  /** Statuses every instance answered since `mark`. */
  type Mark = Record<string, number>;
  const all = (): Service[] => [a, b, ra, rb];
  const mark = (): Mark => Object.fromEntries(all().map((s) => [s.name, s.statuses.length]));
  function since(m: Mark): Record<string, number[]> {
    return Object.fromEntries(all().map((s) => [s.name, s.statuses.slice(m[s.name])]));
  }

  it('round-robin without stickiness: flight 2 reaches the other instance, which answers 410; the client reports it', async (t) => {
    const m = mark();
    const c = client();
    for (let i = 0; i < 3; i++) {
      const err = await post(c, 'rr', `try ${i}`).then(
        () => assert.fail('a handshake split across two instances succeeded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof AtlsError, `expected an AtlsError, got ${String(err)}`);
      if (i === 0) t.diagnostic(`client error: ${err.code}: ${err.message}`);
      assert.equal(err.code, 'CLOSED');
      assert.equal(err.source, 'remote');
      assert.match(err.message, /answered 410: CLOSED: unknown or expired ATLS session/);
    }
    // Each attempt: the ClientHello on one instance (200), the next flight on the other (410).
    const seen = since(m);
    assert.deepEqual([...seen.a!, ...seen.b!].sort(), [200, 200, 200, 410, 410, 410]);
    assert.ok(seen.a!.length > 0 && seen.b!.length > 0);
    // The 410 also deleted the cookie so that the next attempt starts clean.
    assert.equal(c.sessions.size, 0);
  });

  /** Many requests over one client; returns which instances answered. */
  async function sticky(frontend: string, mode: 'exported' | 'records', requests: number): Promise<Set<string>> {
    const m = mark();
    const c = client({ mode });
    const backends = new Set<string>();
    for (let i = 0; i < requests; i++) {
      const res = await post(c, frontend, `req ${i}`);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, new RegExp(`echo=req ${i}$`));
      backends.add(/backend=(\w+)/.exec(text)![1]!);
    }
    const info = [...c.sessions.values()][0]!;
    assert.equal(info.state, 'established');
    await c.close();
    const seen = Object.values(since(m)).flat();
    assert.ok(seen.length >= requests && seen.every((s) => s === 200), `statuses ${seen.join(',')}`);
    return backends;
  }

  for (const mode of ['exported', 'records'] as const) {
    it(`routing on the ATLS cookie's routing tag (use-server ... -m beg a.): mode ${mode}, one instance per session`, async () => {
      // Two clients: round-robin spreads their handshakes, the tag keeps each session home.
      const frontend = mode === 'exported' ? 'tag' : 'tag_records';
      const first = await sticky(frontend, mode, 20);
      const second = await sticky(frontend, mode, 20);
      assert.equal(first.size, 1);
      assert.equal(second.size, 1);
      assert.notDeepEqual([...first], [...second], 'round-robin put both sessions on one instance');
    });
  }

  it('cookie atls-session prefix: haproxy prefixes the ATLS cookie with the server name; sessions stay put', async () => {
    const first = await sticky('prefix', 'exported', 20);
    const second = await sticky('prefix', 'exported', 20);
    assert.equal(first.size, 1);
    assert.equal(second.size, 1);
    assert.notDeepEqual([...first], [...second]);
    // What the client stores: `<server>~<tag>.<random>`; the instances see `<tag>.<random>` only.
    const session = new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    const res = await fetch(`${front.prefix!}/.well-known/atls`, {
      method: 'POST',
      headers: { 'content-type': MEDIA_TYPE_FLIGHT },
      body: (await session.start()).flight,
      signal: AbortSignal.timeout(5000),
    });
    session.destroy();
    await res.arrayBuffer();
    assert.match(res.headers.getSetCookie().join('\n'), new RegExp(`^${COOKIE_NAME}=(a~a|b~b)\\.[A-Za-z0-9_-]{22};`));
  });

  it('cookie SRV insert indirect nocache: the client returns haproxy\'s own cookie, sessions stay put', async () => {
    // Needs the client to send back cookies other than atls-session (src/http/client.ts OtherCookies).
    const first = await sticky('insert', 'exported', 20);
    const second = await sticky('insert', 'exported', 20);
    assert.equal(first.size, 1);
    assert.equal(second.size, 1);
    assert.notDeepEqual([...first], [...second]);
    // `indirect`: haproxy strips its cookie before the request reaches an instance.
    assert.ok([...a.requestHeaders, ...b.requestHeaders].every((h) => !/\bSRV=/.test(h.get('cookie') ?? '')));
  });

  it('shared ticket keys: a ticket issued by one instance resumes on the other', async (t) => {
    // The HTTP client keeps no tickets across sessions, so the first session is
    // driven by hand (through haproxy, routed by tag) to collect one.
    const tag = await fetchTicket();
    t.diagnostic(`ticket of ${tag.backend}: ${tag.ticket.length} bytes`);
    // Fresh clients offering the ticket until round-robin sends one to the other instance.
    for (let i = 0; i < 4; i++) {
      const c = client({ tls: { ca: pki.ca.cert, serverName: 'localhost', session: tag.ticket } });
      const text = await (await post(c, 'tag', 'resume?')).text();
      const backend = /backend=(\w+)/.exec(text)![1]!;
      const resumed = /resumed=(\w+)/.exec(text)![1]!;
      t.diagnostic(`offer ${i}: answered by ${backend}, resumed=${resumed}`);
      assert.equal(resumed, 'true', `instance ${backend} did not resume a ticket of ${tag.backend}`);
      const info = [...c.sessions.values()][0]!;
      assert.equal(info.handshake?.resumed, true);
      await c.close();
      if (backend !== tag.backend) {
        // Control: an instance with other ticket keys falls back to a full handshake.
        const other = await startService({ name: 'other-keys', tls: { sessionIdContext } });
        try {
          const fresh = client({ tls: { ca: pki.ca.cert, serverName: 'localhost', session: tag.ticket } });
          const res = await fresh.fetch(other.url('/api'), { method: 'POST', body: 'resume?', signal: AbortSignal.timeout(10_000) });
          assert.match(await res.text(), /resumed=false/);
        } finally {
          await other.close();
        }
        return;
      }
    }
    assert.fail('round-robin never reached the other instance');
  });

  /** One handshake driven by hand through the `tag` frontend; returns its ticket and instance. */
  async function fetchTicket(): Promise<{ ticket: Uint8Array; backend: string }> {
    const session = new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } });
    let cookie: string | undefined;
    let backend = '';
    let out = await session.start();
    for (let i = 0; i < 4 && session.state !== 'established'; i++) {
      const res = await fetch(`${front.tag}/.well-known/atls`, {
        method: 'POST',
        headers: { 'content-type': MEDIA_TYPE_FLIGHT, ...(cookie ? { cookie: `${COOKIE_NAME}=${cookie}` } : {}) },
        body: out.flight,
        signal: AbortSignal.timeout(5000),
      });
      assert.equal(res.status, 200);
      const set = res.headers.getSetCookie().find((s) => s.startsWith(`${COOKIE_NAME}=`));
      if (set) {
        cookie = set.slice(COOKIE_NAME.length + 1).split(';')[0]!;
        backend = cookie.split('.')[0]!;
      }
      out = await session.receive(new Uint8Array(await res.arrayBuffer()));
    }
    assert.equal(session.state, 'established');
    const ticket = session.resumptionTicket;
    assert.ok(ticket, 'no ticket arrived with the last server flight');
    session.destroy();
    return { ticket, backend };
  }
});
