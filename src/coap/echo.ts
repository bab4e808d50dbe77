/**
 * Address verification with the CoAP Echo option (RFC 9175 §2.4 item 3):
 * the first answer to a ClientHello carries the server's certificate flight,
 * several times the request's size, so a ClientHello with a spoofed source
 * address would reflect it, amplified, at a victim. Until the client shows
 * that it receives at its address, the server answers a small request with
 * 4.01 Unauthorized and an Echo value (within 3 times the request's size,
 * RFC 9000 §8's limit that RFC 9175 adopts); the client repeats the request
 * with the value. Stateless: the value is the time and a MAC over the time
 * and the address, so a flood of spoofed requests costs the server no
 * memory. A value stays good for five minutes, for every new session from
 * that address (the client keeps it), so an honest client pays one round
 * trip per five minutes, not one per handshake.
 *
 * @example
 * ```ts
 * const echo = new EchoVerifier();
 * if (echo.needed(requestBytes, 1024 + 64) && !echo.verify(value, peer.address)) {
 *   return { code: CoapCode.Unauthorized, options: [{ number: OptionNumber.Echo, value: echo.issue(peer.address) }] };
 * }
 * ```
 * @module
 */
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { CoapCode, OptionNumber } from './constants.js';
import { encodeMessage, getOption, type CoapMessage } from './packet.js';
import type { CoapResponse } from './blockwise.js';

/** How long an Echo value proves an address. */
export const ECHO_LIFETIME_MS = 5 * 60 * 1000;
/** RFC 9000 §8.1 / RFC 9175 §2.4: at most 3 times the bytes received go to an unverified address. */
export const AMPLIFICATION_LIMIT = 3;
/** Header, token and options around the first block of a new session's answer (Location-Path, Content-Format, Block2, Size2). */
export const FIRST_ANSWER_OVERHEAD = 64;
const TIME_BYTES = 4;
const MAC_BYTES = 12;

/**
 * An Echo key derived from another secret every process of one service
 * holds (the TLS ticket keys: RFC 5869 HKDF-SHA256 with its own label, so
 * the ticket keys cannot be learnt from it): such processes verify each
 * other's Echo values.
 */
export function echoKeyFrom(secret: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secret, new Uint8Array(0), 'atls coap echo key', 32));
}

export class EchoVerifier {
  private readonly key: Buffer;

  constructor(
    key?: Uint8Array,
    private readonly now: () => number = Date.now,
  ) {
    this.key = key ? Buffer.from(key) : randomBytes(32);
  }

  /**
   * True when an answer of up to `responseBound` bytes to a request of
   * `requestBytes` would exceed the amplification limit.
   */
  needed(requestBytes: number, responseBound: number): boolean {
    return AMPLIFICATION_LIMIT * requestBytes < responseBound;
  }

  /** A value for `address` (16 bytes: RFC 9175 §2.2.1 allows 1..40). */
  issue(address: string): Uint8Array {
    const time = Buffer.alloc(TIME_BYTES);
    time.writeUInt32BE(Math.floor(this.now() / 1000) >>> 0);
    return new Uint8Array(Buffer.concat([time, this.mac(time, address)]));
  }

  /** True when `value` was issued by this server for `address` less than {@link ECHO_LIFETIME_MS} ago. */
  verify(value: Uint8Array | undefined, address: string): boolean {
    if (!value || value.length !== TIME_BYTES + MAC_BYTES) return false;
    const time = Buffer.from(value.subarray(0, TIME_BYTES));
    const age = this.now() / 1000 - time.readUInt32BE();
    if (age < -1 || age * 1000 > ECHO_LIFETIME_MS) return false;
    return timingSafeEqual(this.mac(time, address), value.subarray(TIME_BYTES));
  }

  /**
   * The 4.01 + Echo answer for a request from `address` whose answer's
   * first datagram carries up to `firstBlockBytes` of payload, when that
   * could exceed the limit and the request carries no good Echo value;
   * undefined when it may go on. The 4.01 is a few bytes, sent piggybacked
   * or NON (never a separate, retransmitted response: RFC 9175 §2.4).
   */
  challenge(msg: CoapMessage, address: string, firstBlockBytes: number): CoapResponse | undefined {
    if (!this.needed(encodeMessage(msg).length, firstBlockBytes + FIRST_ANSWER_OVERHEAD)) return undefined;
    if (this.verify(getOption(msg, OptionNumber.Echo)?.value, address)) return undefined;
    return { code: CoapCode.Unauthorized, options: [{ number: OptionNumber.Echo, value: this.issue(address) }], payload: new Uint8Array(0) };
  }

  private mac(time: Buffer, address: string): Buffer {
    return createHmac('sha256', this.key).update(time).update(address).digest().subarray(0, MAC_BYTES);
  }
}
