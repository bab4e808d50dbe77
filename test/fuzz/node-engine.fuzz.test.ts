/**
 * Fuzzes every engine with mutated live flights: whatever a peer sends, a
 * step either resolves or rejects with an AtlsError, and a rejection is
 * sticky. Deterministic (seeded); a failure prints its seed and iteration.
 * A client-only engine meets the preferred full engine as its server and
 * gets every mutation: the server flight and the post-handshake flight.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { availableEngines, clientEngines, clientLacks } from '../../src/engines/index.js';
import type { EngineConnection, TlsEngine } from '../../src/engines/types.js';
import { AtlsError } from '../../src/errors.js';
import { prng, type Prng } from '../helpers/prng.js';
import { testPki, type TestPki } from '../helpers/pki.js';

const SEED = Number(process.env.ATLS_FUZZ_SEED ?? 20261127);
const ITERATIONS = Number(process.env.ATLS_FUZZ_ITERATIONS ?? 60);

/** One of a few structure-blind mutations. */
function mutate(rnd: Prng, flight: Uint8Array): Uint8Array {
  const f = Uint8Array.from(flight);
  switch (rnd.int(6)) {
    case 0: // flip a few bytes anywhere (headers included)
      for (let i = 0, n = 1 + rnd.int(4); i < n && f.length; i++) f[rnd.int(f.length)]! ^= 1 << rnd.int(8);
      return f;
    case 1: // cut
      return f.subarray(0, rnd.int(f.length + 1));
    case 2: // random tail
      return Uint8Array.from([...f, ...rnd.bytes(1 + rnd.int(40))]);
    case 3: // duplicate the flight
      return Uint8Array.from([...f, ...f]);
    case 4: // random bytes with a plausible record header
      return Uint8Array.from([rnd.pick([20, 21, 22, 23]), 3, rnd.int(5), 0, 40, ...rnd.bytes(40)]);
    default: // overwrite a length field of the first record
      if (f.length >= 5) {
        f[3] = rnd.int(256);
        f[4] = rnd.int(256);
      }
      return f;
  }
}

/** Feeds `flight` to `conn`; asserts the step resolves or fails with a sticky AtlsError. */
async function feed(conn: EngineConnection, flight: Uint8Array, where: string): Promise<void> {
  try {
    await conn.receive(flight);
  } catch (e) {
    assert.ok(e instanceof AtlsError, `${where}: non-AtlsError ${String(e)}`);
    await assert.rejects(conn.receive(new Uint8Array(0)), (again) => again === e, `${where}: error not sticky`);
  }
}

for (const engine of clientEngines()) {
  const serverEngine = engine.capabilities.server ? engine : availableEngines()[0]!;
  void describe(`fuzz ${engine.name} engine with mutated flights`, () => {
    let pki: TestPki;
    before(async () => {
      pki = await testPki();
    });

    for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
      void it(`${version}: ${ITERATIONS} mutated flights at each handshake position`, { skip: clientLacks(engine, version) }, async () => {
        const rnd = prng(SEED + (version === 'TLSv1.3' ? 1 : 0));
        const open = (e: TlsEngine) => ({
          client: e.createClient({ minVersion: version, maxVersion: version, ca: pki.ca.cert, serverName: 'localhost' }),
          server: serverEngine.createServer({ minVersion: version, maxVersion: version, cert: pki.server.cert, key: pki.server.key }),
        });
        for (let i = 0; i < ITERATIONS; i++) {
          const where = `seed ${SEED} ${version} iteration ${i}`;
          const { client, server } = open(engine);
          const hello = await client.start();
          const position = engine.capabilities.server ? i % 3 : i % 2 === 0 ? 1 : 3;
          if (position === 0) {
            await feed(server, mutate(rnd, hello.flight), `${where} (ClientHello)`);
          } else {
            const reply = await server.receive(hello.flight);
            if (position === 1) {
              await feed(client, mutate(rnd, reply.flight), `${where} (server flight)`);
            } else {
              const finished = await client.receive(reply.flight);
              if (position === 2) {
                await feed(server, mutate(rnd, finished.flight), `${where} (client Finished)`);
              } else {
                const tickets = await server.receive(finished.flight);
                await feed(client, mutate(rnd, tickets.flight), `${where} (tickets)`);
              }
            }
          }
          client.destroy();
          server.destroy();
        }
      });
    }
  });
}
