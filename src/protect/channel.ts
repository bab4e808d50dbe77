/**
 * The protected channel of architecture (b) (draft §6.1 Figure 6, §7): seals
 * and opens compact messages with keys exported from the ATLS session.
 *
 * Message = flags(1) || seq(n, big-endian, minimal) || AEAD ciphertext || tag;
 * AAD = flags || seq (plus optional application AAD); nonce = IV XOR seq.
 * See docs/protocol.md §4 for the byte-exact format.
 * @module
 */
import { AtlsError } from '../errors.js';
import { pooledBytes } from '../bytes.js';
import { IV_LENGTH, LIMIT_UNIT_BYTES, MAX_SEQUENCE } from './constants.js';
import { aeadOpen, aeadSealInto, nativeAeadFor, nativeOpen, nativeOpenAt, nativeSealAt, nativeSealInto, type NativeAead } from './aead.js';
import { CHUNK_FLAG, FINAL_FLAG, MAX_CHUNK_PLAINTEXT, readChunkHeader, readHeader, writeHeader, type ChunkHeaderFields, type HeaderFields } from './header.js';
import { splitKeyBlock } from './key-block.js';
import { ReplayVerdict, ReplayWindow, replayError, type ReplayWindowState } from './replay-window.js';
import { fromSeqParts, seqByteLength, toSeqParts } from './seq.js';
import { aeadForSuite, type AeadSpec } from './suites.js';

/** Which end of the ATLS session this channel is; it picks the key for each direction. */
export type ChannelRole = 'client' | 'server';

/** Options of a {@link ProtectedChannel}. Every field is optional. */
export interface ProtectedChannelOptions {
  /** Anti-replay window size, 1..65536 (default 64). */
  replayWindow?: number;
  /** Largest plaintext seal() accepts and open() will produce (default and ceiling: the AEAD's maximum). */
  maxPlaintextLength?: number;
  /**
   * Lower the AEAD usage limits (tests use tiny ones); raising them above the
   * AEAD's own is refused. Counted in 16 KiB units (LIMIT_UNIT_BYTES).
   */
  limits?: {
    /** Units this end may seal (default: `spec.confidentialityLimit`). */
    confidentiality?: number;
    /** Units that may fail authentication here (default: `spec.integrityLimit`). */
    integrity?: number;
  };
  /**
   * First sequence number to send (default 0). For tests only: a real
   * channel must start at 0 so that no number is ever used twice per key.
   */
  initialSequence?: number | bigint;
}

/** Counters of a {@link ProtectedChannel}. */
export interface ProtectedChannelStats {
  /** Messages sealed. */
  sent: number;
  /** Messages opened successfully. */
  received: number;
  /** Messages that failed authentication (counted against the integrity limit). */
  failures: number;
  /** Messages rejected before decryption: malformed, too large, replayed or too old. */
  rejected: number;
}

/**
 * A channel as plain, serialisable data (no engine, no native handles): what
 * a session store keeps for an established architecture-(b) session. It holds
 * secrets: whoever reads it can read and forge the session's messages.
 */
export interface ProtectedChannelState {
  /** IANA name of the negotiated cipher suite; `aeadForSuite(suite)` gives the AEAD. */
  suite: string;
  role: ChannelRole;
  /** send key | receive key | send IV | receive IV (2 x key length + 24 bytes). */
  secrets: Uint8Array;
  /** The sequence number the next sealed message carries; 2^64 once the space is used up. */
  nextSend: bigint;
  /** The receive replay window. */
  window: ReplayWindowState;
  /** Confidentiality units sealed so far (16 KiB each, see LIMIT_UNIT_BYTES). */
  sentUnits: number;
  /** Integrity units that failed authentication so far. */
  failedUnits: number;
}

/** A message that authenticated under the receive key, before any replay check (see {@link ProtectedChannel.authenticate}). */
export interface AuthenticatedMessage {
  /** Its sequence number (at most 2^53 - 1, see {@link ProtectedChannel.authenticate}). */
  sequence: number;
  plaintext: Uint8Array;
}

const MAX_HEADER = 9;
const TWO32 = 0x1_0000_0000;
const MAX_SEQUENCE_PLUS_ONE = MAX_SEQUENCE + 1n;
/** Largest high half of a sequence number that still makes a safe JS integer (2^53 - 1). */
const MAX_SAFE_HI = 0x1f_ffff;

/** One spec object per suite name, so restored channels share their limits object. */
const SPECS = new Map<string, AeadSpec>();
function specOf(suite: string): AeadSpec {
  let spec = SPECS.get(suite);
  if (!spec) {
    spec = aeadForSuite(suite);
    SPECS.set(suite, spec);
  }
  return spec;
}

