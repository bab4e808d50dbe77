/**
 * The lean HTTP/1.1 front of `createAtlsServer` against `node:http` itself:
 * the same bytes sent to a server with the front and to one without it get
 * the same answers (the front serves its subset as `node:http` would, and
 * hands everything else over at a request boundary), whole, split at every
 * byte, pipelined; plus its timeouts, pipelining and close semantics.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { testPki, type TestPki } from '../helpers/pki.js';
import { tlsPair } from '../helpers/http.js';
import { createAtlsServer, type AtlsNodeServer, type AtlsServerOptions } from '../../src/http/node.js';
import { echoApp, echoRawApp } from '../../src/http/apps.js';
import { createAtlsClient } from '../../src/http/client.js';
import type { ConnectionEvent } from '../../src/http/connections.js';

const E = '/.well-known/atls';
const FLIGHT = 'application/atls+octet-stream';
const PROTECTED = 'application/atls-protected';

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

function close(server: AtlsNodeServer): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** A request in the form a client sends it: request line, field lines, body. */
function req(line: string, fields: string[], body = ''): string {
  return `${line}\r\n${fields.map((f) => `${f}\r\n`).join('')}\r\n${body}`;
}

const post = (type: string, body: string, extra: string[] = [], path = E): string =>
  req(`POST ${path} HTTP/1.1`, ['Host: localhost', `Content-Type: ${type}`, `Content-Length: ${Buffer.byteLength(body)}`, ...extra], body);

/**
 * Answers read off one connection: each response head (Date left out: it is the clock's) and body,
 * until `count` answers arrived or the server closed (then "<closed>" ends the list).
 */
function exchange(port: number, parts: Array<string | Buffer>, count: number, gapMs = 0, thenEnd = false): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const answers: string[] = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      if (closed) answers.push('<closed>');
      socket.destroy();
      resolve(answers);
    };
    const take = (): void => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const status = Number(head.slice(9, 12));
        let bodyEnd: number;
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (status === 100) bodyEnd = end + 4;
        else if (length) bodyEnd = end + 4 + Number(length[1]);
        else if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
          const last = buf.indexOf('\r\n0\r\n\r\n', end);
          if (last < 0) return;
          bodyEnd = last + 7;
        } else return; // read to the close
        if (buf.length < bodyEnd) return;
        answers.push(
          head.replace(/\r\nDate: [^\r]*/, '') + '\r\n\r\n' + buf.subarray(end + 4, bodyEnd).toString('latin1'),
        );
        buf = buf.subarray(bodyEnd);
        if (answers.length === count) return finish(false);
      }
    };
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      take();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (buf.length > 0) answers.push(`<unframed>${buf.toString('latin1').replace(/\r\nDate: [^\r]*/, '')}`);
      finish(true);
    });
    const send = async (): Promise<void> => {
      for (let i = 0; i < parts.length; i++) {
        if (i > 0 && gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
        if (!socket.destroyed) socket.write(parts[i]!);
      }
      if (thenEnd && !socket.destroyed) socket.end(); // half-close: the client sends nothing more
    };
    socket.on('connect', () => void send().catch(reject));
  });
}

