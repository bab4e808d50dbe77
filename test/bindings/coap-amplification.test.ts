/**
 * Amplification over CoAP (RFC 9175 §2.4 item 3): a ClientHello from an
 * address the server has not verified gets a 4.01 with an Echo value,
 * smaller than the request, instead of the certificate flight; only the
 * same request with a good Echo value from the same address gets the
 * flight. Measured on real UDP sockets: the bytes answered per byte
 * received to an unverified address, with the check and without it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { testPki, type TestPki } from '../helpers/pki.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { AtlsCoapServer, echoCoapHandler } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { CoapCode, MessageType, OptionNumber } from '../../src/coap/constants.js';
import { decodeMessage, encodeMessage, getOption, pathOptions, uintOption, type CoapMessage, type CoapOption } from '../../src/coap/packet.js';

let pki: TestPki;
const tls = () => ({ ca: pki.ca.cert, serverName: 'localhost' });
const sockets: Socket[] = [];

before(async () => {
  pki = await testPki();
});

after(() => {
  for (const s of sockets) s.close();
});

async function socketAt(address: string): Promise<Socket> {
  const s = createSocket('udp4');
  sockets.push(s);
  await new Promise<void>((resolve) => s.bind(0, address, () => resolve()));
  return s;
}

/** Sends one CON ClientHello datagram from `from`; the bytes sent, the bytes of the answer and the answer. */
async function hello(from: Socket, port: number, flight: Uint8Array, extra: CoapOption[] = []): Promise<{ sent: number; received: number; answer: CoapMessage }> {
  const datagram = encodeMessage({
    type: MessageType.CON,
    code: CoapCode.POST,
    messageId: randomBytes(2).readUInt16BE(),
    token: new Uint8Array(randomBytes(4)),
    options: [...pathOptions('/.well-known/atls'), uintOption(OptionNumber.ContentFormat, 65000), ...extra],
    payload: flight,
  });
  const answer = new Promise<Buffer>((resolve) => from.once('message', (m: Buffer) => resolve(m)));
  from.send(datagram, port, '127.0.0.1');
  const bytes = await answer;
  return { sent: datagram.length, received: bytes.length, answer: decodeMessage(new Uint8Array(bytes)) };
}

/** A ClientHello as small as an attacker would make it (one key share). */
const clientHello = async (): Promise<Uint8Array> => (await new AtlsClientSession({ tls: { ...tls(), groups: 'X25519' } }).start()).flight;
/** An RSA 2048 certificate: a first flight of more than one block, as most deployments have. */
const serverTls = () => ({ cert: pki.serverRsa.cert, key: pki.serverRsa.key });

describe('CoAP address verification (Echo)', () => {
  it('an unverified address gets 4.01 + Echo within 3x the request; the flight only with the Echo, from the same address', async (t) => {
    const server = await AtlsCoapServer.listen({ tls: serverTls(), handler: echoCoapHandler, host: '127.0.0.1' });
    const unchecked = await AtlsCoapServer.listen({ tls: serverTls(), handler: echoCoapHandler, host: '127.0.0.1', addressCheck: false });
    try {
      const victim = await socketAt('127.0.0.1');
      const first = await hello(victim, server.port, await clientHello());
      assert.equal(first.answer.code, CoapCode.Unauthorized);
      const echo = getOption(first.answer, OptionNumber.Echo)?.value;
      assert.ok(echo && echo.length > 0 && echo.length <= 40);
      assert.ok(first.received <= 3 * first.sent, `${first.received} bytes answered to ${first.sent}`);

      // The same value from another address proves nothing.
      const other = await socketAt('127.0.0.2');
      const borrowed = await hello(other, server.port, await clientHello(), [{ number: OptionNumber.Echo, value: echo }]);
      assert.equal(borrowed.answer.code, CoapCode.Unauthorized);
      // A forged value neither.
      const forged = await hello(victim, server.port, await clientHello(), [{ number: OptionNumber.Echo, value: new Uint8Array(16) }]);
      assert.equal(forged.answer.code, CoapCode.Unauthorized);

      const verified = await hello(victim, server.port, await clientHello(), [{ number: OptionNumber.Echo, value: echo }]);
      assert.equal(verified.answer.code, CoapCode.Created);

      const open = await hello(await socketAt('127.0.0.1'), unchecked.port, await clientHello());
      assert.equal(open.answer.code, CoapCode.Created);
      const factor = (r: { sent: number; received: number }): string => (r.received / r.sent).toFixed(2);
      t.diagnostic(
        `ClientHello datagram ${first.sent} B: unverified address gets ${first.received} B (factor ${factor(first)}); ` +
          `without the check it would get ${open.received} B (factor ${factor(open)}); a verified one gets ${verified.received} B`,
      );
      assert.ok(open.received > 3 * open.sent, 'without the check the first answer amplifies: the check is needed');
    } finally {
      await server.close();
      await unchecked.close();
    }
  });

  it('the client repeats with the Echo value and keeps it: one 4.01 for several handshakes', async () => {
    const server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, host: '127.0.0.1' });
    let challenges = 0;
    const client = new AtlsCoapClient({
      url: server.url,
      tls: tls(),
      onExchange: ({ response }) => void (response.code === CoapCode.Unauthorized && challenges++),
    });
    try {
      for (const word of ['one', 'two']) {
        const res = await client.request({ method: 'POST', pathname: '/echo', payload: word });
        assert.equal(new TextDecoder().decode(res.payload), word);
        await client.close(); // the next request makes a new session
      }
      assert.equal(challenges, 1);
    } finally {
      await client.close();
      await server.close();
    }
  });
});