/** Scratch for one nonce: createCipheriv copies it, so every channel can share it (JS runs one message at a time). */
const NONCE_SCRATCH = new Uint8Array(IV_LENGTH);
/** Scratch for a parsed header, likewise shared. */
const HEADER_SCRATCH: HeaderFields = { hi: 0, lo: 0 };

/** The limits of a channel; one object per spec is shared by every channel without overrides. */
interface ChannelLimits {
  readonly maxPlaintextLength: number;
  readonly confidentialityLimit: number;
  readonly integrityLimit: number;
}

const DEFAULT_LIMITS = new WeakMap<AeadSpec, ChannelLimits>();

function limitsFor(spec: AeadSpec, options: ProtectedChannelOptions): ChannelLimits {
  const custom = options.maxPlaintextLength !== undefined || options.limits !== undefined;
  const shared = custom ? undefined : DEFAULT_LIMITS.get(spec);
  if (shared) return shared;
  const made: ChannelLimits = {
    maxPlaintextLength: limitOption('maxPlaintextLength', options.maxPlaintextLength, spec.maxPlaintextLength),
    confidentialityLimit: limitOption('limits.confidentiality', options.limits?.confidentiality, spec.confidentialityLimit),
    integrityLimit: limitOption('limits.integrity', options.limits?.integrity, spec.integrityLimit),
  };
  if (!custom) DEFAULT_LIMITS.set(spec, made);
  return made;
}

function units(length: number): number {
  // RFC 8446 §5.5 counts full-size (2^14-byte) records.
  return length <= LIMIT_UNIT_BYTES ? 1 : Math.ceil(length / LIMIT_UNIT_BYTES);
}

function limitOption(name: string, value: number | undefined, ceiling: number): number {
  if (value === undefined) return ceiling;
  if (typeof value !== 'number' || !(value >= 1) || (!Number.isInteger(value) && value !== Infinity) || value > ceiling) {
    throw new AtlsError('INVALID_ARGUMENT', `${name} must be an integer in 1..${ceiling}`);
  }
  return value;
}

const KEY_LENGTHS: Record<string, number> = {
  'aes-128-gcm': 16,
  'aes-256-gcm': 32,
  'chacha20-poly1305': 32,
  'aes-128-ccm': 16,
  'aes-256-ccm': 32,
};

function checkSpec(spec: AeadSpec): void {
  const ok =
    typeof spec === 'object' &&
    spec !== null &&
    KEY_LENGTHS[spec.algorithm] === spec.keyLength &&
    spec.ivLength === 12 &&
    (spec.tagLength === 16 || (spec.tagLength === 8 && spec.algorithm.endsWith('-ccm')));
  if (!ok) throw new AtlsError('INVALID_ARGUMENT', 'not an AeadSpec from aeadForSuite()');
}

/** A chunk's AAD: its header as sent, then the stream's first sequence number and the chunk's index (8 bytes each, big-endian). */
/** The plaintext fits one chunk, and only chunk 0 lacks the stream's start. */
function checkChunk(plaintext: Uint8Array, start: bigint | undefined, index: bigint): void {
  if (plaintext.length > MAX_CHUNK_PLAINTEXT) {
    throw new AtlsError('TOO_LARGE', `chunk plaintext of ${plaintext.length} bytes exceeds ${MAX_CHUNK_PLAINTEXT}`, { source: 'local' });
  }
  if ((start === undefined) !== (index === 0n)) throw new AtlsError('INVALID_ARGUMENT', 'chunk 0 starts the stream; later chunks name its start');
}

function chunkAad(header: Uint8Array, start: bigint, index: bigint): Uint8Array {
  const out = new Uint8Array(header.length + 16);
  out.set(header);
  const view = new DataView(out.buffer);
  view.setBigUint64(header.length, start);
  view.setBigUint64(header.length + 8, index);
  return out;
}

function concatAad(header: Uint8Array, aad: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + aad.length);
  out.set(header);
  out.set(aad, header.length);
  return out;
}

/**
 * Seals and opens protected messages for one ATLS session.
 *
 * Failures of single incoming messages (forged, replayed, too old,
 * malformed) throw for that message only; the channel goes on (as DTLS,
 * RFC 9147 §4.5.2). Reaching an AEAD usage limit throws KEY_LIMIT_REACHED
 * and that direction stays dead: run a new handshake.
 *
 * @example
 * ```ts
 * const spec = aeadForSuite(info.cipherSuite);
 * const block = conn.exportKeyingMaterial(keyBlockLength(spec), EXPORTER_LABEL);
 * const ch = ProtectedChannel.fromKeyBlock(block, spec, 'client');
 * block.fill(0);
 * const msg = ch.seal(new TextEncoder().encode('hello, atls'));
 * const reply = ch.open(responseBody);
 * ```
 */
