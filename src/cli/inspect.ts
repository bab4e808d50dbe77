/**
 * `atls inspect [FILE|-] [--json] [--dtls] [--hex]`: decode a flight body
 * without keys, as a middlebox sees it. The input is the raw body, or hex text
 * (given `--hex`, or recognised because a record never starts with an ASCII
 * hex digit). A malformed record layer fails (exit 1); an odd handshake inside
 * well-formed records is printed with an `error` line / field.
 * @module
 */
import { readFile } from 'node:fs/promises';
import { AtlsError } from '../errors.js';
import { fromHex } from '../bytes.js';
import { inspectFlight } from '../records.js';
import { formatInspection } from '../inspect.js';

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
}

/** Where {@link runInspect} reads and writes. */
export interface InspectIo {
  stdin: AsyncIterable<Uint8Array | string>;
  stdout: { write(s: string): unknown };
}

async function readAll(src: AsyncIterable<Uint8Array | string>): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of src) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
    n += b.length;
    if (n > MAX_INSPECT_INPUT) throw new AtlsError('TOO_LARGE', `input exceeds ${MAX_INSPECT_INPUT} bytes`, { source: 'local' });
    parts.push(b);
  }
  return new Uint8Array(Buffer.concat(parts));
}

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

/**
 * Runs the inspection and writes text or JSON to `io.stdout`. Throws
 * `AtlsError` for unreadable input or a malformed record layer.
 *
 * @example
 * ```ts
 * await runInspect({ file: 'flight.bin', json: true }, { stdin: process.stdin, stdout: process.stdout });
 * ```
 */
export async function runInspect(args: InspectArgs, io: InspectIo): Promise<void> {
  let raw: Uint8Array;
  if (args.file === undefined || args.file === '-') {
    raw = await readAll(io.stdin);
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
  const body = decodeInspectInput(raw, args.hex);
  const summary = inspectFlight(body, args.dtls === true ? { dtls: true } : {});
  io.stdout.write(args.json === true ? JSON.stringify(summary, null, 2) + '\n' : formatInspection(summary));
}

/** The commander action for `atls inspect` (see src/cli/commands.ts). */
export async function runInspectCommand(file: string | undefined, opts: Record<string, unknown>): Promise<void> {
  await runInspect(
    {
      ...(file !== undefined ? { file } : {}),
      json: opts['json'] === true,
      dtls: opts['dtls'] === true,
      ...(opts['hex'] === true ? { hex: true } : {}),
    },
    { stdin: process.stdin, stdout: process.stdout },
  );
}
