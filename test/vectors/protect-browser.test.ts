// The browser build's AEAD (src/protect/aead.browser.ts, @noble/ciphers)
// against the protected-message vectors of protect.json: every GCM and
// ChaCha20-Poly1305 message seals and opens byte for byte; a flipped tag fails.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { aeadOpen, aeadSealInto } from '../../src/protect/aead.browser.js';
import { aeadForSuite, splitKeyBlock } from '../../src/protect/index.js';
import { fromHex, toHex } from '../../src/bytes.js';

interface Vectors {
  aeads: {
    aead: string;
    suite: string;
    keyBlock: string;
    messages: { sender: 'client' | 'server'; seq: string; plaintext: string; nonce: string; aad: string; ciphertext: string; tag: string }[];
  }[];
}

const vectors = JSON.parse(readFileSync(new URL('./protect.json', import.meta.url), 'utf8')) as Vectors;
const browserAeads = vectors.aeads.filter((a) => /GCM|ChaCha20/.test(a.aead));

void describe('protect: the browser AEAD on the known-answer vectors', () => {
  void it('covers AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305', () => {
    assert.deepEqual(browserAeads.map((a) => a.aead).sort(), ['AES-128-GCM', 'AES-256-GCM', 'ChaCha20-Poly1305']);
  });
  for (const a of browserAeads) {
    void it(`${a.aead}: every message seals and opens byte for byte`, () => {
      const spec = aeadForSuite(a.suite);
      const kb = splitKeyBlock(fromHex(a.keyBlock), spec);
      for (const m of a.messages) {
        const key = m.sender === 'client' ? kb.clientWriteKey : kb.serverWriteKey;
        const plaintext = fromHex(m.plaintext);
        const out = new Uint8Array(plaintext.length + spec.tagLength + 3);
        aeadSealInto(spec, key, fromHex(m.nonce), fromHex(m.aad), plaintext, out, 3);
        assert.equal(toHex(out.subarray(3)), m.ciphertext + m.tag, `${a.aead} seq ${m.seq}`);
        const opened = aeadOpen(spec, key, fromHex(m.nonce), fromHex(m.aad), fromHex(m.ciphertext), fromHex(m.tag));
        assert.equal(toHex(opened!), m.plaintext);
        const badTag = fromHex(m.tag);
        badTag[0]! ^= 1;
        assert.equal(aeadOpen(spec, key, fromHex(m.nonce), fromHex(m.aad), fromHex(m.ciphertext), badTag), undefined);
      }
    });
  }
});