/** Inputs and how many answers each asks for (a closed connection ends early). */
const CORPUS: Array<[string, string, number]> = [
  ['flight that is no ClientHello', post(FLIGHT, 'garbage'), 1],
  ['flight, Connection: close', post(FLIGHT, 'garbage', ['Connection: close']), 1],
  ['flight, Connection: keep-alive', post(FLIGHT, 'garbage', ['Connection: keep-alive']), 1],
  ['legacy endpoint', post(FLIGHT, 'garbage', [], '/atls'), 1],
  ['wrong media type', post('text/plain', 'hi'), 1],
  ['protected without a session', post(PROTECTED, 'x'.repeat(40)), 1],
  ['protected with an unknown cookie', post(PROTECTED, 'x'.repeat(40), ['Cookie: atls=nosuchsession']), 1],
  ['DELETE of an unknown session', req(`DELETE ${E} HTTP/1.1`, ['Host: localhost', `Content-Type: ${PROTECTED}`, 'Content-Length: 3', 'Cookie: atls=nope'], 'abc'), 1],
  ['empty POST', req(`POST ${E} HTTP/1.1`, ['Host: localhost', `Content-Type: ${FLIGHT}`]), 1],
  ['tab and trailing spaces in values', post(`\t${FLIGHT}  `, 'garbage', ['X-Note:\tone two \t']), 1],
  ['GET of the endpoint', req(`GET ${E} HTTP/1.1`, ['Host: localhost']), 1],
  ['OPTIONS of the endpoint', req(`OPTIONS ${E} HTTP/1.1`, ['Host: localhost']), 1],
  ['another path (fallback)', post('text/plain', 'hello', [], '/other'), 1],
  ['a query on the endpoint', post(FLIGHT, 'garbage', [], `${E}?x=1`), 1],
  ['chunked body', req(`POST ${E} HTTP/1.1`, ['Host: localhost', `Content-Type: ${FLIGHT}`, 'Transfer-Encoding: chunked'], '7\r\ngarbage\r\n0\r\n\r\n'), 1],
  ['HTTP/1.0', post(FLIGHT, 'garbage').replace('HTTP/1.1', 'HTTP/1.0'), 1],
  ['Expect: 100-continue', post(FLIGHT, 'garbage', ['Expect: 100-continue']), 2],
  ['two Content-Length fields', post(FLIGHT, 'garbage', ['Content-Length: 7']), 1],
  ['Content-Length and Transfer-Encoding', post(FLIGHT, 'garbage', ['Transfer-Encoding: chunked']), 1],
  ['Content-Length with a sign', post(FLIGHT, 'garbage').replace('Content-Length: 7', 'Content-Length: +7'), 1],
  ['Content-Length with a leading zero', post(FLIGHT, 'garbage').replace('Content-Length: 7', 'Content-Length: 07'), 1],
  ['obs-fold', post(FLIGHT, 'garbage', ['X-A: one', ' two']), 1],
  ['space before the colon', post(FLIGHT, 'garbage', ['X-A : one']), 1],
  ['bare LF field line', post(FLIGHT, 'garbage').replace('Host: localhost\r\n', 'Host: localhost\n'), 1],
  ['bare CR in a value', post(FLIGHT, 'garbage', ['X-A: a\rb']), 1],
  ['NUL in a value', post(FLIGHT, 'garbage', ['X-A: a\0b']), 1],
  ['obs-text in a value', post(FLIGHT, 'garbage', ['X-A: caf\xe9']), 1],
  ['no Host', post(FLIGHT, 'garbage').replace('Host: localhost\r\n', ''), 1],
  ['two Host fields', post(FLIGHT, 'garbage', ['Host: other']), 1],
  ['two Cookie fields', post(PROTECTED, 'x'.repeat(40), ['Cookie: a=1', 'Cookie: atls=nope']), 1],
  ['lower-case method', post(FLIGHT, 'garbage').replace('POST', 'post'), 1],
  ['two spaces after the method', post(FLIGHT, 'garbage').replace('POST ', 'POST  '), 1],
  ['absolute-form target', post(FLIGHT, 'garbage', [], `http://localhost${E}`), 1],
  ['Connection: upgrade', post(FLIGHT, 'garbage', ['Connection: Upgrade', 'Upgrade: websocket']), 1],
  ['Connection: keep-alive, te', post(FLIGHT, 'garbage', ['Connection: keep-alive, TE', 'TE: trailers']), 1],
  ['a head over the front\'s 8 KiB', post(FLIGHT, 'garbage', [`X-Long: ${'a'.repeat(9000)}`]), 1],
  ['a head over node:http\'s 16 KiB', post(FLIGHT, 'garbage', [`X-Long: ${'a'.repeat(17000)}`]), 1],
  ['a body over the whole-body cap', post(FLIGHT, 'z'.repeat(5000)), 1],
  ['leading empty line', `\r\n${post(FLIGHT, 'garbage')}`, 1],
  ['empty Host', post(FLIGHT, 'garbage').replace('Host: localhost', 'Host:'), 1],
  ['Host with a space', post(FLIGHT, 'garbage').replace('Host: localhost', 'Host: a b'), 1],
  ['Content-Length as a list', post(FLIGHT, 'garbage').replace('Content-Length: 7', 'Content-Length: 7, 7'), 1],
  ['Content-Length with a space inside', post(FLIGHT, 'garbage').replace('Content-Length: 7', 'Content-Length: 7 7'), 1],
  ['1,000 field lines', post(FLIGHT, 'garbage', Array.from({ length: 1000 }, (_, i) => `X-${i}: b`)), 1],
  ['Connection: close, keep-alive', post(FLIGHT, 'garbage', ['Connection: close, keep-alive']), 1],
];