export class ProtectedChannel {
  /** The AEAD in use. */
  readonly spec: AeadSpec;
  /** This end's role. */
  readonly role: ChannelRole;
  /**
   * Every secret of the channel in one unpooled allocation: send key |
   * receive key | send IV | receive IV. Views are made per message, not
   * kept: each kept Buffer view cost ~96 B per session (an arch-b server
   * holds one channel per established session).
   */
  private readonly mem: Uint8Array;
  /** Made on first open(): a channel whose window lives in a store never needs one. */
  private window: ReplayWindow | undefined;
  private readonly windowSize: number | undefined;
  /** Limits, shared by every channel with the same spec and no overrides. */
  private readonly limits: ChannelLimits;

  private sendHi: number;
  private sendLo: number;
  private sendExhausted = false;
  private sentUnits = 0;
  private failedUnits = 0;
  private sendError: AtlsError | undefined;
  private receiveError: AtlsError | undefined;
  private sent = 0;
  private received = 0;
  private failures = 0;
  private rejected = 0;
  /**
   * Native AEAD contexts per direction, made on first use: undefined = not
   * tried yet, null = addon missing (node:crypto is used). Freed by
   * destroy(), or by their finalizers when the channel is dropped.
   */
  private sealer: NativeAead | null | undefined;
  private opener: NativeAead | null | undefined;

  private constructor(
    spec: AeadSpec,
    role: ChannelRole,
    keys: { sendKey: Uint8Array; sendIv: Uint8Array; receiveKey: Uint8Array; receiveIv: Uint8Array },
    options: ProtectedChannelOptions,
  ) {
    this.spec = spec;
    this.role = role;
    if (options.replayWindow !== undefined) new ReplayWindow(options.replayWindow); // validates now, allocated on first use
    this.windowSize = options.replayWindow;
    this.limits = limitsFor(spec, options);
    const start = toSeqParts(options.initialSequence ?? 0);
    this.sendHi = start.hi;
    this.sendLo = start.lo;
    // One unpooled allocation for every secret of the channel (keys, IVs):
    // pooled small Buffers would pin shared 8 KiB slabs per session.
    const k = spec.keyLength;
    if (keys.sendIv.length !== IV_LENGTH || keys.receiveIv.length !== IV_LENGTH) {
      throw new AtlsError('INVALID_ARGUMENT', `IV must be ${IV_LENGTH} bytes`);
    }
    this.mem = new Uint8Array(2 * k + 2 * IV_LENGTH);
    this.mem.set(keys.sendKey, 0);
    this.mem.set(keys.receiveKey, k);
    this.mem.set(keys.sendIv, 2 * k);
    this.mem.set(keys.receiveIv, 2 * k + IV_LENGTH);
  }

  /** The largest overhead a message can have: 1 + 8 + tag length. */
  get maxOverhead(): number {
    return MAX_HEADER + this.spec.tagLength;
  }

  /** Largest plaintext accepted and produced. */
  get maxPlaintextLength(): number {
    return this.limits.maxPlaintextLength;
  }

  /** The key of one direction: a view made for this message only. */
  private key(send: boolean): Uint8Array {
    const k = this.spec.keyLength;
    return send ? this.mem.subarray(0, k) : this.mem.subarray(k, 2 * k);
  }

  /** The nonce of one message (RFC 8446 §5.3: IV XOR the big-endian sequence number), in the shared scratch. */
  private nonce(send: boolean, hi: number, lo: number): Uint8Array {
    const at = 2 * this.spec.keyLength + (send ? 0 : IV_LENGTH);
    const iv = this.mem;
    const out = NONCE_SCRATCH;
    out[0] = iv[at]!;
    out[1] = iv[at + 1]!;
    out[2] = iv[at + 2]!;
    out[3] = iv[at + 3]!;
    out[4] = iv[at + 4]! ^ (hi >>> 24);
    out[5] = iv[at + 5]! ^ ((hi >>> 16) & 0xff);
    out[6] = iv[at + 6]! ^ ((hi >>> 8) & 0xff);
    out[7] = iv[at + 7]! ^ (hi & 0xff);
    out[8] = iv[at + 8]! ^ (lo >>> 24);
    out[9] = iv[at + 9]! ^ ((lo >>> 16) & 0xff);
    out[10] = iv[at + 10]! ^ ((lo >>> 8) & 0xff);
    out[11] = iv[at + 11]! ^ (lo & 0xff);
    return out;
  }

