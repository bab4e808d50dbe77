/**
 * The server's last handshake flight of an exported-mode session, kept to
 * answer the client's final flight when it comes again (RFC 6347 §4.2.4:
 * the server retransmits its last flight when the client's final flight
 * arrives again, which is how DTLS learns that the last flight was lost).
 * In mode `exported` the engine is released as the handshake completes, so
 * it cannot do that itself; mode `records` keeps its engine, which does.
 *
 * A copy of the client's final flight is recognised by its fingerprint:
 * every record's type, version and epoch, and the bytes of the plaintext
 * (epoch 0) fragments. DTLS sends a copy under new record sequence numbers,
 * so those, and the ciphertext of encrypted (epoch > 0) fragments, which
 * changes with them, are left out (their lengths are kept). Answering a copy
 * changes nothing: the answer is the bytes already sent, and whoever could
 * make a matching flight saw or could make them (no secret in them: a DTLS
 * 1.2 last flight is a ticket only the server can open, a
 * ChangeCipherSpec and an encrypted Finished).
 *
 * Bounded: a flight is kept only when it is at most {@link MAX_KEPT_BYTES}
 * and at most 3 times the client flight it answers (RFC 7252 §11.3: a copy
 * sent from a spoofed address amplifies no more than that); for
 * `handshakeTtlMs`; at most `maxHalfOpen` of them with per-peer fair shares
 * (the heaviest peer's oldest gives way, src/store/fair-shares.ts); and
 * forgotten as soon as the session's first protected message proves the
 * client has it, or the session ends.
 *
 * @example
 * ```ts
 * const last = new LastFlights({ max: 1000, ttlMs: 30_000, dtls: true });
 * last.keep(id, peerGroup(address), clientFinalFlight, serverLastFlight);
 * const again = last.answer(id, body); // the same last flight, or undefined
 * ```
 * @module
 */
import { createHash } from 'node:crypto';
import { AtlsError } from '../errors.js';
import { splitRecords } from '../records.js';
import { FairShareLedger } from '../store/fair-shares.js';

/** Largest last flight kept (one datagram's worth: a DTLS 1.2 CCS + Finished with a ticket is about 300 bytes). */
export const MAX_KEPT_BYTES = 1500;

/** RFC 7252 §11.3: an answer to unverified input may be at most this many times its size. */
const AMPLIFICATION_FACTOR = 3;

interface KeptFlight {
  /** Fingerprint of the client flight it answered. */
  fingerprint: string;
  flight: Uint8Array;
}

/** Options of {@link LastFlights}. */
export interface LastFlightsOptions {
  /** Flights kept at most (the server's `maxHalfOpen`). */
  max: number;
  /** How long one is kept (the server's `handshakeTtlMs`). */
  ttlMs: number;
  /** The sessions run DTLS (records with epochs and sequence numbers). */
  dtls: boolean;
  /** Clock (tests). */
  now?: () => number;
}

export class LastFlights {
  private readonly kept: FairShareLedger<KeptFlight>;
  private readonly dtls: boolean;

  constructor(options: LastFlightsOptions) {
    this.kept = new FairShareLedger<KeptFlight>(options.max, options.ttlMs, options.now);
    this.dtls = options.dtls;
  }

  /** Flights kept now (expired ones included until they give way). */
  get size(): number {
    return this.kept.size;
  }

  /**
   * Keeps `serverFlight`, the answer to `clientFlight` that completed the
   * handshake of session `id` started by `peer` (its fairness group), when
   * it is within the bounds; at the cap the heaviest peer's oldest gives way.
   */
  keep(id: string, peer: string, clientFlight: Uint8Array, serverFlight: Uint8Array): void {
    this.kept.expired(); // dropped: their time is up
    if (serverFlight.length === 0 || serverFlight.length > MAX_KEPT_BYTES) return;
    if (serverFlight.length > AMPLIFICATION_FACTOR * clientFlight.length) return;
    const fingerprint = this.fingerprint(clientFlight);
    if (fingerprint === undefined) return;
    this.kept.admit(id, { fingerprint, flight: serverFlight.slice() }, peer);
  }

  /** The last flight of session `id` when `clientFlight` is a copy of the flight it answered. */
  answer(id: string, clientFlight: Uint8Array): Uint8Array | undefined {
    const kept = this.kept.get(id);
    if (!kept) return undefined;
    return this.fingerprint(clientFlight) === kept.fingerprint ? kept.flight : undefined;
  }

  /** The client has the last flight (its first protected message came), or the session ended. */
  forget(id: string): void {
    this.kept.delete(id);
  }

  clear(): void {
    this.kept.clear();
  }

  /** What every copy of one flight has in common; undefined for bytes that are not whole records. */
  private fingerprint(flight: Uint8Array): string | undefined {
    let records;
    try {
      records = splitRecords(flight, { dtls: this.dtls });
    } catch (e) {
      if (e instanceof AtlsError) return undefined;
      throw e;
    }
    if (records.length === 0) return undefined;
    const hash = createHash('sha256');
    const head = new Uint8Array(7);
    const view = new DataView(head.buffer);
    for (const r of records) {
      const epoch = r.epoch ?? 0;
      head[0] = r.contentType;
      view.setUint16(1, r.version);
      view.setUint16(3, epoch);
      view.setUint16(5, r.length);
      hash.update(head);
      // A DTLS copy encrypts under new sequence numbers: only plaintext fragments are the same bytes.
      if (!this.dtls || epoch === 0) hash.update(r.fragment);
    }
    return hash.digest('base64');
  }
}
