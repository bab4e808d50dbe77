/**
 * Our client -> `openssl s_server` over a real TCP socket, for every engine:
 * {TLS 1.2, 1.3} x {ECDSA, RSA, mutual, PSK}, keying material compared with
 * what s_server prints for `-keymatexport application-layer-tls`, application
 * data both ways; then the certificate failures our client must report.
 */
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsClientSession } from '../../src/session/session.js';
import type { TlsEngine } from '../../src/engines/types.js';
import { AtlsError } from '../../src/errors.js';
import type { AtlsErrorCode } from '../../src/errors.js';
import {
  FlightChannel,
  clientHandshake,
  connectTcp,
  receiveData,
  sendData,
} from '../helpers/bridge.js';
import { ToolProcess, killAllTools, requireTool } from '../helpers/tools.js';
import {
  AUTHS,
  CASE_TIMEOUT,
  SUITE,
  EXPORT_LEN,
  LABEL,
  PSK,
  PSK_HEX,
  VERSIONS,
  assertExporterMatches,
  clientEngines,
  clientSkip,
  clientTls,
  openSslKeyMaterial,
  pkiOnDisk,
  reportFigures,
} from './harness.js';
import type { Auth, PkiOnDisk, Version } from './harness.js';

const VERSION_FLAG: Record<Version, string> = { 'TLSv1.2': '-tls1_2', 'TLSv1.3': '-tls1_3' };

let disk: PkiOnDisk;
before(async () => {
  disk = await pkiOnDisk();
});
after(async () => {
  await killAllTools();
  await disk?.remove();
});

/** Starts s_server on 127.0.0.1 with a system-chosen port; resolves with the process and port. */
async function startServer(openssl: string, args: string[]): Promise<{ srv: ToolProcess; port: number }> {
  const srv = ToolProcess.spawn(openssl, ['s_server', '-accept', '127.0.0.1:0', '-naccept', '1', ...args]);
  const m = await srv.waitFor(/ACCEPT 127\.0\.0\.1:(\d+)/, 5000);
  return { srv, port: Number(m[1]) };
}

/** s_server arguments for a case (besides accept/naccept). */
function serverArgs(version: Version, auth: Auth, len: number): string[] {
  const f = disk.files;
  const args = [VERSION_FLAG[version], '-keymatexport', LABEL, '-keymatexportlen', String(len)];
  switch (auth) {
    case 'ecdsa':
      return [...args, '-cert', f.server.cert, '-key', f.server.key];
    case 'rsa':
      return [...args, '-cert', f.serverRsa.cert, '-key', f.serverRsa.key];
    case 'mutual':
      return [
        ...args,
        ...['-cert', f.server.cert, '-key', f.server.key],
        ...['-Verify', '1', '-verify_return_error', '-CAfile', f.ca.cert],
      ];
    case 'psk':
      return [...args, '-nocert', '-psk', PSK_HEX, '-psk_identity', PSK.identity];
  }
}

async function positiveCase(t: TestContext, engine: TlsEngine, version: Version, auth: Auth): Promise<void> {
  const openssl = requireTool(t, 'openssl');
  if (!openssl) return;
  const len = EXPORT_LEN[auth];
  const { srv, port } = await startServer(openssl, serverArgs(version, auth, len));
  t.after(() => srv.kill());
  const ch = new FlightChannel(await connectTcp(port));
  t.after(() => ch.close());
  const client = new AtlsClientSession({ engine, mode: 'records', tls: clientTls(disk.pki, version, auth) });
  t.after(() => client.destroy());

  const stats = await clientHandshake(client, ch);
  const info = client.handshakeInfo!;
  assert.equal(info.version, version);
  if (auth === 'psk') assert.equal(info.pskIdentity, PSK.identity);
  else assert.ok(info.peerCertificates.length >= 1, 'server certificate seen');
  reportFigures(t, stats, `${info.cipherSuite}`);

  // s_server prints its exporter output right after its side of the handshake.
  await srv.waitFor(/Keying material: [0-9A-F]+/, 5000);
  assertExporterMatches(client, openSslKeyMaterial(srv.stdout), len, version);
  if (auth === 'mutual') await srv.waitFor(/verify return:1/, 1000);

  // Data both ways: s_server prints what it reads and sends what it reads on stdin.
  await sendData(client, ch, 'ping from atls\n');
  await srv.waitFor(/ping from atls/, 5000);
  srv.write('pong from s_server\n');
  const got = await receiveData(client, ch, (s) => s.includes('pong from s_server\n'));
  assert.match(got, /pong from s_server/);

  ch.send(await client.close());
  await srv.waitFor(/DONE|CONNECTION CLOSED|shutting down/, 5000);
}