  /**
   * A channel from an exported key block (see {@link keyBlockLength}). The
   * client seals with client_write_key/IV and opens with server_write_key/IV;
   * the server the other way round. The block is copied; zero it afterwards.
   */
  static fromKeyBlock(
    block: Uint8Array,
    spec: AeadSpec,
    role: ChannelRole,
    options: ProtectedChannelOptions = {},
  ): ProtectedChannel {
    checkSpec(spec);
    if (role !== 'client' && role !== 'server') {
      throw new AtlsError('INVALID_ARGUMENT', `role must be 'client' or 'server'`);
    }
    const kb = splitKeyBlock(block, spec);
    try {
      const client = role === 'client';
      return new ProtectedChannel(
        spec,
        role,
        {
          sendKey: client ? kb.clientWriteKey : kb.serverWriteKey,
          sendIv: client ? kb.clientWriteIv : kb.serverWriteIv,
          receiveKey: client ? kb.serverWriteKey : kb.clientWriteKey,
          receiveIv: client ? kb.serverWriteIv : kb.clientWriteIv,
        },
        options ?? {},
      );
    } finally {
      kb.clientWriteKey.fill(0);
      kb.serverWriteKey.fill(0);
      kb.clientWriteIv.fill(0);
      kb.serverWriteIv.fill(0);
    }
  }

  /** Overhead of the next message this channel seals: 1 + sequence bytes + tag. */
  get overhead(): number {
    return 1 + seqByteLength(this.sendHi, this.sendLo) + this.spec.tagLength;
  }

  /** The sequence number the next sealed message will carry. */
  get nextSequence(): bigint {
    return fromSeqParts(this.sendHi, this.sendLo);
  }

  /** A snapshot of the counters. */
  get stats(): ProtectedChannelStats {
    return { sent: this.sent, received: this.received, failures: this.failures, rejected: this.rejected };
  }

  /** False once seal() can no longer succeed (limit reached or destroyed). */
  get canSeal(): boolean {
    return this.sendError === undefined;
  }

  /** False once open() can no longer succeed (limit reached or destroyed). */
  get canOpen(): boolean {
    return this.receiveError === undefined;
  }

