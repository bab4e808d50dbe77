// Fuzzes a running CoAP ATLS server over real UDP with mutated requests: ClientHellos, flights and
// protected bodies to a live session's resource, random Block1 / Block2 / Size1 / Echo values,
// unknown options, odd codes and types, flipped bytes, cut datagrams. The invariants: no answer is
// a 5.xx other than 5.03 (peer input is never a server error), no exception escapes, and the honest
// client's session is untouched (same resource, its next request answered). Deterministic datagrams:
// a failure names its seed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { testPki, type TestPki } from '../helpers/pki.js';
import { prng, type Prng } from '../helpers/prng.js';
import { AtlsCoapServer, echoCoapHandler } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { AtlsClientSession } from '../../src/session/session.js';
import { decodeMessage, encodeMessage, stringOption, uintOption, type CoapOption } from '../../src/coap/packet.js';
import { OptionNumber } from '../../src/coap/constants.js';

/** Datagrams per seed; ATLS_FUZZ_ITERATIONS raises it for longer local runs. */
const DATAGRAMS = Number(process.env['ATLS_FUZZ_ITERATIONS'] ?? 1500);
const SEEDS = [1, 2];
/** Options the server knows (Uri-Path, Content-Format, Block1/2, Size1/2, Echo, ...), picked more often than random numbers. */
const KNOWN_OPTIONS = [1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 35, 39, 60, 252, 258, 292];

function datagram(r: Prng, messageId: number, hello: Uint8Array, session: string[]): Uint8Array | undefined {
  const toSession = r.int(2) === 0;
  const options: CoapOption[] = (toSession ? session : ['.well-known', 'atls']).map((s) => stringOption(OptionNumber.UriPath, s));
  options.push(uintOption(OptionNumber.ContentFormat, r.pick([65000, 65001, 65002, 65000, 42])));
  if (r.int(4) === 0) options.push(uintOption(OptionNumber.Block1, r.int(2) ? r.int(64) * 16 + r.int(16) : r.int(2 ** 24)));
  if (r.int(4) === 0) options.push(uintOption(OptionNumber.Block2, r.int(2) ? r.int(64) * 16 + r.int(16) : r.int(2 ** 24)));
  if (r.int(6) === 0) options.push(uintOption(OptionNumber.Size1, r.int(2 ** 32)));
  if (r.int(6) === 0) options.push({ number: OptionNumber.Echo, value: r.bytes(r.int(48)) });
  for (let k = r.int(8) === 0 ? r.int(3) : 0; k > 0; k--) {
    options.push({ number: r.int(2) ? r.pick(KNOWN_OPTIONS) : r.int(65000), value: r.bytes(r.int(2) ? r.int(8) : r.int(300)) });
  }
  const payload = !toSession && r.int(2) === 0 ? hello : r.bytes(r.int(2) ? r.int(100) : r.int(1200));
  let bytes: Uint8Array;
  try {
    // Mostly POST; also GET, PUT, DELETE, FETCH and any code at all; any of the four types.
    const code = r.pick([2, 2, 2, 1, 3, 4, 5, r.int(256)]);
    bytes = encodeMessage({ type: r.int(4) as 0 | 1 | 2 | 3, code, messageId, token: r.bytes(r.int(9)), options, payload });
  } catch {
    return undefined; // an option the encoder refuses (e.g. out of order after sorting): not a datagram
  }
  if (r.int(4) === 0) bytes[r.int(bytes.length)] = r.int(256);
  if (r.int(6) === 0) bytes = bytes.subarray(0, r.int(bytes.length));
  return bytes;
}

describe('CoAP server under mutated datagrams', () => {
  let pki: TestPki;
  let server: AtlsCoapServer;
  const escaped: unknown[] = [];
  const onUncaught = (e: unknown): void => void escaped.push(e);

  before(async () => {
    pki = await testPki();
    server = await AtlsCoapServer.listen({ tls: { cert: pki.server.cert, key: pki.server.key }, handler: echoCoapHandler, addressCheck: false });
    process.on('uncaughtException', onUncaught);
  });
  after(async () => {
    process.off('uncaughtException', onUncaught);
    await server.close();
  });

  for (const seed of SEEDS) {
    it(`seed ${seed}: no 5.xx but 5.03, nothing escapes, the honest session goes on`, async () => {
      const client = new AtlsCoapClient({ url: server.url, tls: { ca: pki.ca.cert, serverName: 'localhost' } });
      const socket = dgram.createSocket('udp4');
      try {
        const honest = async (): Promise<string> =>
          new TextDecoder().decode((await client.request({ method: 'POST', pathname: '/x', payload: 'honest' })).payload);
        assert.equal(await honest(), 'honest');
        const resource = client.resource!;
        const hello = (await new AtlsClientSession({ tls: { ca: pki.ca.cert, serverName: 'localhost' } }).start()).flight;
        const serverErrors: string[] = [];
        let answers = 0;
        socket.on('message', (m: Buffer) => {
          answers++;
          let code: number;
          try {
            code = decodeMessage(m).code;
          } catch {
            serverErrors.push('an undecodable answer');
            return;
          }
          if (code >> 5 === 5 && (code & 31) !== 3) serverErrors.push(`${code >> 5}.${String(code & 31).padStart(2, '0')}`);
        });
        await new Promise<void>((r) => socket.bind(0, '127.0.0.1', () => r()));
        const r = prng(seed);
        const session = resource.split('/').filter(Boolean);
        for (let i = 0; i < DATAGRAMS; i++) {
          const bytes = datagram(r, i & 0xffff, hello, session);
          if (bytes) socket.send(bytes, server.port, '127.0.0.1');
          if (i % 50 === 49) await new Promise((done) => setTimeout(done, 5)); // a pace the receive buffer holds
        }
        await new Promise((done) => setTimeout(done, 500));
        assert.ok(answers > DATAGRAMS / 10, `only ${answers} answers`);
        assert.deepEqual(serverErrors, [], `seed ${seed}`);
        assert.deepEqual(escaped, []);
        assert.equal(await honest(), 'honest');
        assert.equal(client.resource, resource, 'the same session');
      } finally {
        socket.close();
        await client.close();
      }
    });
  }
});
