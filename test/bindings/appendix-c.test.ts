/**
 * docs/appendix-c/ (draft Appendix C): the committed example exchanges are
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
  capture,
  keyBlockFromKeyLog,
  openAll,
  workedExample,
  type ExampleFile,
  type ExampleMessage,
} from '../helpers/appendix-c.js';
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

describe('docs/appendix-c: example exchanges', () => {
  let pki: TestPki;
  before(async () => {
    pki = await testPki();
  });

  for (const example of EXAMPLES) {
    const read = (ext: string): string => readFileSync(new URL(`${example.name}.${ext}`, APPENDIX_DIR), 'utf8');
    const file = JSON.parse(read('json')) as ExampleFile;

    it(`${example.name}: the key log gives the key block, which opens every protected message to its Binary HTTP plaintext`, () => {
      const first = file.exchanges[0]!;
      const block = keyBlockFromKeyLog(
        read('keylog').trim().split('\n'),
        file.cipherSuite,
        file.version,
        Buffer.from(first.request.body, 'base64'),
        Buffer.from(first.response.body, 'base64'),
      );
      assert.equal(Buffer.from(block).toString('hex'), file.keyBlock);
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

  it('docs/protocol.md §5.10 is the tls13-psk example, with its key block', async () => {
    const doc = readFileSync(new URL('../protocol.md', APPENDIX_DIR), 'utf8');
    const shown = doc.slice(doc.indexOf(SECTION_START) + SECTION_START.length + 1, doc.indexOf(SECTION_END) - 1);
    const file = JSON.parse(readFileSync(new URL('tls13-psk.json', APPENDIX_DIR), 'utf8')) as ExampleFile;
    assert.equal(shown, await workedExample(file));
  });
});
