/**
 * Every AEAD of the protection table (docs/protocol.md §3) negotiated end to
 * end over real sockets, on each engine: the suite is chosen with `ciphers`
 * (TLS 1.2) or `ciphersuites` (TLS 1.3), as `atls serve/fetch/proxy
 * --ciphers/--ciphersuites` do, and a protected request and its answer
 * travel under that suite's AEAD.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { testPki, type TestPki } from '../helpers/pki.js';
import { reportApp } from '../helpers/http.js';
import { nativeEngineOrSkip } from '../helpers/native-drive.js';
import { createAtlsServer } from '../../src/http/node.js';
import { createAtlsClient, type AtlsClientEvent } from '../../src/http/client.js';
import { getEngine } from '../../src/engines/index.js';
import { aeadForSuite } from '../../src/protect/suites.js';
import type { TlsEngine } from '../../src/engines/types.js';

/** One suite per AEAD and version: `ciphers` for TLS 1.2, `ciphersuites` for TLS 1.3. */
const CASES: Array<{ version: 'TLSv1.2' | 'TLSv1.3'; suite: string; openssl?: string; aead: string }> = [
  { version: 'TLSv1.3', suite: 'TLS_AES_128_GCM_SHA256', aead: 'AEAD_AES_128_GCM' },
  { version: 'TLSv1.3', suite: 'TLS_AES_256_GCM_SHA384', aead: 'AEAD_AES_256_GCM' },
  { version: 'TLSv1.3', suite: 'TLS_CHACHA20_POLY1305_SHA256', aead: 'AEAD_CHACHA20_POLY1305' },
  { version: 'TLSv1.3', suite: 'TLS_AES_128_CCM_SHA256', aead: 'AEAD_AES_128_CCM' },
  { version: 'TLSv1.3', suite: 'TLS_AES_128_CCM_8_SHA256', aead: 'AEAD_AES_128_CCM_8' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', openssl: 'ECDHE-ECDSA-AES128-GCM-SHA256', aead: 'AEAD_AES_128_GCM' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', openssl: 'ECDHE-ECDSA-AES256-GCM-SHA384', aead: 'AEAD_AES_256_GCM' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', openssl: 'ECDHE-ECDSA-CHACHA20-POLY1305', aead: 'AEAD_CHACHA20_POLY1305' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM', openssl: 'ECDHE-ECDSA-AES128-CCM', aead: 'AEAD_AES_128_CCM' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8', openssl: 'ECDHE-ECDSA-AES128-CCM8', aead: 'AEAD_AES_128_CCM_8' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM', openssl: 'ECDHE-ECDSA-AES256-CCM', aead: 'AEAD_AES_256_CCM' },
  { version: 'TLSv1.2', suite: 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8', openssl: 'ECDHE-ECDSA-AES256-CCM8', aead: 'AEAD_AES_256_CCM_8' },
];

describe('every AEAD of the protection table, end to end', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const engineName of ['node', 'openssl'] as const) {
    for (const c of CASES) {
      it(`${engineName}: ${c.version} ${c.suite} (${c.aead})`, async (t) => {
        const engine: TlsEngine | undefined = engineName === 'node' ? getEngine('node') : nativeEngineOrSkip(t);
        if (!engine) return;
        assert.equal(aeadForSuite(c.suite).name, c.aead, 'the table maps the suite to this AEAD');
        const v = { minVersion: c.version, maxVersion: c.version } as const;
        // Both ends are restricted to the one suite: neither default list offers CCM.
        const chosen = c.version === 'TLSv1.3' ? { ciphersuites: c.suite } : { ciphers: c.openssl! };
        const server = createAtlsServer({ tls: { ...v, ...chosen, cert: pki.server.cert, key: pki.server.key }, app: reportApp, engine });
        await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
        const port = (server.address() as AddressInfo).port;
        const events: AtlsClientEvent[] = [];
        const client = createAtlsClient({
          tls: { ...v, ...chosen, ca: pki.ca.cert, serverName: 'localhost' },
          engine,
          onEvent: (e) => events.push(e),
        });
        after(async () => {
          await client.close();
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        });
        for (const body of ['first, piggy-backed', 'second, alone']) {
          const res = await client.fetch(`http://127.0.0.1:${port}/echo`, { method: 'POST', body });
          assert.equal(res.status, 200);
          assert.equal(((await res.json()) as { body: string }).body, body);
        }
        const hs = events.find((e) => e.type === 'handshake');
        assert.ok(hs && hs.type === 'handshake');
        assert.equal(hs.info.cipherSuite, c.suite);
        assert.equal(hs.info.version, c.version);
      });
    }
  }
});
