/**
 * A TLS 1.3 client (RFC 8446) behind {@link EngineConnection}, on Web Crypto:
 * full handshakes with X25519 / P-256 / P-384 key shares and
 * HelloRetryRequest, certificate or external-PSK authentication, resumption
 * tickets, SNI, ALPN, KeyUpdate, close_notify and the §7.5 exporter.
 *
 * Every record and message from the server is parsed with bounds checks; a
 * violation fails the connection with a typed AtlsError whose `alertFlight`
 * carries our alert, protected under the current write key when there is one
 * (§5.1, §6.2).
 * @module
 */
import { ByteWriter, concatBytes } from '../../bytes.js';
import { AlertDescription, AtlsError, alertName, receivedAlertError } from '../../errors.js';
import { DEFAULT_MAX_FLIGHT_BYTES as MAX_FLIGHT, checkExporterArguments, plaintextAlert } from '../connection.js';
import { scanRecords } from '../../records.js';
import type { EngineConnection, EngineEvent, EngineStep, HandshakeInfo, PskCredential } from '../types.js';
import {
  CERT_ONLY_SCHEMES,
  generateShare,
  importSigningKey,
  sharedSecret,
  signCertificateVerify,
  verifyCertificateVerify,
  type Group,
  type KeyShare,
  type SigningKey,
} from './crypto.js';
import { KeySchedule, SHA256, type SuiteHash } from './key-schedule.js';
import { HELLO_RETRY_REQUEST_RANDOM } from '../../records.js';
import { EXT, HS, LEGACY_VERSION, TLS13, equalBytes, readExtensions, reader, violation } from './messages.js';
import {
  CONTENT_ALERT,
  CONTENT_APPLICATION_DATA,
  CONTENT_CHANGE_CIPHER_SPEC,
  CONTENT_HANDSHAKE,
  MAX_PLAINTEXT,
  RecordKey,
  type Tls13Suite,
} from './record.js';
import type { ResumptionTicket } from './ticket.js';
import { encodeTicket } from './ticket.js';
import { leafPublicKey, verifyServerChain } from './verify.js';

/** Largest `write()`: the records must fit in one flight. */
const MAX_WRITE = MAX_FLIGHT - 8 * 1024;
/** Largest handshake message accepted (a certificate chain fits well below). */
const MAX_HANDSHAKE_MESSAGE = 128 * 1024;
/** RFC 8446 §4.6.1: ticket lifetimes above seven days are illegal. */
const MAX_TICKET_LIFETIME = 604800;
const MAX_CHAIN = 16;
const EMPTY = new Uint8Array(0);
const enc = new TextEncoder();
const dec = new TextDecoder();

/** The client's normalised settings (validated by the engine). */
export interface ClientSettings {
  suites: Tls13Suite[];
  groups: Group[];
  signatureSchemes: number[];
  serverName: string | undefined;
  /** Whether to send server_name: never for IP literals (RFC 6066 §3). */
  sendSni: boolean;
  alpn: string[];
  verifyPeer: boolean;
  /** Trust anchors, DER. */
  anchors: Uint8Array[];
  psk: PskCredential | undefined;
  ticket: ResumptionTicket | undefined;
  /** Own certificate chain (DER, leaf first) and PKCS#8 key, offered when the server asks. */
  certificate: { chain: Uint8Array[]; pkcs8: Uint8Array } | undefined;
  now: () => number;
}

type State = 'idle' | 'wait_sh' | 'wait_ee' | 'wait_cert_cr' | 'wait_cert' | 'wait_cv' | 'wait_finished' | 'connected';

/** What the client offers as a PSK in its ClientHello. */
interface PskOffer {
  identity: Uint8Array;
  key: Uint8Array;
  hash: SuiteHash;
  external: boolean;
  obfuscatedAge: number;
}

