// Fuzzes the keyless record parsers with mutated real flights. One invariant
// (as in h11's fuzzing): any input either parses or raises an AtlsError,
// nothing else, and every call returns in bounded time. Deterministic: a
// failure names its seed and iteration so it can be replayed.
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError } from '../../src/errors.js';
import { concatBytes, fromHex, toHex } from '../../src/bytes.js';
import {
  inspectFlight,
  parseClientHello,
  parseServerHello,
  splitRecords,
  wholeRecordsLength,
} from '../../src/records.js';
import { formatInspection } from '../../src/inspect.js';
import { prng, type Prng } from '../helpers/prng.js';
import { captureHandshake } from '../helpers/tls-capture.js';
import { dtlsHandshakeFragment, dtlsRecord, tlsRecord } from '../helpers/tls-builders.js';
import { DTLS_CLIENT_HELLO_FRAGMENTS_HEX, DTLS_CLIENT_HELLO_HEX } from '../vectors/records-dtls.js';

/** Iterations per seed; ATLS_FUZZ_ITERATIONS raises it for longer local runs. */
const ITERATIONS = Number(process.env['ATLS_FUZZ_ITERATIONS'] ?? 1500);
const SEEDS = [1, 2, 3];
/** Bound on one input's processing (all parsers together); generous for a loaded CI machine. */
const MAX_MS_PER_INPUT = 250;
/** CPU time of this process: the bound is on work done, which a busy machine does not stretch as it does wall time. */
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

let corpus: Uint8Array[] = [];
/** Plaintext handshake messages (with header) to mutate below the record layer. */
let messages: { msg: Uint8Array; dtls: boolean }[] = [];

before(async () => {
  const key = Buffer.alloc(32, 3);
  const runs = await Promise.all([
    captureHandshake({ client: { servername: 'fuzz.example', ALPNProtocols: ['h2', 'http/1.1'] }, clientData: 'x' }),
    captureHandshake({ client: { servername: 'fuzz.example', maxVersion: 'TLSv1.2' } }),
    captureHandshake({ client: { ecdhCurve: 'X25519:P-256' }, server: { ecdhCurve: 'P-256' } }),
    captureHandshake({
      client: { pskCallback: () => ({ psk: key, identity: 'id' }), ciphers: 'TLS_AES_128_GCM_SHA256', checkServerIdentity: () => undefined },
      server: { pskCallback: () => key, ciphers: 'TLS_AES_128_GCM_SHA256' } as never,
    }),
  ]);
  corpus = runs.flatMap((r) => r.flights.map((f) => f.bytes));
  const dtls = [fromHex(DTLS_CLIENT_HELLO_HEX), concatBytes(DTLS_CLIENT_HELLO_FRAGMENTS_HEX.map(fromHex))];
  corpus.push(...dtls);
  corpus.push(dtlsRecord(22, dtlsHandshakeFragment(3, Uint8Array.of(0xfe, 0xff, 2, 1, 2), 0)));
  for (const body of corpus) {
    const isDtls = body[1] === 0xfe;
    for (const r of splitRecords(body, { dtls: isDtls })) {
      if (r.contentType === 22 && (r.fragment[0] === 1 || r.fragment[0] === 2 || r.fragment[0] === 11)) {
        messages.push({ msg: r.fragment, dtls: isDtls });
      }
    }
  }
  messages = messages.filter((m) => m.msg.length > 4);
});

