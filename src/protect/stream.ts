/**
 * Protected streams (docs/protocol.md §4.1): a body too large to hold, or
 * not yet complete, travels as a sequence of protected chunks in one
 * transport body. Each chunk has its own sequence number; the AAD binds it
 * to the stream's first number and to its index, and the last chunk carries
 * the final flag, so a receiver detects chunks that were reordered, dropped,
 * repeated, spliced from another stream, or a body cut short. A body that
 * fits in one chunk and is complete when sent stays one protected message
 * (§4), byte for byte as before.
 *
 * @example
 * ```ts
 * const body = protectBody(channel, response.body);    // ReadableStream of wire bytes
 * const plain = unprotectBody(peerChannel, body);       // ReadableStream of plaintext
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { concatBytes } from '../bytes.js';
import type { ProtectedChannel } from './channel.js';
import { CHUNK_FLAG, MAX_CHUNK_HEADER_LENGTH, MAX_CHUNK_PLAINTEXT, readChunkHeader, type ChunkHeaderFields } from './header.js';

/** Largest AEAD tag of the cipher suites (16 bytes; CCM_8 has 8). */
const MAX_TAG_LENGTH = 16;

/**
 * What seals a body: a {@link ProtectedChannel} (its own send counter), or a
 * session whose send numbers come from a store, which reserves them in
 * `ready` before the chunks are sealed.
 */
export interface BodySealer {
  /** One protected message (§4): the whole body, when it is small and complete. */
  seal(plaintext: Uint8Array): Uint8Array | Promise<Uint8Array>;
  sealChunk: ProtectedChannel['sealChunk'];
  /** Called (and awaited) before `chunks` more chunks are sealed. */
  ready?(chunks: number): void | Promise<void>;
}

/** What opens the chunks of a stream: a channel, or a view of one that leaves chunk 0's replay check to a store. */
export type ChunkOpening = Pick<ProtectedChannel, 'spec' | 'openChunk'>;

/** Chunks {@link StreamSealer.write} makes of `bytes` plaintext bytes. */
export function chunksFor(bytes: number): number {
  return Math.ceil(bytes / MAX_CHUNK_PLAINTEXT);
}

/** True when a body starting with `firstByte` is a chunk stream rather than one protected message. */
export function startsChunkStream(firstByte: number): boolean {
  return (firstByte & CHUNK_FLAG) !== 0;
}

/** Seals a stream's plaintext, as it comes, into chunks. */
export class StreamSealer {
  private start: bigint | undefined;
  private index = 0n;
  private ended = false;

  constructor(private readonly channel: Pick<BodySealer, 'sealChunk'>) {}

  /** Chunks for `data` (none for empty data), each at most {@link MAX_CHUNK_PLAINTEXT} bytes of plaintext. */
  write(data: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let at = 0; at < data.length; at += MAX_CHUNK_PLAINTEXT) {
      out.push(this.seal(data.subarray(at, at + MAX_CHUNK_PLAINTEXT), false));
    }
    return out;
  }

  /**
   * The chunks of `data` as {@link write} makes them, sealed into one
   * buffer (empty for empty data): one allocation, and one piece for the
   * stream's consumer, per piece of plaintext instead of one per chunk.
   */
  writeJoined(data: Uint8Array): Uint8Array {
    const room = new Uint8Array(data.length + chunksFor(data.length) * (MAX_CHUNK_HEADER_LENGTH + MAX_TAG_LENGTH));
    let at = 0;
    for (let from = 0; from < data.length; from += MAX_CHUNK_PLAINTEXT) {
      const chunk = this.seal(data.subarray(from, from + MAX_CHUNK_PLAINTEXT), false, room.subarray(at));
      // A sealer may ignore the room it was offered (`into` is optional): then the chunk is copied in.
      if (chunk.buffer !== room.buffer || chunk.byteOffset !== room.byteOffset + at) room.set(chunk, at);
      at += chunk.length;
    }
    return room.subarray(0, at);
  }

  /** The final chunk (with `last`, possibly empty, as its plaintext) after any chunks `last` needs first. */
  end(last: Uint8Array = new Uint8Array(0)): Uint8Array[] {
    const full = Math.max(0, Math.ceil(last.length / MAX_CHUNK_PLAINTEXT) - 1) * MAX_CHUNK_PLAINTEXT;
    const out = this.write(last.subarray(0, full));
    out.push(this.seal(last.subarray(full), true));
    return out;
  }

  private seal(plaintext: Uint8Array, final: boolean, into?: Uint8Array): Uint8Array {
    if (this.ended) throw new AtlsError('INVALID_STATE', 'the protected stream has ended');
    const { chunk, seq } = this.channel.sealChunk(plaintext, final, this.start, this.index, into);
    this.start ??= seq;
    this.index++;
    this.ended = final;
    return chunk;
  }
}

