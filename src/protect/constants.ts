/**
 * Constants of architecture (b): key export (draft §7) and the protected
 * message format (docs/protocol.md §4).
 * @module
 */

/**
 * The TLS exporter label of draft-friel-tls-atls-00 §7.1. It is used with NO
 * context: pass `undefined`, never an empty array, because TLS 1.2 (RFC 5705
 * §4) derives different bytes for the two.
 *
 * @example
 * ```ts
 * const block = conn.exportKeyingMaterial(keyBlockLength(spec), EXPORTER_LABEL);
 * ```
 */
export const EXPORTER_LABEL = 'application-layer-tls';

/** Format version carried in bits 7..5 of a protected message's first byte. */
export const FORMAT_VERSION = 1;

/** Every AEAD used here takes a 12-byte nonce (RFC 8446 §5.3, RFC 5116 §3.2). */
export const IV_LENGTH = 12;

/** Largest sequence number, 2^64 - 1 (RFC 8446 §5.3: sequence numbers never wrap). */
export const MAX_SEQUENCE = 0xffff_ffff_ffff_ffffn;

/**
 * Usage limits are counted in full-size TLS records of 2^14 bytes
 * (RFC 8446 §5.1, §5.5): a message of up to 16 KiB counts once, a larger one
 * counts once per started 16 KiB.
 */
export const LIMIT_UNIT_BYTES = 16384;

/** Default size of the receiver's anti-replay window (RFC 6347 §4.1.2.6 uses 64 too). */
export const DEFAULT_REPLAY_WINDOW = 64;

/** Largest anti-replay window accepted, to keep per-channel memory bounded (8 KiB of bitmap). */
export const MAX_REPLAY_WINDOW = 65536;
