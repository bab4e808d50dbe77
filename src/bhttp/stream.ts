/**
 * Binary HTTP as streams (RFC 9292 §3.2 indeterminate-length messages): the
 * encoder emits the head as soon as it is known and each piece of content as
 * it arrives; the decoder returns the head once it is complete and then the
 * content as a `ReadableStream`. Memory stays bounded by the head limits and
 * one piece of content, whatever the message's size.
 *
 * The decoder reads both framings (a known-length message is streamed too,
 * its content is not gathered), with the bounds of {@link BhttpLimits}:
 * `TOO_LARGE` (remote) over a limit, `MALFORMED_MESSAGE` (remote) for a bad
 * or cut-short message, both as the rejection of the head or the error of
 * the content stream.
 *
 * @example
 * ```ts
 * const wire = encodeResponseStream({ status: 200, headers: [['content-type', 'text/plain']] }, body);
 * const res = await decodeResponseStream(wire, { maxContent: 1 << 30 });
 * for await (const piece of res.content) use(piece);
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { ByteReader, concatBytes } from '../bytes.js';
import { varintLength } from './varint.js';
import {
  checkStatus,
  controlValuesProblem,
  FieldBudget,
  INDETERMINATE_REQUEST,
  INDETERMINATE_RESPONSE,
  KNOWN_REQUEST,
  KNOWN_RESPONSE,
  limitsOf,
  localError,
  malformed,
  Out,
  prepareSection,
  requestControlData,
  tooLarge,
  encodeRequest,
  encodeResponse,
  type BhttpEncodeOptions,
  type BhttpInformational,
  type BhttpLimits,
  type BhttpRequestInit,
  type BhttpResponseInit,
  type FieldLine,
  type FieldLinesInit,
  type PreparedSection,
  type SectionKind,
} from './codec.js';
import { latin1String } from './fields.js';
import { AtHandReader } from '../streams.js';

/** A request's head: control data and header section. */
export type BhttpRequestHeadInit = Omit<BhttpRequestInit, 'content' | 'trailers'>;
/** A response's head: informational responses, status and header section. */
export type BhttpResponseHeadInit = Omit<BhttpResponseInit, 'content' | 'trailers'>;

/**
 * Content of one encoded chunk at most, so that a chunk with its 2-byte
 * length is 16,384 bytes: one protected chunk (docs/protocol.md §4.1) or
 * one TLS record carries it whole.
 */
export const MAX_CHUNK_CONTENT = 16384 - 2;

// ---------------------------------------------------------------------------
// Encoding

function indeterminateSectionSize(s: PreparedSection): number {
  return s.size + 1; // field lines, then a zero Name Length (RFC 9292 §3.2)
}

function writeIndeterminateSection(o: Out, s: PreparedSection): void {
  o.fieldLines(s);
  o.varint(0);
}

/**
 * The head of an indeterminate-length request (framing indicator 2): control
 * data and header section with its terminator. Invalid input throws
 * `INVALID_ARGUMENT` (local), as {@link encodeRequest} does.
 */
export function encodeRequestHead(head: BhttpRequestHeadInit): Uint8Array {
  const control = requestControlData(head);
  const headers = prepareSection(head.headers, 'header');
  let size = varintLength(INDETERMINATE_REQUEST) + indeterminateSectionSize(headers);
  for (const b of control) size += varintLength(b.length) + b.length;
  const o = new Out(size);
  o.varint(INDETERMINATE_REQUEST);
  for (const b of control) o.lengthPrefixed(b);
  writeIndeterminateSection(o, headers);
  return o.buf;
}

/** The head of an indeterminate-length response (framing indicator 3), informational responses first. */
export function encodeResponseHead(head: BhttpResponseHeadInit): Uint8Array {
  const status = checkStatus(head.status, 200, 599, 'final status'); // RFC 9292 §3.5
  const infos = (head.informational ?? []).map((i) => ({
    status: checkStatus(i.status, 100, 199, 'informational status'), // RFC 9292 §3.5.1
    headers: prepareSection(i.headers, 'header'),
  }));
  const headers = prepareSection(head.headers, 'header');
  let size = varintLength(INDETERMINATE_RESPONSE) + varintLength(status) + indeterminateSectionSize(headers);
  for (const i of infos) size += varintLength(i.status) + indeterminateSectionSize(i.headers);
  const o = new Out(size);
  o.varint(INDETERMINATE_RESPONSE);
  for (const i of infos) {
    o.varint(i.status);
    writeIndeterminateSection(o, i.headers);
  }
  o.varint(status);
  writeIndeterminateSection(o, headers);
  return o.buf;
}