/**
 * Opens a chunk stream as its bytes arrive, in pieces of any size. Holds at
 * most one incomplete chunk. Every failure is final for the stream.
 */
export class StreamOpener {
  private start: bigint | undefined;
  private index = 0n;
  private pending: Uint8Array = new Uint8Array(0);
  private finished = false;
  private failed: AtlsError | undefined;
  private readonly header: ChunkHeaderFields = { hi: 0, lo: 0, headerLength: 0, sealedLength: 0, final: false };

  constructor(private readonly channel: ChunkOpening) {}

  /** True once the final chunk was opened. */
  get done(): boolean {
    return this.finished;
  }

  /** The plaintext of every chunk that `bytes` completes. */
  push(bytes: Uint8Array): Uint8Array[] {
    if (this.failed) throw this.failed;
    try {
      return this.take(bytes);
    } catch (e) {
      this.failed = e instanceof AtlsError ? e : new AtlsError('INTERNAL', 'protected stream failed', { cause: e });
      throw this.failed;
    }
  }

  /** The body ended: throws MALFORMED_MESSAGE (remote) unless the final chunk was opened. */
  end(): void {
    if (this.failed) throw this.failed;
    if (!this.finished) {
      this.failed = new AtlsError('MALFORMED_MESSAGE', `protected stream cut short after ${this.index} chunk(s): no final chunk`, { source: 'remote' });
      throw this.failed;
    }
  }

  private take(bytes: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let buf = bytes;
    if (this.pending.length > 0) {
      // Complete the chunk left over from the last piece with the bytes it needs (no copy of the whole piece).
      const size = this.sizeOf(concat(this.pending, bytes.subarray(0, MAX_CHUNK_HEADER_LENGTH)));
      if (size === undefined || this.pending.length + bytes.length < size) {
        this.pending = concat(this.pending, bytes); // still at most one chunk
        return out;
      }
      const need = size - this.pending.length;
      this.open(concat(this.pending, bytes.subarray(0, need)), out);
      this.pending = new Uint8Array(0);
      buf = bytes.subarray(need);
    }
    for (;;) {
      const size = buf.length === 0 ? undefined : this.sizeOf(buf);
      if (size === undefined || buf.length < size) break;
      this.open(buf.subarray(0, size), out);
      buf = buf.subarray(size);
    }
    // Copied: the caller's buffer may be reused; at most one chunk is kept.
    this.pending = buf.length === 0 ? new Uint8Array(0) : buf.slice();
    return out;
  }

  /** The size of the chunk `buf` starts with, once its header is complete. */
  private sizeOf(buf: Uint8Array): number | undefined {
    if (this.finished) throw new AtlsError('MALFORMED_MESSAGE', 'bytes after the final chunk of a protected stream', { source: 'remote' });
    if (!readChunkHeader(buf, this.channel.spec.tagLength, this.header)) return undefined;
    return this.header.headerLength + this.header.sealedLength;
  }

