/**
 * `atls inspect [FILE|-] [--json] [--dtls] [--hex]`: decode any ATLS body
 * without keys, as a middlebox sees it: a flight (first or later), a flight
 * followed by a protected message (the `atls-flight-length` split, given with
 * `--flight-length N` or read from a saved HTTP message), or a protected
 * message (its header; the ciphertext stays opaque). A saved HTTP message
 * (request or response, head and body) is recognised by its first line;
 * `--content-type` and `--content-format` (CoAP) say what a bare body is.
 * The input is raw bytes or hex text (given `--hex`, or recognised because a
 * record never starts with an ASCII hex digit). A malformed body fails
 * (exit 1); an odd handshake inside well-formed records is printed with an
 * `error` line / field.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { AtlsError } from '../errors.js';
import { fromHex } from '../bytes.js';
import { inspectFlight, type FlightSummary } from '../records.js';
import { formatInspection } from '../inspect.js';
import { parseHeader } from '../protect/header.js';
import { MEDIA_TYPE_FLIGHT, MEDIA_TYPE_FLIGHT_LATER, MEDIA_TYPE_PROTECTED, HEADER_FLIGHT_LENGTH } from '../http/constants.js';
import { DEFAULT_ATLS_COAP_FORMATS } from '../coap/server.js';
import { readAll, type CliIo } from './io.js';

/** Largest input read (a flight is far smaller; this bounds memory). */
export const MAX_INSPECT_INPUT = 64 * 1024 * 1024;

/** Arguments of {@link runInspect}. */
export interface InspectArgs {
  /** Path of the body; `-` or absent reads stdin. */
  file?: string;
  /** Print the summary as JSON instead of text. */
  json?: boolean;
  /** The body holds DTLS records (default: guessed from the first header). */
  dtls?: boolean;
  /** The input is hex text (default: guessed). */
  hex?: boolean;
  /** Bytes of TLS records before a protected message (the `atls-flight-length` header). */
  flightLength?: number;
  /** The body's HTTP media type (what the Content-Type header said). */
  contentType?: string;
  /** The body's CoAP Content-Format (65000 records, 65001 protected CoAP, 65002 protected Binary HTTP). */
  contentFormat?: number;
}

/** A protected message's header as a middlebox sees it (docs/protocol.md §4). */
export interface ProtectedSummary {
  length: number;
  version: number;
  sequenceNumber: string;
  sequenceNumberBytes: number;
  headerLength: number;
  /** Ciphertext and AEAD tag together: opaque without the exported keys. */
  ciphertextAndTagLength: number;
  /** What the plaintext is, when the Content-Format says it. */
  inner?: 'CoAP message' | 'Binary HTTP message';
}

/** Any ATLS body: records, a protected message, or records then a protected message. */
export interface BodySummary {
  kind: 'flight' | 'protected' | 'flight+protected';
  /** Where the kind and split came from: an HTTP head, a flag, or the bytes themselves. */
  source: string;
  flight?: FlightSummary;
  protected?: ProtectedSummary;
}

/** Where {@link runInspect} reads and writes. */
export type InspectIo = Pick<CliIo, 'stdin' | 'stdout'>;

function isHexText(b: Uint8Array): boolean {
  let digits = 0;
  for (const c of b) {
    const hexDigit = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
    if (hexDigit) digits++;
    else if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return false;
  }
  return digits > 0;
}

/** Turns the raw input into the flight body (decoding hex text when asked or recognised). */
export function decodeInspectInput(input: Uint8Array, hex?: boolean): Uint8Array {
  if (hex === true || (hex === undefined && isHexText(input))) {
    return fromHex(Buffer.from(input).toString('latin1'));
  }
  return input;
}

/** A saved HTTP message: its headers (lower-case names) and body, or undefined when the input is not one. */
export function splitHttpMessage(input: Uint8Array): { headers: Map<string, string>; body: Uint8Array } | undefined {
  const start = Buffer.from(input.subarray(0, 2048)).toString('latin1').split('\n', 1)[0]!;
  if (!/^(HTTP\/\d(\.\d)? \d{3}|[A-Z]+ \S+ HTTP\/\d(\.\d)?\r?$)/.test(start)) return undefined;
  const text = Buffer.from(input).toString('latin1');
  const end = text.search(/\r?\n\r?\n/);
  if (end < 0) throw new AtlsError('INVALID_ARGUMENT', 'the HTTP message has no blank line after its head; save it whole (curl -i, or the raw request)');
  const headers = new Map<string, string>();
  for (const line of text.slice(0, end).split(/\r?\n/).slice(1)) {
    const at = line.indexOf(':');
    if (at > 0) headers.set(line.slice(0, at).trim().toLowerCase(), line.slice(at + 1).trim());
  }
  const bodyStart = end + (text.slice(end, end + 4) === '\r\n\r\n' ? 4 : 2);
  let body = input.subarray(bodyStart);
  const declared = headers.get('content-length');
  if (declared !== undefined && /^\d+$/.test(declared) && Number(declared) < body.length) body = body.subarray(0, Number(declared));
  return { headers, body };
}