/**
 * Full handshake, then a second connection resuming it with the ticket our
 * client received: s_server must accept the resumption (`info.resumed`) and
 * both connections' exporters must match. A resumed TLS 1.2 handshake ends
 * on our flight, which s_server does not answer: the data exchange confirms.
 */
async function resumptionCase(t: TestContext, engine: TlsEngine, version: Version): Promise<void> {
  const openssl = requireTool(t, 'openssl');
  if (!openssl) return;
  const f = disk.files.server;
  const args = [VERSION_FLAG[version], '-keymatexport', LABEL, '-keymatexportlen', '32', '-cert', f.cert, '-key', f.key];
  const srv = ToolProcess.spawn(openssl, ['s_server', '-accept', '127.0.0.1:0', '-naccept', '2', ...args]);
  t.after(() => srv.kill());
  const port = Number((await srv.waitFor(/ACCEPT 127\.0\.0\.1:(\d+)/, 5000))[1]);

  let ticket: Uint8Array | undefined;
  for (const round of [0, 1]) {
    const ch = new FlightChannel(await connectTcp(port));
    t.after(() => ch.close());
    const tls = { ...clientTls(disk.pki, version, 'ecdsa'), ...(ticket ? { session: ticket } : {}) };
    const client = new AtlsClientSession({ engine, mode: 'records', tls });
    t.after(() => client.destroy());
    const stats = await clientHandshake(client, ch);
    reportFigures(t, stats, `${round === 0 ? 'full' : 'resumed'} ${client.handshakeInfo!.cipherSuite}`);
    assert.equal(client.handshakeInfo!.resumed, round === 1, `connection ${round + 1} resumed?`);

    const reply = `pong ${round} from s_server\n`;
    await sendData(client, ch, `ping ${round} from atls\n`);
    await srv.waitFor(new RegExp(`ping ${round} from atls`), 5000);
    srv.write(reply);
    await receiveData(client, ch, (s) => s.includes(reply));
    assert.equal(client.state, 'established');
    await srv.waitFor(new RegExp(`(Keying material: [0-9A-F]+[\\s\\S]*){${round + 1}}`), 5000);
    assertExporterMatches(client, openSslKeyMaterial(srv.stdout, round), 32, version);

    // TLS 1.3 tickets arrive after the handshake; TLS 1.2's with the server's Finished.
    ticket = client.resumptionTicket;
    assert.ok(round === 1 || ticket, 'a resumption ticket after the first connection');
    ch.send(await client.close());
    ch.close();
  }
}

