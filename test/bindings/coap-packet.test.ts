/**
 * CoAP codec (RFC 7252 §3): known bytes, option extensions at their
 * boundaries, every malformed shape, and a small fuzz loop asserting that any
 * input either decodes or raises MALFORMED_MESSAGE.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AtlsError } from '../../src/errors.js';
import { fromHex, toHex } from '../../src/bytes.js';
import { CoapCode, MessageType, OptionNumber, codeFromString, codeToString } from '../../src/coap/constants.js';
import {
  decodeMessage,
  encodeMessage,
  getPath,
  getUintOption,
  pathOptions,
  uintOption,
  encodeUint,
  decodeUint,
  stringOption,
  type CoapMessage,
} from '../../src/coap/packet.js';
import { encodeInner, decodeInner } from '../../src/coap/inner.js';
import { decodeBlock, encodeBlock, szxOf, blockSizeOf, blockOption } from '../../src/coap/blockwise.js';

function malformed(hex: string): void {
  assert.throws(
    () => decodeMessage(fromHex(hex)),
    (e: unknown) => e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE' && e.source === 'remote',
    hex,
  );
}

void describe('CoAP packet codec', () => {
  void it('encodes a POST to /.well-known/atls byte-exactly', () => {
    const msg: CoapMessage = {
      type: MessageType.CON,
      code: CoapCode.POST,
      messageId: 0x1234,
      token: fromHex('a1b2'),
      options: [uintOption(OptionNumber.ContentFormat, 65000), ...pathOptions('/.well-known/atls')],
      payload: fromHex('16030100'),
    };
    const bytes = encodeMessage(msg);
    // 42: ver 1, CON, TKL 2; 02: POST; 1234: MID; a1b2: token;
    // bb + ".well-known": delta 11 (Uri-Path), len 11; 04 + "atls": delta 0, len 4;
    // 12 fde8: delta 1 (Content-Format 12), len 2, 65000; ff; payload.
    assert.equal(
      toHex(bytes),
      '42021234a1b2' + 'bb2e77656c6c2d6b6e6f776e' + '0461746c73' + '12fde8' + 'ff' + '16030100',
    );
    const back = decodeMessage(bytes);
    assert.deepEqual(getPath(back), ['.well-known', 'atls']);
    assert.equal(getUintOption(back, OptionNumber.ContentFormat), 65000);
    assert.equal(toHex(back.payload), '16030100');
    assert.equal(back.messageId, 0x1234);
  });

  void it('uses the 1- and 2-byte extensions at their boundaries', () => {
    for (const n of [12, 13, 268, 269, 292, 1000, 65535]) {
      for (const len of [0, 12, 13, 268, 269, 300]) {
        const msg: CoapMessage = {
          type: MessageType.NON,
          code: CoapCode.GET,
          messageId: 1,
          token: new Uint8Array(0),
          options: [{ number: n, value: new Uint8Array(len).fill(7) }],
          payload: new Uint8Array(0),
        };
        const back = decodeMessage(encodeMessage(msg));
        assert.equal(back.options[0]?.number, n);
        assert.equal(back.options[0]?.value.length, len);
      }
    }
    // Request-Tag 292: delta 292 = 14 + (292 - 269 = 0x0017).
    const rt = encodeMessage({ type: 1, code: 1, messageId: 0, token: new Uint8Array(0), options: [{ number: 292, value: fromHex('01') }], payload: new Uint8Array(0) });
    assert.equal(toHex(rt), '50010000' + 'e10017' + '01');
  });

  void it('sorts options and keeps the order of repeated ones', () => {
    const msg = decodeMessage(
      encodeMessage({
        type: 0,
        code: 1,
        messageId: 9,
        token: new Uint8Array(0),
        options: [uintOption(OptionNumber.Size1, 5), ...pathOptions('/b/a'), uintOption(OptionNumber.ContentFormat, 0)],
        payload: new Uint8Array(0),
      }),
    );
    assert.deepEqual(msg.options.map((o) => o.number), [11, 11, 12, 60]);
    assert.deepEqual(getPath(msg), ['b', 'a']);
  });

  void it('decodes an empty message and a ping', () => {
    const m = decodeMessage(fromHex('40000001'));
    assert.equal(m.code, 0);
    assert.equal(m.type, MessageType.CON);
    assert.equal(toHex(encodeMessage(m)), '40000001');
  });

  void it('rejects every malformed shape with MALFORMED_MESSAGE', () => {
    malformed(''); // no header
    malformed('400100'); // 3 bytes
    malformed('80010001'); // version 2
    malformed('49010001' + '00'.repeat(9)); // TKL 9 reserved
    malformed('440100010102'); // token runs past the end
    malformed('4000000100'); // empty message with a trailing byte
    malformed('4100000101'); // empty message with a token
    malformed('40010001f0'); // option delta 15 without being the marker
    malformed('400100011f'); // option length 15
    malformed('40010001d0'); // 1-byte delta extension missing
    malformed('40010001e000'); // 2-byte delta extension missing
    malformed('40010001b4616263'); // value runs past the end
    malformed('40010001ff'); // marker with empty payload
    malformed('40010001e0ffff' + 'e0ffff'); // option number overflows 65535
  });

  void it('fuzz: any input decodes or raises MALFORMED_MESSAGE', () => {
    for (let i = 0; i < 20000; i++) {
      const len = i % 40;
      const buf = new Uint8Array(randomBytes(len));
      if (len > 0 && i % 2 === 0) buf[0] = 0x40 | (buf[0]! & 0x3f); // mostly version 1
      try {
        const m = decodeMessage(buf);
        // What decodes re-encodes to something that decodes to the same message.
        const again = decodeMessage(encodeMessage(m));
        assert.equal(again.options.length, m.options.length);
      } catch (e) {
        assert.ok(e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE', String(e));
      }
    }
  });

  void it('codes and uints', () => {
    assert.equal(codeToString(CoapCode.Created), '2.01');
    assert.equal(codeToString(CoapCode.Continue), '2.31');
    assert.equal(codeFromString('4.15'), CoapCode.UnsupportedContentFormat);
    assert.equal(toHex(encodeUint(0)), '');
    assert.equal(toHex(encodeUint(65000)), 'fde8');
    assert.equal(decodeUint(fromHex('00fde8')), 65000);
    assert.throws(() => decodeUint(fromHex('0102030405')), AtlsError);
  });

  void it('block options (RFC 7959 §2.2)', () => {
    assert.equal(toHex(encodeBlock({ num: 0, more: true, szx: 2 })), '0a');
    assert.equal(toHex(encodeBlock({ num: 0, more: false, szx: 0 })), '');
    assert.equal(toHex(encodeBlock({ num: 20, more: true, szx: 6 })), '014e');
    assert.deepEqual(decodeBlock(fromHex('014e')), { num: 20, more: true, szx: 6 });
    assert.throws(() => decodeBlock(fromHex('07')), (e: unknown) => e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE');
    assert.throws(() => decodeBlock(fromHex('01020304')), AtlsError);
    assert.equal(szxOf(16), 0);
    assert.equal(szxOf(1024), 6);
    assert.equal(blockSizeOf(2), 64);
    assert.throws(() => szxOf(2048), AtlsError);
    assert.throws(() => szxOf(100), AtlsError);
  });
});

/** The hex at the start of each line of a code block, up to the payload marker (docs/protocol.md §6.4). */
function docBlocks(): string[] {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
  const section = doc.slice(doc.indexOf('### 6.4'), doc.indexOf('### 6.5'));
  const blocks = [...section.matchAll(/```\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks.map((b) =>
    b
      .split('\n')
      .map((line) => {
        const out: string[] = [];
        for (const tok of line.trim().split(/\s+/)) {
          if (tok === 'ff' || !/^[0-9a-f]+$/.test(tok)) break;
          out.push(tok);
        }
        return out.join('');
      })
      .join(''),
  );
}

void describe('docs/protocol.md §6.4 and §6.6 examples', () => {
  const tok = fromHex('7a510c02');
  const id = 'q2xZ8mF3vT0aK7pRwE1bNg';
  void it('the annotated messages are what the codec produces', () => {
    const [first, created, protectedPost] = docBlocks();
    const a = encodeMessage({
      type: MessageType.CON, code: CoapCode.POST, messageId: 0x2f01, token: tok,
      options: [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000), blockOption(OptionNumber.Block1, { num: 0, more: true, szx: 2 }), uintOption(OptionNumber.Size1, 269), { number: OptionNumber.RequestTag, value: fromHex('9e1d4430') }],
      payload: new Uint8Array(0),
    });
    assert.equal(first, toHex(a));
    const b = encodeMessage({
      type: MessageType.ACK, code: CoapCode.Created, messageId: 0x2f05, token: tok,
      options: [stringOption(OptionNumber.LocationPath, 'atls'), stringOption(OptionNumber.LocationPath, id), uintOption(OptionNumber.ContentFormat, 65000), blockOption(OptionNumber.Block2, { num: 0, more: true, szx: 2 }), uintOption(OptionNumber.Size2, 823)],
      payload: new Uint8Array(0),
    });
    assert.equal(created, toHex(b));
    const c = encodeMessage({ type: MessageType.CON, code: CoapCode.POST, messageId: 0x2f10, token: tok, options: [...pathOptions(`/atls/${id}`), uintOption(OptionNumber.ContentFormat, 65001)], payload: new Uint8Array(0) });
    assert.equal(protectedPost, toHex(c));
  });

  void it('the inner message table', () => {
    const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');
    const hexOf = (label: string) => {
      const line = doc.split('\n').find((l) => l.startsWith(`| ${label}`))!;
      return [...line.split('|')[2]!.matchAll(/`([0-9a-f ]+)`/g)].map((m) => m[1]!.replace(/ /g, '')).join('');
    };
    const enc = new TextEncoder();
    assert.equal(hexOf('GET `/temp?unit=C`'), toHex(encodeInner({ code: CoapCode.GET, options: [...pathOptions('/temp'), stringOption(OptionNumber.UriQuery, 'unit=C')], payload: new Uint8Array(0) })));
    assert.equal(hexOf('2.05 Content'), toHex(encodeInner({ code: CoapCode.Content, options: [uintOption(OptionNumber.ContentFormat, 0)], payload: enc.encode('21.5') })));
    assert.equal(hexOf('POST `/echo`'), toHex(encodeInner({ code: CoapCode.POST, options: [...pathOptions('/echo'), uintOption(OptionNumber.ContentFormat, 42)], payload: enc.encode('hi') })));
    const back = decodeInner(fromHex('45c0ff32312e35'));
    assert.equal(back.code, CoapCode.Content);
    assert.throws(() => decodeInner(fromHex('')), AtlsError);
    assert.throws(() => decodeInner(fromHex('e0')), AtlsError); // class 7
  });
});