  /** Opens one whole chunk; its plaintext goes to `out`. */
  private open(chunk: Uint8Array, out: Uint8Array[]): void {
    const opened = this.channel.openChunk(chunk, this.start, this.index);
    this.start ??= opened.seq;
    this.index++;
    this.finished = opened.final;
    if (opened.plaintext.length > 0) out.push(opened.plaintext);
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** Options of {@link protectBody}. */
export interface ProtectBodyOptions {
  /**
   * Looks at the body's first piece: true starts the chunk stream with it
   * at once instead of holding up to 16 KiB to see whether the body stays
   * small (e.g. a Binary HTTP message in the indeterminate-length form is
   * one whose content was not at hand: its head should leave now).
   */
  streamAtOnce?: (first: Uint8Array) => boolean;
}

/**
 * The wire form of a body: one protected message (§4) when the body ends
 * within {@link MAX_CHUNK_PLAINTEXT} bytes, a chunk stream (§4.1)
 * otherwise; chunks go out as the plaintext arrives.
 */
export function protectBody(
  channel: BodySealer,
  body: ReadableStream<Uint8Array> | null,
  options: ProtectBodyOptions = {},
): ReadableStream<Uint8Array> {
  const reader = body?.getReader();
  let first = true;
  let held: Uint8Array[] = [];
  let heldBytes = 0;
  let sealer: StreamSealer | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const r = reader ? await reader.read() : { done: true as const, value: undefined };
        if (r.done) {
          const rest = concatAll(held);
          held = [];
          if (sealer) {
            await channel.ready?.(Math.max(1, chunksFor(rest.length)));
            for (const c of sealer.end(rest)) controller.enqueue(c);
          } else controller.enqueue(await channel.seal(rest)); // small and complete: one message, no extra byte
          controller.close();
          return;
        }
        if (sealer) {
          if (r.value.length === 0) continue;
          await channel.ready?.(chunksFor(r.value.length));
          controller.enqueue(sealer.writeJoined(r.value));
          return;
        }
        held.push(r.value);
        heldBytes += r.value.length;
        const now = first && options.streamAtOnce?.(r.value) === true;
        first = false;
        if (heldBytes > MAX_CHUNK_PLAINTEXT || now) {
          sealer = new StreamSealer(channel);
          await channel.ready?.(chunksFor(heldBytes));
          const sealed = sealer.writeJoined(concatAll(held));
          held = [];
          if (sealed.length > 0) controller.enqueue(sealed);
          return;
        }
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  });
}

/** One array of the parts, without a copy when there is only one. */
function concatAll(parts: Uint8Array[]): Uint8Array {
  return parts.length === 1 ? parts[0]! : concatBytes(parts);
}

/**
 * The plaintext of a body in either form, as it arrives: a body whose
 * first byte has no chunk flag is one protected message, read whole (at
 * most `maxMessageBytes`); a chunk stream is opened chunk by chunk. The
 * stream errors with the AtlsError of the first failure (forged, reordered
 * or truncated chunks included).
 */
export function unprotectBody(
  channel: ProtectedChannel,
  body: ReadableStream<Uint8Array> | null,
  maxMessageBytes: number,
): ReadableStream<Uint8Array> {
  const reader = body?.getReader();
  let opener: StreamOpener | undefined;
  let single: Uint8Array[] | undefined;
  let singleBytes = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      for (;;) {
        const r = reader ? await reader.read() : { done: true as const, value: undefined };
        if (r.done) {
          if (opener) opener.end();
          else controller.enqueue(channel.open(concatAll(single ?? [])));
          controller.close();
          return;
        }
        if (r.value.length === 0) continue;
        if (!opener && !single) {
          if (startsChunkStream(r.value[0]!)) opener = new StreamOpener(channel);
          else single = [];
        }
        if (opener) {
          let plain: Uint8Array[];
          try {
            plain = opener.push(r.value);
          } catch (e) {
            // The stream is over: stop its transport too (an unread body would hold its connection).
            await reader?.cancel(e).catch(() => undefined);
            throw e;
          }
          for (const p of plain) controller.enqueue(p);
          if (plain.length > 0) return;
          continue;
        }
        singleBytes += r.value.length;
        if (singleBytes > maxMessageBytes) {
          await reader?.cancel();
          throw new AtlsError('TOO_LARGE', `protected message exceeds ${maxMessageBytes} bytes`, { source: 'remote' });
        }
        single!.push(r.value);
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  });
}
