/**
 * Authenticates a peer's records before the engine reads them, in TLS 1.3
 * and in TLS 1.2 with an AEAD suite (mode `records`, docs/decisions.md
 * "Records are authenticated before the engine").
 *
 * A TLS stack treats a record that fails authentication as fatal (RFC 8446
 * §5.2, RFC 5246 §7.2.2) and cannot roll its record state back, so a forged
 * or replayed record sent with a session's cookie would end the session. The
 * guard opens each record itself with the peer's write key (RFC 8446 §7.3;
 * RFC 5246 §6.3 key expansion) at the read sequence number the engine will
 * use; a batch with one record that fails is refused whole and leaves the
 * guard (and the engine) as they were. In TLS 1.3 it follows the peer's
 * KeyUpdate (§4.6.3) from the decrypted content type; in TLS 1.2 it steps
 * aside at an authenticated handshake record (a renegotiation, which changes
 * the keys; only the peer can send one).
 *
 * @example
 * ```ts
 * const guard = new RecordGuard('TLS_AES_128_GCM_SHA256', clientTrafficSecret0);
 * guard.authenticate(records); // throws BAD_RECORD_MAC; nothing changed
 * const guard12 = new RecordGuard('TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', masterSecret, { clientRandom, serverRandom });
 * ```
 * @module
 */
import { AtlsError } from '../errors.js';
import { expandLabel, tls12Prf } from '../engines/tls13-alert.js';
import { aeadForSuite, type AeadSpec } from '../protect/suites.js';
import { aeadOpen, nativeAeadFor, type NativeAead } from '../protect/aead.js';
import { ContentType, HandshakeType, type TlsRecord } from '../records.js';

/** Handshake bytes of a message split over records, at most (post-handshake messages from a client are small). */
const MAX_HANDSHAKE_CARRY = 64 * 1024;

/**
 * Nonce, additional data and plaintext of the record being opened, shared by every guard: `open` runs
 * synchronously to its end and zeroes the plaintext, so a session keeps no buffer of its own (a
 * records-mode session would otherwise hold one as large as the largest record it was sent).
 */
const nonce = new Uint8Array(12);
const aad = new Uint8Array(5);
/** RFC 5246 §6.2.3.3: seq_num + type + version + length. */
const aad12 = new Uint8Array(13);
let scratch = new Uint8Array(16 * 1024 + 256);
/** No handshake bytes carried over (shared: a carry is never written in place). */
const NO_CARRY = new Uint8Array(0);

/** The randoms of a TLS 1.2 handshake, for its key expansion (RFC 5246 §6.3). */
export interface Tls12Randoms {
  clientRandom: Uint8Array;
  serverRandom: Uint8Array;
}

/** One traffic key of the peer: its secret, AEAD key and IV (RFC 8446 §7.3; TLS 1.2: the master secret, client_write_key and client_write_IV). */
interface TrafficKey {
  secret: Uint8Array;
  /** TLS 1.2 AES-GCM and AES-CCM: the 4-byte implicit part of the nonce (RFC 5288 §3, RFC 6655 §3). */
  iv: Uint8Array;
  /** Made at the first request after the handshake (an idle session holds no native context); null: none here. */
  native: NativeAead | null | undefined;
  key: Uint8Array;
}

/** Where the guard stands: the key, the next read sequence number, an incomplete handshake message. */
interface ReadState {
  key: TrafficKey;
  /** A number: 2^53 records outlast any AEAD limit (RFC 8446 §5.5). */
  sequence: number;
  carry: Uint8Array;
  /** TLS 1.2: the peer renegotiates; the engine judges from here on. */
  renegotiating?: true;
}