function randomBytes(n: number): Uint8Array {
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

function message(type: number, body: Uint8Array): Uint8Array {
  return new ByteWriter(body.length + 4).u8(type).vector(3, (w) => w.bytes(body)).finish();
}

/** One TLS 1.3 client connection. */
export class WebCryptoClient implements EngineConnection {
  private state: State = 'idle';
  private failed: AtlsError | undefined;
  private destroyed = false;
  private closeSent = false;
  private peerClosed = false;
  /** Serialises calls: record sequence numbers must advance in call order. */
  private queue: Promise<unknown> = Promise.resolve();

  private shares: KeyShare[] = [];
  private pskOffer: PskOffer | undefined;
  private helloRetried = false;
  private firstHello: Uint8Array | undefined;
  private transcript: Uint8Array[] = [];
  private suite: Tls13Suite | undefined;
  private schedule: KeySchedule | undefined;
  private readKey: RecordKey | undefined;
  private writeKey: RecordKey | undefined;
  private handshakeSecrets: { client: Uint8Array; server: Uint8Array } | undefined;
  private appSecrets: { client: Uint8Array; server: Uint8Array } | undefined;
  private handshakeBuffer: Uint8Array = EMPTY;
  private certificateRequestContext: Uint8Array | undefined;
  /** Schemes the server's CertificateRequest accepts (§4.3.2). */
  private requestedSchemes: number[] = [];
  private signingKey: SigningKey | undefined;
  private pskAccepted = false;
  private alpn: string | undefined;
  private peerCertificates: Uint8Array[] = [];
  private leafSpki: ArrayBuffer | undefined;
  private peerVerified = false;

  constructor(private readonly settings: ClientSettings) {}

  // ---------------------------------------------------------------- API

  start(): Promise<EngineStep> {
    return this.run(async () => {
      if (this.state !== 'idle') throw new AtlsError('INVALID_STATE', 'start() was already called');
      if (this.settings.certificate) this.signingKey = await importSigningKey(this.settings.certificate.pkcs8);
      this.shares = [await generateShare(this.settings.groups[0]!)];
      this.pskOffer = this.makePskOffer();
      const hello = this.clientHello(undefined);
      this.firstHello = hello;
      this.transcript = [hello];
      this.state = 'wait_sh';
      return { flight: this.plainRecords(CONTENT_HANDSHAKE, hello), events: [] };
    });
  }

  receive(flight: Uint8Array): Promise<EngineStep> {
    return this.run(async () => {
      if (!(flight instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'flight must be bytes');
      if (this.peerClosed) throw new AtlsError('CLOSED', 'the peer closed the connection');
      if (this.state === 'idle') throw new AtlsError('INVALID_STATE', 'receive() before start()');
      if (flight.length > MAX_FLIGHT) {
        throw new AtlsError('TOO_LARGE', `peer flight of ${flight.length} bytes exceeds ${MAX_FLIGHT}`, {
          source: 'remote',
          alert: AlertDescription.internal_error,
        });
      }
      const scan = scanRecords(flight);
      if (scan.garbageAt !== undefined) throw violation(AlertDescription.decode_error, `no TLS record at offset ${scan.garbageAt}`);
      // draft §6.1: a flight is whole records.
      if (scan.truncated) {
        throw new AtlsError('TRUNCATED_FLIGHT', 'the flight ends inside a TLS record', { source: 'remote', alert: AlertDescription.decode_error });
      }
      const out: Uint8Array[] = [];
      const events: EngineEvent[] = [];
      for (const r of scan.records) {
        if (this.peerClosed) break; // §6.1: nothing after close_notify counts
        await this.record(flight.subarray(r.offset, r.offset + r.headerLength), r.fragment, out, events);
      }
      return { flight: concatBytes(out), events };
    });
  }

  write(data: Uint8Array): Promise<EngineStep> {
    return this.run(async () => {
      if (!(data instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', 'data must be bytes');
      if (this.closeSent || this.peerClosed) throw new AtlsError('CLOSED', 'the connection is closed');
      if (this.state !== 'connected') throw new AtlsError('NOT_ESTABLISHED', 'write() before the handshake completed');
      if (data.length > MAX_WRITE) throw new AtlsError('TOO_LARGE', `write of ${data.length} bytes exceeds one flight`, { source: 'local' });
      return { flight: await this.sealAll(CONTENT_APPLICATION_DATA, data), events: [] };
    });
  }

  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array {
    this.usable();
    if (this.state !== 'connected' || !this.schedule) throw new AtlsError('NOT_ESTABLISHED', 'exportKeyingMaterial() before the handshake completed');
    checkExporterArguments(length, label, context);
    // RFC 8446 §7.1: "tls13 " + label fits the 255-byte HkdfLabel.label.
    if (label.length > 249) throw new AtlsError('INVALID_ARGUMENT', 'exporter label must be 1..249 printable ASCII characters');
    return this.schedule.exporter(label, context, length);
  }

  close(): Promise<EngineStep> {
    return this.run(async () => {
      if (this.closeSent || this.peerClosed) return { flight: EMPTY, events: [] };
      this.closeSent = true;
      if (this.state !== 'connected') return { flight: EMPTY, events: [] };
      return { flight: await this.alertRecord(AlertDescription.close_notify, 1), events: [] }; // §6.1
    });
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.failed = undefined;
    this.readKey = this.writeKey = undefined;
    this.schedule = undefined;
  }

  // ------------------------------------------------------ error discipline

  private usable(): void {
    if (this.destroyed) throw new AtlsError('CLOSED', 'the connection was destroyed');
    if (this.failed) throw this.failed;
  }

  /**
   * Runs one call after the previous ones. A local misuse rejects without
   * harm; anything else is fatal and sticky, with our alert attached.
   */
  private run(fn: () => Promise<EngineStep>): Promise<EngineStep> {
    const next = this.queue.then(async () => {
      this.usable();
      try {
        return await fn();
      } catch (e) {
        if (this.destroyed) throw new AtlsError('CLOSED', 'the connection was destroyed');
        const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', `webcrypto engine: ${String(e)}`, { source: 'local', cause: e });
        if (err.source === 'local' && err.code !== 'INTERNAL') throw err;
        throw (this.failed = await this.withAlert(err));
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** Attaches our alert (§6.2) unless the failure is the peer's own alert. */
  private async withAlert(err: AtlsError): Promise<AtlsError> {
    if (err.alertFlight.length > 0 || (err as { peerAlert?: boolean }).peerAlert) return err;
    const description = err.alert?.description ?? AlertDescription.internal_error;
    try {
      return err.withAlertFlight(await this.alertRecord(description, 2));
    } catch {
      return err.withAlertFlight(plaintextAlert(description));
    }
  }

  private async alertRecord(description: number, level: number): Promise<Uint8Array> {
    if (!this.writeKey) return plaintextAlert(description, level);
    return this.writeKey.seal(CONTENT_ALERT, Uint8Array.of(level, description));
  }

  // --------------------------------------------------------------- records

  /** Unprotected records (the ClientHellos), cut at 2^14 bytes (§5.1). */
  private plainRecords(type: number, content: Uint8Array): Uint8Array {
    const parts: Uint8Array[] = [];
    for (let at = 0; at < content.length; at += MAX_PLAINTEXT) {
      const chunk = content.subarray(at, at + MAX_PLAINTEXT);
      parts.push(Uint8Array.of(type, 3, 3, chunk.length >> 8, chunk.length & 0xff), chunk);
    }
    return concatBytes(parts);
  }

  private async sealAll(type: number, content: Uint8Array): Promise<Uint8Array> {
    const key = this.writeKey;
    if (!key) throw new AtlsError('INTERNAL', 'no write key');
    const parts: Uint8Array[] = [];
    for (let at = 0; at < content.length; at += MAX_PLAINTEXT) parts.push(await key.seal(type, content.subarray(at, at + MAX_PLAINTEXT)));
    return concatBytes(parts);
  }

  private async record(header: Uint8Array, body: Uint8Array, out: Uint8Array[], events: EngineEvent[]): Promise<void> {
    const type = header[0]!;
    if (type === CONTENT_CHANGE_CIPHER_SPEC) {
      // §5: a compatibility change_cipher_spec (one byte 0x01) is dropped during the handshake.
      if (this.state === 'connected' || body.length !== 1 || body[0] !== 1) {
        throw violation(AlertDescription.unexpected_message, 'unexpected change_cipher_spec');
      }
      return;
    }
    if (type === CONTENT_ALERT && !this.readKey) return this.alert(body, events, out);
    if (type === CONTENT_APPLICATION_DATA && this.readKey) {
      const inner = await this.readKey.open(header, body);
      if (inner.type === CONTENT_ALERT) return this.alert(inner.content, events, out);
      if (inner.type === CONTENT_HANDSHAKE) return this.handshakeData(inner.content, out, events);
      if (inner.type === CONTENT_APPLICATION_DATA && this.state === 'connected') {
        if (inner.content.length > 0) events.push({ type: 'data', data: Uint8Array.from(inner.content) });
        return;
      }
      throw violation(AlertDescription.unexpected_message, `unexpected protected content type ${inner.type}`);
    }
    if (type === CONTENT_HANDSHAKE && !this.readKey) return this.handshakeData(body, out, events);
    throw violation(AlertDescription.unexpected_message, `unexpected ${this.readKey ? 'unprotected' : 'protected'} record of type ${type}`);
  }

  /** §6: close_notify ends the connection (answered with ours); any other alert is fatal. */
  private async alert(body: Uint8Array, events: EngineEvent[], out: Uint8Array[]): Promise<void> {
    if (body.length !== 2) throw violation(AlertDescription.decode_error, `alert of ${body.length} bytes`);
    const [level, description] = [body[0]!, body[1]!];
    if (description === AlertDescription.close_notify) {
      events.push({ type: 'alert', level, description, name: alertName(description) }, { type: 'closed' });
      if (!this.closeSent && this.writeKey) out.push(await this.alertRecord(AlertDescription.close_notify, 1));
      this.closeSent = true;
      this.peerClosed = true;
      return;
    }
    // §6.2: every other alert is fatal in TLS 1.3 (user_canceled is followed by close_notify).
    if (description === AlertDescription.user_canceled) return;
    const err = receivedAlertError(description, level);
    Object.assign(err, { peerAlert: true });
    throw err;
  }

  /** Collects handshake bytes; messages may span records but not key changes (§5.1). */
  private async handshakeData(content: Uint8Array, out: Uint8Array[], events: EngineEvent[]): Promise<void> {
    if (content.length === 0) throw violation(AlertDescription.unexpected_message, 'empty handshake record');
    this.handshakeBuffer = this.handshakeBuffer.length === 0 ? Uint8Array.from(content) : concatBytes([this.handshakeBuffer, content]);
    while (this.handshakeBuffer.length >= 4) {
      const b = this.handshakeBuffer;
      const length = (b[1]! << 16) | (b[2]! << 8) | b[3]!;
      if (length > MAX_HANDSHAKE_MESSAGE) throw violation(AlertDescription.decode_error, `handshake message of ${length} bytes`);
      if (b.length < 4 + length) {
        if (this.handshakeBuffer.length > MAX_HANDSHAKE_MESSAGE + 4) throw violation(AlertDescription.decode_error, 'handshake buffer overflow');
        return;
      }
      const msg = b.subarray(0, 4 + length);
      this.handshakeBuffer = b.subarray(4 + length);
      const keyBefore = this.readKey;
      await this.handshakeMessage(b[0]!, msg, msg.subarray(4), out, events);
      if (this.readKey !== keyBefore && this.handshakeBuffer.length > 0) {
        throw violation(AlertDescription.unexpected_message, 'handshake message spans a key change');
      }
    }
  }

  // ------------------------------------------------------------- handshake

  private transcriptHash(): Uint8Array {
    return this.suite!.hash.digest(concatBytes(this.transcript));
  }

  private async handshakeMessage(type: number, msg: Uint8Array, body: Uint8Array, out: Uint8Array[], events: EngineEvent[]): Promise<void> {
    const expect = (want: number, state: State): void => {
      if (type !== want || this.state !== state) {
        throw violation(AlertDescription.unexpected_message, `handshake message ${type} in state ${this.state}`);
      }
    };
    switch (this.state) {
      case 'wait_sh':
        expect(HS.server_hello, 'wait_sh');
        return this.serverHello(msg, body, out);
      case 'wait_ee':
        expect(HS.encrypted_extensions, 'wait_ee');
        return this.encryptedExtensions(msg, body);
      case 'wait_cert_cr':
        if (type === HS.certificate_request) return this.certificateRequest(msg, body);
        expect(HS.certificate, 'wait_cert_cr');
        return this.certificate(msg, body);
      case 'wait_cert':
        expect(HS.certificate, 'wait_cert');
        return this.certificate(msg, body);
      case 'wait_cv':
        expect(HS.certificate_verify, 'wait_cv');
        return this.certificateVerify(msg, body);
      case 'wait_finished':
        expect(HS.finished, 'wait_finished');
        return this.finished(msg, body, out, events);
      case 'connected':
        if (type === HS.new_session_ticket) return this.newSessionTicket(body, events);
        if (type === HS.key_update) return this.keyUpdate(body, out);
        throw violation(AlertDescription.unexpected_message, `post-handshake message ${type}`);
      default:
        throw violation(AlertDescription.unexpected_message, `handshake message ${type} in state ${this.state}`);
    }
  }

  private makePskOffer(): PskOffer | undefined {
    const s = this.settings;
    if (s.psk) {
      // External PSKs are bound to SHA-256, as OpenSSL's and GnuTLS's PSK callbacks assume (§4.2.11).
      return { identity: enc.encode(s.psk.identity), key: s.psk.key, hash: SHA256, external: true, obfuscatedAge: 0 };
    }
    const t = s.ticket;
    if (!t) return undefined;
    const suite = s.suites.find((x) => x.code === t.suite);
    const age = s.now() - t.receivedAt;
    // §4.6.1: only for the same server name, within the lifetime, with a suite of the same hash.
    if (!suite || age < 0 || age > t.lifetime * 1000 || t.serverName !== (s.serverName ?? '')) return undefined;
    return { identity: t.ticket, key: t.psk, hash: suite.hash, external: false, obfuscatedAge: (age + t.ageAdd) >>> 0 };
  }

  /** §4.1.2: the ClientHello; after an HRR with the requested share and cookie (§4.1.4). */
  private clientHello(cookie: Uint8Array | undefined): Uint8Array {
    const s = this.settings;
    const psk = this.pskOffer;
    const w = new ByteWriter(512);
    w.u16(LEGACY_VERSION).bytes(this.random ??= randomBytes(32));
    w.vector(1, () => undefined); // legacy_session_id: empty (no middlebox compatibility mode)
    w.vector(2, (v) => s.suites.forEach((x) => v.u16(x.code)));
    w.vector(1, (v) => v.u8(0)); // legacy_compression_methods: null
    w.vector(2, (e) => {
      const ext = (type: number, body: (b: ByteWriter) => void): void => {
        e.u16(type).vector(2, body);
      };
      if (s.sendSni && s.serverName) {
        const name = enc.encode(s.serverName);
        ext(EXT.server_name, (b) => b.vector(2, (l) => l.u8(0).vector(2, (n) => n.bytes(name))));
      }
      ext(EXT.supported_versions, (b) => b.vector(1, (l) => l.u16(TLS13)));
      ext(EXT.supported_groups, (b) => b.vector(2, (l) => s.groups.forEach((g) => l.u16(g.code))));
      ext(EXT.signature_algorithms, (b) => b.vector(2, (l) => [...s.signatureSchemes, ...CERT_ONLY_SCHEMES].forEach((c) => l.u16(c))));
      ext(EXT.key_share, (b) => b.vector(2, (l) => this.shares.forEach((k) => l.u16(k.group.code).vector(2, (p) => p.bytes(k.publicValue)))));
      if (s.alpn.length > 0) ext(EXT.alpn, (b) => b.vector(2, (l) => s.alpn.forEach((p) => l.vector(1, (n) => n.bytes(enc.encode(p))))));
      if (cookie) ext(EXT.cookie, (b) => b.vector(2, (c) => c.bytes(cookie)));
      ext(EXT.psk_key_exchange_modes, (b) => b.vector(1, (l) => l.u8(1))); // psk_dhe_ke only
      if (psk) {
        // §4.2.11: pre_shared_key comes last; binders are filled in below.
        ext(EXT.pre_shared_key, (b) => {
          b.vector(2, (ids) => ids.vector(2, (i) => i.bytes(psk.identity)).u32(psk.obfuscatedAge));
          b.vector(2, (binders) => binders.vector(1, (x) => x.bytes(new Uint8Array(psk.hash.length))));
        });
      }
    });
    const hello = message(HS.client_hello, w.finish());
    if (!psk) return hello;
    // §4.2.11.2: the binder covers the transcript up to the truncated ClientHello (binders list excluded).
    const bindersLength = 2 + 1 + psk.hash.length;
    const truncated = hello.subarray(0, hello.length - bindersLength);
    const ks = new KeySchedule(psk.hash);
    ks.early(psk.key);
    const prior = this.transcript.length > 0 ? this.hrrTranscriptPrefix(psk.hash) : EMPTY;
    const binder = psk.hash.hmac(ks.binderFinishedKey(psk.external), psk.hash.digest(concatBytes([prior, truncated])));
    hello.set(binder, hello.length - psk.hash.length);
    return hello;
  }

  private random: Uint8Array | undefined;

  /** §4.4.1: after an HRR, the transcript so far with ClientHello1 replaced by message_hash. */
  private hrrTranscriptPrefix(hash: SuiteHash): Uint8Array {
    const synthetic = message(HS.message_hash, hash.digest(this.firstHello!));
    return concatBytes([synthetic, ...this.transcript.slice(1)]);
  }

  private async serverHello(msg: Uint8Array, body: Uint8Array, out: Uint8Array[]): Promise<void> {
    const r = reader(body, 'ServerHello');
    if (r.u16('legacy_version') !== LEGACY_VERSION) throw violation(AlertDescription.protocol_version, 'ServerHello legacy_version is not 0x0303');
    const random = r.bytes(32, 'random');
    const echo = r.vector8('legacy_session_id_echo');
    if (echo.length !== 0) throw violation(AlertDescription.illegal_parameter, 'ServerHello echoes a session id we did not send');
    const suiteCode = r.u16('cipher_suite');
    const compression = r.u8('legacy_compression_method');
    const exts = r.remaining === 0 ? new Map<number, Uint8Array>() : readExtensions(r, 'ServerHello');
    r.end();
    const versions = exts.get(EXT.supported_versions);
    // §4.1.3, §4.2.1: only TLS 1.3 is spoken here.
    if (!versions) throw violation(AlertDescription.protocol_version, 'the server chose TLS 1.2 or older; this engine speaks TLS 1.3 only');
    const vr = reader(versions, 'supported_versions');
    if (vr.u16('selected_version') !== TLS13) throw violation(AlertDescription.illegal_parameter, 'supported_versions does not select TLS 1.3');
    vr.end();
    const suite = this.settings.suites.find((x) => x.code === suiteCode);
    if (!suite) throw violation(AlertDescription.illegal_parameter, `the server chose cipher suite 0x${suiteCode.toString(16)}, which was not offered`);
    if (compression !== 0) throw violation(AlertDescription.illegal_parameter, 'compression method is not null');
    if (this.suite && this.suite !== suite) throw violation(AlertDescription.illegal_parameter, 'ServerHello suite differs from the HelloRetryRequest');
    this.suite = suite;

    if (equalBytes(random, HELLO_RETRY_REQUEST_RANDOM)) return this.helloRetryRequest(msg, exts, out);
    for (const type of exts.keys()) {
      if (type !== EXT.supported_versions && type !== EXT.key_share && type !== EXT.pre_shared_key) {
        throw violation(AlertDescription.unsupported_extension, `ServerHello carries extension ${type}`);
      }
    }
    // §4.2.11: the selected identity is ours and its hash is the suite's.
    const pskExt = exts.get(EXT.pre_shared_key);
    if (pskExt) {
      const pr = reader(pskExt, 'pre_shared_key');
      const selected = pr.u16('selected_identity');
      pr.end();
      if (!this.pskOffer || selected !== 0) throw violation(AlertDescription.illegal_parameter, 'the server selected a PSK that was not offered');
      if (this.pskOffer.hash !== suite.hash) throw violation(AlertDescription.illegal_parameter, 'the selected PSK does not match the suite hash');
      this.pskAccepted = true;
    }
    const ks = exts.get(EXT.key_share);
    if (!ks) throw violation(AlertDescription.missing_extension, 'ServerHello without key_share (only psk_dhe_ke is offered)');
    const kr = reader(ks, 'key_share');
    const group = kr.u16('group');
    const publicValue = kr.vector16('key_exchange');
    kr.end();
    const share = this.shares.find((s) => s.group.code === group);
    if (!share) throw violation(AlertDescription.illegal_parameter, `key share for group 0x${group.toString(16)}, which was not sent`);
    const secret = await sharedSecret(share, publicValue);

    // §4.4.1: after a HelloRetryRequest, ClientHello1 enters the transcript as message_hash.
    if (this.helloRetried) this.transcript[0] = message(HS.message_hash, suite.hash.digest(this.firstHello!));
    this.transcript.push(msg);
    this.schedule = new KeySchedule(suite.hash);
    this.schedule.early(this.pskAccepted ? this.pskOffer!.key : undefined);
    this.handshakeSecrets = this.schedule.handshake(secret, this.transcriptHash());
    this.readKey = await RecordKey.create(suite, this.handshakeSecrets.server);
    this.writeKey = await RecordKey.create(suite, this.handshakeSecrets.client);
    this.state = 'wait_ee';
  }

  /** §4.1.4: answer one HelloRetryRequest with a share for the group it names. */
  private async helloRetryRequest(msg: Uint8Array, exts: Map<number, Uint8Array>, out: Uint8Array[]): Promise<void> {
    if (this.helloRetried) throw violation(AlertDescription.unexpected_message, 'a second HelloRetryRequest');
    this.helloRetried = true;
    for (const type of exts.keys()) {
      if (type !== EXT.supported_versions && type !== EXT.key_share && type !== EXT.cookie) {
        throw violation(AlertDescription.unsupported_extension, `HelloRetryRequest carries extension ${type}`);
      }
    }
    let cookie: Uint8Array | undefined;
    const c = exts.get(EXT.cookie);
    if (c) {
      const cr = reader(c, 'cookie');
      cookie = Uint8Array.from(cr.vector16('cookie'));
      cr.end();
      if (cookie.length === 0) throw violation(AlertDescription.decode_error, 'empty cookie');
    }
    const ks = exts.get(EXT.key_share);
    if (ks) {
      const kr = reader(ks, 'key_share');
      const code = kr.u16('selected_group');
      kr.end();
      const group = this.settings.groups.find((g) => g.code === code);
      // §4.1.4: the group must be offered and not the one already shared.
      if (!group || this.shares.some((s) => s.group.code === code)) {
        throw violation(AlertDescription.illegal_parameter, `HelloRetryRequest asks for group 0x${code.toString(16)}`);
      }
      this.shares = [await generateShare(group)];
    } else if (!cookie) {
      throw violation(AlertDescription.illegal_parameter, 'HelloRetryRequest changes nothing');
    }
    // A PSK whose hash is not the chosen suite's cannot be offered again (§4.1.4).
    if (this.pskOffer && this.pskOffer.hash !== this.suite!.hash) this.pskOffer = undefined;
    this.transcript.push(msg);
    const hello = this.clientHello(cookie);
    this.transcript.push(hello);
    out.push(this.plainRecords(CONTENT_HANDSHAKE, hello));
  }

  /** §4.3.1: only extensions we asked for, each at most once and of the right shape. */
  private encryptedExtensions(msg: Uint8Array, body: Uint8Array): void {
    const r = reader(body, 'EncryptedExtensions');
    const exts = readExtensions(r, 'EncryptedExtensions');
    r.end();
    for (const [type, data] of exts) {
      if (type === EXT.server_name) {
        if (data.length !== 0 || !this.settings.sendSni) throw violation(AlertDescription.illegal_parameter, 'unexpected server_name response');
      } else if (type === EXT.alpn) {
        const ar = reader(data, 'ALPN');
        const list = reader(ar.vector16('protocol_name_list'), 'ALPN');
        ar.end();
        const name = dec.decode(list.vector8('protocol_name'));
        list.end();
        // RFC 7301 §3.1: exactly one protocol, one we offered.
        if (!this.settings.alpn.includes(name)) throw violation(AlertDescription.illegal_parameter, `the server selected ALPN ${JSON.stringify(name)}, which was not offered`);
        this.alpn = name;
      } else if (type === EXT.supported_groups) {
        // The server's preferences, for later connections: nothing to do.
      } else if (type === EXT.key_share || type === EXT.supported_versions || type === EXT.pre_shared_key || type === EXT.cookie) {
        throw violation(AlertDescription.illegal_parameter, `extension ${type} in EncryptedExtensions`);
      } else {
        throw violation(AlertDescription.unsupported_extension, `EncryptedExtensions carries extension ${type}, which was not requested`);
      }
    }
    this.transcript.push(msg);
    this.state = this.pskAccepted ? 'wait_finished' : 'wait_cert_cr';
  }

  /** §4.3.2: remember the context and the schemes the server accepts for our CertificateVerify. */
  private certificateRequest(msg: Uint8Array, body: Uint8Array): void {
    const r = reader(body, 'CertificateRequest');
    const context = r.vector8('certificate_request_context');
    const exts = readExtensions(r, 'CertificateRequest');
    r.end();
    if (context.length !== 0) throw violation(AlertDescription.illegal_parameter, 'CertificateRequest context in the handshake');
    const algs = exts.get(EXT.signature_algorithms);
    if (!algs) throw violation(AlertDescription.missing_extension, 'CertificateRequest without signature_algorithms');
    const ar = reader(algs, 'signature_algorithms');
    const list = reader(ar.vector16('supported_signature_algorithms'), 'signature_algorithms');
    ar.end();
    while (list.remaining > 0) this.requestedSchemes.push(list.u16('signature scheme'));
    this.certificateRequestContext = Uint8Array.from(context);
    this.transcript.push(msg);
    this.state = 'wait_cert';
  }

  /** §4.4.2: the server's chain, validated against the configured anchors. */
  private async certificate(msg: Uint8Array, body: Uint8Array): Promise<void> {
    const r = reader(body, 'Certificate');
    if (r.vector8('certificate_request_context').length !== 0) throw violation(AlertDescription.illegal_parameter, 'server Certificate with a context');
    const list = reader(r.vector24('certificate_list'), 'Certificate');
    r.end();
    const chain: Uint8Array[] = [];
    while (list.remaining > 0) {
      const der = list.vector24('cert_data');
      // §4.4.2: we requested no certificate extensions (status_request, SCT).
      if (list.vector16('extensions').length !== 0) throw violation(AlertDescription.unsupported_extension, 'certificate entry extensions were not requested');
      if (der.length === 0) throw violation(AlertDescription.decode_error, 'empty certificate entry');
      if (chain.length >= MAX_CHAIN) throw violation(AlertDescription.bad_certificate, `more than ${MAX_CHAIN} certificates`);
      chain.push(Uint8Array.from(der));
    }
    // §4.4.2.4: an empty server Certificate is decode_error.
    if (chain.length === 0) throw violation(AlertDescription.decode_error, 'the server sent no certificate');
    const s = this.settings;
    if (s.verifyPeer) {
      this.leafSpki = await verifyServerChain(chain, s.anchors, s.serverName, new Date(s.now()));
      this.peerVerified = true;
    } else {
      this.leafSpki = await leafPublicKey(chain[0]!);
    }
    this.peerCertificates = chain;
    this.transcript.push(msg);
    this.state = 'wait_cv';
  }

  /** §4.4.3: the server proves possession of the leaf's key over the transcript. */
  private async certificateVerify(msg: Uint8Array, body: Uint8Array): Promise<void> {
    const r = reader(body, 'CertificateVerify');
    const scheme = r.u16('algorithm');
    const signature = r.vector16('signature');
    r.end();
    await verifyCertificateVerify(scheme, this.settings.signatureSchemes, this.leafSpki!, signature, this.transcriptHash());
    this.transcript.push(msg);
    this.state = 'wait_finished';
  }

  /** §4.4.4: check the server's Finished, answer with ours, switch to application keys. */
  private async finished(msg: Uint8Array, body: Uint8Array, out: Uint8Array[], events: EngineEvent[]): Promise<void> {
    const schedule = this.schedule!;
    const suite = this.suite!;
    const expected = schedule.verifyData(this.handshakeSecrets!.server, this.transcriptHash());
    if (!equalBytes(body, expected)) throw violation(AlertDescription.decrypt_error, 'server Finished does not verify');
    this.transcript.push(msg);
    this.appSecrets = schedule.master(this.transcriptHash());
    this.readKey = await RecordKey.create(suite, this.appSecrets.server);

    const flight: Uint8Array[] = [];
    if (this.certificateRequestContext) {
      // §4.4.2.2: our chain when our key signs with a scheme the server accepts; else an empty list.
      const scheme = this.signingKey?.schemes.find((x) => this.requestedSchemes.includes(x));
      const chain = scheme !== undefined ? this.settings.certificate!.chain : [];
      const cert = message(
        HS.certificate,
        new ByteWriter(1024)
          .vector(1, (w) => w.bytes(this.certificateRequestContext!))
          .vector(3, (w) => chain.forEach((der) => w.vector(3, (c) => c.bytes(der)).u16(0)))
          .finish(),
      );
      this.transcript.push(cert);
      flight.push(cert);
      if (scheme !== undefined) {
        const signature = await signCertificateVerify(this.signingKey!, scheme, this.transcriptHash());
        const verify = message(HS.certificate_verify, new ByteWriter(8 + signature.length).u16(scheme).vector(2, (w) => w.bytes(signature)).finish());
        this.transcript.push(verify);
        flight.push(verify);
      }
    }
    const clientFinished = message(HS.finished, schedule.verifyData(this.handshakeSecrets!.client, this.transcriptHash()));
    this.transcript.push(clientFinished);
    flight.push(clientFinished);
    schedule.resumption(this.transcriptHash());
    out.push(await this.sealAll(CONTENT_HANDSHAKE, concatBytes(flight)));
    this.writeKey = await RecordKey.create(suite, this.appSecrets.client);
    this.handshakeSecrets = undefined;
    this.transcript = [];
    this.state = 'connected';
    events.push({ type: 'handshake', info: this.info() });
  }

  private info(): HandshakeInfo {
    const external = this.pskAccepted && this.pskOffer!.external;
    return {
      version: 'TLSv1.3',
      cipherSuite: this.suite!.name,
      alpn: this.alpn,
      serverName: this.settings.serverName,
      peerCertificates: this.peerCertificates,
      pskIdentity: external ? this.settings.psk!.identity : undefined,
      resumed: this.pskAccepted && !external,
      earlyData: 'none',
      ...(this.peerCertificates.length > 0 ? { peerVerified: this.peerVerified } : {}),
    };
  }

  /** §4.6.1: a ticket becomes a `ticket` event carrying everything a later resumption needs. */
  private newSessionTicket(body: Uint8Array, events: EngineEvent[]): void {
    const r = reader(body, 'NewSessionTicket');
    const lifetime = r.u32('ticket_lifetime');
    const ageAdd = r.u32('ticket_age_add');
    const nonce = r.vector8('ticket_nonce');
    const ticket = r.vector16('ticket');
    readExtensions(r, 'NewSessionTicket'); // early_data (max size): no early data is sent
    r.end();
    if (ticket.length === 0) throw violation(AlertDescription.decode_error, 'empty ticket');
    if (lifetime > MAX_TICKET_LIFETIME) throw violation(AlertDescription.illegal_parameter, 'ticket lifetime above seven days');
    if (lifetime === 0) return; // §4.6.1: discard immediately
    const session = encodeTicket({
      suite: this.suite!.code,
      psk: this.schedule!.ticketPsk(nonce),
      ticket: Uint8Array.from(ticket),
      lifetime,
      ageAdd,
      receivedAt: this.settings.now(),
      serverName: this.settings.serverName ?? '',
    });
    events.push({ type: 'ticket', session });
  }

  /** §4.6.3: the server's next read key; answer an update request with ours. */
  private async keyUpdate(body: Uint8Array, out: Uint8Array[]): Promise<void> {
    const r = reader(body, 'KeyUpdate');
    const request = r.u8('request_update');
    r.end();
    if (request > 1) throw violation(AlertDescription.illegal_parameter, 'KeyUpdate request_update above 1');
    const s = this.appSecrets!;
    s.server = this.schedule!.nextTrafficSecret(s.server);
    this.readKey = await RecordKey.create(this.suite!, s.server);
    if (request === 1 && !this.closeSent) {
      out.push(await this.writeKey!.seal(CONTENT_HANDSHAKE, message(HS.key_update, Uint8Array.of(0))));
      s.client = this.schedule!.nextTrafficSecret(s.client);
      this.writeKey = await RecordKey.create(this.suite!, s.client);
    }
  }
}