/**
 * Content as indeterminate-length chunks (RFC 9292 §3.2): one encoded chunk
 * per {@link MAX_CHUNK_CONTENT} bytes; nothing for empty content (a zero
 * length would end the content).
 */
export function encodeContentChunks(content: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < content.length; at += MAX_CHUNK_CONTENT) {
    const piece = content.subarray(at, at + MAX_CHUNK_CONTENT);
    const o = new Out(varintLength(piece.length) + piece.length);
    o.lengthPrefixed(piece);
    out.push(o.buf);
  }
  return out;
}

/**
 * The same chunks as {@link encodeContentChunks}, in one buffer (empty for
 * empty content): a streamed piece costs one allocation and, downstream,
 * one engine call or seal run instead of one per chunk.
 */
export function encodeContentPiece(content: Uint8Array): Uint8Array {
  const full = Math.floor(content.length / MAX_CHUNK_CONTENT);
  const rest = content.length - full * MAX_CHUNK_CONTENT;
  const o = new Out(full * (varintLength(MAX_CHUNK_CONTENT) + MAX_CHUNK_CONTENT) + (rest > 0 ? varintLength(rest) + rest : 0));
  for (let at = 0; at < content.length; at += MAX_CHUNK_CONTENT) o.lengthPrefixed(content.subarray(at, at + MAX_CHUNK_CONTENT));
  return o.buf;
}

/** The end of an indeterminate-length message: the content terminator and the trailer section. */
export function encodeEnd(trailers?: FieldLinesInit): Uint8Array {
  const section = prepareSection(trailers, 'trailer');
  const o = new Out(1 + indeterminateSectionSize(section));
  o.varint(0); // RFC 9292 §3.2: Content Terminator
  writeIndeterminateSection(o, section);
  return o.buf;
}

/** Options of the stream encoders. */
export interface BhttpStreamEncodeOptions extends BhttpEncodeOptions {
  /**
   * Content that has ended, at hand, within this many bytes is sent in the
   * known-length form instead (byte for byte what {@link encodeRequest} or
   * {@link encodeResponse} would give, `truncate` and `padding` applying),
   * so small messages stay compact. Content "at hand" is content whose
   * producer delivers it without waiting (see AtHandReader). Default 0:
   * always the indeterminate-length form.
   */
  knownLengthMax?: number;
  /** Called when the content has ended; its field lines become the trailer section. */
  trailers?: () => FieldLinesInit | undefined;
}

/**
 * The wire form of a message: the head as soon as it is known, each piece of
 * content as it arrives, then the end; or one known-length message when the
 * content is small and at hand (`known`). Backpressure passes through:
 * content is read only as the output is read.
 */
function encodeStream(
  head: Uint8Array,
  known: (content: Uint8Array) => Uint8Array,
  content: ReadableStream<Uint8Array> | null,
  options: BhttpStreamEncodeOptions,
): ReadableStream<Uint8Array> {
  const reader = content ? new AtHandReader(content.getReader()) : undefined;
  const knownMax = options.knownLengthMax ?? 0;
  let headSent = false;
  const enqueueContent = (controller: ReadableStreamDefaultController<Uint8Array>, piece: unknown): number => {
    if (!(piece instanceof Uint8Array)) throw localError('content chunk is not a Uint8Array');
    if (piece.length === 0) return 0;
    controller.enqueue(encodeContentPiece(piece));
    return 1;
  };
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (!headSent) {
          headSent = true;
          if (knownMax > 0) {
            const at = reader ? await reader.readAtHand(knownMax) : { chunks: [], bytes: 0, done: true };
            if (at.done && at.bytes <= knownMax) {
              controller.enqueue(known(at.chunks.length === 1 ? at.chunks[0]! : concatBytes(at.chunks)));
              controller.close();
              return;
            }
            controller.enqueue(head);
            for (const piece of at.chunks) enqueueContent(controller, piece);
            if (at.done) {
              controller.enqueue(encodeEnd(options.trailers?.()));
              controller.close();
            }
            return;
          }
          controller.enqueue(head);
          return;
        }
        for (;;) {
          const r = reader ? await reader.read() : { done: true as const, value: undefined };
          if (r.done) {
            controller.enqueue(encodeEnd(options.trailers?.()));
            controller.close();
            return;
          }
          if (enqueueContent(controller, r.value) > 0) return;
        }
      },
      async cancel(reason) {
        await reader?.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}

