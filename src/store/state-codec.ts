/**
 * {@link SessionState} as JSON text and back, for stores that keep strings
 * or bytes (Redis, files). Bytes are base64url, 64-bit numbers decimal
 * strings. Decoding checks every field: what comes out of a store is
 * treated like peer input (a damaged or foreign entry is INVALID_ARGUMENT,
 * never a crash or a channel that misbehaves).
 *
 * @example
 * ```ts
 * const text = encodeSessionState(state);       // '{"v":1,"id":"...","suite":"TLS_AES_128_GCM_SHA256",...}'
 * const back = decodeSessionState(text);        // deep-equal to state
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import type { HandshakeInfo, TlsVersion } from '../engines/types.js';
import { MAX_REPLAY_WINDOW, MAX_SEQUENCE } from '../protect/constants.js';
import type { SessionState } from './state-store.js';

/** Version of the JSON layout; bumped on any incompatible change. */
export const SESSION_STATE_FORMAT = 1;

const b64 = (u: Uint8Array): string => Buffer.from(u.buffer, u.byteOffset, u.byteLength).toString('base64url');

/** The JSON text of a session state (it contains the session's keys). */
export function encodeSessionState(state: SessionState): string {
  const h = state.handshake;
  const c = state.channel;
  return JSON.stringify({
    v: SESSION_STATE_FORMAT,
    id: state.id,
    at: state.establishedAt,
    hs: {
      version: h.version,
      cipherSuite: h.cipherSuite,
      alpn: h.alpn ?? null,
      serverName: h.serverName ?? null,
      peerCertificates: h.peerCertificates.map(b64),
      pskIdentity: h.pskIdentity ?? null,
      resumed: h.resumed,
      earlyData: h.earlyData,
      ...(h.peerVerified !== undefined ? { peerVerified: h.peerVerified } : {}),
      ...(h.verifyError !== undefined ? { verifyError: h.verifyError } : {}),
      ...(h.verifiedChain !== undefined ? { verifiedChain: h.verifiedChain.map(b64) } : {}),
    },
    suite: c.suite,
    role: c.role,
    secrets: b64(c.secrets),
    next: c.nextSend.toString(),
    win: { size: c.window.size, top: c.window.top === undefined ? null : c.window.top.toString(), bits: b64(c.window.bits) },
    sent: c.sentUnits,
    failed: c.failedUnits,
  });
}

function bad(what: string): AtlsError {
  return new AtlsError('INVALID_ARGUMENT', `stored session state: ${what}`);
}

function str(v: unknown, what: string, max = 1024): string {
  if (typeof v !== 'string' || v.length > max) throw bad(`${what} must be a string`);
  return v;
}

function optStr(v: unknown, what: string): string | undefined {
  return v === null || v === undefined ? undefined : str(v, what);
}

function bytes(v: unknown, what: string, max = 64 * 1024): Uint8Array {
  const s = str(v, what, max);
  if (!/^[A-Za-z0-9_-]*$/.test(s)) throw bad(`${what} must be base64url`);
  return new Uint8Array(Buffer.from(s, 'base64url'));
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(`${what} must be a non-negative integer`);
  return v;
}

function seq(v: unknown, what: string, max: bigint): bigint {
  const s = str(v, what, 20);
  if (!/^(0|[1-9][0-9]*)$/.test(s)) throw bad(`${what} must be a decimal integer`);
  const n = BigInt(s);
  if (n > max) throw bad(`${what} is out of range`);
  return n;
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, what: string): Uint8Array[] {
  if (!Array.isArray(v) || v.length > 16) throw bad(`${what} must be a list of at most 16 certificates`);
  return v.map((x, i) => bytes(x, `${what}[${i}]`));
}

const VERSIONS = new Set<TlsVersion>(['TLSv1.2', 'TLSv1.3', 'DTLSv1.2']);
const EARLY = new Set(['accepted', 'rejected', 'none']);

/**
 * Parses {@link encodeSessionState}'s text. Throws INVALID_ARGUMENT for
 * anything else (the channel checks key lengths against the suite when
 * restored: `ProtectedChannel.fromState`).
 */
export function decodeSessionState(text: string): SessionState {
  let raw: unknown;
  try {
    raw = JSON.parse(str(text, 'text', 1024 * 1024));
  } catch (e) {
    if (e instanceof AtlsError) throw e;
    throw bad('not JSON');
  }
  const o = obj(raw, 'state');
  if (o.v !== SESSION_STATE_FORMAT) throw bad(`unknown format ${String(o.v)}`);
  const hs = obj(o.hs, 'hs');
  const version = hs.version;
  if (typeof version !== 'string' || !VERSIONS.has(version as TlsVersion)) throw bad('hs.version');
  if (typeof hs.resumed !== 'boolean') throw bad('hs.resumed must be a boolean');
  if (typeof hs.earlyData !== 'string' || !EARLY.has(hs.earlyData)) throw bad('hs.earlyData');
  const handshake: HandshakeInfo = {
    version: version as TlsVersion,
    cipherSuite: str(hs.cipherSuite, 'hs.cipherSuite', 100),
    alpn: optStr(hs.alpn, 'hs.alpn'),
    serverName: optStr(hs.serverName, 'hs.serverName'),
    peerCertificates: list(hs.peerCertificates, 'hs.peerCertificates'),
    pskIdentity: optStr(hs.pskIdentity, 'hs.pskIdentity'),
    resumed: hs.resumed,
    earlyData: hs.earlyData as HandshakeInfo['earlyData'],
  };
  if (hs.peerVerified !== undefined) {
    if (typeof hs.peerVerified !== 'boolean') throw bad('hs.peerVerified must be a boolean');
    handshake.peerVerified = hs.peerVerified;
  }
  if (hs.verifyError !== undefined) handshake.verifyError = str(hs.verifyError, 'hs.verifyError');
  if (hs.verifiedChain !== undefined) handshake.verifiedChain = list(hs.verifiedChain, 'hs.verifiedChain');
  const role = o.role;
  if (role !== 'client' && role !== 'server') throw bad('role');
  const win = obj(o.win, 'win');
  const size = int(win.size, 'win.size');
  if (size < 1 || size > MAX_REPLAY_WINDOW) throw bad('win.size');
  return {
    id: str(o.id, 'id', 100),
    establishedAt: int(o.at, 'at'),
    handshake,
    channel: {
      suite: str(o.suite, 'suite', 100),
      role,
      secrets: bytes(o.secrets, 'secrets', 200),
      nextSend: seq(o.next, 'next', MAX_SEQUENCE + 1n),
      window: {
        size,
        top: win.top === null ? undefined : seq(win.top, 'win.top', MAX_SEQUENCE),
        bits: bytes(win.bits, 'win.bits', 12_000),
      },
      sentUnits: int(o.sent, 'sent'),
      failedUnits: int(o.failed, 'failed'),
    },
  };
}