describe('HTTP/1.1 front', () => {
  let pki: TestPki;
  let front: AtlsNodeServer;
  let plain: AtlsNodeServer;
  let frontPort: number;
  let plainPort: number;

  const options = (): AtlsServerOptions => ({
    tls: tlsPair(pki, 'TLSv1.3', 'cert').server,
    app: echoApp,
    rawApp: echoRawApp,
    fallback: async (request) => new Response(`fallback ${request.method} ${new URL(request.url).pathname} ${await request.text()}`),
    limits: { maxWholeBodyBytes: 4096 },
  });

  before(async () => {
    pki = await testPki();
    front = createAtlsServer({ ...options(), front: true });
    plain = createAtlsServer({ ...options(), front: false });
    frontPort = await listen(front);
    plainPort = await listen(plain);
  });

  after(async () => {
    await close(front);
    await close(plain);
  });

  it('answers every input of the corpus as node:http does, whole and pipelined after a request it serves', async () => {
    let handedOff = 0;
    const countHandOffs = (): void => void handedOff++; // node:http sees only the requests the front hands over
    front.on('request', countHandOffs);
    const served: string[] = [];
    for (const [name, input, count] of CORPUS) {
      const want = await exchange(plainPort, [input], count);
      const before = handedOff;
      assert.deepEqual(await exchange(frontPort, [input], count), want, name);
      if (handedOff === before) served.push(name);
      // After a request the front serves, on the same connection and in the same write: the first is
      // answered, then the input as it is alone (node:http itself may drop the first answer when the
      // second head is malformed: its parser fails before the first answer is written).
      const lead = post(FLIGHT, 'garbage');
      const [leadAnswer] = await exchange(plainPort, [lead], 1);
      assert.deepEqual(await exchange(frontPort, [lead + input], count + 1), [leadAnswer, ...want], `${name}, pipelined`);
    }
    front.off('request', countHandOffs);
    // The subset the front serves itself; the rest went to node:http (or was refused by its parser).
    assert.deepEqual(served.filter((name) => !/^(no Host|two Content-Length|Content-Length and|Content-Length with a sign|Content-Length as a list|Content-Length with a space|obs-fold|space before|bare|NUL|lower-case|a head over node)/.test(name)), [
      'flight that is no ClientHello',
      'flight, Connection: close',
      'flight, Connection: keep-alive',
      'legacy endpoint',
      'wrong media type',
      'protected without a session',
      'protected with an unknown cookie',
      'DELETE of an unknown session',
      'empty POST',
      'tab and trailing spaces in values',
      'empty Host',
      'Host with a space',
    ]);
  });

  // A body that never comes ends at the request timeout: short timeouts on both servers, so the test
  // takes a second rather than three of the service's 30 s request timeouts.
  it('answers a Content-Length of 16 digits as node:http does (alone and pipelined after a request it serves)', async () => {
    const quick = { connections: { headersTimeoutMs: 300, requestTimeoutMs: 600 } };
    const servers = [createAtlsServer({ ...options(), ...quick, front: true }), createAtlsServer({ ...options(), ...quick, front: false })];
    const [quickFront, quickPlain] = await Promise.all(servers.map(listen));
    try {
      const input = post(FLIGHT, '').replace('Content-Length: 0', 'Content-Length: 9999999999999999');
      const lead = post(FLIGHT, 'garbage');
      for (const parts of [[input], [lead + input]]) {
        const count = parts[0] === input ? 1 : 2;
        assert.deepEqual(await exchange(quickFront!, parts, count), await exchange(quickPlain!, parts, count));
      }
    } finally {
      await Promise.all(servers.map(close));
    }
  });

  it('answers the same when a request arrives split at any byte', async () => {
    const inputs = [
      post(FLIGHT, 'garbage'),
      post(PROTECTED, 'x'.repeat(40), ['Cookie: atls=nope']),
      req(`POST ${E} HTTP/1.1`, ['Host: localhost', `Content-Type: ${FLIGHT}`, 'Transfer-Encoding: chunked'], '7\r\ngarbage\r\n0\r\n\r\n'),
      post(FLIGHT, 'garbage', ['X-A : one']),
      post('text/plain', 'hello', [], '/other'),
    ];
    for (const input of inputs) {
      const want = await exchange(plainPort, [input], 1);
      const splits: Array<Promise<string[]>> = [];
      for (let at = 1; at < input.length; at++) splits.push(exchange(frontPort, [input.slice(0, at), input.slice(at)], 1, 2));
      const got = await Promise.all(splits);
      for (let at = 1; at < input.length; at++) assert.deepEqual(got[at - 1], want, `split at ${at}: ${JSON.stringify(input.slice(0, at))}`);
    }
  });

  it('answers a request the client cuts short with its FIN (half-close) as node:http does: 400, not a silent close', async () => {
    const inputs: Array<[string, string, number]> = [
      ['a head cut short', `POST ${E} HTTP/1.1\r\nHost: localhost\r\nContent-Type: ${FLIGHT}\r\n`, 1],
      ['a body cut short', post(FLIGHT, 'garbage').slice(0, -3), 1],
      ['a served request, then a head cut short', post(FLIGHT, 'garbage') + `POST ${E} HTTP/1.1\r\nHo`, 2],
      ['a whole request', post(FLIGHT, 'garbage'), 1],
      ['two pipelined requests', post(FLIGHT, 'garbage') + post(FLIGHT, 'garbage'), 2],
    ];
    for (const [name, input, count] of inputs) {
      const want = await exchange(plainPort, [input], count + 1, 0, true);
      assert.match(want.at(-1)!, /<closed>/, name);
      assert.deepEqual(await exchange(frontPort, [input], count + 1, 0, true), want, name);
      if (/cut short/.test(name)) assert.match(want.at(-2)!, /^HTTP\/1\.1 400 /, name);
    }
  });

  it('reads a body that arrives in many pieces, with the next request behind it', async () => {
    const input = post(FLIGHT, 'g'.repeat(3000)) + post(FLIGHT, 'garbage');
    const want = await exchange(plainPort, [input], 2);
    const pieces = input.match(/[^]{1,97}/g)!;
    assert.deepEqual(await exchange(frontPort, pieces, 2, 1), want);
  });

  for (const [what, one] of [
    ['flights', post(FLIGHT, 'garbage')],
    // Answered at once by the handler (no promise on the way): the front must not answer request after request on one stack.
    ['protected messages of no session', post(PROTECTED, 'x'.repeat(40), ['Cookie: atls-session=AAAAAAAAAAAAAAAAAAAAAA'])],
  ] as const) it(`answers a long pipelined burst of ${what} whole and in order to a client that reads late (the answers back up into the server)`, async () => {
    const n = 3000;
    const [answer] = await exchange(plainPort, [one], 1);
    const want = Buffer.from(answer!, 'latin1').length;
    const socket = net.connect(frontPort, '127.0.0.1');
    socket.on('error', () => undefined);
    await new Promise<void>((r) => socket.on('connect', () => r()));
    socket.pause(); // answers pile up in the socket buffers, then in the server's
    socket.write(one.repeat(n));
    await new Promise((r) => setTimeout(r, 300));
    let raw = '';
    let got = '';
    const answers = await new Promise<number>((resolve) => {
      socket.on('data', (d: Buffer) => {
        raw += d.toString('latin1');
        got = raw.replace(/\r\nDate: [^\r]*/g, '');
        if (got.length >= n * want) resolve(got.split('HTTP/1.1 ').length - 1);
      });
      socket.resume();
    });
    socket.destroy();
    assert.equal(answers, n);
    assert.equal(got, answer!.repeat(n));
  });

  it('hands a connection to node:http mid-way: a served POST, a fallback GET, a chunked POST, answered in order', async () => {
    const sequence = [
      post(FLIGHT, 'garbage'),
      req('GET /other HTTP/1.1', ['Host: localhost']),
      req(`POST ${E} HTTP/1.1`, ['Host: localhost', `Content-Type: ${FLIGHT}`, 'Transfer-Encoding: chunked'], '7\r\ngarbage\r\n0\r\n\r\n'),
      post(FLIGHT, 'garbage'),
    ];
    const want = await exchange(plainPort, sequence, 4, 20);
    assert.equal(want.length, 4);
    assert.match(want[1]!, /fallback GET \/other/);
    assert.deepEqual(await exchange(frontPort, sequence, 4, 20), want);
    assert.deepEqual(await exchange(frontPort, [sequence.join('')], 4), want, 'all in one write');
  });

  it('reads each request\'s own field values on a kept-alive connection (values repeated, changed at one byte, in other case, dropped)', async () => {
    // The front reuses a connection's last strings when a request repeats a field's bytes: every change must still be seen.
    const other = `${FLIGHT.slice(0, -1)}x`; // as long as the flight type, one byte apart
    const sequence = [
      post(PROTECTED, 'x'.repeat(40), ['Cookie: atls=nosuchsession']),
      post(PROTECTED, 'x'.repeat(40), ['Cookie: atls=nosuchsessioN']),
      post(PROTECTED, 'x'.repeat(40)),
      post(FLIGHT, 'garbage'),
      post(other, 'garbage'),
      post(FLIGHT, 'garbage').replace('Content-Type', 'CONTENT-TYPE'),
      post(other, 'garbage').replace('Content-Type', 'content-type'),
      post(FLIGHT, 'garbage', ['Connection: keep-alive']),
      post(FLIGHT, 'garbag'),
      post(FLIGHT, 'garbage', [], '/atls'),
      post(FLIGHT, 'garbage'),
      post(FLIGHT, 'garbage', ['Connection: close']),
    ];
    const want = await exchange(plainPort, sequence, sequence.length, 5);
    assert.equal(want.length, sequence.length);
    assert.notDeepEqual(want[3], want[4]);
    assert.deepEqual(await exchange(frontPort, sequence, sequence.length, 5), want, 'one request per write');
    assert.deepEqual(await exchange(frontPort, [sequence.join('')], sequence.length), want, 'all in one write');
  });

  it('keeps little of the field values an idle kept-alive connection sent (long values are not kept for the next request)', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const heap = (): number => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    // Connections that send three requests whose known fields carry values of `size` chars, then stay open and idle.
    const idleHeap = async (size: number): Promise<number> => {
      const requests = [
        post(PROTECTED, 'x'.repeat(40), [`Cookie: atls-session=${'a'.repeat(size)}`]),
        post(PROTECTED, 'x'.repeat(40), [`User-Agent: ${'b'.repeat(size)}`]),
        post(PROTECTED, 'x'.repeat(40), [`Accept: ${'c'.repeat(size)}`]),
      ];
      const conns = 150;
      await new Promise((r) => setTimeout(r, 100)); // earlier connections closed and collected first
      const before = heap();
      const sockets = await Promise.all(
        Array.from({ length: conns }, () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(frontPort, '127.0.0.1');
            let got = '';
            socket.on('error', reject);
            socket.on('data', (d: Buffer) => {
              got += d.toString('latin1');
              if (got.split('HTTP/1.1 ').length - 1 === requests.length) resolve(socket);
            });
            socket.on('connect', () => socket.write(requests.join('')));
          }),
        ),
      );
      const perConnection = (heap() - before) / conns;
      for (const s of sockets) s.destroy();
      await new Promise((r) => setTimeout(r, 50));
      return perConnection;
    };
    const short = await idleHeap(20);
    const long = await idleHeap(7000);
    // Without a bound each connection would keep its three 7 KiB values (~21 KiB more than with short ones).
    assert.ok(long - short < 6000, `heap per idle connection: ${long.toFixed(0)} B with 7 KiB values, ${short.toFixed(0)} B with 20 B`);
  });

  it('writes the heads of protected answers as node:http does, request after request (one kept-alive connection)', async () => {
    // A relay between a real client and each server records what the server writes.
    const heads = async (port: number): Promise<string[]> => {
      let written = '';
      const relay = net.createServer((inbound) => {
        const outbound = net.connect(port, '127.0.0.1');
        inbound.pipe(outbound);
        outbound.on('data', (d: Buffer) => {
          written += d.toString('latin1');
          inbound.write(d);
        });
        outbound.on('end', () => inbound.end());
        inbound.on('error', () => outbound.destroy());
        outbound.on('error', () => inbound.destroy());
      });
      const relayPort = await listen(relay);
      const client = createAtlsClient({ tls: tlsPair(pki, 'TLSv1.3', 'cert').client });
      try {
        for (const size of [1, 100, 100, 3000, 0, 100]) {
          const res = await client.fetch(`http://127.0.0.1:${relayPort}/echo`, { method: 'POST', body: 'x'.repeat(size) });
          assert.equal((await res.text()).length, size);
        }
      } finally {
        await client.close();
        relay.close();
      }
      // Each answer's head, Date (the clock's) and the session id left out; bodies differ (keys), their lengths do not.
      return [...written.matchAll(/HTTP\/1\.1 [^]*?\r\n\r\n/g)]
        .map((m) => m[0].replace(/\r\nDate: [^\r]*/, '').replace(/atls-session=[^;]*/, 'atls-session=<id>'))
        // A handshake flight's length moves with its signature's; a protected answer's does not.
        .map((head) => (head.includes('atls-protected') ? head : head.replace(/content-length: \d+/, 'content-length: <n>')));
    };
    const want = await heads(plainPort);
    assert.equal(want.length, 7, 'two handshake flights (the first request rides the second), five protected answers');
    assert.match(want[2]!, /content-type: application\/atls-protected/);
    assert.deepEqual(await heads(frontPort), want);
  });

  it('serves real ATLS sessions, many requests on kept-alive connections, and counts its connections', async () => {
    const client = createAtlsClient({ tls: tlsPair(pki, 'TLSv1.3', 'cert').client });
    try {
      for (let i = 0; i < 20; i++) {
        const res = await client.fetch(`http://127.0.0.1:${frontPort}/echo`, { method: 'POST', body: `hi ${i}`.repeat(i * 30 + 1) });
        assert.equal(await res.text(), `hi ${i}`.repeat(i * 30 + 1));
      }
      const stats = front.connectionStats();
      assert.ok(stats.open >= 1 && stats.idle >= 1, JSON.stringify(stats));
    } finally {
      await client.close();
    }
  });
});