/**
 * A request as a stream (RFC 9292 §3.2 indeterminate-length form): the head
 * first (validated now: invalid input throws `INVALID_ARGUMENT` at the
 * call), then `content` chunk by chunk as it is produced.
 *
 * @example
 * ```ts
 * const wire = encodeRequestStream({ method: 'POST', scheme: 'https', authority: 'a.example', path: '/up' }, file.stream());
 * ```
 */
export function encodeRequestStream(
  head: BhttpRequestHeadInit,
  content: ReadableStream<Uint8Array> | null,
  options: BhttpStreamEncodeOptions = {},
): ReadableStream<Uint8Array> {
  const bytes = encodeRequestHead(head);
  return encodeStream(bytes, (c) => encodeRequest({ ...head, content: c, trailers: options.trailers?.() }, options), content, options);
}

/** A response as a stream (RFC 9292 §3.2); see {@link encodeRequestStream}. */
export function encodeResponseStream(
  head: BhttpResponseHeadInit,
  content: ReadableStream<Uint8Array> | null,
  options: BhttpStreamEncodeOptions = {},
): ReadableStream<Uint8Array> {
  const bytes = encodeResponseHead(head);
  return encodeStream(bytes, (c) => encodeResponse({ ...head, content: c, trailers: options.trailers?.() }, options), content, options);
}

// ---------------------------------------------------------------------------
// Decoding

/** What a streamed message has besides its head. */
interface StreamedParts {
  framing: 'known-length' | 'indeterminate-length';
  /**
   * The content as it arrives. It closes only after the trailer section and
   * padding were read and checked; it errors with the `AtlsError` of the
   * first failure (bad framing, cut short, over `maxContent`, or the
   * error of the input stream). Cancelling it cancels the input.
   */
  content: ReadableStream<Uint8Array>;
  /** The trailer section: filled in when `content` has closed. */
  trailers: FieldLine[];
}

/** A request whose head is decoded and whose content streams. */
export interface BhttpStreamedRequest extends StreamedParts {
  method: string;
  scheme: string;
  authority: string;
  path: string;
  headers: FieldLine[];
}

/** A response whose head is decoded and whose content streams. */
export interface BhttpStreamedResponse extends StreamedParts {
  status: number;
  headers: FieldLine[];
  informational: BhttpInformational[];
}

/** Bytes of the input as they come, buffered only as far as a parse step needs. */
class Source {
  private readonly chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;

  constructor(
    private readonly reader: ReadableStreamDefaultReader<Uint8Array>,
    private readonly what: string,
  ) {}

  /** Reads one more piece; false at the end of the input. */
  private async fill(): Promise<boolean> {
    if (this.ended) return false;
    let r: Awaited<ReturnType<ReadableStreamDefaultReader<Uint8Array>["read"]>>;
    try {
      r = await this.reader.read();
    } catch (e) {
      if (e instanceof AtlsError) throw e;
      throw new AtlsError('TRUNCATED_FLIGHT', `${this.what}: the body could not be read: ${String(e)}`, { source: 'remote', cause: e });
    }
    if (r.done) {
      this.ended = true;
      return false;
    }
    if (r.value.length > 0) {
      this.chunks.push(r.value);
      this.buffered += r.value.length;
    }
    return true;
  }

  /** Waits until `n` bytes are buffered; a message that ends first is cut short. */
  async need(n: number, field: string): Promise<void> {
    while (this.buffered < n) {
      if (!(await this.fill())) throw malformed(this.what, `cut short in the ${field}`);
    }
  }

  /** True when the input has ended with nothing left to read. */
  async atEnd(): Promise<boolean> {
    while (this.buffered === 0) if (!(await this.fill())) return true;
    return false;
  }

  /** `n` buffered bytes (a view when they lie in one piece; else a copy of the pieces they span). */
  take(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    let first = this.chunks[0]!;
    if (first.length < n) {
      let count = 0;
      for (let have = 0; have < n; count++) have += this.chunks[count]!.length;
      first = concatBytes(this.chunks.splice(0, count));
      this.chunks.unshift(first);
    }
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.buffered -= n;
    return first.subarray(0, n);
  }

  /** Up to `max` bytes (at least one), without waiting for more than one piece. */
  async some(max: number, field: string): Promise<Uint8Array> {
    await this.need(1, field);
    return this.take(Math.min(max, this.chunks[0]!.length));
  }

  /** `n` bytes, waiting for them. */
  async bytes(n: number, field: string): Promise<Uint8Array> {
    await this.need(n, field);
    return this.take(n);
  }

  /** A QUIC variable-length integer (RFC 9000 §16). */
  async varint(field: string): Promise<number> {
    await this.need(1, field);
    const len = 1 << (this.chunks[0]![0]! >> 6);
    await this.need(len, field);
    const b = this.take(len);
    let v = b[0]! & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + b[i]!;
    return v;
  }

