/**
 * The TLS 1.3 key schedule (RFC 8446 §7.1) and exporter (§7.5), synchronous.
 *
 * Web Crypto's HMAC and HKDF are asynchronous, while the engine interface's
 * `exportKeyingMaterial` is synchronous (every caller of the other engines
 * relies on that); so the hash, HMAC and HKDF here come from @noble/hashes
 * (audited, no Node built-ins). Keys, AEAD and signatures stay on Web Crypto.
 *
 * @example
 * ```ts
 * const ks = new KeySchedule(SUITES[0x1301]!.hash);
 * ks.early(undefined);                       // no PSK
 * const hs = ks.handshake(sharedSecret, transcriptHash);
 * ```
 * @module
 */
import { sha256, sha384 } from '@noble/hashes/sha2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { extract, expand } from '@noble/hashes/hkdf.js';
import { AtlsError } from '../../errors.js';

/** A hash of the TLS 1.3 suites (RFC 8446 §B.4). */
export interface SuiteHash {
  readonly name: 'SHA-256' | 'SHA-384';
  readonly length: number;
  digest(data: Uint8Array): Uint8Array;
  hmac(key: Uint8Array, data: Uint8Array): Uint8Array;
  extract(salt: Uint8Array, ikm: Uint8Array): Uint8Array;
  expand(prk: Uint8Array, info: Uint8Array, length: number): Uint8Array;
}

function suiteHash(name: 'SHA-256' | 'SHA-384'): SuiteHash {
  const h = name === 'SHA-256' ? sha256 : sha384;
  return {
    name,
    length: h.outputLen,
    digest: (data) => h(data),
    hmac: (key, data) => hmac(h, key, data),
    extract: (salt, ikm) => extract(h, ikm, salt),
    expand: (prk, info, length) => expand(h, prk, info, length),
  };
}

export const SHA256 = suiteHash('SHA-256');
export const SHA384 = suiteHash('SHA-384');

const enc = new TextEncoder();
const EMPTY = new Uint8Array(0);

/** RFC 8446 §7.1: HKDF-Expand-Label(Secret, Label, Context, Length) with the "tls13 " prefix. */
export function expandLabel(hash: SuiteHash, secret: Uint8Array, label: string, context: Uint8Array, length: number): Uint8Array {
  const full = enc.encode(`tls13 ${label}`);
  // HkdfLabel: uint16 length, opaque label<7..255>, opaque context<0..255>.
  if (full.length > 255 || context.length > 255) throw new AtlsError('INVALID_ARGUMENT', 'HKDF label or context longer than 255 bytes');
  const info = new Uint8Array(2 + 1 + full.length + 1 + context.length);
  info[0] = length >> 8;
  info[1] = length & 0xff;
  info[2] = full.length;
  info.set(full, 3);
  info[3 + full.length] = context.length;
  info.set(context, 4 + full.length);
  return hash.expand(secret, info, length);
}

/** RFC 8446 §7.1: Derive-Secret(Secret, Label, Messages) given Transcript-Hash(Messages). */
export function deriveSecret(hash: SuiteHash, secret: Uint8Array, label: string, transcriptHash: Uint8Array): Uint8Array {
  return expandLabel(hash, secret, label, transcriptHash, hash.length);
}

/** The traffic secrets of one stage of the schedule. */
export interface TrafficSecrets {
  client: Uint8Array;
  server: Uint8Array;
}

/**
 * One connection's key schedule. The stages run in order: `early` (PSK or
 * zeros), `handshake` ((EC)DHE), `master`; each takes the transcript hash
 * its Derive-Secret calls need.
 */
export class KeySchedule {
  private earlySecret: Uint8Array | undefined;
  private handshakeSecret: Uint8Array | undefined;
  private masterSecret: Uint8Array | undefined;
  /** exporter_master_secret (§7.5), after {@link master}. */
  exporterMaster: Uint8Array | undefined;
  /** resumption_master_secret (§7.1), after {@link resumption}. */
  resumptionMaster: Uint8Array | undefined;

  constructor(readonly hash: SuiteHash) {}

