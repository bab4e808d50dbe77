/**
 * Reading a Web body stream into one buffer under a size cap, without
 * buffering what exceeds it: memory stays bounded whatever the sender does.
 * @module
 */
import { AtlsError, type ErrorSource } from './errors.js';
import { concatBytes } from './bytes.js';

/**
 * Reads `body` whole. More than `max` bytes -> TOO_LARGE (the stream is
 * cancelled). A stream that breaks mid-way -> TRUNCATED_FLIGHT when the
 * bytes come from the peer (`source` remote), INVALID_ARGUMENT when they are
 * our own caller's.
 *
 * @example
 * ```ts
 * const bytes = await readLimited(request.body, 1 << 20, 'remote');
 * ```
 */
export async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  source: ErrorSource,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > max) {
        await reader.cancel().catch(() => undefined);
        throw new AtlsError('TOO_LARGE', `body exceeds ${max} bytes`, { source });
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof AtlsError) throw e;
    throw source === 'remote'
      ? new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source, cause: e })
      : new AtlsError('INVALID_ARGUMENT', 'cannot read the body', { source, cause: e });
  } finally {
    reader.releaseLock();
  }
  return chunks.length === 1 ? chunks[0]! : concatBytes(chunks);
}

type ReadResult = Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']>>;

const STALLED = Symbol('stalled');

/** Resolves after one macrotask turn: by then a producer that has data at hand has delivered it. */
function nextTurn(): Promise<typeof STALLED> {
  return new Promise((resolve) => {
    if (typeof setImmediate === 'function') setImmediate(() => resolve(STALLED));
    else setTimeout(() => resolve(STALLED), 0);
  });
}

/** What {@link AtHandReader.readAtHand} found. */
export interface AtHand {
  chunks: Uint8Array[];
  bytes: number;
  /** True when the stream ended within what was read. */
  done: boolean;
}

/**
 * A stream reader that can tell a body that is at hand from one still being
 * produced, so that a sender can keep a small complete body in its compact
 * form and send a slow one's first bytes at once, instead of waiting for more.
 */
export class AtHandReader {
  private pending: Promise<ReadResult> | undefined;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** The next piece (a read left pending by {@link readAtHand} first). */
  read(): Promise<ReadResult> {
    const p = this.pending ?? this.reader.read();
    this.pending = undefined;
    return p;
  }

  /**
   * Reads while the producer keeps up: stops at the end, once more than `max`
   * bytes were read, or when a read is still pending after one macrotask turn
   * (the pending read is kept for {@link read}).
   */
  async readAtHand(max: number): Promise<AtHand> {
    const chunks: Uint8Array[] = [];
    let bytes = 0;
    for (;;) {
      const p = this.read();
      const r = await Promise.race([p, nextTurn()]);
      if (r === STALLED) {
        this.pending = p;
        return { chunks, bytes, done: false };
      }
      if (r.done) return { chunks, bytes, done: true };
      chunks.push(r.value);
      bytes += r.value.length;
      if (bytes > max) return { chunks, bytes, done: false };
    }
  }

  cancel(reason?: unknown): Promise<void> {
    this.pending = undefined;
    return this.reader.cancel(reason);
  }
}

/** A Node writable (socket, client request, server response) as {@link drainedOrClosed} needs it. */
interface Drainable {
  on(event: 'drain' | 'close', listener: () => void): unknown;
  off(event: 'drain' | 'close', listener: () => void): unknown;
}

/** Resolves when `writable` can take more, or has closed (then nothing more will drain). */
export function drainedOrClosed(writable: Drainable): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      writable.off('drain', done);
      writable.off('close', done);
      resolve();
    };
    writable.on('drain', done);
    writable.on('close', done);
  });
}