function protectedSummary(message: Uint8Array, inner: ProtectedSummary['inner']): ProtectedSummary {
  const h = parseHeader(message);
  return {
    length: message.length,
    version: h.version,
    sequenceNumber: h.seq.toString(),
    sequenceNumberBytes: h.seqLength,
    headerLength: h.headerLength,
    ciphertextAndTagLength: message.length - h.headerLength,
    ...(inner ? { inner } : {}),
  };
}

/**
 * Decodes any ATLS body. The kind comes from, in order: the flight length
 * (a split), the media type or Content-Format, the first byte (a TLS record
 * type 20..25, or a protected message's version bits 001).
 */
export function inspectBody(body: Uint8Array, hints: Pick<InspectArgs, 'dtls' | 'flightLength' | 'contentType' | 'contentFormat'>, source: string): BodySummary {
  const opts = hints.dtls === true ? { dtls: true } : {};
  const cf = hints.contentFormat;
  const type = hints.contentType?.split(';')[0]?.trim().toLowerCase();
  const inner: ProtectedSummary['inner'] =
    cf === DEFAULT_ATLS_COAP_FORMATS.protected ? 'CoAP message' : cf === DEFAULT_ATLS_COAP_FORMATS.protectedHttp ? 'Binary HTTP message' : undefined;
  if (hints.flightLength !== undefined) {
    if (hints.flightLength > body.length) {
      throw new AtlsError('MALFORMED_MESSAGE', `${HEADER_FLIGHT_LENGTH} ${hints.flightLength} exceeds the body's ${body.length} bytes`, { source: 'remote' });
    }
    const flight = inspectFlight(body.subarray(0, hints.flightLength), opts);
    const rest = body.subarray(hints.flightLength);
    return { kind: rest.length > 0 ? 'flight+protected' : 'flight', source, flight, ...(rest.length > 0 ? { protected: protectedSummary(rest, inner) } : {}) };
  }
  const isProtected =
    type === MEDIA_TYPE_PROTECTED ||
    inner !== undefined ||
    (type === undefined && cf === undefined && body.length > 0 && (body[0]! & 0xe0) === 0x20);
  if (isProtected) return { kind: 'protected', source, protected: protectedSummary(body, inner) };
  if (type !== undefined && type !== MEDIA_TYPE_FLIGHT && type !== MEDIA_TYPE_FLIGHT_LATER) {
    throw new AtlsError('INVALID_ARGUMENT', `content type ${type} is not an ATLS body (${MEDIA_TYPE_FLIGHT} or ${MEDIA_TYPE_PROTECTED})`);
  }
  // Records, possibly followed by a protected message whose split was not given.
  const whole = recordsPrefixLength(body, hints.dtls);
  if (whole > 0 && whole < body.length && (body[whole]! & 0xe0) === 0x20) {
    return { kind: 'flight+protected', source: `${source}, split where the records end`, flight: inspectFlight(body.subarray(0, whole), opts), protected: protectedSummary(body.subarray(whole), inner) };
  }
  return { kind: 'flight', source, flight: inspectFlight(body, opts) };
}

/** The text form of a body that is more than one plain flight. */
export function formatBody(b: BodySummary): string {
  let out = `${b.kind} (${b.source})\n`;
  if (b.flight) out += `records: ${b.flight.length} B\n` + formatInspection(b.flight).replace(/^/gm, '  ').trimEnd() + '\n';
  if (b.protected) {
    const p = b.protected;
    out +=
      `protected message: ${p.length} B\n` +
      `  header: version ${p.version}, sequence number ${p.sequenceNumber} (${p.sequenceNumberBytes} byte${p.sequenceNumberBytes === 1 ? '' : 's'}), ${p.headerLength} B\n` +
      `  ciphertext and tag: ${p.ciphertextAndTagLength} B (opaque without the exported keys)\n` +
      (p.inner ? `  plaintext: one ${p.inner}\n` : '');
  }
  return out;
}

/**
 * Runs the inspection and writes text or JSON to `io.stdout`. Throws
 * `AtlsError` for unreadable input or a malformed body. A plain flight with
 * no hints prints as before ({@link formatInspection}, the FlightSummary JSON);
 * anything else prints as a {@link BodySummary}.
 *
 * @example
 * ```ts
 * await runInspect({ file: 'flight.bin', json: true }, processIo);
 * ```
 */
