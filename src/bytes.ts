/**
 * Bounds-checked big-endian byte reading and writing, the ground every parser
 * and encoder stands on. A read past the end throws a remote `AtlsError`
 * (`code` chosen by the caller), never a RangeError.
 *
 * @example
 * ```ts
 * const r = new ByteReader(body, 'MALFORMED_RECORD');
 * const type = r.u8();
 * const fragment = r.vector16();
 * ```
 * @module
 */
import { AtlsError, type AtlsErrorCode } from './errors.js';

/** Reads integers and length-prefixed vectors from a byte array. */
export class ByteReader {
  private pos = 0;

  constructor(
    private readonly buf: Uint8Array,
    private readonly errorCode: AtlsErrorCode = 'MALFORMED_RECORD',
    private readonly what = 'input',
  ) {}

  /** Bytes left to read. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  get offset(): number {
    return this.pos;
  }

  private need(n: number, field: string): void {
    if (n > this.remaining) {
      throw new AtlsError(
        this.errorCode,
        `${this.what}: ${field} needs ${n} bytes at offset ${this.pos}, ${this.remaining} left`,
        { source: 'remote' },
      );
    }
  }

  u8(field = 'u8'): number {
    this.need(1, field);
    return this.buf[this.pos++]!;
  }

  u16(field = 'u16'): number {
    this.need(2, field);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  u24(field = 'u24'): number {
    this.need(3, field);
    const v = (this.buf[this.pos]! << 16) | (this.buf[this.pos + 1]! << 8) | this.buf[this.pos + 2]!;
    this.pos += 3;
    return v;
  }

  u32(field = 'u32'): number {
    this.need(4, field);
    const v =
      this.buf[this.pos]! * 0x1000000 +
      ((this.buf[this.pos + 1]! << 16) | (this.buf[this.pos + 2]! << 8) | this.buf[this.pos + 3]!);
    this.pos += 4;
    return v;
  }

  /** An unsigned integer of `n` bytes (0..8), as a bigint. */
  uintN(n: number, field = 'uint'): bigint {
    this.need(n, field);
    let v = 0n;
    for (let i = 0; i < n; i++) v = (v << 8n) | BigInt(this.buf[this.pos + i]!);
    this.pos += n;
    return v;
  }

  /** The buffer read from (for checks in place with {@link skip}'s offsets). */
  get source(): Uint8Array {
    return this.buf;
  }

  /** Passes over `n` bytes; returns the offset where they start in {@link source}. */
  skip(n: number, field = 'bytes'): number {
    this.need(n, field);
    const at = this.pos;
    this.pos += n;
    return at;
  }

  /** `n` bytes, as a view into the input (no copy). */
  bytes(n: number, field = 'bytes'): Uint8Array {
    this.need(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  vector8(field = 'vector8'): Uint8Array {
    return this.bytes(this.u8(field), field);
  }

  vector16(field = 'vector16'): Uint8Array {
    return this.bytes(this.u16(field), field);
  }

  vector24(field = 'vector24'): Uint8Array {
    return this.bytes(this.u24(field), field);
  }

  /** The rest of the input. */
  rest(): Uint8Array {
    return this.bytes(this.remaining);
  }

  /** Throws unless every byte was consumed. */
  end(field = 'trailing data'): void {
    if (this.remaining !== 0) {
      throw new AtlsError(this.errorCode, `${this.what}: ${this.remaining} unexpected bytes (${field})`, {
        source: 'remote',
      });
    }
  }
}

/** Appends big-endian integers and byte strings; grows as needed. */
export class ByteWriter {
  private buf: Uint8Array;
  private len = 0;

  constructor(initialCapacity = 64) {
    this.buf = new Uint8Array(initialCapacity);
  }

  get length(): number {
    return this.len;
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  u8(v: number): this {
    this.reserve(1);
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.reserve(2);
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u24(v: number): this {
    this.reserve(3);
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    this.reserve(4);
    this.buf[this.len++] = (v >>> 24) & 0xff;
    this.buf[this.len++] = (v >>> 16) & 0xff;
    this.buf[this.len++] = (v >>> 8) & 0xff;
    this.buf[this.len++] = v & 0xff;
    return this;
  }

  /** An unsigned integer in exactly `n` bytes. */
  uintN(v: bigint, n: number): this {
    this.reserve(n);
    for (let i = n - 1; i >= 0; i--) this.buf[this.len++] = Number((v >> BigInt(8 * i)) & 0xffn);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  /** Writes a length-prefixed vector; `body` writes its content, the prefix is filled in after. */
  vector(prefixBytes: 1 | 2 | 3, body: (w: ByteWriter) => void): this {
    const at = this.len;
    this.reserve(prefixBytes);
    this.len += prefixBytes;
    body(this);
    const n = this.len - at - prefixBytes;
    if (n >= 2 ** (8 * prefixBytes)) throw new AtlsError('INVALID_ARGUMENT', `vector of ${n} bytes overflows its length`);
    for (let i = 0; i < prefixBytes; i++) this.buf[at + i] = (n >>> (8 * (prefixBytes - 1 - i))) & 0xff;
    return this;
  }

  /** A copy of the written bytes. */
  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** Concatenates byte arrays into one new array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Node's Buffer when there is one (faster for long inputs); absent in browsers. */
export const NodeBuffer = (globalThis as { Buffer?: typeof Buffer }).Buffer;

/**
 * Slabs of {@link pooledBytes}: each `ArrayBuffer` costs microseconds to make
 * and collect whatever its size, so one slab serves ~200 small answers where
 * Node's 8 KiB pool serves ~25. A slab is never reused: a view handed to a
 * socket stays valid however long the write waits.
 */
const SLAB_BYTES = 64 * 1024;
/** Larger pieces get an array of their own. */
const SLAB_MAX_PIECE = 4096;
let slab: Uint8Array = new Uint8Array(0);
let slabAt = 0;

function unfilled(size: number): Uint8Array {
  return NodeBuffer ? NodeBuffer.allocUnsafeSlow(size) : new Uint8Array(size);
}

/**
 * `size` bytes from a shared slab (uninitialised: the caller writes every
 * byte). For short-lived internal buffers only: the view's `.buffer` is a
 * shared slab, so never hand one to an application.
 */
export function pooledBytes(size: number): Uint8Array {
  if (size > SLAB_MAX_PIECE) return unfilled(size);
  if (slabAt + size > slab.length) {
    slab = unfilled(SLAB_BYTES);
    slabAt = 0;
  }
  const out = new Uint8Array(slab.buffer, slab.byteOffset + slabAt, size);
  slabAt += (size + 7) & ~7; // 8-byte aligned, as Node's pool
  return out;
}

/** Lower-case hex of a byte array. */
export function toHex(b: Uint8Array): string {
  if (NodeBuffer) return NodeBuffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Bytes from hex; whitespace is ignored. Throws INVALID_ARGUMENT on odd or non-hex input. */
export function fromHex(hex: string): Uint8Array {
  const clean = hex.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) {
    throw new AtlsError('INVALID_ARGUMENT', 'not a hex string');
  }
  if (NodeBuffer) return new Uint8Array(NodeBuffer.from(clean, 'hex'));
  return Uint8Array.from(clean.match(/../g) ?? [], (h) => parseInt(h, 16));
}
