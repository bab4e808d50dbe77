/**
 * docs/appendix-c/ (draft Appendix C): the committed example exchanges
 * (HTTP and CoAP) are
 * self-consistent and checkable offline (key log -> key block -> every
 * protected message opens to its recorded plaintext; the annotated dump is
 * what the bodies say), and they still describe what the code sends: a
 * fresh run of each example has the same exchanges, headers, records and
 * handshake messages.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { testPki, type TestPki } from '../helpers/pki.js';
import {
  APPENDIX_DIR,
  EXAMPLES,
  SECTION_END,
  SECTION_START,
  annotate,
  annotateCoap,
  capture,
  captureCoap,
  helloExchange,
  keyBlockFromKeyLog,
  openAll,
  workedExample,
  type ExampleCoapFile,
  type ExampleCoapMessage,
  type ExampleFile,
  type ExampleMessage,
} from '../helpers/appendix-c.js';
import { decodeInner } from '../../src/coap/inner.js';
import { codeToString } from '../../src/coap/constants.js';
import { inspectFlight } from '../../src/records.js';
import { decodeRequest, decodeResponse } from '../../src/bhttp/codec.js';

/** What must stay the same between runs: header names, record types, handshake messages, the split. */
function shape(m: ExampleMessage): unknown {
  const body = Buffer.from(m.body, 'base64');
  const flight = body.subarray(0, m.flightBytes);
  const summary = flight.length > 0 ? inspectFlight(flight, { dtls: false }) : undefined;
  return {
    headers: m.headers.map(([k, v]) => (['cookie', 'set-cookie', 'atls-flight-length'].includes(k) ? k : `${k}: ${v}`)),
    records: summary?.records.map((r) => `${r.contentTypeName}${r.encrypted ? ' (encrypted)' : ''} ${(r.handshake ?? []).join('+')}`) ?? [],
    protected: m.flightBytes < body.length,
  };
}

/** The same for a CoAP message: code, option names and values (but the session id's and Echo's, new each run), records, protected. */
function coapShape(m: ExampleCoapMessage): unknown {
  const body = Buffer.from(m.body, 'base64');
  const flight = body.subarray(0, m.flightBytes);
  const summary = flight.length > 0 ? inspectFlight(flight, { dtls: false }) : undefined;
  return {
    code: m.code,
    options: m.options.map((o, i) =>
      (i > 0 && /Path$/.test(o.name) && m.options[i - 1]!.value === 'atls') || o.name === 'Echo' ? `${o.name}: <new each run>` : `${o.name}: ${o.value}`,
    ),
    contentFormat: m.contentFormat,
    records: summary?.records.map((r) => `${r.contentTypeName}${r.encrypted ? ' (encrypted)' : ''} ${(r.handshake ?? []).join('+')}`) ?? [],
    protected: m.flightBytes < body.length,
  };
}

/** The key block (hex) from a key log and the hellos of the file's first exchange. */
function keyBlockOf(keyLog: string, file: ExampleFile | ExampleCoapFile): string {
  const first = helloExchange<{ request: { body: string }; response: { body: string; flightBytes: number } }>(file.exchanges);
  const hello = (m: { body: string }): Buffer => Buffer.from(m.body, 'base64');
  return Buffer.from(keyBlockFromKeyLog(keyLog.trim().split('\n'), file.cipherSuite, file.version, hello(first.request), hello(first.response))).toString('hex');
}

