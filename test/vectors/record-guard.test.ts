/**
 * The records-mode guard (src/session/record-guard.ts) against RFC 8448 §3:
 * the client's application traffic secret opens the client's application
 * data record at sequence 0 (key and IV by RFC 8446 §7.3, nonce by §5.3,
 * the header as additional data by §5.2), and nothing else.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RecordGuard } from '../../src/session/record-guard.js';
import { splitRecords } from '../../src/records.js';
import { AtlsError } from '../../src/errors.js';
import * as v from './rfc8448.js';

const SUITE = 'TLS_AES_128_GCM_SHA256';
const badRecord = (e: unknown): boolean => e instanceof AtlsError && e.code === 'BAD_RECORD_MAC' && e.source === 'remote';

describe('record guard, RFC 8448 §3', () => {
  it('opens the client application record at sequence 0 and refuses its replay', () => {
    const guard = new RecordGuard(SUITE, v.secrets.clientApplication);
    const record = splitRecords(v.clientApplicationRecord);
    guard.authenticate(record);
    assert.throws(() => guard.authenticate(record), badRecord, 'the same record again is at sequence 1: a replay');
  });

  it('catches up with the flight that completed the handshake: the Finished under the handshake key, then data', () => {
    const guard = new RecordGuard(SUITE, v.secrets.clientApplication);
    const flight = splitRecords(new Uint8Array([...v.clientFinishedRecord, ...v.clientApplicationRecord]));
    assert.equal(guard.catchUp(flight), true);
    assert.throws(() => guard.authenticate(splitRecords(v.clientApplicationRecord)), badRecord, 'sequence 0 is used');
  });

  it('refuses a flipped byte, the server\'s record, a plaintext alert, and a batch with one bad record whole', () => {
    const guard = new RecordGuard(SUITE, v.secrets.clientApplication);
    const flipped = Uint8Array.from(v.clientApplicationRecord);
    flipped[20]! ^= 1;
    assert.throws(() => guard.authenticate(splitRecords(flipped)), badRecord);
    const header = Uint8Array.from(v.clientApplicationRecord);
    header[2] = 1; // the header is the additional data (RFC 8446 §5.2)
    assert.throws(() => guard.authenticate(splitRecords(header)), badRecord);
    assert.throws(() => guard.authenticate(splitRecords(v.serverApplicationRecord)), badRecord);
    assert.throws(() => guard.authenticate(splitRecords(Uint8Array.from([21, 3, 3, 0, 2, 2, 40]))), badRecord);
    const batch = splitRecords(new Uint8Array([...v.clientApplicationRecord, ...v.serverApplicationRecord]));
    assert.throws(() => guard.authenticate(batch), badRecord);
    // Nothing moved: the client's record still opens at sequence 0.
    guard.authenticate(splitRecords(v.clientApplicationRecord));
    guard.destroy();
  });
});

describe('record guard, the browser build', () => {
  it("takes the same HKDF-Expand-Label from the webcrypto engine's key schedule as from node:crypto", async () => {
    const node = await import('../../src/engines/tls13-alert.js');
    const browser = await import('../../src/browser/tls13-alert.js');
    const secret = Uint8Array.from({ length: 48 }, (_, i) => i * 7);
    for (const hash of ['sha256', 'sha384'] as const) {
      for (const [label, length] of [['key', 16], ['iv', 12], ['traffic upd', hash === 'sha256' ? 32 : 48]] as const) {
        assert.deepEqual(browser.expandLabel(hash, secret, label, length), new Uint8Array(node.expandLabel(hash, secret, label, length)));
      }
    }
  });
});