export class RecordGuard {
  private readonly spec: AeadSpec;
  private readonly hash: 'sha256' | 'sha384';
  /** TLS 1.2 (the randoms are used once, in the constructor, and not kept). */
  private readonly tls12: boolean;
  /** TLS 1.2 AES-GCM/CCM: bytes of explicit nonce ahead of each record's ciphertext (RFC 5288 §3); 0 otherwise. */
  private readonly explicitNonce: number;
  private state: ReadState;
  /** Until the first record under the key has been found (see {@link catchUp}). */
  private started = false;
  /** Records refused so far: forgeries may be tried again and again, up to the AEAD's integrity limit. */
  private failures = 0;

  /**
   * TLS 1.3: `trafficSecret` is client_application_traffic_secret_0. TLS 1.2
   * (`tls12` given): it is the master secret. Throws UNSUPPORTED for a suite
   * without an AEAD it knows (the engine then stays the only judge).
   */
  constructor(cipherSuite: string, trafficSecret: Uint8Array, tls12?: Tls12Randoms) {
    this.spec = aeadForSuite(cipherSuite);
    // RFC 5246 §5: the TLS 1.2 PRF uses SHA-256 unless the suite names SHA-384; TLS 1.3 suites name their hash.
    this.hash = cipherSuite.endsWith('_SHA384') ? 'sha384' : 'sha256';
    this.tls12 = tls12 !== undefined;
    this.explicitNonce = tls12 && this.spec.algorithm !== 'chacha20-poly1305' ? 8 : 0;
    this.state = { key: tls12 ? this.derive12(trafficSecret, tls12) : this.derive(trafficSecret), sequence: 0, carry: NO_CARRY };
  }

  /**
   * Records the engine has already read in the flight that completed the
   * handshake: the first one that opens under the key at sequence 0 starts
   * it (those before it were under the handshake key), the rest follow.
   * TLS 1.2: the records after the peer's ChangeCipherSpec, from sequence 0
   * (RFC 5246 §6.1; its Finished is the first). False when they do not
   * follow (the guard is then of no use).
   */
  catchUp(records: readonly TlsRecord[]): boolean {
    if (this.tls12) {
      let ccs = -1;
      records.forEach((rec, i) => {
        if (rec.contentType === ContentType.change_cipher_spec) ccs = i;
      });
      if (ccs < 0) return false;
      for (const rec of records.slice(ccs + 1)) {
        const next = this.open(this.state, rec, false);
        if (!next) return false;
        delete next.renegotiating; // the Finished is the handshake's own
        this.advance(next);
      }
      this.started = true;
      return true;
    }
    for (const rec of records) {
      if (rec.contentType !== ContentType.application_data) continue;
      if (!this.started) {
        const next = this.open(this.state, rec, false);
        if (next) {
          this.started = true;
          this.advance(next);
        }
      } else {
        const next = this.open(this.state, rec, false);
        if (!next) return false;
        this.advance(next);
      }
    }
    return true;
  }

  /**
   * Authenticates `records` in order. Throws BAD_RECORD_MAC (remote) when
   * one is not an application_data record that opens at its sequence number
   * (forged, replayed, reordered, or a plaintext record after the
   * handshake, RFC 8446 §5); then nothing has changed.
   */
  authenticate(records: readonly TlsRecord[]): void {
    // RFC 9147 §4.5.3: past the integrity limit (2^7 for CCM_8) forgeries are no longer refused
    // one by one; the engine judges again, and a bad record ends the session as TLS would.
    if (this.failures >= this.spec.integrityLimit || this.state.renegotiating) return;
    let state = this.state;
    for (const rec of records) {
      // RFC 8446 §5: after the handshake every record is protected, as application_data. RFC 5246 §6.2.3:
      // every record after ChangeCipherSpec is protected, whatever its type.
      const next = rec.contentType === ContentType.application_data || this.tls12 ? this.open(state, rec, true) : undefined;
      if (!next) {
        this.failures++;
        const rfc = this.tls12 ? 'RFC 5246 §7.2.2' : 'RFC 8446 §5.2';
        throw new AtlsError('BAD_RECORD_MAC', `record ${state.sequence} of the peer's traffic key did not authenticate (${rfc}); refused before the TLS engine, the session goes on`, {
          source: 'remote',
        });
      }
      state = next;
    }
    this.started = true;
    this.advance(state);
  }