  /** Early Secret = HKDF-Extract(0, PSK); a zero-filled PSK when there is none. */
  early(psk: Uint8Array | undefined): void {
    this.earlySecret = this.hash.extract(new Uint8Array(this.hash.length), psk ?? new Uint8Array(this.hash.length));
  }

  /** binder_key for an external ("ext binder") or resumption ("res binder") PSK, then its finished key (§4.2.11.2). */
  binderFinishedKey(external: boolean): Uint8Array {
    const binderKey = deriveSecret(this.hash, this.need(this.earlySecret), external ? 'ext binder' : 'res binder', this.hash.digest(EMPTY));
    return this.finishedKey(binderKey);
  }

  /** Handshake Secret and the handshake traffic secrets (transcript ClientHello..ServerHello). */
  handshake(sharedSecret: Uint8Array, helloHash: Uint8Array): TrafficSecrets {
    const derived = deriveSecret(this.hash, this.need(this.earlySecret), 'derived', this.hash.digest(EMPTY));
    this.handshakeSecret = this.hash.extract(derived, sharedSecret);
    return {
      client: deriveSecret(this.hash, this.handshakeSecret, 'c hs traffic', helloHash),
      server: deriveSecret(this.hash, this.handshakeSecret, 's hs traffic', helloHash),
    };
  }

  /** Master Secret, application traffic secrets and the exporter master secret (transcript ..server Finished). */
  master(serverFinishedHash: Uint8Array): TrafficSecrets {
    const derived = deriveSecret(this.hash, this.need(this.handshakeSecret), 'derived', this.hash.digest(EMPTY));
    this.masterSecret = this.hash.extract(derived, new Uint8Array(this.hash.length));
    this.exporterMaster = deriveSecret(this.hash, this.masterSecret, 'exp master', serverFinishedHash);
    return {
      client: deriveSecret(this.hash, this.masterSecret, 'c ap traffic', serverFinishedHash),
      server: deriveSecret(this.hash, this.masterSecret, 's ap traffic', serverFinishedHash),
    };
  }

  /** resumption_master_secret (transcript ..client Finished). */
  resumption(clientFinishedHash: Uint8Array): void {
    this.resumptionMaster = deriveSecret(this.hash, this.need(this.masterSecret), 'res master', clientFinishedHash);
  }

  /** §4.6.1: the PSK of one NewSessionTicket. */
  ticketPsk(nonce: Uint8Array): Uint8Array {
    return expandLabel(this.hash, this.need(this.resumptionMaster), 'resumption', nonce, this.hash.length);
  }

  /** §4.4.4: finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length). */
  finishedKey(baseKey: Uint8Array): Uint8Array {
    return expandLabel(this.hash, baseKey, 'finished', EMPTY, this.hash.length);
  }

  /** §4.4.4: verify_data = HMAC(finished_key, Transcript-Hash(...)). */
  verifyData(baseKey: Uint8Array, transcriptHash: Uint8Array): Uint8Array {
    return this.hash.hmac(this.finishedKey(baseKey), transcriptHash);
  }

  /** §7.2: application_traffic_secret_N+1. */
  nextTrafficSecret(secret: Uint8Array): Uint8Array {
    return expandLabel(this.hash, secret, 'traffic upd', EMPTY, this.hash.length);
  }

  /** §7.5: TLS-Exporter(label, context_value, key_length); no context is the empty context. */
  exporter(label: string, context: Uint8Array | undefined, length: number): Uint8Array {
    const secret = deriveSecret(this.hash, this.need(this.exporterMaster), label, this.hash.digest(EMPTY));
    return expandLabel(this.hash, secret, 'exporter', this.hash.digest(context ?? EMPTY), length);
  }

  private need(secret: Uint8Array | undefined): Uint8Array {
    if (!secret) throw new AtlsError('INTERNAL', 'key schedule used out of order');
    return secret;
  }
}

/** §5.3: key and iv of a traffic secret. */
export function trafficKeys(hash: SuiteHash, secret: Uint8Array, keyLength: number): { key: Uint8Array; iv: Uint8Array } {
  return {
    key: expandLabel(hash, secret, 'key', EMPTY, keyLength),
    iv: expandLabel(hash, secret, 'iv', EMPTY, 12),
  };
}
