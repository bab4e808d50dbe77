/* eslint-disable @typescript-eslint/no-floating-promises -- node:test awaits the promises describe() and it() return */
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
  EXPORT_LEN,
  LABEL,
  PSK,
  PSK_HEX,
  VERSIONS,
  assertExporterMatches,
  clientTls,
  engines,
  openSslKeyMaterial,
  pkiOnDisk,
  reportFigures,
} from './harness.js';
import type { Auth, PkiOnDisk, Version } from './harness.js';

const CASE_TIMEOUT = 15_000;
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

for (const engine of engines()) {
  describe(`our client (${engine.name} engine) -> openssl s_server`, { timeout: 120_000 }, () => {
    for (const version of VERSIONS) {
      for (const auth of AUTHS) {
        it(`${version} ${auth}: handshake, exporter, data both ways`, { timeout: CASE_TIMEOUT }, (t) =>
          positiveCase(t, engine, version, auth),
        );
      }
      it(`${version} untrusted server certificate -> CERTIFICATE_UNTRUSTED`, { timeout: CASE_TIMEOUT }, (t) =>
        negativeCase(t, engine, version, 'untrustedServer', 'CERTIFICATE_UNTRUSTED', /[^\n]*alert unknown ca/i),
      );
      it(`${version} expired server certificate -> CERTIFICATE_EXPIRED`, { timeout: CASE_TIMEOUT }, (t) =>
        negativeCase(t, engine, version, 'expiredServer', 'CERTIFICATE_EXPIRED', /[^\n]*alert certificate expired/i),
      );
      it(`${version} wrong server name -> CERTIFICATE_NAME_MISMATCH`, { timeout: CASE_TIMEOUT }, (t) =>
        negativeCase(t, engine, version, 'wrongNameServer', 'CERTIFICATE_NAME_MISMATCH', /[^\n]*alert bad certificate/i),
      );
    }
  });
}