/** TLS 1.3 HelloRetryRequest: s_server accepts only P-256, our client's first key share is X25519. */
async function helloRetryCase(t: TestContext, engine: TlsEngine): Promise<void> {
  const openssl = requireTool(t, 'openssl');
  if (!openssl) return;
  const args = [...serverArgs('TLSv1.3', 'ecdsa', 32), '-groups', 'P-256'];
  const { srv, port } = await startServer(openssl, args);
  t.after(() => srv.kill());
  const ch = new FlightChannel(await connectTcp(port));
  t.after(() => ch.close());
  const tls = { ...clientTls(disk.pki, 'TLSv1.3', 'ecdsa'), groups: 'X25519:P-256' };
  const client = new AtlsClientSession({ engine, mode: 'records', tls });
  t.after(() => client.destroy());
  const stats = await clientHandshake(client, ch);
  reportFigures(t, stats, 'HelloRetryRequest');
  assert.equal(stats.roundTrips, 3, 'HRR adds one round trip'); // RFC 8446 §4.1.4
  await srv.waitFor(/Keying material: [0-9A-F]+/, 5000);
  assertExporterMatches(client, openSslKeyMaterial(srv.stdout), 32, 'TLSv1.3');
  ch.send(await client.close());
}

async function negativeCase(
  t: TestContext,
  engine: TlsEngine,
  version: Version,
  pair: 'untrustedServer' | 'expiredServer' | 'wrongNameServer',
  code: AtlsErrorCode,
  peerSees: RegExp,
): Promise<void> {
  const openssl = requireTool(t, 'openssl');
  if (!openssl) return;
  const f = disk.files[pair];
  const { srv, port } = await startServer(openssl, [VERSION_FLAG[version], '-cert', f.cert, '-key', f.key]);
  t.after(() => srv.kill());
  const ch = new FlightChannel(await connectTcp(port));
  t.after(() => ch.close());
  const client = new AtlsClientSession({ engine, mode: 'records', tls: clientTls(disk.pki, version, 'ecdsa') });
  t.after(() => client.destroy());

  await assert.rejects(clientHandshake(client, ch), (e: unknown) => {
    assert.ok(e instanceof AtlsError, `an AtlsError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
  assert.equal(client.state, 'failed');
  // Our alert reached s_server, which reports it.
  const seen = await srv.waitFor(peerSees, 5000);
  t.diagnostic(`${e2s(client.error)}; s_server: ${seen[0]}`);
}

function e2s(e: AtlsError | undefined): string {
  return e ? `${e.code} (alert ${e.alert?.name ?? 'none'})` : 'no error';
}

for (const engine of clientEngines()) {
  describe(`our client (${engine.name} engine) -> openssl s_server`, SUITE, () => {
    it('TLSv1.3 HelloRetryRequest: handshake, exporter', { timeout: CASE_TIMEOUT }, (t) => helloRetryCase(t, engine));
    for (const version of VERSIONS) {
      const skip = clientSkip(engine, version, 'ecdsa');
      for (const auth of AUTHS) {
        it(`${version} ${auth}: handshake, exporter, data both ways`, { timeout: CASE_TIMEOUT, skip: clientSkip(engine, version, auth) }, (t) =>
          positiveCase(t, engine, version, auth),
        );
      }
      it(`${version} resumption with the ticket s_server issued`, { timeout: CASE_TIMEOUT, skip }, (t) =>
        resumptionCase(t, engine, version),
      );
      it(`${version} untrusted server certificate -> CERTIFICATE_UNTRUSTED`, { timeout: CASE_TIMEOUT, skip }, (t) =>
        negativeCase(t, engine, version, 'untrustedServer', 'CERTIFICATE_UNTRUSTED', /[^\n]*alert unknown ca/i),
      );
      it(`${version} expired server certificate -> CERTIFICATE_EXPIRED`, { timeout: CASE_TIMEOUT, skip }, (t) =>
        negativeCase(t, engine, version, 'expiredServer', 'CERTIFICATE_EXPIRED', /[^\n]*alert certificate expired/i),
      );
      it(`${version} wrong server name -> CERTIFICATE_NAME_MISMATCH`, { timeout: CASE_TIMEOUT, skip }, (t) =>
        negativeCase(t, engine, version, 'wrongNameServer', 'CERTIFICATE_NAME_MISMATCH', /[^\n]*alert bad certificate/i),
      );
    }
  });
}
