/**
 * The server side of streamed bodies in the HTTP binding (docs/protocol.md
 * §5.14): the pieces the handler puts together when a body is too large to
 * hold or not complete when sending starts.
 *
 * - exported mode: a request body that is a chunk stream (§4.1) opened chunk
 *   by chunk, chunk 0 judged by the session store before any plaintext goes
 *   on ({@link openRequestChunks}); the answer sealed as it is produced.
 * - records mode: a request body cut into whole records as it arrives and
 *   fed to the engine ({@link RecordsIn}); the answer encrypted into
 *   records as it is produced, one engine call at a time ({@link EngineQueue}).
 *
 * Memory per exchange stays bounded by one chunk or one record group each
 * way, whatever the body's size.
 *
 * @example
 * ```ts
 * const plain = openRequestChunks(core, session, body, (sendSeq) => answer(sendSeq));
 * const request = await bhttpStreamToRequest(plain, base, { maxContent });
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { concatBytes } from '../bytes.js';
import { StreamOpener } from '../protect/index.js';
import { TLS_HEADER_LENGTH, wholeRecordsLength } from '../records.js';
import type { EndpointCore, EstablishedSession, LiveSession } from '../endpoint/core.js';

/** A stream of `first` and then the rest of `reader`. */
export function prepend(first: Uint8Array, reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (!sent) {
          sent = true;
          controller.enqueue(first);
          return;
        }
        const r = await reader.read();
        if (r.done) controller.close();
        else controller.enqueue(r.value);
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  );
}

/** A stream of the given pieces. */
export function streamOfBytes(...parts: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const p of parts) if (p.length > 0) controller.enqueue(p);
      controller.close();
    },
  });
}

/**
 * `body` passed through, with `onEnd` called once when it closes, errors
 * or is cancelled (to release a session held for the exchange), and
 * `check` asked before each piece and before the end: an error it returns
 * cuts the stream (the answer to a request whose body failed must not look
 * complete).
 */