export async function runInspect(args: InspectArgs, io: InspectIo): Promise<void> {
  let raw: Uint8Array;
  if (args.file === undefined || args.file === '-') {
    raw = await readAll(io.stdin, MAX_INSPECT_INPUT);
  } else {
    try {
      raw = new Uint8Array(await readFile(args.file));
    } catch (e) {
      throw new AtlsError('INVALID_ARGUMENT', `cannot read ${args.file}: ${(e as Error).message}`, { cause: e });
    }
    if (raw.length > MAX_INSPECT_INPUT) {
      throw new AtlsError('TOO_LARGE', `input exceeds ${MAX_INSPECT_INPUT} bytes`, { source: 'local' });
    }
  }
  const http = splitHttpMessage(raw);
  let summary: BodySummary;
  if (http) {
    const split = http.headers.get(HEADER_FLIGHT_LENGTH);
    if (split !== undefined && !/^\d+$/.test(split)) throw new AtlsError('MALFORMED_MESSAGE', `${HEADER_FLIGHT_LENGTH}: ${JSON.stringify(split)} is not a length`);
    const contentType = http.headers.get('content-type');
    summary = inspectBody(
      http.body,
      {
        ...(args.dtls === true ? { dtls: true } : {}),
        ...(split !== undefined ? { flightLength: Number(split) } : args.flightLength !== undefined ? { flightLength: args.flightLength } : {}),
        ...(contentType !== undefined ? { contentType } : {}),
      },
      `HTTP message${contentType ? `, ${contentType.split(';')[0]}` : ''}${split !== undefined ? `, ${HEADER_FLIGHT_LENGTH} ${split}` : ''}`,
    );
  } else {
    const body = decodeInspectInput(raw, args.hex);
    const hinted = args.flightLength !== undefined || args.contentType !== undefined || args.contentFormat !== undefined;
    if (!hinted && !(body.length > 0 && (body[0]! & 0xe0) === 0x20)) {
      const whole = recordsPrefixLength(body, args.dtls);
      if (whole === 0 || whole === body.length || (body[whole]! & 0xe0) !== 0x20) {
        // One plain flight: the original output.
        const flight = inspectFlight(body, args.dtls === true ? { dtls: true } : {});
        io.stdout.write(args.json === true ? JSON.stringify(flight, null, 2) + '\n' : formatInspection(flight));
        return;
      }
    }
    const source = args.flightLength !== undefined ? `--flight-length ${args.flightLength}` : args.contentFormat !== undefined ? `Content-Format ${args.contentFormat}` : args.contentType !== undefined ? args.contentType : 'guessed from the bytes';
    summary = inspectBody(body, args, source);
  }
  io.stdout.write(args.json === true ? JSON.stringify(summary, null, 2) + '\n' : formatBody(summary));
}

/**
 * Bytes of whole records at the start of `body`, stopping at the first byte
 * that is not a record type (20..25): where a protected message would begin
 * when the `atls-flight-length` split is not known. The records themselves are
 * then checked by inspectFlight.
 */
function recordsPrefixLength(body: Uint8Array, dtls: boolean | undefined): number {
  const isDtls = dtls ?? (body.length > 1 && body[1] === 0xfe);
  const headerLength = isDtls ? 13 : 5;
  let pos = 0;
  while (pos + headerLength <= body.length && body[pos]! >= 20 && body[pos]! <= 25) {
    const next = pos + headerLength + ((body[pos + headerLength - 2]! << 8) | body[pos + headerLength - 1]!);
    if (next > body.length) return pos;
    pos = next;
  }
  return pos;
}

/** The commander action for `atls inspect` (see src/cli/commands.ts). */
export async function runInspectCommand(file: string | undefined, opts: Record<string, unknown>, io: CliIo): Promise<void> {
  await runInspect(
    {
      ...(file !== undefined ? { file } : {}),
      json: opts['json'] === true,
      dtls: opts['dtls'] === true,
      ...(opts['hex'] === true ? { hex: true } : {}),
      ...(opts['flightLength'] !== undefined ? { flightLength: intFlag(opts['flightLength'], '--flight-length', 0, MAX_INSPECT_INPUT) } : {}),
      ...(typeof opts['contentType'] === 'string' ? { contentType: opts['contentType'] } : {}),
      ...(opts['contentFormat'] !== undefined ? { contentFormat: intFlag(opts['contentFormat'], '--content-format', 0, 65535) } : {}),
    },
    io,
  );
}

function intFlag(value: unknown, flagName: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new AtlsError('INVALID_ARGUMENT', `${flagName} wants a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}