  /**
   * Encrypts one message under the next sequence number. `aad` is optional
   * extra associated data the peer must pass to open() too (it is not sent).
   * Throws TOO_LARGE (local) above maxPlaintextLength and KEY_LIMIT_REACHED
   * (sticky) when the confidentiality limit or the sequence space is used up.
   */
  seal(plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
    if (aad !== undefined && !(aad instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'aad must be a Uint8Array');
    const { hi, lo } = this.spend(plaintext);
    this.sent++;
    return this.sealInto(hi, lo, plaintext, aad);
  }

  /**
   * Seals one chunk of a protected stream (docs/protocol.md §4.1) under the
   * next sequence number: flags with the chunk flag (and the final flag on
   * the last chunk), the sequence number, a 2-byte length, then the AEAD
   * output; the AAD also binds the stream's first sequence number and the
   * chunk's index. `start` is undefined for chunk 0, whose own number
   * starts the stream. Returns the chunk and its sequence number. `into`:
   * room for the chunk (it is written at its start and returned as a view
   * of it), so that several chunks share one buffer.
   */
  sealChunk(plaintext: Uint8Array, final: boolean, start: bigint | undefined, index: bigint, into?: Uint8Array): { chunk: Uint8Array; seq: bigint } {
    checkChunk(plaintext, start, index);
    const { hi, lo } = this.spend(plaintext);
    return this.sealChunkUnder(hi, lo, plaintext, final, start, index, into);
  }

  /**
   * {@link sealChunk} for a session whose counters live in a session store:
   * seals under `sequence`, a number the store reserved for this chunk alone
   * (`reserve`, or the request's `commit`), as {@link sealAt} does for a message.
   */
  sealChunkAt(sequence: number, plaintext: Uint8Array, final: boolean, start: bigint | undefined, index: bigint, into?: Uint8Array): { chunk: Uint8Array; seq: bigint } {
    if (this.sendError) throw this.sendError;
    if (!Number.isSafeInteger(sequence) || sequence < 0) {
      throw new AtlsError('INVALID_ARGUMENT', `sequence number ${sequence} is not a non-negative safe integer`);
    }
    checkChunk(plaintext, start, index);
    const hi = Math.floor(sequence / TWO32);
    return this.sealChunkUnder(hi, sequence - hi * TWO32, plaintext, final, start, index, into);
  }

  private sealChunkUnder(
    hi: number,
    lo: number,
    plaintext: Uint8Array,
    final: boolean,
    start: bigint | undefined,
    index: bigint,
    into: Uint8Array | undefined,
  ): { chunk: Uint8Array; seq: bigint } {
    const seq = fromSeqParts(hi, lo);
    const n = seqByteLength(hi, lo);
    const sealed = plaintext.length + this.spec.tagLength;
    const size = 1 + n + 2 + sealed;
    if (into && into.length < size) throw new AtlsError('INTERNAL', `no room for a chunk of ${size} bytes`);
    const out = into ? into.subarray(0, size) : new Uint8Array(size);
    writeHeader(out, hi, lo);
    out[0] = out[0]! | CHUNK_FLAG | (final ? FINAL_FLAG : 0);
    out[1 + n] = sealed >>> 8;
    out[2 + n] = sealed & 0xff;
    const headerLength = 3 + n;
    this.encryptInto(hi, lo, plaintext, chunkAad(out.subarray(0, headerLength), start ?? seq, index), out, headerLength);
    this.sent++;
    return { chunk: out, seq };
  }

  /** Checks the limits for sealing `plaintext` and spends the next sequence number on it. */
  private spend(plaintext: Uint8Array): { hi: number; lo: number } {
    if (this.sendError) throw this.sendError;
    if (!(plaintext instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'plaintext must be a Uint8Array');
    const len = plaintext.length;
    if (len > this.limits.maxPlaintextLength) {
      throw new AtlsError('TOO_LARGE', `plaintext of ${len} bytes exceeds ${this.maxPlaintextLength}`, { source: 'local' });
    }
    if (this.sendExhausted) {
      // RFC 8446 §5.3: sequence numbers must not wrap.
      throw (this.sendError = new AtlsError('KEY_LIMIT_REACHED', 'sequence numbers exhausted; run a new handshake'));
    }
    const u = units(len);
    if (this.sentUnits + u > this.limits.confidentialityLimit) {
      // RFC 8446 §5.5 / RFC 9147 §4.5.3: stop using the key at its confidentiality limit.
      throw (this.sendError = new AtlsError(
        'KEY_LIMIT_REACHED',
        `${this.spec.name} confidentiality limit of ${this.limits.confidentialityLimit} reached; run a new handshake`,
      ));
    }
    const hi = this.sendHi;
    const lo = this.sendLo;
    // Advance before encrypting: a number is spent even if encryption fails.
    if (lo === 0xffff_ffff) {
      if (hi === 0xffff_ffff) this.sendExhausted = true;
      else {
        this.sendHi = hi + 1;
        this.sendLo = 0;
      }
    } else this.sendLo = lo + 1;
    this.sentUnits += u;
    return { hi, lo };
  }

  /**
   * Encrypts under (hi, lo); the caller has made sure that number is this
   * message's alone. `pooled`: the message may be a view into a shared slab
   * (every byte of the view is written here); otherwise it is a fresh,
   * unpooled array, so callers may pass msg.buffer on without leaking other data.
   */
  private sealInto(hi: number, lo: number, plaintext: Uint8Array, aad: Uint8Array | undefined, pooled = false): Uint8Array {
    const len = plaintext.length;
    const tagLength = this.spec.tagLength;
    const n = seqByteLength(hi, lo);
    const size = 1 + n + len + tagLength;
    const out = pooled ? pooledBytes(size) : new Uint8Array(size);
    const headerLength = writeHeader(out, hi, lo);
    const sealer = aad && aad.length ? null : this.nativeSealer();
    if (sealer) {
      // The header is the whole AAD: one native call builds the nonce and seals in place (no nonce, AAD or tag views).
      nativeSealAt(sealer, this.spec, hi, lo, out, headerLength, plaintext);
      return out;
    }
    const header = out.subarray(0, headerLength);
    this.encryptInto(hi, lo, plaintext, aad && aad.length ? concatAad(header, aad) : header, out, headerLength);
    return out;
  }

  /** The native context of the send direction (made on first use, with the send IV), or null without the addon. */
  private nativeSealer(): NativeAead | null {
    const k = this.spec.keyLength;
    return this.sealer === undefined ? (this.sealer = nativeAeadFor(this.spec, this.key(true), true, this.mem.subarray(2 * k, 2 * k + IV_LENGTH))) : this.sealer;
  }

  /** The native context of the receive direction (made on first use, with the receive IV), or null without the addon. */
  private nativeOpener(): NativeAead | null {
    const k = this.spec.keyLength;
    return this.opener === undefined ? (this.opener = nativeAeadFor(this.spec, this.key(false), false, this.mem.subarray(2 * k + IV_LENGTH))) : this.opener;
  }

  /** The AEAD with the send key and the nonce of (hi, lo), into `out` at `at`. */
  private encryptInto(hi: number, lo: number, plaintext: Uint8Array, aad: Uint8Array, out: Uint8Array, at: number): void {
    const nonce = this.nonce(true, hi, lo);
    const sealer = this.nativeSealer();
    if (sealer) nativeSealInto(sealer, this.spec, nonce, aad, plaintext, out, at);
    else aeadSealInto(this.spec, this.key(true), nonce, aad, plaintext, out, at);
  }

  /**
   * Authenticates and decrypts one message. Per message (channel goes on):
   * MALFORMED_MESSAGE, TOO_LARGE, REPLAYED, TOO_OLD, DECRYPT_FAILED (all
   * source remote). Sticky: KEY_LIMIT_REACHED once failed decryptions reach
   * the integrity limit.
   */
  open(message: Uint8Array, aad?: Uint8Array): Uint8Array {
    if (this.receiveError) throw this.receiveError;
    if (!(message instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'message must be a Uint8Array');
    if (aad !== undefined && !(aad instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'aad must be a Uint8Array');
    const h = HEADER_SCRATCH; // read synchronously below, before any other channel can use it
    let headerLength: number;
    try {
      headerLength = readHeader(message, h);
    } catch (e) {
      this.rejected++;
      throw e;
    }
    const tagLength = this.spec.tagLength;
    const ctLength = message.length - headerLength - tagLength;
    if (ctLength < 0) {
      this.rejected++;
      throw new AtlsError('MALFORMED_MESSAGE', `protected message of ${message.length} bytes is shorter than header + tag`, {
        source: 'remote',
      });
    }
    if (ctLength > this.maxPlaintextLength) {
      this.rejected++;
      throw new AtlsError('TOO_LARGE', `protected message carries ${ctLength} bytes, more than ${this.maxPlaintextLength}`, {
        source: 'remote',
      });
    }
    const { hi, lo } = h;
    // Checked before decrypting (cheap, read-only); recorded only after authentication.
    const window = (this.window ??= new ReplayWindow(this.windowSize));
    const verdict = window.test(hi, lo);
    if (verdict !== ReplayVerdict.Fresh) {
      this.rejected++;
      throw replayError(verdict, fromSeqParts(hi, lo), window.size);
    }
    const plaintext = aad && aad.length
      ? this.decrypt(hi, lo, concatAad(message.subarray(0, headerLength), aad), message.subarray(headerLength), ctLength)
      : this.decryptMessage(hi, lo, message, headerLength, ctLength);
    window.mark(hi, lo);
    this.received++;
    return plaintext;
  }

  /** {@link decrypt} of a whole message whose header is the whole AAD: one native call when the addon is there. */
  private decryptMessage(hi: number, lo: number, message: Uint8Array, headerLength: number, ctLength: number): Uint8Array {
    const opener = this.nativeOpener();
    if (!opener) return this.decrypt(hi, lo, message.subarray(0, headerLength), message.subarray(headerLength), ctLength);
    const plaintext = nativeOpenAt(opener, this.spec, hi, lo, message, headerLength, ctLength);
    if (plaintext === undefined) throw this.failed(hi, lo, ctLength);
    return plaintext;
  }

  /** The AEAD with the receive key: `sealed` is ciphertext (`ctLength` bytes) || tag; a failure is counted and thrown. */
  private decrypt(hi: number, lo: number, aad: Uint8Array, sealed: Uint8Array, ctLength: number): Uint8Array {
    const nonce = this.nonce(false, hi, lo);
    const ciphertext = sealed.subarray(0, ctLength);
    const tag = sealed.subarray(ctLength);
    const opener = this.nativeOpener();
    const plaintext = opener
      ? nativeOpen(opener, this.spec, nonce, aad, ciphertext, tag)
      : aeadOpen(this.spec, this.key(false), nonce, aad, ciphertext, tag);
    if (plaintext === undefined) throw this.failed(hi, lo, ctLength);
    return plaintext;
  }

  /**
   * Authenticates and decrypts one whole chunk of a protected stream
   * (docs/protocol.md §4.1), expected at position `index` of the stream
   * that began with sequence number `start` (undefined for chunk 0). Chunk
   * 0 goes through the replay window; later chunks are bound to it by the
   * AAD instead, so a chunk moved, dropped, repeated or taken from another
   * stream fails authentication (DECRYPT_FAILED). Returns the plaintext,
   * the chunk's sequence number and whether it is the final chunk.
   */
  openChunk(chunk: Uint8Array, start: bigint | undefined, index: bigint): { plaintext: Uint8Array; seq: bigint; final: boolean } {
    return this.openChunkWith(chunk, start, index, true);
  }

  /**
   * {@link openChunk} WITHOUT the replay window, for a session whose window
   * lives in a session store: the caller commits chunk 0's number there
   * after it authenticated (as with {@link authenticate}). A chunk 0 numbered
   * above 2^53 - 1 is refused as TOO_OLD.
   */
  authenticateChunk(chunk: Uint8Array, start: bigint | undefined, index: bigint): { plaintext: Uint8Array; seq: bigint; final: boolean } {
    return this.openChunkWith(chunk, start, index, false);
  }

  private openChunkWith(chunk: Uint8Array, start: bigint | undefined, index: bigint, useWindow: boolean): { plaintext: Uint8Array; seq: bigint; final: boolean } {
    if (this.receiveError) throw this.receiveError;
    const h: ChunkHeaderFields = { hi: 0, lo: 0, headerLength: 0, sealedLength: 0, final: false };
    try {
      if (!readChunkHeader(chunk, this.spec.tagLength, h) || chunk.length !== h.headerLength + h.sealedLength) {
        throw new AtlsError('MALFORMED_MESSAGE', 'protected chunk: length does not match its header', { source: 'remote' });
      }
    } catch (e) {
      this.rejected++;
      throw e;
    }
    const { hi, lo } = h;
    const seq = fromSeqParts(hi, lo);
    const window = useWindow ? (this.window ??= new ReplayWindow(this.windowSize)) : undefined;
    if (start === undefined) {
      if (!useWindow && hi > MAX_SAFE_HI) {
        this.rejected++;
        throw new AtlsError('TOO_OLD', `protected chunk ${seq} is beyond the sequence numbers a session store keeps`, { source: 'remote' });
      }
      const verdict = window ? window.test(hi, lo) : ReplayVerdict.Fresh;
      if (verdict !== ReplayVerdict.Fresh) {
        this.rejected++;
        throw replayError(verdict, seq, window!.size);
      }
    }
    const aad = chunkAad(chunk.subarray(0, h.headerLength), start ?? seq, index);
    const plaintext = this.decrypt(hi, lo, aad, chunk.subarray(h.headerLength), h.sealedLength - this.spec.tagLength);
    if (start === undefined) window?.mark(hi, lo);
    this.received++;
    return { plaintext, seq, final: h.final };
  }

  /** Counts one failed authentication; the error to throw (sticky KEY_LIMIT_REACHED at the integrity limit). */
  private failed(hi: number, lo: number, ctLength: number): AtlsError {
    this.failures++;
    this.failedUnits += units(ctLength);
    if (this.failedUnits >= this.limits.integrityLimit) {
      // RFC 9147 §4.5.3: stop using the key once the integrity limit is reached.
      return (this.receiveError = new AtlsError(
        'KEY_LIMIT_REACHED',
        `${this.spec.name} integrity limit of ${this.limits.integrityLimit} failed decryptions reached; run a new handshake`,
      ));
    }
    // RFC 9147 §4.5.2: an invalid record is discarded, the association goes on.
    return new AtlsError('DECRYPT_FAILED', `protected message ${fromSeqParts(hi, lo)} failed authentication`, {
      source: 'remote',
    });
  }

  /**
   * For a session whose counters live in a session store: authenticates and
   * decrypts one message WITHOUT the replay window, which the caller checks
   * and records in the store afterwards (authentication first, so a forger
   * cannot move a shared window). Failures count against this channel's
   * integrity limit (the caller also charges them to the store). Throws like
   * {@link open} except REPLAYED/TOO_OLD; a sequence number above 2^53 - 1
   * (no honest peer gets there: the AEAD limits end a key long before) is
   * refused as TOO_OLD.
   */
  authenticate(message: Uint8Array, aad?: Uint8Array): AuthenticatedMessage {
    if (this.receiveError) throw this.receiveError;
    const h = HEADER_SCRATCH;
    let headerLength: number;
    try {
      headerLength = readHeader(message, h);
    } catch (e) {
      this.rejected++;
      throw e;
    }
    const tagLength = this.spec.tagLength;
    const ctLength = message.length - headerLength - tagLength;
    const { hi, lo } = h;
    if (ctLength < 0 || ctLength > this.maxPlaintextLength || hi > MAX_SAFE_HI) {
      this.rejected++;
      if (hi > MAX_SAFE_HI) {
        throw new AtlsError('TOO_OLD', `protected message ${fromSeqParts(hi, lo)} is beyond the sequence numbers a session store keeps`, { source: 'remote' });
      }
      throw ctLength < 0
        ? new AtlsError('MALFORMED_MESSAGE', `protected message of ${message.length} bytes is shorter than header + tag`, { source: 'remote' })
        : new AtlsError('TOO_LARGE', `protected message carries ${ctLength} bytes, more than ${this.maxPlaintextLength}`, { source: 'remote' });
    }
    const plaintext = aad && aad.length
      ? this.decrypt(hi, lo, concatAad(message.subarray(0, headerLength), aad), message.subarray(headerLength), ctLength)
      : this.decryptMessage(hi, lo, message, headerLength, ctLength);
    this.received++;
    return { sequence: hi * TWO32 + lo, plaintext };
  }

  /**
   * For a session whose counters live in a session store: seals under
   * `sequence`, a number the store reserved for this message alone (its
   * `commit` never hands one out twice per key). This channel's own send
   * counter is not used or moved, and the confidentiality limit is the
   * store's to count (the units of this message: {@link unitsOf}). The
   * message may be a view into a shared slab (a server writes it to a socket
   * at once): pass the view on, never its `.buffer`.
   */
  sealAt(sequence: number, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
    if (this.sendError) throw this.sendError;
    if (!Number.isSafeInteger(sequence) || sequence < 0) {
      throw new AtlsError('INVALID_ARGUMENT', `sequence number ${sequence} is not a non-negative safe integer`);
    }
    const len = plaintext.length;
    if (len > this.limits.maxPlaintextLength) {
      throw new AtlsError('TOO_LARGE', `plaintext of ${len} bytes exceeds ${this.maxPlaintextLength}`, { source: 'local' });
    }
    const hi = Math.floor(sequence / TWO32);
    const lo = sequence - hi * TWO32;
    this.sent++;
    return this.sealInto(hi, lo, plaintext, aad, true);
  }

  /** Units (of 16 KiB, RFC 8446 §5.5) a message of `length` plaintext bytes counts against the AEAD limits. */
  static unitsOf(length: number): number {
    return units(length);
  }

  /** The confidentiality limit in force, in units (read per message: no object, unlike {@link usageLimits}). */
  get confidentialityLimit(): number {
    return this.limits.confidentialityLimit;
  }

  /** The AEAD limits in force for this channel (after any lowering by options). */
  get usageLimits(): { confidentiality: number; integrity: number } {
    return { confidentiality: this.limits.confidentialityLimit, integrity: this.limits.integrityLimit };
  }

  /**
   * The channel as plain data (keys, IVs, next send number, replay window,
   * usage counters), for a session store. Throws CLOSED once destroyed.
   * See {@link ProtectedChannelState}: the result holds the secrets.
   */
  exportState(): ProtectedChannelState {
    if (this.sendError?.code === 'CLOSED' && this.receiveError?.code === 'CLOSED') {
      throw new AtlsError('CLOSED', 'protected channel destroyed');
    }
    return {
      suite: this.spec.iana,
      role: this.role,
      secrets: new Uint8Array(this.mem),
      nextSend: this.sendExhausted ? MAX_SEQUENCE_PLUS_ONE : fromSeqParts(this.sendHi, this.sendLo),
      window: (this.window ?? new ReplayWindow(this.windowSize)).exportState(),
      sentUnits: this.sentUnits,
      failedUnits: this.failedUnits,
    };
  }

  /**
   * A channel restored from {@link exportState}: it goes on exactly where the
   * exported one stood (same next sequence number, same replay verdicts, same
   * usage counts). `options` may lower limits as for {@link fromKeyBlock};
   * the window size comes from the state. Throws INVALID_ARGUMENT on state
   * that does not hold together.
   */
  static fromState(state: ProtectedChannelState, options: Omit<ProtectedChannelOptions, 'replayWindow' | 'initialSequence'> = {}): ProtectedChannel {
    if (typeof state !== 'object' || state === null) throw new AtlsError('INVALID_ARGUMENT', 'channel state must be an object');
    const spec = specOf(state.suite);
    if (state.role !== 'client' && state.role !== 'server') throw new AtlsError('INVALID_ARGUMENT', `role must be 'client' or 'server'`);
    const k = spec.keyLength;
    const secrets = state.secrets;
    if (!(secrets instanceof Uint8Array) || secrets.length !== 2 * k + 2 * IV_LENGTH) {
      throw new AtlsError('INVALID_ARGUMENT', `channel secrets must be ${2 * k + 2 * IV_LENGTH} bytes for ${spec.iana}`);
    }
    const count = (name: string, v: unknown): number => {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new AtlsError('INVALID_ARGUMENT', `${name} must be a non-negative integer`);
      return v;
    };
    const sentUnits = count('sentUnits', state.sentUnits);
    const failedUnits = count('failedUnits', state.failedUnits);
    const exhausted = state.nextSend === MAX_SEQUENCE_PLUS_ONE;
    const window = ReplayWindow.fromState(state.window);
    const ch = new ProtectedChannel(
      spec,
      state.role,
      {
        sendKey: secrets.subarray(0, k),
        receiveKey: secrets.subarray(k, 2 * k),
        sendIv: secrets.subarray(2 * k, 2 * k + IV_LENGTH),
        receiveIv: secrets.subarray(2 * k + IV_LENGTH),
      },
      { ...options, replayWindow: window.size, initialSequence: exhausted ? 0 : state.nextSend },
    );
    ch.window = window;
    ch.sendExhausted = exhausted;
    ch.sentUnits = sentUnits;
    ch.failedUnits = failedUnits;
    return ch;
  }

  /** Zeroes the keys and IVs; every later seal()/open() throws CLOSED. Idempotent. */
  destroy(): void {
    this.mem.fill(0);
    this.sealer?.free();
    this.opener?.free();
    this.sealer = this.opener = null;
    NONCE_SCRATCH.fill(0);
    const closed = new AtlsError('CLOSED', 'protected channel destroyed');
    this.sendError = closed;
    this.receiveError = closed;
  }
}
