/**
 * The inner CoAP message of architecture (b): one CoAP request or response
 * carried inside one protected message (docs/protocol.md §6.6).
 *
 * Encoding, modelled on OSCORE's inner message (RFC 8613 §5.3): a CoAP
 * message without version, type, token length, token and message id:
 *
 *     code (1 byte) | options (RFC 7252 §3.1 encoding, deltas from 0) | [0xFF payload]
 *
 * A GET of `/temp` is `01 b4 74656d70` (5 bytes + 1 code byte = 6 bytes).
 *
 * @example
 * ```ts
 * const bytes = encodeInner({ code: CoapCode.GET, options: pathOptions('/temp'), payload: new Uint8Array(0) });
 * decodeInner(bytes).code; // 1
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { ByteWriter } from '../bytes.js';
import { CoapCode, OptionNumber, codeToString, isRequestCode, isResponseCode } from './constants.js';
import {
  decodeOptionsAndPayload,
  encodeOptionsAndPayload,
  getPath,
  getQuery,
  getUintOption,
  joinPath,
  type CoapOption,
} from './packet.js';

/** A CoAP message without the transport fields. */
export interface InnerMessage {
  code: number;
  options: CoapOption[];
  payload: Uint8Array;
}

/** Encodes an inner message: code | options | 0xFF payload. */
export function encodeInner(m: InnerMessage): Uint8Array {
  if (!Number.isInteger(m.code) || m.code <= 0 || m.code > 0xff) throw new AtlsError('INVALID_ARGUMENT', `inner code ${m.code} out of range`);
  const w = new ByteWriter(8 + m.payload.length);
  w.u8(m.code);
  encodeOptionsAndPayload(w, m.options, m.payload);
  return w.finish();
}

/** Decodes an inner message; anything malformed is MALFORMED_MESSAGE. */
export function decodeInner(bytes: Uint8Array): InnerMessage {
  if (bytes.length < 1) throw new AtlsError('MALFORMED_MESSAGE', 'empty inner CoAP message', { source: 'remote' });
  const code = bytes[0]!;
  if (!isRequestCode(code) && !isResponseCode(code)) {
    throw new AtlsError('MALFORMED_MESSAGE', `inner CoAP code ${codeToString(code)} is neither request nor response`, { source: 'remote' });
  }
  const { options, payload } = decodeOptionsAndPayload(bytes, 1);
  return { code, options, payload };
}

/** An inner request as a handler sees it. */
export interface CoapRequest {
  /** Method code (0.01 GET ...). */
  code: number;
  /** `GET`, `POST`, ... or `0.dd` for others. */
  method: string;
  /** `/a/b` from the Uri-Path options. */
  path: string;
  /** Uri-Query items. */
  query: string[];
  contentFormat: number | undefined;
  payload: Uint8Array;
  /** Every option, Uri-Path included. */
  options: CoapOption[];
}

/** What a handler answers. `code` is a number or `"2.05"` text. */
export interface CoapReply {
  code: number | string;
  contentFormat?: number;
  payload?: Uint8Array | string;
  options?: CoapOption[];
}

const METHOD_NAMES: Record<number, string> = {
  [CoapCode.GET]: 'GET',
  [CoapCode.POST]: 'POST',
  [CoapCode.PUT]: 'PUT',
  [CoapCode.DELETE]: 'DELETE',
  [CoapCode.FETCH]: 'FETCH',
  [CoapCode.PATCH]: 'PATCH',
  [CoapCode.iPATCH]: 'iPATCH',
};

/** A handler-friendly view of an inner request. Throws MALFORMED_MESSAGE for a response code or bad options. */
export function toCoapRequest(m: InnerMessage): CoapRequest {
  if (!isRequestCode(m.code)) throw new AtlsError('MALFORMED_MESSAGE', 'inner message is not a request', { source: 'remote' });
  return {
    code: m.code,
    method: METHOD_NAMES[m.code] ?? codeToString(m.code),
    path: joinPath(getPath(m)),
    query: getQuery(m),
    contentFormat: getUintOption(m, OptionNumber.ContentFormat),
    payload: m.payload,
    options: m.options,
  };
}

/** Turns a handler's reply into an inner response message. */
export function fromCoapReply(r: CoapReply): InnerMessage {
  let code: number;
  if (typeof r.code === 'number') code = r.code;
  else {
    const m = /^([2-5])\.(\d\d)$/.exec(r.code);
    if (!m || Number(m[2]) > 31) throw new AtlsError('INVALID_ARGUMENT', `not a response code: ${r.code}`);
    code = (Number(m[1]) << 5) | Number(m[2]);
  }
  if (!isResponseCode(code)) throw new AtlsError('INVALID_ARGUMENT', `not a response code: ${codeToString(code)}`);
  const options = [...(r.options ?? []).filter((o) => o.number !== OptionNumber.ContentFormat || r.contentFormat === undefined)];
  if (r.contentFormat !== undefined) {
    options.push({ number: OptionNumber.ContentFormat, value: encodeCf(r.contentFormat) });
  }
  const payload = typeof r.payload === 'string' ? new TextEncoder().encode(r.payload) : (r.payload ?? new Uint8Array(0));
  return { code, options, payload };
}

function encodeCf(cf: number): Uint8Array {
  if (!Number.isInteger(cf) || cf < 0 || cf > 0xffff) throw new AtlsError('INVALID_ARGUMENT', `Content-Format ${cf} out of range`);
  return cf === 0 ? new Uint8Array(0) : cf < 256 ? new Uint8Array([cf]) : new Uint8Array([cf >> 8, cf & 0xff]);
}
