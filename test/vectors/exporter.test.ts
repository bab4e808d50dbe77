// The exporter behind the ATLS key block (docs/protocol.md §3): the RFC
// formulas of exporter.ts agree with real handshakes on both engines (from
// the key log and the hello randoms), exporter.json holds what they give for
// fixed inputs, and the document shows exporter.json's values.
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { testPki, type TestPki } from '../helpers/pki.js';
import { pump } from '../helpers/pair.js';
import { nativeEngineOrSkip } from '../helpers/native-drive.js';
import { getEngine } from '../../src/engines/index.js';
import { parseClientHello, parseServerHello } from '../../src/records.js';
import type { TlsEngine } from '../../src/engines/types.js';
import { KEY_BLOCK_LENGTH, LABEL, exporterVectors, tls12Exporter, tls13Exporter, type ExporterVectors, type Hash } from './exporter.js';

const vectors = JSON.parse(readFileSync(new URL('./exporter.json', import.meta.url), 'utf8')) as ExporterVectors;

const SUITES: Array<{ version: 'TLSv1.2' | 'TLSv1.3'; ciphers: string; hash: Hash }> = [
  { version: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', hash: 'sha256' },
  { version: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES256-GCM-SHA384', hash: 'sha384' },
  { version: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256', hash: 'sha256' },
  { version: 'TLSv1.3', ciphers: 'TLS_AES_256_GCM_SHA384', hash: 'sha384' },
];

describe('exporter: the RFC formulas against real handshakes', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const serverEngine of ['node', 'openssl'] as const) {
    for (const s of SUITES) {
      it(`${s.version} ${s.ciphers}, ${serverEngine} server: key log + randoms give the engines' key block`, async (t) => {
        const server: TlsEngine | undefined = serverEngine === 'node' ? getEngine('node') : nativeEngineOrSkip(t);
        if (!server) return;
        const keyLog: string[] = [];
        const v = { minVersion: s.version, maxVersion: s.version, ciphers: s.ciphers };
        const c = getEngine('node').createClient({ ...v, ca: pki.ca.cert, serverName: 'localhost', keyLog: (l) => keyLog.push(l) });
        const srv = server.createServer({ ...v, cert: pki.server.cert, key: pki.server.key });
        const flights: Uint8Array[] = [];
        const run = await pump(c, srv, { tamper: (f) => (flights.push(f), f) });
        assert.deepEqual(run.errors, {});
        const clientRandom = Buffer.from(parseClientHello(flights[0]!).random, 'hex');
        const serverRandom = Buffer.from(parseServerHello(flights[1]!).random, 'hex');
        const secret = (name: string): Buffer => {
          const line = keyLog.find((l) => l.startsWith(`${name} ${clientRandom.toString('hex')} `));
          assert.ok(line, `${name} in the key log: ${keyLog.join('\n')}`);
          return Buffer.from(line!.split(' ')[2]!, 'hex');
        };
        const fromEngine = Buffer.from(c.exportKeyingMaterial(KEY_BLOCK_LENGTH, LABEL));
        assert.deepEqual(Buffer.from(srv.exportKeyingMaterial(KEY_BLOCK_LENGTH, LABEL)), fromEngine);
        const withEmpty = Buffer.from(srv.exportKeyingMaterial(KEY_BLOCK_LENGTH, LABEL, new Uint8Array(0)));
        if (s.version === 'TLSv1.2') {
          const ms = secret('CLIENT_RANDOM');
          assert.deepEqual(tls12Exporter(s.hash, ms, clientRandom, serverRandom, LABEL, KEY_BLOCK_LENGTH), fromEngine);
          assert.deepEqual(tls12Exporter(s.hash, ms, clientRandom, serverRandom, LABEL, KEY_BLOCK_LENGTH, Buffer.alloc(0)), withEmpty);
          assert.notDeepEqual(withEmpty, fromEngine, 'TLS 1.2: an empty context is not "no context"');
        } else {
          const ems = secret('EXPORTER_SECRET');
          assert.deepEqual(tls13Exporter(s.hash, ems, LABEL, KEY_BLOCK_LENGTH), fromEngine);
          assert.deepEqual(withEmpty, fromEngine, 'TLS 1.3: an empty context is "no context"');
        }
        c.destroy();
        srv.destroy();
      });
    }
  }
});

describe('exporter: exporter.json', () => {
  it('holds what the formulas give for its inputs', () => {
    assert.deepEqual(vectors, exporterVectors());
  });
});

describe('exporter: the vectors of docs/protocol.md §3', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('<!-- section:protect -->'), doc.indexOf('## 4. Protected messages'));
  /** The hex of a labelled line, continued on the following indented lines. */
  const shown = (label: string): string | undefined => {
    const m = new RegExp(`^${label.replace(/[()]/g, '\\$&')}\\s{2,}([0-9a-f]+)((?:\\n\\s{4,}[0-9a-f]+)*)`, 'm').exec(section);
    return m ? (m[1]! + m[2]!).replace(/\s+/g, '') : undefined;
  };
  it('TLS 1.2: master secret and randoms to the key block, no context and empty context', () => {
    const v = vectors.tls12;
    assert.equal(shown('master_secret'), v.masterSecret);
    assert.equal(shown('client_random'), v.clientRandom);
    assert.equal(shown('server_random'), v.serverRandom);
    assert.equal(shown('key block (no context)'), v.noContext);
    assert.equal(shown('key block (empty context)'), v.emptyContext);
  });
  it('TLS 1.3: exporter master secret to the key block', () => {
    const v = vectors.tls13;
    assert.equal(shown('exporter_master_secret'), v.exporterMasterSecret);
    assert.equal(shown('key block'), v.noContext);
  });
});
