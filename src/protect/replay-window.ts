/**
 * The receiver's sliding anti-replay window (RFC 4303 §3.4.3,
 * RFC 6347 §4.1.2.6): a sequence number is accepted once, either above the
 * highest one seen or at most `size - 1` below it. The caller checks before
 * decrypting and records only after the AEAD authenticated the message, so a
 * forgery cannot move the window.
 * @module
 */
import { AtlsError } from '../errors.js';
import { DEFAULT_REPLAY_WINDOW, MAX_REPLAY_WINDOW } from './constants.js';
import { fromSeqParts, seqDistance, toSeqParts } from './seq.js';

/** A {@link ReplayWindow} as plain data (see {@link ReplayWindow.exportState}). */
export interface ReplayWindowState {
  size: number;
  /** Highest sequence number received; undefined before the first. */
  top: bigint | undefined;
  /** ceil(size / 8) bytes; bit i set when `top - i` was received. */
  bits: Uint8Array;
}

/** Results of {@link ReplayWindow.test}. */
export const ReplayVerdict = { Fresh: 0, Replayed: 1, TooOld: 2 } as const;

/** One of the {@link ReplayVerdict} values. */
export type ReplayVerdict = (typeof ReplayVerdict)[keyof typeof ReplayVerdict];

/**
 * Sliding anti-replay window over 64-bit sequence numbers.
 *
 * @example
 * ```ts
 * const w = new ReplayWindow(64);
 * w.check(5n);  // fine
 * w.update(5n); // after the message authenticated
 * w.check(5n);  // throws REPLAYED
 * ```
 */
export class ReplayWindow {
  /** Window size: how far below the highest accepted number a message may be. */
  readonly size: number;
  // A ring of bits indexed by seq mod capacity; capacity is a power of two
  // >= size, so the numbers inside the window never share a bit. Words of 16
  // bits in a plain array stay small integers: for the default 64 that is
  // ~80 B per window against ~250 B for a typed array and its buffer (a
  // server holds one window per established session).
  private readonly bits: number[];
  private readonly mask: number;
  private hasTop = false;
  private topHi = 0;
  private topLo = 0;

