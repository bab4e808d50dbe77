/**
 * ClientHello recording (RFC 8446 §8.2): the randoms of the ClientHellos
 * that started a handshake within the last window. A replayed ClientHello
 * (captured once, sent again and again: it costs the sender nothing) is then
 * refused for the price of a lookup instead of a handshake step, which is
 * what keeps a server answering honest clients under a replay flood. An
 * honest client never sends the same random twice for two handshakes (a
 * second ClientHello after HelloRetryRequest goes to its own session).
 * DTLS ClientHellos are not recorded: the cookie exchange and DTLS
 * retransmission repeat them by design (RFC 6347 §4.2.1).
 *
 * @example
 * ```ts
 * const record = new ClientHelloRecord(30_000);
 * if (!record.fresh(flight)) throw new AtlsError('REPLAYED', 'replayed ClientHello', { source: 'remote' });
 * ```
 * @module
 */

/** Two generations of this many randoms each at most: memory stays bounded whatever the flood. */
const DEFAULT_MAX_ENTRIES = 50_000;

/** Handshake type(1), length(3), legacy_version(2), random(32): the bytes of a ClientHello up to its random's end. */
const RANDOM_END = 38;

/**
 * The 32-byte random of a TLS ClientHello starting `flight`, or undefined (not one, or DTLS). The
 * handshake message may be fragmented over several records (RFC 8446 §5.1): the random is read from
 * the handshake bytes, not from a fixed offset of the first record, so that a replay cut into other
 * records is the same replay.
 */
function clientHelloRandom(flight: Uint8Array): string | undefined {
  const message = Buffer.allocUnsafe(RANDOM_END);
  let have = 0;
  // Records: type 22 (handshake), version 3.x, length(2).
  for (let at = 0; have < RANDOM_END; ) {
    if (at + 5 > flight.length || flight[at] !== 22 || flight[at + 1] !== 3) return undefined;
    const length = (flight[at + 3]! << 8) | flight[at + 4]!;
    const start = at + 5;
    const end = Math.min(start + length, flight.length, start + RANDOM_END - have);
    message.set(flight.subarray(start, end), have);
    have += end - start;
    at = start + length;
  }
  if (message[0] !== 1) return undefined; // client_hello
  return message.toString('latin1', 6, RANDOM_END);
}

export class ClientHelloRecord {
  private current = new Set<string>();
  private previous = new Set<string>();
  private rotatedAt: number;

  constructor(
    private readonly windowMs: number,
    private readonly maxEntries = DEFAULT_MAX_ENTRIES,
    private readonly now: () => number = Date.now,
  ) {
    this.rotatedAt = now();
  }

  /** True unless `flight` is a TLS ClientHello whose random was seen within the window (then false). */
  fresh(flight: Uint8Array): boolean {
    const random = clientHelloRandom(flight);
    if (random === undefined) return true;
    if (this.current.has(random) || this.previous.has(random)) return false;
    const now = this.now();
    if (now - this.rotatedAt >= this.windowMs || this.current.size >= this.maxEntries) {
      this.previous = this.current;
      this.current = new Set();
      this.rotatedAt = now;
    }
    this.current.add(random);
    return true;
  }

  /**
   * Forgets `flight`'s random: the server refused it before any processing
   * (LIMIT_REACHED at admission), so no handshake started and the client's
   * resend of the same ClientHello after Retry-After / Max-Age is not a replay.
   */
  forget(flight: Uint8Array): void {
    const random = clientHelloRandom(flight);
    if (random === undefined) return;
    this.current.delete(random);
    this.previous.delete(random);
  }
}
