/**
 * Hand-built TLS and DTLS records and hellos, for edge cases no real stack
 * sends (GREASE everywhere, duplicate extensions, odd lengths, DTLS fragments).
 *
 * @example
 * ```ts
 * const body = tlsRecord(22, 0x0301, handshake(1, clientHelloBody({ serverName: 'a.example' })));
 * ```
 */
import { ByteWriter, concatBytes } from '../../src/bytes.js';

/** A TLS record: type(1) version(2) length(2) fragment (RFC 8446 §5.1). Length may be forced. */
export function tlsRecord(type: number, version: number, fragment: Uint8Array, length = fragment.length): Uint8Array {
  return new ByteWriter().u8(type).u16(version).u16(length).bytes(fragment).finish();
}

/** A DTLS record: type(1) version(2) epoch(2) seq(6) length(2) fragment (RFC 6347 §4.1). */
export function dtlsRecord(type: number, fragment: Uint8Array, epoch = 0, seq = 0n, version = 0xfefd): Uint8Array {
  return new ByteWriter().u8(type).u16(version).u16(epoch).uintN(seq, 6).u16(fragment.length).bytes(fragment).finish();
}

/** A TLS handshake message: type(1) length(3) body. */
export function handshake(type: number, body: Uint8Array): Uint8Array {
  return new ByteWriter().u8(type).u24(body.length).bytes(body).finish();
}

/** One DTLS handshake fragment: type length message_seq fragment_offset fragment_length data (RFC 6347 §4.2.2). */
export function dtlsHandshakeFragment(
  type: number,
  body: Uint8Array,
  seq: number,
  offset = 0,
  length = body.length - offset,
): Uint8Array {
  return new ByteWriter()
    .u8(type)
    .u24(body.length)
    .u16(seq)
    .u24(offset)
    .u24(length)
    .bytes(body.subarray(offset, offset + length))
    .finish();
}

/** One extension: type(2) data<0..2^16-1>. */
export function ext(type: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return new ByteWriter().u16(type).u16(data.length).bytes(data).finish();
}

const vec16 = (b: Uint8Array): Uint8Array => new ByteWriter().u16(b.length).bytes(b).finish();
const vec8 = (b: Uint8Array): Uint8Array => new ByteWriter().u8(b.length).bytes(b).finish();
const u16s = (vs: readonly number[]): Uint8Array => {
  const w = new ByteWriter();
  for (const v of vs) w.u16(v);
  return w.finish();
};
const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/** Extension data builders for the extensions the parser decodes. */
export const extData = {
  serverName: (name: string): Uint8Array => vec16(concatBytes([Uint8Array.of(0), vec16(ascii(name))])),
  alpn: (names: readonly string[]): Uint8Array => vec16(concatBytes(names.map((n) => vec8(ascii(n))))),
  supportedVersions: (vs: readonly number[]): Uint8Array => vec8(u16s(vs)),
  u16List: (vs: readonly number[]): Uint8Array => vec16(u16s(vs)),
  keyShare: (groups: readonly number[]): Uint8Array =>
    vec16(concatBytes(groups.map((g) => concatBytes([u16s([g]), vec16(new Uint8Array(32).fill(7))])))),
  pskModes: (modes: readonly number[]): Uint8Array => vec8(Uint8Array.from(modes)),
  preSharedKey: (identities: number): Uint8Array => {
    const ids = new ByteWriter();
    const binders = new ByteWriter();
    for (let i = 0; i < identities; i++) {
      ids.bytes(vec16(ascii(`id${i}`))).u32(0);
      binders.bytes(vec8(new Uint8Array(32)));
    }
    return concatBytes([vec16(ids.finish()), vec16(binders.finish())]);
  },
};

/** Fields of a hand-built ClientHello body. */
export interface ClientHelloSpec {
  version?: number;
  random?: Uint8Array;
  sessionId?: Uint8Array;
  /** DTLS only: present means a DTLS ClientHello. */
  cookie?: Uint8Array;
  suites?: readonly number[];
  /** Raw cipher_suites bytes (overrides `suites`). */
  suitesRaw?: Uint8Array;
  compression?: readonly number[];
  /** Encoded extensions (see {@link ext}); undefined = no extensions block at all. */
  extensions?: readonly Uint8Array[];
}

/** A ClientHello body (RFC 8446 §4.1.2; with `cookie`, RFC 6347 §4.2.1). */
export function clientHelloBody(spec: ClientHelloSpec = {}): Uint8Array {
  const w = new ByteWriter()
    .u16(spec.version ?? 0x0303)
    .bytes(spec.random ?? new Uint8Array(32).fill(0x11))
    .bytes(vec8(spec.sessionId ?? new Uint8Array(0)));
  if (spec.cookie !== undefined) w.bytes(vec8(spec.cookie));
  w.bytes(vec16(spec.suitesRaw ?? u16s(spec.suites ?? [0x1301])));
  w.bytes(vec8(Uint8Array.from(spec.compression ?? [0])));
  if (spec.extensions !== undefined) w.bytes(vec16(concatBytes(spec.extensions)));
  return w.finish();
}

/** Fields of a hand-built ServerHello body. */
export interface ServerHelloSpec {
  version?: number;
  random?: Uint8Array;
  sessionId?: Uint8Array;
  suite?: number;
  extensions?: readonly Uint8Array[];
}

/** A ServerHello body (RFC 8446 §4.1.3). */
export function serverHelloBody(spec: ServerHelloSpec = {}): Uint8Array {
  const w = new ByteWriter()
    .u16(spec.version ?? 0x0303)
    .bytes(spec.random ?? new Uint8Array(32).fill(0x22))
    .bytes(vec8(spec.sessionId ?? new Uint8Array(0)))
    .u16(spec.suite ?? 0x1301)
    .u8(0);
  if (spec.extensions !== undefined) w.bytes(vec16(concatBytes(spec.extensions)));
  return w.finish();
}
