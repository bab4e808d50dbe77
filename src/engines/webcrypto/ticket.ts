/**
 * The client's resumption state (the `session` of a `ticket` event): the
 * NewSessionTicket and the PSK derived from it (RFC 8446 §4.6.1). Opaque to
 * callers; versioned so that an old or foreign value is refused, not misread.
 *
 * Layout: 0x01 | suite u16 | psk<1> | ticket<2> | lifetime u32 | age_add u32 |
 * received_at (ms since 1970) u64 | server_name<1>.
 * @module
 */
import { ByteReader, ByteWriter } from '../../bytes.js';
import { AtlsError } from '../../errors.js';

const FORMAT = 1;

export interface ResumptionTicket {
  suite: number;
  psk: Uint8Array;
  ticket: Uint8Array;
  lifetime: number;
  ageAdd: number;
  receivedAt: number;
  serverName: string;
}

export function encodeTicket(t: ResumptionTicket): Uint8Array {
  const w = new ByteWriter(64 + t.ticket.length);
  w.u8(FORMAT).u16(t.suite).vector(1, (v) => v.bytes(t.psk)).vector(2, (v) => v.bytes(t.ticket));
  w.u32(t.lifetime).u32(t.ageAdd).uintN(BigInt(t.receivedAt), 8);
  w.vector(1, (v) => v.bytes(new TextEncoder().encode(t.serverName)));
  return w.finish();
}

/** Throws a local INVALID_ARGUMENT for anything this engine did not write. */
export function decodeTicket(session: Uint8Array): ResumptionTicket {
  try {
    const r = new ByteReader(session, 'INVALID_ARGUMENT', 'session');
    if (r.u8() !== FORMAT) throw new Error('unknown format');
    const t: ResumptionTicket = {
      suite: r.u16(),
      psk: Uint8Array.from(r.vector8()),
      ticket: Uint8Array.from(r.vector16()),
      lifetime: r.u32(),
      ageAdd: r.u32(),
      receivedAt: Number(r.uintN(8)),
      serverName: new TextDecoder().decode(r.vector8()),
    };
    r.end();
    return t;
  } catch (e) {
    throw new AtlsError('INVALID_ARGUMENT', 'session is not a webcrypto engine ticket', { source: 'local', cause: e });
  }
}