  /** Moves on to `next`, forgetting the key a KeyUpdate left behind. */
  private advance(next: ReadState): void {
    if (next.key !== this.state.key) this.forget(this.state.key);
    this.state = next;
  }

  /** Forgets the keys. */
  destroy(): void {
    this.forget(this.state.key);
  }

  /** The state after `rec`, or undefined when it does not authenticate; `lasting`: make the key's native context for the requests to come. */
  private open(state: ReadState, rec: TlsRecord, lasting: boolean): ReadState | undefined {
    const { spec, explicitNonce } = this;
    const body = rec.fragment;
    if (body.length < explicitNonce + spec.tagLength + (this.tls12 ? 0 : 1)) return undefined;
    const n = body.length - spec.tagLength;
    const ciphertext = body.subarray(explicitNonce, n);
    const tag = body.subarray(n);
    let additional = aad;
    if (explicitNonce > 0) {
      // RFC 5288 §3 (RFC 6655 §3): nonce = the 4-byte salt (client_write_IV) + the record's explicit nonce.
      nonce.set(state.key.iv);
      nonce.set(body.subarray(0, explicitNonce), state.key.iv.length);
    } else {
      // RFC 8446 §5.3, RFC 7905 §2: the 64-bit sequence number, left-padded to the IV length, XORed into the IV.
      nonce.set(state.key.iv);
      let seq = state.sequence;
      for (let i = nonce.length - 1; i >= nonce.length - 8 && seq > 0; i--) {
        nonce[i]! ^= seq % 256;
        seq = Math.floor(seq / 256);
      }
    }
    if (this.tls12) {
      // RFC 5246 §6.2.3.3: additional_data = seq_num + type + version + length (of the plaintext).
      additional = aad12;
      let seq = state.sequence;
      for (let i = 7; i >= 0; i--) {
        aad12[i] = seq % 256;
        seq = Math.floor(seq / 256);
      }
      aad12[8] = rec.contentType;
      aad12[9] = rec.version >> 8;
      aad12[10] = rec.version & 0xff;
      aad12[11] = ciphertext.length >> 8;
      aad12[12] = ciphertext.length & 0xff;
    } else {
      // RFC 8446 §5.2: additional_data is the record header.
      aad[0] = rec.contentType;
      aad[1] = rec.version >> 8;
      aad[2] = rec.version & 0xff;
      aad[3] = body.length >> 8;
      aad[4] = body.length & 0xff;
    }
    let plain: Uint8Array | undefined;
    let native = state.key.native;
    if (native === undefined && lasting) native = state.key.native = nativeAeadFor(spec, state.key.key, false);
    if (native) {
      // Into one scratch buffer (zeroed after use): the guard needs only the content type.
      if (scratch.length < ciphertext.length) scratch = new Uint8Array(ciphertext.length);
      if (native.open(nonce, additional, ciphertext, scratch, 0, tag)) plain = scratch.subarray(0, ciphertext.length);
    } else {
      plain = aeadOpen(spec, state.key.key, nonce, additional, ciphertext, tag);
    }
    if (!plain) return undefined;
    const next = this.tls12 ? this.afterRecord12(state, rec.contentType) : this.afterRecord(state, plain);
    plain.fill(0);
    return next;
  }

  /** TLS 1.2: the type is the record's own; a handshake message after the handshake starts a renegotiation (RFC 5246 §7.4.1.1, §7.4.1.2). */
  private afterRecord12(state: ReadState, type: number): ReadState {
    const next: ReadState = { key: state.key, sequence: state.sequence + 1, carry: NO_CARRY };
    if (type === ContentType.handshake || type === ContentType.change_cipher_spec) next.renegotiating = true;
    return next;
  }

