/**
 * TLS 1.3 handshake message codes, extension codes and the small parsers the
 * webcrypto client shares (RFC 8446 §4). Every parser reads with
 * {@link ByteReader}, so a short or overlong field is a remote decode_error.
 * @module
 */
import { ByteReader } from '../../bytes.js';
import { AlertDescription, AtlsError } from '../../errors.js';
import { HandshakeType } from '../../records.js';

/** RFC 8446 §4 HandshakeType (the one table in records.ts). */
export const HS = HandshakeType;

/** RFC 8446 §4.2 ExtensionType (and RFC 6066, RFC 7301). */
export const EXT = {
  server_name: 0,
  supported_groups: 10,
  signature_algorithms: 13,
  alpn: 16,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  certificate_authorities: 47,
  signature_algorithms_cert: 50,
  key_share: 51,
} as const;

export const TLS13 = 0x0304;
export const LEGACY_VERSION = 0x0303;


/** A reader whose failures are decode_error alerts (RFC 8446 §6.2). */
export function reader(bytes: Uint8Array, what: string): ByteReader {
  return new ByteReader(bytes, 'MALFORMED_RECORD', what);
}

/** A remote protocol violation answered with `alert`. */
export function violation(alert: number, message: string): AtlsError {
  const code = alert === AlertDescription.decode_error ? 'MALFORMED_RECORD' : 'HANDSHAKE_FAILED';
  return new AtlsError(code, message, { source: 'remote', alert });
}

/**
 * Reads an extension block (§4.2): at most one of each type, else
 * illegal_parameter. The map keeps each body as a view.
 */
export function readExtensions(r: ByteReader, what: string): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  const block = reader(r.vector16(`${what} extensions`), what);
  while (block.remaining > 0) {
    const type = block.u16('extension type');
    const body = block.vector16('extension body');
    if (out.has(type)) throw violation(AlertDescription.illegal_parameter, `${what}: extension ${type} appears twice`);
    out.set(type, body);
  }
  return out;
}

/** Equal bytes, in time independent of where they differ. */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/**
 * An ECDSA signature from its DER form (RFC 3279 §2.2.3, as TLS carries it,
 * RFC 8446 §4.2.3) to the r||s form Web Crypto verifies; undefined when the
 * DER is malformed or a component is too long.
 */
export function ecdsaDerToRaw(der: Uint8Array, size: number): Uint8Array | undefined {
  try {
    const outer = reader(der, 'ECDSA signature');
    if (outer.u8() !== 0x30) return undefined;
    const seq = reader(outer.bytes(derLength(outer)), 'ECDSA signature');
    outer.end();
    const raw = new Uint8Array(2 * size);
    for (let i = 0; i < 2; i++) {
      if (seq.u8() !== 0x02) return undefined;
      let int = seq.bytes(derLength(seq));
      while (int.length > 1 && int[0] === 0) int = int.subarray(1);
      if (int.length === 0 || int.length > size) return undefined;
      raw.set(int, (i + 1) * size - int.length);
    }
    seq.end();
    return raw;
  } catch {
    return undefined;
  }
}

/** r||s (Web Crypto's ECDSA output) to the DER form TLS carries (RFC 3279 §2.2.3). */
export function ecdsaRawToDer(raw: Uint8Array): Uint8Array {
  const half = raw.length / 2;
  const int = (v: Uint8Array): Uint8Array => {
    let i = 0;
    while (i < v.length - 1 && v[i] === 0) i++;
    const t = v.subarray(i);
    return t[0]! & 0x80 ? Uint8Array.of(0x02, t.length + 1, 0, ...t) : Uint8Array.of(0x02, t.length, ...t);
  };
  const r = int(raw.subarray(0, half));
  const s = int(raw.subarray(half));
  const body = new Uint8Array(r.length + s.length);
  body.set(r);
  body.set(s, r.length);
  // Both integers of P-256 and P-384 fit in one length byte, so does the sequence (< 128 + 128).
  return body.length < 128 ? Uint8Array.of(0x30, body.length, ...body) : Uint8Array.of(0x30, 0x81, body.length, ...body);
}

function derLength(r: ByteReader): number {
  const first = r.u8();
  if (first < 0x80) return first;
  if (first === 0x81) return r.u8();
  if (first === 0x82) return r.u16();
  throw new AtlsError('MALFORMED_RECORD', 'DER length too long');
}