  constructor(size: number = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 1 || size > MAX_REPLAY_WINDOW) {
      throw new AtlsError('INVALID_ARGUMENT', `replay window must be an integer in 1..${MAX_REPLAY_WINDOW}`);
    }
    this.size = size;
    let capacity = 32;
    while (capacity < size) capacity *= 2;
    this.bits = new Array<number>(capacity / 16).fill(0);
    this.mask = capacity - 1;
  }

  /** The highest sequence number recorded so far, if any. */
  get highest(): bigint | undefined {
    return this.hasTop ? fromSeqParts(this.topHi, this.topLo) : undefined;
  }

  /** Fast path: classifies (hi, lo) without changing anything. */
  test(hi: number, lo: number): ReplayVerdict {
    if (!this.hasTop) return ReplayVerdict.Fresh;
    const behind = seqDistance(this.topHi, this.topLo, hi, lo);
    if (behind < 0) return ReplayVerdict.Fresh;
    if (behind >= this.size) return ReplayVerdict.TooOld; // RFC 4303 §3.4.3: left of the window
    const i = lo & this.mask;
    return (this.bits[i >>> 4]! >>> (i & 15)) & 1 ? ReplayVerdict.Replayed : ReplayVerdict.Fresh;
  }

  /** Fast path: records (hi, lo), which {@link test} must have found fresh. */
  mark(hi: number, lo: number): void {
    if (this.hasTop) {
      const ahead = seqDistance(hi, lo, this.topHi, this.topLo);
      if (ahead > 0) {
        // Slide: forget the bits of the numbers the window now moves over.
        if (ahead > this.mask) this.bits.fill(0);
        else {
          for (let k = 1; k <= ahead; k++) {
            const i = (this.topLo + k) & this.mask; // ToInt32 wraps mod 2^32, a multiple of capacity
            this.bits[i >>> 4]! &= ~(1 << (i & 15));
          }
        }
        this.topHi = hi;
        this.topLo = lo;
      }
    } else {
      this.hasTop = true;
      this.topHi = hi;
      this.topLo = lo;
    }
    const i = lo & this.mask;
    this.bits[i >>> 4]! |= 1 << (i & 15);
  }

  /**
   * Throws REPLAYED or TOO_OLD (source remote) unless `seq` may be accepted.
   * Changes nothing.
   */
  check(seq: number | bigint): void {
    const { hi, lo } = toSeqParts(seq);
    const v = this.test(hi, lo);
    if (v !== ReplayVerdict.Fresh) throw replayError(v, fromSeqParts(hi, lo), this.size);
  }

  /** Records `seq` as received (call after authentication). Throws like {@link check}. */
  update(seq: number | bigint): void {
    const { hi, lo } = toSeqParts(seq);
    const v = this.test(hi, lo);
    if (v !== ReplayVerdict.Fresh) throw replayError(v, fromSeqParts(hi, lo), this.size);
    this.mark(hi, lo);
  }

  /**
   * The window as plain data: its size, the highest number recorded, and
   * `bits`, ceil(size / 8) bytes where bit i (byte i >> 3, bit i & 7, least
   * significant first) is set when `top - i` was received.
   */
  exportState(): ReplayWindowState {
    const bits = new Uint8Array(Math.ceil(this.size / 8));
    if (!this.hasTop) return { size: this.size, top: undefined, bits };
    for (let i = 0; i < this.size; i++) {
      if (seqDistance(this.topHi, this.topLo, 0, i) < 0) break; // nothing below sequence number 0
      const slot = (this.topLo - i) & this.mask;
      if ((this.bits[slot >>> 4]! >>> (slot & 15)) & 1) bits[i >>> 3]! |= 1 << (i & 7);
    }
    return { size: this.size, top: fromSeqParts(this.topHi, this.topLo), bits };
  }

  /** A window restored from {@link exportState}; throws INVALID_ARGUMENT on inconsistent state. */
  static fromState(state: ReplayWindowState): ReplayWindow {
    const w = new ReplayWindow(state.size);
    if (!(state.bits instanceof Uint8Array) || state.bits.length !== Math.ceil(w.size / 8)) {
      throw new AtlsError('INVALID_ARGUMENT', `replay window bits must be ${Math.ceil(w.size / 8)} bytes`);
    }
    if (state.top === undefined) {
      if (state.bits.some((b) => b !== 0)) throw new AtlsError('INVALID_ARGUMENT', 'replay window bits set without a top');
      return w;
    }
    const { hi, lo } = toSeqParts(state.top);
    w.hasTop = true;
    w.topHi = hi;
    w.topLo = lo;
    for (let i = 0; i < w.size; i++) {
      if (((state.bits[i >>> 3]! >>> (i & 7)) & 1) === 0) continue;
      if (seqDistance(hi, lo, 0, i) < 0) throw new AtlsError('INVALID_ARGUMENT', 'replay window bit below sequence number 0');
      const slot = (lo - i) & w.mask;
      w.bits[slot >>> 4]! |= 1 << (slot & 15);
    }
    return w;
  }

  /** Forgets everything (for tests and reuse). */
  reset(): void {
    this.bits.fill(0);
    this.hasTop = false;
    this.topHi = 0;
    this.topLo = 0;
  }
}

/** The error for a rejected sequence number. */
export function replayError(v: ReplayVerdict, seq: bigint, size: number): AtlsError {
  return v === ReplayVerdict.Replayed
    ? new AtlsError('REPLAYED', `protected message ${seq} was already received`, { source: 'remote' })
    : new AtlsError('TOO_OLD', `protected message ${seq} is older than the replay window of ${size}`, {
        source: 'remote',
      });
}
