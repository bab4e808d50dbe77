/**
 * RFC 8446 §4.2.9: a TLS 1.3 ClientHello without psk_key_exchange_modes can
 * use no ticket, and servers SHOULD NOT send it one. Go's crypto/tls omits the
 * extension when it keeps no session cache; the openssl engine's server then
 * answers the client's Finished with nothing (OpenSSL 3.0 alone sends its
 * tickets anyway), and with a cache it sends its tickets as before.
 * Needs Debian `golang-go`; skips without it unless ATLS_REQUIRE_INTEROP=1.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { engineUnavailableReason, getEngine } from '../../src/engines/index.js';
import { testPki } from '../helpers/pki.js';
import { findTool, requireTool } from '../helpers/tools.js';

const run = promisify(execFile);
const SOURCE = fileURLToPath(new URL('./go-tickets/', import.meta.url));
const REQUIRE_NATIVE = process.env.ATLS_REQUIRE_NATIVE === '1';

let dir: string;
let binary: string | undefined;
let caFile: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'atls-go-tickets-'));
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, (await testPki()).ca.cert);
  if (findTool('go')) {
    binary = join(dir, 'go-tickets');
    await run('go', ['build', '-o', binary, '.'], { cwd: SOURCE, env: { ...process.env, GOCACHE: process.env.GOCACHE ?? join(tmpdir(), 'atls-go-cache') } });
  }
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** One Go connection to the openssl engine's server over TCP; the sizes of the server's flights, in order. */
async function serverFlights(cache: boolean): Promise<number[]> {
  const pki = await testPki();
  const engine = getEngine('openssl');
  const flights: number[] = [];
  const server = createServer((socket) => {
    const conn = engine.createServer({ cert: pki.server.cert, key: pki.server.key, minVersion: 'TLSv1.3' });
    let chain = Promise.resolve();
    socket.on('data', (bytes: Buffer) => {
      chain = chain.then(async () => {
        const step = await conn.receive(new Uint8Array(bytes));
        flights.push(step.flight.length);
        if (step.flight.length > 0) socket.write(step.flight);
        if (step.events.some((e) => e.type === 'data')) socket.write((await conn.write(new Uint8Array([0x79]))).flight);
      });
      chain.catch(() => socket.destroy());
    });
    socket.on('close', () => conn.destroy());
    socket.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    const { stdout } = await run(binary!, ['-addr', `127.0.0.1:${port}`, '-ca', caFile, ...(cache ? ['-cache'] : [])]);
    assert.equal(stdout.trim(), 'ok');
    return flights;
  } finally {
    server.close();
  }
}

describe('Go crypto/tls client -> openssl engine server: tickets only for a client that can use them', () => {
  it('no psk_key_exchange_modes (no session cache): no NewSessionTicket after the Finished', async (t) => {
    if (!requireTool(t, 'go')) return;
    const reason = engineUnavailableReason('openssl');
    if (reason !== undefined) {
      if (REQUIRE_NATIVE) throw new Error(`openssl unavailable: ${reason}`);
      t.skip(reason);
      return;
    }
    const flights = await serverFlights(false);
    assert.ok(flights[0]! > 0, 'ServerHello..Finished');
    assert.equal(flights[1], 0, 'nothing answers the client Finished');
  });

  it('with a session cache: the tickets come after the Finished', async (t) => {
    if (!requireTool(t, 'go')) return;
    if (engineUnavailableReason('openssl') !== undefined) return t.skip('openssl unavailable');
    const flights = await serverFlights(true);
    assert.ok(flights[1]! > 0, 'NewSessionTicket records answer the client Finished');
  });
});
