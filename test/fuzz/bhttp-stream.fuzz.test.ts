// Fuzzes the streaming Binary HTTP decoder with mutated RFC 9292 examples
// and random messages, each cut into random pieces. Invariants: it never
// fails with anything but a remote AtlsError, and it agrees with the
// whole-message decoder on every input: the same message when it accepts,
// an error when it refuses (the same code, but for TOO_LARGE where a declared
// length is over a bound and also overruns the message). Deterministic per seed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AtlsError } from '../../src/errors.js';
import { toHex } from '../../src/bytes.js';
import {
  decodeRequest,
  decodeRequestStream,
  decodeResponse,
  decodeResponseStream,
  type BhttpLimits,
} from '../../src/bhttp/index.js';
import { prng } from '../helpers/prng.js';
import { collect, fuzzSeeds, mutate, randomSplits, streamOf } from '../helpers/bhttp.js';

/** Iterations per seed; ATLS_FUZZ_ITERATIONS raises it for longer local runs. */
const ITERATIONS = Number(process.env['ATLS_FUZZ_ITERATIONS'] ?? 1000);
const SEEDS = [11];

type Outcome = { ok: unknown } | { code: string };

function whole(decode: () => unknown): Outcome {
  try {
    return { ok: decode() };
  } catch (e) {
    assert.ok(e instanceof AtlsError && e.source === 'remote', `whole-message decoder: ${String(e)}`);
    return { code: e.code };
  }
}

async function streamed(decode: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await decode() };
  } catch (e) {
    assert.ok(e instanceof AtlsError && e.source === 'remote', `stream decoder: ${String(e)}`);
    return { code: e.code };
  }
}

describe('fuzz: streaming Binary HTTP decoder', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${ITERATIONS} mutated messages in random pieces agree with the whole-message decoder`, async () => {
      const rnd = prng(seed);
      const seeds = fuzzSeeds(rnd);
      const limits: BhttpLimits = { maxFields: 32, maxFieldBytes: 4096, maxContent: 4096 };
      let accepted = 0;
      for (let i = 0; i < ITERATIONS; i++) {
        const input = i % 50 === 0 ? rnd.bytes(rnd.int(64)) : mutate(rnd, rnd.pick(seeds));
        const splits = randomSplits(rnd, input.length);
        const label = `seed ${seed} case ${i} (${toHex(input.subarray(0, 64))}...)`;
        const pairs: Array<[Outcome, Promise<Outcome>]> = [
          [
            whole(() => decodeRequest(input, limits)),
            streamed(async () => {
              const r = await decodeRequestStream(streamOf(input, splits), limits);
              const content = await collect(r.content);
              return { method: r.method, scheme: r.scheme, authority: r.authority, path: r.path, headers: r.headers, content, trailers: r.trailers };
            }),
          ],
          [
            whole(() => decodeResponse(input, limits)),
            streamed(async () => {
              const r = await decodeResponseStream(streamOf(input, splits), limits);
              const content = await collect(r.content);
              return { status: r.status, headers: r.headers, content, trailers: r.trailers, informational: r.informational };
            }),
          ],
        ];
        for (const [expected, got] of pairs) {
          const actual = await got;
          if ('ok' in expected) {
            accepted++;
            assert.deepEqual(actual, expected, label);
          } else if ('code' in actual && actual.code !== expected.code) {
            // A declared length over a bound is TOO_LARGE as soon as it is read; the whole-message
            // decoder may first see that it overruns the message (MALFORMED_MESSAGE).
            assert.deepEqual([expected.code, actual.code], ['MALFORMED_MESSAGE', 'TOO_LARGE'], label);
          } else {
            assert.deepEqual(actual, expected, label);
          }
        }
      }
      assert.ok(accepted > ITERATIONS / 20, `too few mutated inputs were valid (${accepted}): the mutations are too coarse`);
    });
  }
});