  cancel(reason?: unknown): Promise<void> {
    return this.reader.cancel(reason);
  }
}

/** Parses one message from a {@link Source}, keeping the field budget across sections. */
class StreamDecoder {
  readonly budget: FieldBudget;
  readonly limits: Required<BhttpLimits>;

  constructor(
    readonly src: Source,
    readonly what: string,
    readonly known: boolean,
    limits: BhttpLimits,
  ) {
    this.limits = limitsOf(limits);
    this.budget = new FieldBudget(what, this.limits);
  }

  /** One length-prefixed value of the control data, bounded by the field budget's byte limit. */
  async controlValue(field: string): Promise<Uint8Array> {
    const len = await this.src.varint(`${field} length`);
    if (len > this.limits.maxFieldBytes) throw tooLarge(this.what, `${field} of ${len} bytes exceeds ${this.limits.maxFieldBytes}`);
    return this.src.bytes(len, field);
  }

  /** A header or trailer section (RFC 9292 §3.1, §3.2). */
  async section(kind: SectionKind): Promise<FieldLine[]> {
    if (this.known) {
      const len = await this.src.varint(`${kind} section length`);
      // Each line is at most two 8-byte varints plus the bytes the budget counts.
      const bound = this.limits.maxFieldBytes + 16 * this.limits.maxFields;
      if (len > bound) throw tooLarge(this.what, `${kind} section of ${len} bytes exceeds ${bound}`);
      const bytes = await this.src.bytes(len, `${kind} section`);
      return this.budget.knownSection(new ByteReader(bytes, 'MALFORMED_MESSAGE', `${this.what} ${kind} section`), bytes.length, kind);
    }
    const out: FieldLine[] = [];
    let sawRegular = false;
    for (;;) {
      const nameLen = await this.src.varint(`${kind} field name length`);
      if (nameLen === 0) return out; // RFC 9292 §3.2: Content Terminator ends the section
      this.budget.name(nameLen);
      const name = await this.src.bytes(nameLen, 'field name');
      const valueLen = await this.src.varint('value length');
      this.budget.value(valueLen);
      const value = await this.src.bytes(valueLen, 'field value');
      sawRegular = this.budget.line(name, 0, name.length, value, 0, value.length, kind, sawRegular, out);
    }
  }

  /**
   * The content stream. RFC 9292 §3.8: a message may end before the content
   * or the trailer section (both then read as empty); anywhere else a cut is
   * `MALFORMED_MESSAGE`, so an indeterminate-length message must reach its
   * Content Terminator.
   */
  content(trailers: FieldLine[]): ReadableStream<Uint8Array> {
    const max = this.limits.maxContent;
    let started = false;
    let left = 0; // bytes left of the known length or of the current chunk
    let total = 0;
    let contentEnded = false;
    const finish = async (): Promise<void> => {
      if (!(await this.src.atEnd())) {
        trailers.push(...(await this.section('trailer')));
        await this.padding();
      }
    };
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          try {
            for (;;) {
              if (!started) {
                started = true;
                if (await this.src.atEnd()) break; // truncated before the content: empty, no trailers
                if (this.known) {
                  left = await this.src.varint('content length');
                  if (left > max) throw tooLarge(this.what, `content of ${left} bytes exceeds ${max}`);
                  total = left;
                  if (left === 0) contentEnded = true;
                }
              }
              if (contentEnded) break;
              if (left === 0) {
                // Indeterminate: the next chunk's length (RFC 9292 §3.2).
                const n = await this.src.varint('chunk length');
                if (n === 0) {
                  contentEnded = true;
                  break;
                }
                if (total + n > max) throw tooLarge(this.what, `content exceeds ${max} bytes`);
                total += n;
                left = n;
              }
              const piece = await this.src.some(left, 'content');
              left -= piece.length;
              if (this.known && left === 0) contentEnded = true;
              controller.enqueue(piece);
              return;
            }
            await finish();
            controller.close();
          } catch (e) {
            const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', `${this.what}: ${String(e)}`, { cause: e });
            controller.error(err);
            await this.src.cancel(err).catch(() => undefined);
          }
        },
        cancel: (reason) => this.src.cancel(reason),
      },
      { highWaterMark: 0 },
    );
  }

  /** Everything after the trailer section must be zero (RFC 9292 §3.8; validated, as the whole-message decoder does). */
  private async padding(): Promise<void> {
    while (!(await this.src.atEnd())) {
      const b = await this.src.some(65536, 'padding');
      for (let i = 0; i < b.length; i++) if (b[i] !== 0) throw malformed(this.what, 'non-zero padding byte');
    }
  }
}

