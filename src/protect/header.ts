/**
 * The header of a protected message (docs/protocol.md §4):
 *
 * ```
 * byte 0   flags: bits 7..5 version (001), bits 4..3 reserved (00), bits 2..0 n - 1
 * 1..n     sequence number, big-endian, minimal length (n = 1..8)
 * ```
 *
 * The header is also the AEAD's associated data, so every bit of it is
 * authenticated; minimal encoding gives each message exactly one form.
 * @module
 */
import { AtlsError } from '../errors.js';
import { FORMAT_VERSION } from './constants.js';
import { fromSeqParts, seqByteLength, toSeqParts } from './seq.js';

const VERSION_BITS = FORMAT_VERSION << 5; // 0x20
const VERSION_MASK = 0xe0;
const RESERVED_MASK = 0x18;
const LENGTH_MASK = 0x07;

/** A parsed header. */
export interface ProtectedHeader {
  /** Format version (bits 7..5 of the flags byte); always 1 once parsed. */
  version: number;
  /** Number of sequence-number bytes (1..8). */
  seqLength: number;
  /** Header length in bytes: 1 + seqLength. */
  headerLength: number;
  /** The sequence number. */
  seq: bigint;
}

/** Header fields written by {@link readHeader} into a reusable object (hot path). */
export interface HeaderFields {
  hi: number;
  lo: number;
}

function malformed(message: string): AtlsError {
  return new AtlsError('MALFORMED_MESSAGE', `protected message: ${message}`, { source: 'remote' });
}

/**
 * Writes the header for sequence number (hi, lo) at `out[0..]`; returns its length.
 * `out` must have room for 9 bytes.
 */
export function writeHeader(out: Uint8Array, hi: number, lo: number): number {
  const n = seqByteLength(hi, lo);
  out[0] = VERSION_BITS | (n - 1);
  // Big-endian: the last byte is the least significant (RFC 8446 §5.3 order).
  for (let i = 0; i < n; i++) {
    const j = n - 1 - i; // byte index from the least significant end
    out[1 + i] = j < 4 ? (lo >>> (8 * j)) & 0xff : (hi >>> (8 * (j - 4))) & 0xff;
  }
  return 1 + n;
}

/**
 * Validates the header of `message` and stores the sequence number in
 * `out`; returns the header length. Throws MALFORMED_MESSAGE (remote).
 */
export function readHeader(message: Uint8Array, out: HeaderFields): number {
  if (message.length < 1) throw malformed('empty');
  const flags = message[0]!;
  if ((flags & VERSION_MASK) !== VERSION_BITS) throw malformed(`unknown format version ${flags >>> 5}`);
  if ((flags & RESERVED_MASK) !== 0) throw malformed('reserved flag bits are set'); // must be zero
  const n = (flags & LENGTH_MASK) + 1;
  if (message.length < 1 + n) throw malformed(`needs ${n} sequence number bytes, has ${message.length - 1}`);
  // Minimal encoding: a longer form than needed would give one message two encodings.
  if (n > 1 && message[1] === 0) throw malformed('sequence number is not minimally encoded');
  // The last four bytes (or fewer) form the low half, the ones before them the high half.
  const loStart = n > 4 ? n - 3 : 1;
  let hi = 0;
  let lo = 0;
  for (let i = 1; i < loStart; i++) hi = hi * 256 + message[i]!;
  for (let i = loStart; i <= n; i++) lo = lo * 256 + message[i]!;
  out.hi = hi;
  out.lo = lo;
  return 1 + n;
}

/** Flag bit 4: the message is one chunk of a protected stream (docs/protocol.md §4.1). */
export const CHUNK_FLAG = 0x10;
/** Flag bit 3, with {@link CHUNK_FLAG}: the stream's final chunk. */
export const FINAL_FLAG = 0x08;
/** Largest plaintext of one chunk: a full-size TLS record (RFC 8446 §5.1), one unit of the usage limits. */
export const MAX_CHUNK_PLAINTEXT = 16384;

/** Largest chunk header: flags, a sequence number of at most 8 bytes, the 2-byte length. */
export const MAX_CHUNK_HEADER_LENGTH = 1 + 8 + 2;

/** A parsed chunk header. */
export interface ChunkHeaderFields extends HeaderFields {
  /** flags || seq || length: the bytes before the ciphertext. */
  headerLength: number;
  /** Ciphertext and tag bytes that follow the header. */
  sealedLength: number;
  final: boolean;
}

/**
 * Validates the header of one chunk at `bytes[0..]` (the chunk may not have
 * arrived whole yet). Returns false when fewer bytes than the header are
 * there; throws MALFORMED_MESSAGE (remote) on a header no sender writes:
 * another version, a set reserved bit, no chunk flag, a non-minimal sequence
 * number, a length below the tag or above {@link MAX_CHUNK_PLAINTEXT} + tag.
 */
export function readChunkHeader(bytes: Uint8Array, tagLength: number, out: ChunkHeaderFields): boolean {
  if (bytes.length < 1) return false;
  const flags = bytes[0]!;
  if ((flags & VERSION_MASK) !== VERSION_BITS) throw malformed(`unknown format version ${flags >>> 5}`);
  if ((flags & CHUNK_FLAG) === 0) throw malformed('a chunk without the chunk flag');
  const n = (flags & LENGTH_MASK) + 1;
  if (bytes.length < 1 + n + 2) return false;
  const single = bytes.subarray(0, 1 + n);
  const plain = new Uint8Array(single);
  plain[0] = flags & ~(CHUNK_FLAG | FINAL_FLAG);
  readHeader(plain, out); // version, minimal sequence number
  const sealed = (bytes[1 + n]! << 8) | bytes[2 + n]!;
  if (sealed < tagLength || sealed > MAX_CHUNK_PLAINTEXT + tagLength) {
    throw malformed(`chunk length ${sealed} outside ${tagLength}..${MAX_CHUNK_PLAINTEXT + tagLength}`);
  }
  out.headerLength = 1 + n + 2;
  out.sealedLength = sealed;
  out.final = (flags & FINAL_FLAG) !== 0;
  return true;
}

/**
 * The header (and AAD) for a sequence number.
 *
 * @example
 * ```ts
 * encodeHeader(256); // Uint8Array [0x21, 0x01, 0x00]
 * ```
 */
export function encodeHeader(seq: number | bigint): Uint8Array {
  const { hi, lo } = toSeqParts(seq);
  const buf = new Uint8Array(9);
  return buf.slice(0, writeHeader(buf, hi, lo));
}

/**
 * Parses and validates the header at the start of a protected message
 * (the rest of the message is not looked at). Throws MALFORMED_MESSAGE
 * (source remote) on an unknown version, reserved bits, truncation or a
 * non-minimal sequence number.
 *
 * @example
 * ```ts
 * parseHeader(message).seq; // 256n
 * ```
 */
export function parseHeader(message: Uint8Array): ProtectedHeader {
  const f: HeaderFields = { hi: 0, lo: 0 };
  const headerLength = readHeader(message, f);
  return { version: FORMAT_VERSION, seqLength: headerLength - 1, headerLength, seq: fromSeqParts(f.hi, f.lo) };
}
