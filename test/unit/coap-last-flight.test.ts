/**
 * The CoAP server's kept last flights (src/coap/last-flight.ts): what counts
 * as a copy of the client's final flight, and the bounds (bytes,
 * amplification, count with fair shares, time).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { LastFlights, MAX_KEPT_BYTES } from '../../src/coap/last-flight.js';

/** One DTLS 1.2 record (RFC 6347 §4.1): type, version fe fd, epoch, 48-bit sequence, length, fragment. */
function dtlsRecord(type: number, epoch: number, sequence: number, fragment: Uint8Array): Uint8Array {
  const out = new Uint8Array(13 + fragment.length);
  out.set([type, 0xfe, 0xfd, epoch >> 8, epoch & 0xff, 0, 0, 0, 0, (sequence >> 8) & 0xff, sequence & 0xff, fragment.length >> 8, fragment.length & 0xff]);
  out.set(fragment, 13);
  return out;
}

const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(parts.flatMap((p) => [...p]));
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill);

/** A client final flight: ClientKeyExchange (epoch 0), CCS (epoch 0), Finished (epoch 1, encrypted). */
function finalFlight(firstSequence: number, ciphertextFill: number, keyExchange = bytes(40, 1)): Uint8Array {
  return concat(
    dtlsRecord(22, 0, firstSequence, keyExchange),
    dtlsRecord(20, 0, firstSequence + 1, Uint8Array.of(1)),
    dtlsRecord(22, 1, 0, bytes(40, ciphertextFill)),
  );
}

const last = bytes(120, 9);

describe('LastFlights', () => {
  it('answers a DTLS copy sent under new sequence numbers, with its Finished encrypted again', () => {
    const kept = new LastFlights({ max: 10, ttlMs: 60_000, dtls: true });
    kept.keep('s1', 'a', finalFlight(2, 7), last);
    assert.deepEqual(kept.answer('s1', finalFlight(5, 8)), last);
    assert.equal(kept.answer('s2', finalFlight(5, 8)), undefined, 'another session');
  });

  it('does not answer a flight whose plaintext, record count or lengths differ, nor bytes that are not records', () => {
    const kept = new LastFlights({ max: 10, ttlMs: 60_000, dtls: true });
    kept.keep('s1', 'a', finalFlight(2, 7), last);
    const changed = bytes(40, 1);
    changed[39] = 2;
    assert.equal(kept.answer('s1', finalFlight(2, 7, changed)), undefined, 'a plaintext byte');
    assert.equal(kept.answer('s1', finalFlight(2, 7).subarray(0, 13 + 40)), undefined, 'one record of three');
    assert.equal(kept.answer('s1', concat(finalFlight(2, 7), dtlsRecord(21, 1, 1, bytes(26, 3)))), undefined, 'one more record');
    assert.equal(kept.answer('s1', Uint8Array.of(99, 1, 2)), undefined, 'not records');
    assert.equal(kept.answer('s1', new Uint8Array(0)), undefined, 'empty');
  });

  it('over TLS the copy is the same bytes', () => {
    const kept = new LastFlights({ max: 10, ttlMs: 60_000, dtls: false });
    const flight = Uint8Array.from([23, 3, 3, 0, 4, 1, 2, 3, 4]);
    kept.keep('s1', 'a', flight, Uint8Array.of(23, 3, 3, 0, 1, 0));
    assert.deepEqual(kept.answer('s1', flight), Uint8Array.of(23, 3, 3, 0, 1, 0));
    assert.equal(kept.answer('s1', Uint8Array.from([23, 3, 3, 0, 4, 1, 2, 3, 5])), undefined);
  });

  it(`keeps no flight over ${MAX_KEPT_BYTES} bytes, none over 3 times the client flight (RFC 7252 §11.3), none empty`, () => {
    const kept = new LastFlights({ max: 10, ttlMs: 60_000, dtls: true });
    const flight = finalFlight(2, 7); // 13 * 3 + 81 = 120 bytes
    kept.keep('big', 'a', concat(flight, flight, flight, flight, flight, flight, flight, flight, flight, flight, flight, flight, flight), bytes(MAX_KEPT_BYTES + 1, 1));
    kept.keep('amplifying', 'a', flight, bytes(3 * flight.length + 1, 1));
    kept.keep('empty', 'a', flight, new Uint8Array(0));
    assert.equal(kept.size, 0);
    kept.keep('at-bound', 'a', flight, bytes(3 * flight.length, 1));
    assert.equal(kept.size, 1);
  });

  it('holds at most `max`: a flooding peer displaces its own oldest, not another peer', () => {
    const kept = new LastFlights({ max: 3, ttlMs: 60_000, dtls: true });
    kept.keep('honest', 'b', finalFlight(2, 7), last);
    for (let i = 0; i < 20; i++) kept.keep(`flood-${i}`, 'a', finalFlight(2, 7), last);
    assert.equal(kept.size, 3);
    assert.deepEqual(kept.answer('honest', finalFlight(9, 1)), last);
    assert.deepEqual(kept.answer('flood-19', finalFlight(9, 1)), last);
    assert.equal(kept.answer('flood-0', finalFlight(9, 1)), undefined);
  });

  it('forgets a flight when told (first protected message, session end) and when its time is up', () => {
    let now = 1_000_000;
    const kept = new LastFlights({ max: 10, ttlMs: 30_000, dtls: true, now: () => now });
    kept.keep('s1', 'a', finalFlight(2, 7), last);
    kept.keep('s2', 'a', finalFlight(2, 7), last);
    kept.forget('s1');
    assert.equal(kept.answer('s1', finalFlight(2, 7)), undefined);
    assert.deepEqual(kept.answer('s2', finalFlight(2, 7)), last);
    now += 30_000;
    assert.equal(kept.answer('s2', finalFlight(2, 7)), undefined, 'expired');
    kept.keep('s3', 'a', finalFlight(2, 7), last);
    assert.equal(kept.size, 1, 'expired ones are dropped when another is kept');
  });
});