describe('HTTP/1.1 front: timeouts and closing', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  it('answers 408 to a head or a body that does not arrive in time (slowloris), and reports it', async () => {
    const events: ConnectionEvent[] = [];
    const server = createAtlsServer({
      tls: tlsPair(pki, 'TLSv1.3', 'cert').server,
      app: echoApp,
      front: true,
      connections: { headersTimeoutMs: 300, requestTimeoutMs: 600 },
      onEvent: (e) => events.push(e as ConnectionEvent),
    });
    const port = await listen(server);
    try {
      const head = await exchange(port, [`POST ${E} HTTP/1.1\r\nHost: localhost\r\n`], 1);
      assert.match(head[0]!, /^HTTP\/1\.1 408 /);
      const body = await exchange(port, [post(FLIGHT, 'garbage').slice(0, -3)], 1);
      assert.match(body[0]!, /^HTTP\/1\.1 408 /);
      // A trickle that keeps sending still ends at the deadline.
      const trickle = `POST ${E} HTTP/1.1\r\nHost: localhost\r\n${'X-A: b\r\n'.repeat(200)}`;
      const parts = trickle.match(/.{1,8}/gs)!;
      const slow = await exchange(port, parts, 1, 5);
      assert.match(slow[0]!, /^HTTP\/1\.1 408 /);
      assert.ok(events.filter((e) => e.type === 'timeout').length >= 3);
    } finally {
      await close(server);
    }
  });

  it('closes a kept-alive connection idle longer than keepAliveTimeoutMs', async () => {
    const server = createAtlsServer({ tls: tlsPair(pki, 'TLSv1.3', 'cert').server, app: echoApp, front: true, connections: { keepAliveTimeoutMs: 200 } });
    const port = await listen(server);
    try {
      const got = await exchange(port, [post(FLIGHT, 'garbage')], 2);
      assert.equal(got.length, 2);
      assert.match(got[0]!, /Keep-Alive: timeout=0/);
      assert.equal(got[1], '<closed>');
    } finally {
      await close(server);
    }
  });

  it('at the connection cap the connection idle longest goes, a request making its connection the newest', async () => {
    const events: ConnectionEvent[] = [];
    const server = createAtlsServer({
      tls: tlsPair(pki, 'TLSv1.3', 'cert').server,
      app: echoApp,
      front: true,
      connections: { maxConnections: 3 },
      onEvent: (e) => events.push(e as ConnectionEvent),
    });
    const port = await listen(server);
    const connect = async (): Promise<{ socket: net.Socket; closed: Promise<void> }> => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      const closed = new Promise<void>((r) => socket.on('close', () => r()));
      await new Promise<void>((r) => socket.on('connect', () => r()));
      await new Promise((r) => setTimeout(r, 20)); // the server has taken it
      return { socket, closed };
    };
    const [a, b, c] = [await connect(), await connect(), await connect()];
    try {
      // a answers a request: idle again, now the newest of the three.
      a.socket.write(post(FLIGHT, 'garbage'));
      await new Promise<void>((r) => a.socket.once('data', () => r()));
      assert.deepEqual(server.connectionStats(), { open: 3, idle: 3 });
      const d = await connect();
      await b.closed; // the oldest idle one made room
      assert.ok(events.some((e) => e.type === 'evicted'));
      const e = await connect();
      await c.closed;
      a.socket.write(post(FLIGHT, 'garbage'));
      await new Promise<void>((r) => a.socket.once('data', () => r()));
      d.socket.destroy();
      e.socket.destroy();
    } finally {
      a.socket.destroy();
      await close(server);
    }
  });

  it('server.close() ends idle connections of the front and lets the server close', async () => {
    const server = createAtlsServer({ tls: tlsPair(pki, 'TLSv1.3', 'cert').server, app: echoApp, front: true });
    const port = await listen(server);
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => socket.on('connect', () => r()));
    socket.write(post(FLIGHT, 'garbage'));
    await new Promise<void>((r) => socket.once('data', () => r()));
    assert.deepEqual(server.connectionStats(), { open: 1, idle: 1 });
    const socketClosed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.resume();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await socketClosed;
  });
});