async function framingOf(src: Source, what: string): Promise<number> {
  const framing = await src.varint('framing indicator');
  if (framing > INDETERMINATE_RESPONSE) throw malformed(what, `unknown framing indicator ${framing}`); // RFC 9292 §3.3
  return framing;
}

/** Runs `parse`; on failure cancels the input and rethrows a typed error. */
async function headOrCancel<T>(src: Source, what: string, parse: () => Promise<T>): Promise<T> {
  try {
    return await parse();
  } catch (e) {
    const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', `${what}: ${String(e)}`, { cause: e });
    await src.cancel(err).catch(() => undefined);
    throw err;
  }
}

function sourceOf(body: ReadableStream<Uint8Array>, what: string): Source {
  if (!(body instanceof ReadableStream)) throw localError('input is not a ReadableStream');
  return new Source(body.getReader(), what);
}

/**
 * Decodes a request as it arrives, known-length (framing 0) or
 * indeterminate-length (framing 2): resolves with the head once it is
 * complete; the content follows in `content`. Rejects with
 * `MALFORMED_MESSAGE` or `TOO_LARGE` (remote) for a bad head.
 *
 * @example
 * ```ts
 * const req = await decodeRequestStream(body, { maxContent: 256 << 20 });
 * await pipeToFile(req.content);
 * ```
 */
export function decodeRequestStream(body: ReadableStream<Uint8Array>, limits: BhttpLimits = {}): Promise<BhttpStreamedRequest> {
  const what = 'binary HTTP request';
  const src = sourceOf(body, what);
  return headOrCancel(src, what, async () => {
    const framing = await framingOf(src, what);
    if (framing !== KNOWN_REQUEST && framing !== INDETERMINATE_REQUEST) throw malformed(what, `framing indicator ${framing} is a response`);
    const d = new StreamDecoder(src, what, framing === KNOWN_REQUEST, limits);
    // RFC 9292 §3.4: four length-prefixed values; they cannot be truncated.
    const method = await d.controlValue('method');
    const scheme = await d.controlValue('scheme');
    const authority = await d.controlValue('authority');
    const path = await d.controlValue('path');
    const problem = controlValuesProblem(method, scheme, authority, path);
    if (problem) throw malformed(what, problem);
    const headers = (await src.atEnd()) ? [] : await d.section('header');
    const trailers: FieldLine[] = [];
    return {
      method: latin1String(method),
      scheme: latin1String(scheme),
      authority: latin1String(authority),
      path: latin1String(path),
      headers,
      framing: framing === KNOWN_REQUEST ? 'known-length' : 'indeterminate-length',
      content: d.content(trailers),
      trailers,
    };
  });
}

/**
 * Decodes a response as it arrives, known-length (framing 1) or
 * indeterminate-length (framing 3); informational responses are parsed,
 * validated and returned in `informational`. See {@link decodeRequestStream}.
 *
 * @example
 * ```ts
 * const res = await decodeResponseStream(body);
 * console.log(res.status);
 * ```
 */
export function decodeResponseStream(body: ReadableStream<Uint8Array>, limits: BhttpLimits = {}): Promise<BhttpStreamedResponse> {
  const what = 'binary HTTP response';
  const src = sourceOf(body, what);
  return headOrCancel(src, what, async () => {
    const framing = await framingOf(src, what);
    if (framing !== KNOWN_RESPONSE && framing !== INDETERMINATE_RESPONSE) throw malformed(what, `framing indicator ${framing} is a request`);
    const d = new StreamDecoder(src, what, framing === KNOWN_RESPONSE, limits);
    const informational: BhttpInformational[] = [];
    for (;;) {
      const status = await src.varint('status code');
      if (status >= 100 && status <= 199) {
        // RFC 9292 §3.5.1: an informational status is followed by a header section and more control data.
        if (informational.length >= d.limits.maxInformational) throw tooLarge(what, `more than ${d.limits.maxInformational} informational responses`);
        informational.push({ status, headers: await d.section('header') });
        continue;
      }
      if (status < 200 || status > 599) throw malformed(what, `status code ${status} is not in 100..599`); // RFC 9292 §3.5
      const headers = (await src.atEnd()) ? [] : await d.section('header');
      const trailers: FieldLine[] = [];
      return {
        status,
        headers,
        informational,
        framing: framing === KNOWN_RESPONSE ? 'known-length' : 'indeterminate-length',
        content: d.content(trailers),
        trailers,
      };
    }
  });
}
