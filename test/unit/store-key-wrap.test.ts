/**
 * Session records wrapped at rest (`--store-key`): round trip, the session id
 * bound as AAD (a record moved to another id does not open), tampering, the
 * key file formats.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AtlsError } from '../../src/errors.js';
import { readKeyFile, StoreKey } from '../../src/store/key-wrap.js';

const isCode = (code: string) => (e: unknown) => e instanceof AtlsError && e.code === code;

describe('StoreKey', () => {
  const key = randomBytes(32);
  const kek = new StoreKey(key);
  const record = new TextEncoder().encode('suite + keys + ivs + peer summary');

  it('wraps as version || nonce || AES-256-GCM(record, aad = id) || tag and unwraps again', () => {
    const id = 'node-1.q2xUbbcNiVDUUOmT5b4xhQ';
    const blob = kek.wrap(id, record);
    assert.equal(blob.length, 1 + 12 + record.length + 16);
    assert.equal(blob[0], 1);
    assert.deepEqual(kek.unwrap(id, blob), record);
    // The format as documented, opened with node:crypto directly.
    const d = createDecipheriv('aes-256-gcm', key, blob.subarray(1, 13));
    d.setAAD(Buffer.from(id));
    d.setAuthTag(blob.subarray(blob.length - 16));
    assert.deepEqual(new Uint8Array(Buffer.concat([d.update(blob.subarray(13, blob.length - 16)), d.final()])), record);
    // A fresh nonce every time: the same record never wraps to the same bytes.
    assert.notDeepEqual(kek.wrap(id, record), blob);
    // The plaintext does not show in the wrapped record.
    assert.ok(!Buffer.from(blob).includes(Buffer.from('keys + ivs')));
  });

  it('a record moved to another session id, altered, or under another key does not open', () => {
    const blob = kek.wrap('a.q2xUbbcNiVDUUOmT5b4xhQ', record);
    assert.throws(() => kek.unwrap('b.q2xUbbcNiVDUUOmT5b4xhQ', blob), isCode('INTERNAL'));
    const flipped = blob.slice();
    flipped[20]! ^= 1;
    assert.throws(() => kek.unwrap('a.q2xUbbcNiVDUUOmT5b4xhQ', flipped), isCode('INTERNAL'));
    assert.throws(() => new StoreKey(randomBytes(32)).unwrap('a.q2xUbbcNiVDUUOmT5b4xhQ', blob), isCode('INTERNAL'));
    assert.throws(() => kek.unwrap('a.q2xUbbcNiVDUUOmT5b4xhQ', blob.subarray(0, 20)), isCode('INTERNAL'));
    assert.throws(() => kek.unwrap('a.q2xUbbcNiVDUUOmT5b4xhQ', record), isCode('INTERNAL'));
  });

  it('key files: raw bytes or hex digits; anything else is INVALID_ARGUMENT naming the flag', () => {
    const dir = mkdtempSync(join(tmpdir(), 'atls-kek-'));
    try {
      writeFileSync(join(dir, 'raw'), key);
      writeFileSync(join(dir, 'hex'), `${key.toString('hex')}\n`);
      writeFileSync(join(dir, 'short'), key.subarray(0, 31));
      assert.deepEqual(readKeyFile(join(dir, 'raw'), 32, '--store-key'), new Uint8Array(key));
      assert.deepEqual(readKeyFile(join(dir, 'hex'), 32, '--store-key'), new Uint8Array(key));
      const blob = StoreKey.fromFile(join(dir, 'hex')).wrap('x.q2xUbbcNiVDUUOmT5b4xhQ', record);
      assert.deepEqual(kek.unwrap('x.q2xUbbcNiVDUUOmT5b4xhQ', blob), record);
      assert.throws(() => readKeyFile(join(dir, 'short'), 32, '--store-key'), /--store-key .*want 32 bytes, or 64 hex digits/);
      assert.throws(() => readKeyFile(join(dir, 'missing'), 48, '--ticket-keys'), /--ticket-keys .*ENOENT/);
      assert.throws(() => new StoreKey(randomBytes(16)), isCode('INVALID_ARGUMENT'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