describe('docs/appendix-c: example exchanges', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const example of EXAMPLES.filter((e) => e.binding !== 'coap')) {
    const read = (ext: string): string => readFileSync(new URL(`${example.name}.${ext}`, APPENDIX_DIR), 'utf8');
    const file = JSON.parse(read('json')) as ExampleFile;

    it(`${example.name}: the key log gives the key block, which opens every protected message to its Binary HTTP plaintext`, () => {
      assert.equal(keyBlockOf(read('keylog'), file), file.keyBlock);
      assert.deepEqual(openAll(file), file.protected);
      assert.equal(file.protected.length, 4, 'two requests and two responses');
      for (const p of file.protected) {
        const plain = Buffer.from(p.plaintext, 'hex');
        if (p.sender === 'client') assert.match(decodeRequest(plain).path, /^\/[ab]$/);
        else assert.equal(decodeResponse(plain).status, 200);
      }
    });

    it(`${example.name}: the annotated dump is what the bodies say`, () => {
      assert.equal(read('txt'), annotate(file));
    });

    it(`${example.name}: a fresh run sends the same exchanges, headers, records and handshake messages`, async () => {
      const fresh = (await capture(example, pki)).json;
      assert.equal(fresh.version, file.version);
      assert.equal(fresh.cipherSuite, file.cipherSuite);
      assert.equal(fresh.exchanges.length, file.exchanges.length);
      fresh.exchanges.forEach((x, i) => {
        const was = file.exchanges[i]!;
        assert.deepEqual([x.request.method, x.request.target, x.response.status], [was.request.method, was.request.target, was.response.status]);
        assert.deepEqual(shape(x.request), shape(was.request), `exchange ${i + 1} request`);
        assert.deepEqual(shape(x.response), shape(was.response), `exchange ${i + 1} response`);
      });
    });
  }

  for (const example of EXAMPLES.filter((e) => e.binding === 'coap')) {
    const read = (ext: string): string => readFileSync(new URL(`${example.name}.${ext}`, APPENDIX_DIR), 'utf8');
    const file = JSON.parse(read('json')) as ExampleCoapFile;

    it(`${example.name}: the key log gives the key block, which opens every protected message to its inner CoAP message`, () => {
      assert.equal(keyBlockOf(read('keylog'), file), file.keyBlock);
      assert.deepEqual(openAll(file), file.protected);
      assert.equal(file.protected.length, 5, 'two requests, two responses and the DELETE');
      const inner = file.protected.filter((p) => p.plaintext !== '').map((p) => decodeInner(Buffer.from(p.plaintext, 'hex')));
      assert.deepEqual(
        inner.map((m) => [codeToString(m.code), Buffer.from(m.payload).toString()]),
        [['0.01', ''], ['2.05', 'hello /a'], ['0.01', ''], ['2.05', 'hello /b']],
      );
      for (const x of file.exchanges) {
        for (const m of [x.request, x.response]) {
          const cf = m.options.find((o) => o.name === 'Content-Format');
          assert.equal(cf?.value ?? null, m.contentFormat);
        }
      }
    });

    it(`${example.name}: the annotated dump is what the messages say`, () => {
      assert.equal(read('txt'), annotateCoap(file));
    });

    it(`${example.name}: a fresh run sends the same messages, options, records and handshake messages`, async () => {
      const fresh = (await captureCoap(example, pki)).json;
      assert.equal(fresh.version, file.version);
      assert.equal(fresh.cipherSuite, file.cipherSuite);
      assert.equal(fresh.exchanges.length, file.exchanges.length);
      fresh.exchanges.forEach((x, i) => {
        const was = file.exchanges[i]!;
        assert.deepEqual(coapShape(x.request), coapShape(was.request), `exchange ${i + 1} request`);
        assert.deepEqual(coapShape(x.response), coapShape(was.response), `exchange ${i + 1} response`);
      });
    });
  }

  it('docs/protocol.md §5.10 is the tls13-psk example, with its key block', async () => {
    const doc = readFileSync(new URL('../protocol.md', APPENDIX_DIR), 'utf8');
    const shown = doc.slice(doc.indexOf(SECTION_START) + SECTION_START.length + 1, doc.indexOf(SECTION_END) - 1);
    const file = JSON.parse(readFileSync(new URL('tls13-psk.json', APPENDIX_DIR), 'utf8')) as ExampleFile;
    assert.equal(shown, await workedExample(file));
  });
});
