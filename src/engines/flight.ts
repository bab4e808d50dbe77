/**
 * Record-level checks an engine makes on a peer flight before its TLS stack
 * sees it, and plaintext alert records an engine can send without keys.
 *
 * A flight carried in an ATLS body (draft §6.1) is a whole number of TLS
 * records. A stack fed a flight that ends mid-record just waits for bytes
 * that will never come, so the engine must notice the truncation itself.
 *
 * @example
 * ```ts
 * const scan = scanFlight(body);
 * if (scan.truncated) throw new AtlsError('TRUNCATED_FLIGHT', 'flight ends inside a record');
 * const reply = plaintextAlert(AlertDescription.decode_error);
 * ```
 * @module
 */

/** TLS record content types (RFC 8446 §5.1, RFC 6520 for heartbeat). */
const MIN_CONTENT_TYPE = 20; // change_cipher_spec
const MAX_CONTENT_TYPE = 24; // heartbeat
const ALERT = 21;
const HEADER = 5;
/** RFC 5246 §6.2.3: TLSCiphertext.length must not exceed 2^14 + 2048. */
const MAX_CIPHERTEXT = 2 ** 14 + 2048;

/** One record header found in a flight. */
export interface RecordSpan {
  type: number;
  /** Offset of the record header in the flight. */
  start: number;
  /** Offset just past the record's fragment. */
  end: number;
}

/** What {@link scanFlight} found. */
export interface FlightScan {
  /** Whole records with plausible headers, in order. */
  records: RecordSpan[];
  /** The flight ends inside a record whose header was plausible. */
  truncated: boolean;
  /**
   * Offset of the first header that is not a TLS record header (bad type,
   * version or length); undefined when every header was plausible. Bytes from
   * here on are left to the stack, which rejects them with its own alert.
   */
  garbageAt: number | undefined;
}

/**
 * Splits a flight into record spans without copying. Never throws: a flight
 * of any shape yields a scan.
 */
export function scanFlight(flight: Uint8Array): FlightScan {
  const records: RecordSpan[] = [];
  let pos = 0;
  while (pos < flight.length) {
    if (flight.length - pos < HEADER) return { records, truncated: true, garbageAt: undefined };
    const type = flight[pos]!;
    const major = flight[pos + 1]!;
    const length = (flight[pos + 3]! << 8) | flight[pos + 4]!;
    // RFC 8446 §5.1 / RFC 5246 §6.2.1: known content type, legacy version 3.x.
    if (type < MIN_CONTENT_TYPE || type > MAX_CONTENT_TYPE || major !== 3 || length > MAX_CIPHERTEXT) {
      return { records, truncated: false, garbageAt: pos };
    }
    const end = pos + HEADER + length;
    if (end > flight.length) return { records, truncated: true, garbageAt: undefined };
    records.push({ type, start: pos, end });
    pos = end;
  }
  return { records, truncated: false, garbageAt: undefined };
}

/** An alert read from an unprotected alert record. */
export interface PlainAlert {
  level: number;
  description: number;
  /** The record's span in the flight. */
  record: RecordSpan;
}

/**
 * The unprotected alert records in a flight. A protected record always
 * carries at least an AEAD tag (16 bytes; RFC 8446 §5.2, RFC 5246 §6.2.3.3),
 * so a two-byte alert record is readable without keys in any state.
 */
export function plaintextAlerts(flight: Uint8Array, records: readonly RecordSpan[] = scanFlight(flight).records): PlainAlert[] {
  const alerts: PlainAlert[] = [];
  for (const r of records) {
    if (r.type === ALERT && r.end - r.start === HEADER + 2) {
      alerts.push({ level: flight[r.start + HEADER]!, description: flight[r.start + HEADER + 1]!, record: r });
    }
  }
  return alerts;
}

/**
 * An unprotected alert record: `15 03 03 00 02 <level> <description>`
 * (RFC 8446 §5.1, §6; RFC 5246 §7.2). An engine sends one when its stack
 * cannot send the alert itself, so that a failure never reaches the peer as
 * silence.
 */
export function plaintextAlert(description: number, level = 2): Uint8Array {
  return Uint8Array.of(ALERT, 3, 3, 0, 2, level, description);
}