export function watched(
  body: ReadableStream<Uint8Array>,
  onEnd: () => void,
  check: () => AtlsError | undefined = () => undefined,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let ended = false;
  const end = (): void => {
    if (ended) return;
    ended = true;
    onEnd();
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const r = await reader.read();
          const failed = check();
          if (failed) throw failed;
          if (r.done) {
            end();
            controller.close();
          } else controller.enqueue(r.value);
        } catch (e) {
          end();
          await reader.cancel(e).catch(() => undefined);
          throw e;
        }
      },
      async cancel(reason) {
        end();
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The plaintext of a request body that is a chunk stream, for an
 * established exported session whose window and counters live in the
 * store. Chunks are authenticated with the cached keys; chunk 0's number
 * is committed to the store (replay window, the answer's send number:
 * `onAccepted`) before any plaintext is delivered, so a replayed stream
 * never reaches the application. A chunk that fails authentication is
 * charged like a failed message. Errors are AtlsErrors (remote): cut
 * short, reordered, forged, replayed.
 */
export function openRequestChunks(
  core: EndpointCore,
  s: EstablishedSession,
  body: ReadableStream<Uint8Array>,
  onAccepted: (sendSeq: number) => void,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let chunk0: bigint | undefined;
  let accepted = false;
  const opener = new StreamOpener({
    spec: s.channel.spec,
    openChunk: (chunk, start, index) => {
      try {
        const r = s.channel.authenticateChunk(chunk, start, index);
        if (start === undefined) chunk0 = r.seq;
        return r;
      } catch (e) {
        if (e instanceof AtlsError && (e.code === 'DECRYPT_FAILED' || e.code === 'KEY_LIMIT_REACHED')) {
          // Charged to the store's integrity count (it may end the session); the stream fails either way.
          void Promise.resolve()
            .then(() => core.rejectChunk(s, chunk.length, e))
            .catch(() => undefined);
        }
        throw e;
      }
    },
  });
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          let r: ReadResult;
          try {
            r = await reader.read();
          } catch (e) {
            throw e instanceof AtlsError ? e : new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source: 'remote', cause: e });
          }
          if (r.done) {
            opener.end(); // MALFORMED_MESSAGE when the final chunk never came
            controller.close();
            return;
          }
          const plain = opener.push(r.value);
          if (!accepted && chunk0 !== undefined) {
            const sendSeq = core.acceptStream(s, Number(chunk0));
            onAccepted(sendSeq instanceof Promise ? await sendSeq : sendSeq);
            accepted = true;
          }
          for (const p of plain) controller.enqueue(p);
          if (plain.length > 0) return;
        }
      },
      async cancel(reason) {
        await reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * One engine call at a time for a records-mode exchange whose request
 * records arrive while answer records are produced (the session refuses
 * overlapping calls). Calls run in the order they were queued, so records
 * go out in the order the engine made them.
 */
export class EngineQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/**
 * Records mode: the request body cut into whole records as it arrives (the
 * one record scanner, `wholeRecordsLength`) and fed to the engine;
 * `plaintext` yields the application data. Holds at most one incomplete
 * record plus one piece of the body. Records the engine answers with while
 * reading (post-handshake messages) go to `onFlight`. A body that ends
 * inside a record is TRUNCATED_FLIGHT; a close_notify ends the data.
 *
 * TLS records are sequenced: every record of the body must reach the
 * engine, or the session's next request would not decrypt. So a consumer
 * that stops early (an app that does not read the body, a body refused as
 * too large) leaves the rest to {@link finish}, which feeds it and drops the data.
 */
export class RecordsIn {
  readonly plaintext: ReadableStream<Uint8Array>;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private pending: Uint8Array = new Uint8Array(0);
  private ended = false;
  private dropping = false;
  private turn: Promise<unknown> = Promise.resolve();
  /** The first failure: the body is not read further after it. */
  private failure: unknown;
  /**
   * Records of this body have reached the engine. A failure after that leaves
   * the session's records out of step with the peer's; a failure before it
   * (a forged, replayed or cut-off record refused before the engine) leaves
   * the session as it was.
   */
  fed = false;

  constructor(
    private readonly core: EndpointCore,
    private readonly live: LiveSession,
    body: ReadableStream<Uint8Array>,
    private readonly engine: EngineQueue,
    private readonly onFlight: (records: Uint8Array) => void,
  ) {
    this.reader = body.getReader();
    this.plaintext = new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          for (;;) {
            const data = await this.serially(() => this.step());
            if (data === undefined) {
              controller.close();
              return;
            }
            if (this.dropping) continue;
            for (const d of data) controller.enqueue(d);
            if (data.length > 0) return;
          }
        },
        cancel: () => {
          this.dropping = true;
        },
      },
      { highWaterMark: 0 },
    );
  }

  /** Feeds what is left of the body to the engine, dropping its data; rejects as the body does. */
  async finish(): Promise<void> {
    this.dropping = true;
    while ((await this.serially(() => this.step())) !== undefined);
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.turn.then(async () => {
      if (this.failure !== undefined) throw this.failure;
      try {
        return await fn();
      } catch (e) {
        this.failure = e;
        throw e;
      }
    });
    this.turn = next.catch(() => undefined);
    return next;
  }

  /** One piece of the body through the engine: its data, or undefined at the end. */
  private async step(): Promise<Uint8Array[] | undefined> {
    if (this.ended) return undefined;
    const r = await readOrTruncated(this.reader);
    if (r.done) {
      this.ended = true;
      if (this.pending.length > 0) throw new AtlsError('TRUNCATED_FLIGHT', `body ends inside a record (${this.pending.length} bytes left)`, { source: 'remote' });
      return undefined;
    }
    let piece = r.value;
    const data: Uint8Array[] = [];
    if (this.pending.length > 0) {
      // Complete the record left over from the last piece with as few bytes as it needs (no copy of the whole piece).
      const need = this.pending.length < TLS_HEADER_LENGTH ? TLS_HEADER_LENGTH - this.pending.length : recordEnd(this.pending) - this.pending.length;
      const joined = concatBytes([this.pending, piece.subarray(0, need)]);
      piece = piece.subarray(Math.min(need, piece.length));
      if (joined.length < TLS_HEADER_LENGTH || joined.length < recordEnd(joined)) {
        this.pending = joined;
        if (piece.length === 0) return [];
        return this.stepWith(data, concatBytes([joined, piece]));
      }
      this.pending = new Uint8Array(0);
      data.push(...(await this.feed(joined)));
      if (this.ended) return data;
    }
    return this.stepWith(data, piece);
  }

  /** Feeds the whole records at the start of `buf`, keeps (a copy of) the incomplete one after them. */
  private async stepWith(data: Uint8Array[], buf: Uint8Array): Promise<Uint8Array[]> {
    const whole = wholeRecordsLength(buf);
    // Copied: the front may reuse its buffer; at most one record is kept.
    this.pending = buf.subarray(whole).slice();
    if (whole > 0) data.push(...(await this.feed(buf.subarray(0, whole))));
    return data;
  }

  private async feed(records: Uint8Array): Promise<Uint8Array[]> {
    const step = await this.engine.run(() => this.core.flight(this.live, records));
    this.fed = true;
    if (step.flight.length > 0) this.onFlight(step.flight);
    if (step.closed) this.ended = true;
    return step.data;
  }
}

/** Where the record starting at `b[0]` ends (header + its length field); `b` holds at least the header. */
function recordEnd(b: Uint8Array): number {
  return TLS_HEADER_LENGTH + ((b[3]! << 8) | b[4]!);
}

/** One read of a stream reader. */
export type ReadResult = Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']>>;

/** A read of the peer's body: a broken transport becomes TRUNCATED_FLIGHT (remote). */
export async function readOrTruncated(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<ReadResult> {
  try {
    return await reader.read();
  } catch (e) {
    throw e instanceof AtlsError ? e : new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source: 'remote', cause: e });
  }
}

/**
 * `body` passed through; its first error (as an AtlsError) is also told to
 * `onError`, and so is an AtlsError its consumer cancels it with (the
 * Binary HTTP decoder does so for content over its limit).
 */
export function failOnError(body: ReadableStream<Uint8Array>, onError: (e: AtlsError) => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const r = await reader.read();
          if (r.done) controller.close();
          else controller.enqueue(r.value);
        } catch (e) {
          const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', `request body failed: ${String(e)}`, { cause: e });
          onError(err);
          throw err;
        }
      },
      cancel: (reason) => {
        if (reason instanceof AtlsError) onError(reason);
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * The body of a reply: when its first piece is the whole answer (`whole`:
 * one protected message, or records of a known-length answer), bytes, sent
 * with a Content-Length as before; otherwise the stream, its first piece
 * already read (a failure before it is the reply's error, not a cut body).
 */
export async function settle(body: ReadableStream<Uint8Array>, whole: (first: Uint8Array) => boolean): Promise<Uint8Array | ReadableStream<Uint8Array>> {
  const reader = body.getReader();
  const first = await reader.read();
  if (first.done) return new Uint8Array(0);
  if (!whole(first.value)) return prepend(first.value, reader);
  const parts = [first.value];
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
  }
  return parts.length === 1 ? parts[0]! : concatBytes(parts);
}