  /** RFC 8446 §5.2: the inner content type is the last non-zero byte; a KeyUpdate (§4.6.3) changes the key after its record. */
  private afterRecord(state: ReadState, plain: Uint8Array): ReadState {
    let end = plain.length;
    while (end > 0 && plain[end - 1] === 0) end--;
    const type = end > 0 ? plain[end - 1] : undefined;
    const same: ReadState = { key: state.key, sequence: state.sequence + 1, carry: state.carry };
    if (type !== ContentType.handshake) return same;
    let messages = plain.subarray(0, end - 1);
    if (state.carry.length > 0) {
      const joined = new Uint8Array(state.carry.length + messages.length);
      joined.set(state.carry, 0);
      joined.set(messages, state.carry.length);
      messages = joined;
    }
    let updated = false;
    let at = 0;
    while (messages.length - at >= 4) {
      const len = (messages[at + 1]! << 16) | (messages[at + 2]! << 8) | messages[at + 3]!;
      if (messages.length - at < 4 + len) break;
      if (messages[at] === HandshakeType.key_update) updated = true;
      at += 4 + len;
    }
    const rest = messages.subarray(at);
    // The engine judges a message too long; the guard only stops following it.
    same.carry = rest.length === 0 || rest.length > MAX_HANDSHAKE_CARRY ? NO_CARRY : rest.slice();
    if (!updated) return same;
    // RFC 8446 §7.2: application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length).
    const secret = expandLabel(this.hash, state.key.secret, 'traffic upd', state.key.secret.length);
    return { key: this.derive(secret), sequence: 0, carry: same.carry };
  }

  /** RFC 8446 §7.3: the write key and IV of a traffic secret. */
  private derive(secret: Uint8Array): TrafficKey {
    // Secret, key and IV in one allocation: a session keeps one ArrayBuffer for them, not three.
    const { keyLength, ivLength } = this.spec;
    const all = new Uint8Array(secret.length + keyLength + ivLength);
    all.set(secret, 0);
    all.set(expandLabel(this.hash, secret, 'key', keyLength), secret.length);
    all.set(expandLabel(this.hash, secret, 'iv', ivLength), secret.length + keyLength);
    return {
      secret: all.subarray(0, secret.length),
      key: all.subarray(secret.length, secret.length + keyLength),
      iv: all.subarray(secret.length + keyLength),
      native: undefined,
    };
  }

  /**
   * RFC 5246 §6.3: key_block = PRF(master_secret, "key expansion", server_random + client_random),
   * cut into client_write_MAC_key (none for an AEAD), server_write_MAC_key, client_write_key,
   * server_write_key, client_write_IV, server_write_IV. The fixed IV is 4 bytes for AES-GCM
   * (RFC 5288 §3) and AES-CCM (RFC 6655 §3), 12 for ChaCha20-Poly1305 (RFC 7905 §2).
   */
  private derive12(masterSecret: Uint8Array, randoms: Tls12Randoms): TrafficKey {
    const { keyLength } = this.spec;
    const ivLength = this.explicitNonce > 0 ? 4 : 12;
    const seed = new Uint8Array(64);
    seed.set(randoms.serverRandom.subarray(0, 32), 0);
    seed.set(randoms.clientRandom.subarray(0, 32), 32);
    const block = tls12Prf(this.hash, masterSecret, 'key expansion', seed, 2 * keyLength + 2 * ivLength);
    // The master secret is not kept: TLS 1.2 has no KeyUpdate.
    const all = new Uint8Array(keyLength + ivLength);
    all.set(block.subarray(0, keyLength), 0);
    all.set(block.subarray(2 * keyLength, 2 * keyLength + ivLength), keyLength);
    block.fill(0);
    return { secret: all.subarray(0, 0), key: all.subarray(0, keyLength), iv: all.subarray(keyLength), native: undefined };
  }

  private forget(key: TrafficKey): void {
    key.secret.fill(0);
    key.key.fill(0);
    key.native?.free();
  }
}