function mutate(rnd: Prng, input: Uint8Array): Uint8Array {
  const b = new Uint8Array(input);
  const pos = (): number => rnd.int(Math.max(1, b.length));
  switch (rnd.int(10)) {
    case 0: {
      for (let i = rnd.int(4) + 1; i > 0 && b.length > 0; i--) b[pos()]! ^= 1 << rnd.int(8);
      return b;
    }
    case 1: {
      if (b.length > 0) b[pos()] = rnd.pick([0, 1, 0x7f, 0x80, 0xfe, 0xff, rnd.int(256)]);
      return b;
    }
    case 2:
      return b.subarray(0, rnd.int(b.length + 1));
    case 3:
      return concatBytes([b, rnd.bytes(rnd.int(40))]);
    case 4: {
      const at = pos();
      return concatBytes([b.subarray(0, at), rnd.bytes(rnd.int(16) + 1), b.subarray(at)]);
    }
    case 5: {
      const at = pos();
      return concatBytes([b.subarray(0, at), b.subarray(Math.min(b.length, at + rnd.int(32) + 1))]);
    }
    case 6: {
      const at = pos();
      const piece = b.subarray(at, at + rnd.int(64) + 1);
      return concatBytes([b.subarray(0, at), piece, piece, b.subarray(at + piece.length)]);
    }
    case 7: {
      // A 16- or 24-bit length-like field set to a boundary value.
      const at = pos();
      const v = rnd.pick([0, 1, 0xff, 0x100, 0x3fff, 0x4000, 0x4100, 0x4101, 0xffff, b.length, b.length - at]);
      const width = rnd.int(2) + 2;
      for (let i = 0; i < width && at + i < b.length; i++) b[at + i] = (v >>> (8 * (width - 1 - i))) & 0xff;
      return b;
    }
    case 8:
      return concatBytes([b.subarray(0, pos()), rnd.pick(corpus).subarray(rnd.int(64))]);
    default: {
      // Below the record layer: mutate a plaintext handshake message, then re-frame it
      // so the record header stays valid and the hello parsers see the damage.
      const m = rnd.pick(messages);
      const inner = mutate(rnd, m.msg).subarray(0, 2 ** 14);
      if (inner.length === 0) return inner;
      return m.dtls ? dtlsRecord(22, inner, 0, BigInt(rnd.int(4))) : tlsRecord(22, 0x0303, inner);
    }
  }
}

/** Runs `f`; anything thrown must be an AtlsError. */
function mustBeAtls(f: () => unknown, what: string, input: Uint8Array, where: string): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof AtlsError)) {
      assert.fail(`${what} threw ${String(e)} (${where}) on ${toHex(input)}`);
    }
    assert.equal(e.source, 'remote', `${what}: ${e.code} ${e.message} (${where})`);
  }
}

function exercise(input: Uint8Array, where: string): void {
  for (const dtls of [false, true]) {
    mustBeAtls(() => splitRecords(input, { dtls }), 'splitRecords', input, where);
    mustBeAtls(() => wholeRecordsLength(input, { dtls }), 'wholeRecordsLength', input, where);
  }
  mustBeAtls(
    () => {
      const s = inspectFlight(input);
      JSON.stringify(s);
      formatInspection(s);
    },
    'inspectFlight',
    input,
    where,
  );
  mustBeAtls(() => parseClientHello(input), 'parseClientHello', input, where);
  mustBeAtls(() => parseServerHello(input), 'parseServerHello', input, where);
}

describe('records fuzz', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${ITERATIONS} mutated flights parse or raise AtlsError, in bounded time`, () => {
      const rnd = prng(seed);
      let slowest = 0;
      let parsed = 0;
      for (let i = 0; i < ITERATIONS; i++) {
        let input = rnd.pick(corpus);
        for (let k = rnd.int(3) + 1; k > 0; k--) input = mutate(rnd, input);
        const t0 = cpuMs();
        exercise(input, `seed ${seed} iteration ${i}`);
        const dt = cpuMs() - t0;
        slowest = Math.max(slowest, dt);
        assert.ok(dt < MAX_MS_PER_INPUT, `seed ${seed} iteration ${i} took ${dt.toFixed(1)} ms`);
        try {
          inspectFlight(input);
          parsed++;
        } catch {
          // counted only
        }
      }
      // The mutations must not all die at the record layer: deeper parsers are reached.
      assert.ok(parsed > ITERATIONS / 10, `only ${parsed} of ${ITERATIONS} inputs had a valid record layer`);
    });
  }

  it('large adversarial bodies stay bounded', () => {
    const cases = [
      // 4096 records of one byte each (the default record limit).
      concatBytes(Array.from({ length: 4096 }, () => tlsRecord(23, 0x0303, Uint8Array.of(0)))),
      // A ClientHello claiming 16 MiB in many tiny records.
      concatBytes([
        tlsRecord(22, 0x0303, Uint8Array.of(1, 0xff, 0xff, 0xff)),
        ...Array.from({ length: 4000 }, () => tlsRecord(22, 0x0303, new Uint8Array(1))),
      ]),
      // Many DTLS fragments of one message, none covering offset 0.
      dtlsRecord(
        22,
        concatBytes(Array.from({ length: 1300 }, (_, i) => Uint8Array.of(1, 0, 0x40, 0, 0, 0, 0, 0, i >> 8, i & 0xff, 0, 1, 9))),
      ),
      // 1025 empty handshake messages in full-size records.
      tlsRecord(22, 0x0303, new Uint8Array(4100)),
    ];
    for (const body of cases) {
      const t0 = cpuMs();
      exercise(body, 'adversarial');
      assert.ok(cpuMs() - t0 < 2000);
    }
  });
});
