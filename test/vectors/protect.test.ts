// Known-answer vectors (protect.json, made by generate.ts without src/protect)
// and the worked example of docs/protocol.md §4, checked byte for byte.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  ProtectedChannel,
  aeadForSuite,
  encodeHeader,
  keyBlockLength,
  nonceFor,
  parseHeader,
  splitKeyBlock,
} from '../../src/protect/index.js';
import { fromHex, toHex } from '../../src/bytes.js';

interface VectorMessage {
  sender: 'client' | 'server';
  seq: string;
  plaintext: string;
  externalAad?: string;
  header: string;
  nonce: string;
  aad: string;
  ciphertext: string;
  tag: string;
  message: string;
}
interface VectorAead {
  aead: string;
  suite: string;
  algorithm: string;
  keyLength: number;
  tagLength: number;
  keyBlock: string;
  clientWriteKey: string;
  serverWriteKey: string;
  clientWriteIv: string;
  serverWriteIv: string;
  messages: VectorMessage[];
}
interface Vectors {
  example: { aead: string; sender: string; seq: string };
  aeads: VectorAead[];
}

const vectors = JSON.parse(readFileSync(new URL('./protect.json', import.meta.url), 'utf8')) as Vectors;

describe('protect: known-answer vectors', () => {
  it('covers every AEAD and the sequence numbers of the brief', () => {
    const names = vectors.aeads.map((a) => a.aead);
    for (const n of ['AES-128-GCM', 'AES-256-GCM', 'ChaCha20-Poly1305', 'AES-128-CCM', 'AES-128-CCM_8']) {
      assert.ok(names.includes(n), n);
    }
    for (const a of vectors.aeads) {
      const seqs = a.messages.map((m) => BigInt(m.seq));
      for (const s of [0n, 1n, 255n, 256n, 65535n, 65536n, 2n ** 32n]) assert.ok(seqs.includes(s), `${a.aead} ${s}`);
    }
  });

  for (const a of vectors.aeads) {
    describe(a.aead, () => {
      const spec = aeadForSuite(a.suite);
      const block = fromHex(a.keyBlock);

      it('maps the suite and splits the key block', () => {
        assert.equal(spec.algorithm, a.algorithm);
        assert.equal(spec.keyLength, a.keyLength);
        assert.equal(spec.tagLength, a.tagLength);
        assert.equal(keyBlockLength(spec), block.length);
        const kb = splitKeyBlock(block, spec);
        assert.equal(toHex(kb.clientWriteKey), a.clientWriteKey);
        assert.equal(toHex(kb.serverWriteKey), a.serverWriteKey);
        assert.equal(toHex(kb.clientWriteIv), a.clientWriteIv);
        assert.equal(toHex(kb.serverWriteIv), a.serverWriteIv);
      });

      for (const m of a.messages) {
        it(`${m.sender} seq ${m.seq}: seals and opens byte for byte`, () => {
          const seq = BigInt(m.seq);
          const iv = fromHex(m.sender === 'client' ? a.clientWriteIv : a.serverWriteIv);
          assert.equal(toHex(encodeHeader(seq)), m.header);
          assert.equal(toHex(nonceFor(iv, seq)), m.nonce);
          const aad = m.externalAad === undefined ? undefined : fromHex(m.externalAad);
          const receiverRole = m.sender === 'client' ? 'server' : 'client';
          const sender = ProtectedChannel.fromKeyBlock(block, spec, m.sender, { initialSequence: seq });
          const sealed = sender.seal(fromHex(m.plaintext), aad);
          assert.equal(toHex(sealed), m.message);
          assert.equal(toHex(sealed), m.header + m.ciphertext + m.tag);
          const receiver = ProtectedChannel.fromKeyBlock(block, spec, receiverRole);
          const message = fromHex(m.message);
          assert.equal(parseHeader(message).seq, seq);
          assert.equal(toHex(receiver.open(message, aad)), m.plaintext);
          assert.throws(() => receiver.open(message, aad), { code: 'REPLAYED' });
        });
      }
    });
  }
});

describe('protect: the worked example of docs/protocol.md §4', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('<!-- section:protect -->'), doc.indexOf('<!-- /section:protect -->'));
  const block = /\*\*Worked example\*\*[\s\S]*?```text\n([\s\S]*?)```/.exec(section)?.[1];
  const shown = new Map<string, string>();
  for (const line of (block ?? '').split('\n')) {
    const m = /^(\S.*?)\s{2,}([0-9a-f]+)(?:\s|$)/.exec(line);
    if (m) shown.set(m[1]!, m[2]!);
  }
  const ex = vectors.example;
  const a = vectors.aeads.find((x) => x.aead === ex.aead)!;
  const v = a.messages.find((x) => x.sender === ex.sender && x.seq === ex.seq)!;

  it('is present in the protect section', () => {
    assert.ok(block, 'worked example block not found');
    assert.match(block!, new RegExp(`suite\\s+${a.suite}`));
    assert.match(block!, new RegExp(`sender\\s+${ex.sender}, sequence number ${ex.seq}\\b`));
  });

  it('shows the values of protect.json', () => {
    const want: [string, string][] = [
      ['client_write_key', a.clientWriteKey],
      ['server_write_key', a.serverWriteKey],
      ['client_write_IV', a.clientWriteIv],
      ['server_write_IV', a.serverWriteIv],
      ['plaintext', v.plaintext],
      ['header = AAD', v.header],
      ['nonce', v.nonce],
      ['ciphertext', v.ciphertext],
      ['tag', v.tag],
      ['message', v.message],
    ];
    for (const [label, hex] of want) assert.equal(shown.get(label), hex, label);
    assert.equal(a.clientWriteKey + a.serverWriteKey + a.clientWriteIv + a.serverWriteIv, a.keyBlock);
    assert.equal(v.aad, v.header, 'no application AAD in the example');
  });

  it('is what the library produces', () => {
    const spec = aeadForSuite(a.suite);
    const client = ProtectedChannel.fromKeyBlock(fromHex(a.keyBlock), spec, 'client', {
      initialSequence: BigInt(ex.seq),
    });
    const msg = client.seal(new TextEncoder().encode('hello, atls'));
    assert.equal(toHex(msg), shown.get('message'));
    assert.equal(msg.length, 30);
  });
});

describe('protect: one vector per AEAD in docs/protocol.md §4', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('**One vector per AEAD**'), doc.indexOf('<!-- /section:protect -->'));
  const shown = [...section.matchAll(/^aead\s+(\S+) \((\S+)\)\nkey block\s+([0-9a-f]+)\nmessage\s+([0-9a-f]+)$/gm)];

  it('shows every AEAD of protect.json, client seq 0, "hello, atls"', () => {
    assert.deepEqual(
      shown.map((m) => m[1]),
      vectors.aeads.map((a) => a.aead),
    );
    for (const m of shown) {
      const a = vectors.aeads.find((x) => x.aead === m[1])!;
      const v = a.messages.find((x) => x.sender === 'client' && x.seq === '0')!;
      assert.equal(m[2], a.suite);
      assert.equal(m[3], a.keyBlock);
      assert.equal(v.plaintext, '68656c6c6f2c2061746c73');
      assert.equal(m[4], v.message);
      const opened = ProtectedChannel.fromKeyBlock(fromHex(a.keyBlock), aeadForSuite(a.suite), 'server').open(fromHex(m[4]!));
      assert.equal(new TextDecoder().decode(opened), 'hello, atls');
    }
  });
});
