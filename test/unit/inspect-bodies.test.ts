/**
 * `atls inspect` decodes every body the protocol has, without keys: a first
 * flight, a later flight with a piggy-backed protected message (the
 * atls-flight-length split given, read from a saved HTTP message, or found
 * where the records end), a protected message alone (its header; the
 * ciphertext opaque) and the CoAP payloads of each ATLS Content-Format; text
 * and JSON. The bodies come from a real handshake between two sessions.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { AtlsClientSession, AtlsServerSession, createDevPki } from '../../src/index.js';
import { concatBytes } from '../../src/bytes.js';
import { AtlsError } from '../../src/errors.js';
import { runInspect, type InspectArgs } from '../../src/cli/inspect.js';

async function inspect(input: Uint8Array, args: Omit<InspectArgs, 'file'> = {}): Promise<string> {
  let out = '';
  await runInspect({ ...args, file: '-' }, { stdin: Readable.from([Buffer.from(input)]), stdout: { write: (s: string) => (out += s) } });
  return out;
}

describe('atls inspect: every ATLS body', () => {
  let first: Uint8Array;
  let second: Uint8Array; // the client's final flight
  let message: Uint8Array; // a protected message with sequence number 0
  let later: Uint8Array; // sequence number 300: two bytes

  before(async () => {
    const { ca, server: s } = await createDevPki();
    const server = new AtlsServerSession({ tls: { cert: s.cert, key: s.key } });
    const client = new AtlsClientSession({ tls: { ca: ca.cert, serverName: 'localhost' } });
    let out = await client.start();
    first = out.flight;
    out = await client.receive((await server.receive(out.flight)).flight);
    second = out.flight;
    message = client.protect(new TextEncoder().encode('hello'));
    for (let i = 1; i < 300; i++) client.protect(new Uint8Array(1));
    later = client.protect(new TextEncoder().encode('later'));
  });

  it('a first flight prints as before', async () => {
    assert.match(await inspect(first), /client_hello/);
    assert.ok((JSON.parse(await inspect(first, { json: true })) as { clientHello?: unknown }).clientHello);
  });

  it('a later flight with a piggy-backed protected message: split given, or found where the records end', async () => {
    const body = concatBytes([second, message]);
    for (const args of [{ flightLength: second.length }, {}]) {
      const json = JSON.parse(await inspect(body, { ...args, json: true })) as {
        kind: string;
        flight: { length: number; records: unknown[] };
        protected: { sequenceNumber: string; headerLength: number; ciphertextAndTagLength: number };
      };
      assert.equal(json.kind, 'flight+protected');
      assert.equal(json.flight.length, second.length);
      assert.ok(json.flight.records.length >= 1);
      assert.equal(json.protected.sequenceNumber, '0');
      assert.equal(json.protected.headerLength, 2);
      assert.equal(json.protected.ciphertextAndTagLength, message.length - 2);
    }
    const text = await inspect(body, { flightLength: second.length });
    assert.match(text, /^flight\+protected \(--flight-length \d+\)/);
    assert.match(text, /protected message: \d+ B\n {2}header: version 1, sequence number 0 \(1 byte\), 2 B\n {2}ciphertext and tag: \d+ B \(opaque/);
    await assert.rejects(inspect(body, { flightLength: body.length + 1 }), (e: unknown) => e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE');
  });

  it('a saved HTTP request or response: Content-Type and atls-flight-length from its head', async () => {
    const head = (first: string, type: string, split?: number): Uint8Array =>
      new TextEncoder().encode(`${first}\r\ncontent-type: ${type}\r\n${split !== undefined ? `atls-flight-length: ${split}\r\n` : ''}\r\n`);
    const request = concatBytes([head('POST /.well-known/atls HTTP/1.1', 'application/atls+octet-stream', second.length), second, message]);
    const r = JSON.parse(await inspect(request, { json: true })) as { kind: string; source: string };
    assert.equal(r.kind, 'flight+protected');
    assert.match(r.source, /HTTP message, application\/atls\+octet-stream, atls-flight-length \d+/);
    const response = concatBytes([head('HTTP/1.1 200 OK', 'application/atls-protected'), later]);
    const p = JSON.parse(await inspect(response, { json: true })) as { kind: string; protected: { sequenceNumber: string; sequenceNumberBytes: number } };
    assert.equal(p.kind, 'protected');
    assert.deepEqual([p.protected.sequenceNumber, p.protected.sequenceNumberBytes], ['300', 2]);
  });

  it('a protected message alone, and the CoAP payload of each ATLS Content-Format', async () => {
    assert.match(await inspect(message), /^protected \(guessed from the bytes\)\nprotected message: \d+ B\n/);
    assert.match(await inspect(message, { contentFormat: 65001 }), /plaintext: one CoAP message/);
    assert.match(await inspect(message, { contentFormat: 65002 }), /plaintext: one Binary HTTP message/);
    const records = JSON.parse(await inspect(first, { contentFormat: 65000, json: true })) as { kind: string; flight: { handshake: Array<{ name: string }> } };
    assert.equal(records.kind, 'flight');
    assert.equal(records.flight.handshake[0]?.name, 'client_hello');
    // A damaged header is refused with the typed error, not a crash.
    await assert.rejects(inspect(Uint8Array.of(0x38, 1, 2, 3), { contentFormat: 65001 }), (e: unknown) => e instanceof AtlsError && e.code === 'MALFORMED_MESSAGE');
  });
});
