/**
 * Oblivious HTTP (RFC 9458) for the comparison row of the benchmark: the key
 * configuration, request and response encapsulation, and a gateway that
 * answers Binary HTTP requests with a raw app. HPKE (RFC 9180) comes from
 * `@hpke/core`; the response AEAD and its HKDF from `node:crypto` (the same
 * OpenSSL the ATLS server uses). Benchmark code: one suite only,
 * DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-128-GCM, the suite of
 * RFC 9458's Appendix A.
 *
 * @example
 * ```ts
 * const gw = await OhttpGateway.create(1);
 * const client = await OhttpClient.fromKeyConfig(gw.keyConfig);
 * const { body, open } = await client.encapsulate(bhttpRequest);
 * const answer = await open(await gw.handle(body, rawApp));
 * ```
 * @module
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, type webcrypto } from 'node:crypto';
import { Aes128Gcm, CipherSuite, DhkemX25519HkdfSha256, HkdfSha256, type RecipientContext } from '@hpke/core';
import { createServer, type Server } from 'node:http';
import { decodeRequest, encodeResponse, type BhttpRequest, type BhttpResponseInit } from '../../src/bhttp/index.js';
import { echoRawApp } from '../../src/http/apps.js';

/** Media types of RFC 9458 §9. */
export const OHTTP_REQ = 'message/ohttp-req';
export const OHTTP_RES = 'message/ohttp-res';
export const OHTTP_KEYS = 'application/ohttp-keys';

// RFC 9180 §7: the identifiers of the one suite used here.
const KEM_X25519 = 0x0020;
const KDF_SHA256 = 0x0001;
const AEAD_AES128GCM = 0x0001;
const NK = 16; // AES-128-GCM key
const NN = 12; // AES-128-GCM nonce
const NENC = 32; // X25519 enc
const TAG = 16;
const HDR = 7; // key id (1) + kem (2) + kdf (2) + aead (2), RFC 9458 §4.3

const suite = new CipherSuite({ kem: new DhkemX25519HkdfSha256(), kdf: new HkdfSha256(), aead: new Aes128Gcm() });
const encoder = new TextEncoder();
const REQUEST_LABEL = encoder.encode('message/bhttp request');
const RESPONSE_LABEL = encoder.encode('message/bhttp response');

/** A copy of `b[start, end)` as its own ArrayBuffer (a `Buffer`'s `.buffer` is a shared pool). */
function arrayBufferOf(b: Uint8Array, start = 0, end = b.length): ArrayBuffer {
  return Uint8Array.prototype.slice.call(b, start, end).buffer;
}

function header(keyId: number): Uint8Array {
  const h = new Uint8Array(HDR);
  const v = new DataView(h.buffer);
  h[0] = keyId;
  v.setUint16(1, KEM_X25519);
  v.setUint16(3, KDF_SHA256);
  v.setUint16(5, AEAD_AES128GCM);
  return h;
}

/** RFC 9458 §4.3: info = "message/bhttp request" || 0x00 || hdr. */
function requestInfo(hdr: Uint8Array): Uint8Array {
  const info = new Uint8Array(REQUEST_LABEL.length + 1 + HDR);
  info.set(REQUEST_LABEL, 0);
  info.set(hdr, REQUEST_LABEL.length + 1);
  return info;
}

/** RFC 9458 §4.4: AEAD key and nonce of the response from the exported secret, `enc` and the response nonce. */
function responseKeys(secret: ArrayBuffer, enc: Uint8Array, responseNonce: Uint8Array): { key: Buffer; nonce: Buffer } {
  const salt = Buffer.concat([enc, responseNonce]);
  // hkdfSync = Expand(Extract(salt, secret), info, L), RFC 5869.
  const key = Buffer.from(hkdfSync('sha256', Buffer.from(secret), salt, 'key', NK));
  const nonce = Buffer.from(hkdfSync('sha256', Buffer.from(secret), salt, 'nonce', NN));
  return { key, nonce };
}

function gcmSeal(key: Buffer, nonce: Buffer, plain: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-gcm', key, nonce);
  return Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]);
}

function gcmOpen(key: Buffer, nonce: Buffer, sealed: Uint8Array): Buffer {
  if (sealed.length < TAG) throw new Error('OHTTP: sealed message shorter than its tag');
  const d = createDecipheriv('aes-128-gcm', key, nonce);
  d.setAuthTag(sealed.subarray(sealed.length - TAG));
  return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG)), d.final()]);
}

/** The gateway's side: its key pair and the request/response encapsulation. */
export class OhttpGateway {
  private constructor(
    readonly keyId: number,
    private readonly privateKey: webcrypto.CryptoKey,
    /** RFC 9458 §3: the key configuration (one, with its 2-byte length prefix as `application/ohttp-keys`). */
    readonly keyConfig: Uint8Array,
  ) {}

  static async create(keyId: number): Promise<OhttpGateway> {
    const pair = await suite.kem.generateKeyPair();
    const pub = new Uint8Array(await suite.kem.serializePublicKey(pair.publicKey));
    // key_id(8) kem_id(16) public_key(Npk) symmetric_algorithms_length(16) [kdf(16) aead(16)]
    const config = new Uint8Array(1 + 2 + pub.length + 2 + 4);
    const v = new DataView(config.buffer);
    config[0] = keyId;
    v.setUint16(1, KEM_X25519);
    config.set(pub, 3);
    v.setUint16(3 + pub.length, 4);
    v.setUint16(5 + pub.length, KDF_SHA256);
    v.setUint16(7 + pub.length, AEAD_AES128GCM);
    const keys = new Uint8Array(2 + config.length);
    new DataView(keys.buffer).setUint16(0, config.length);
    keys.set(config, 2);
    return new OhttpGateway(keyId, pair.privateKey, keys);
  }

  /** Decapsulates one `message/ohttp-req`, runs `app` on the Binary HTTP request, returns the `message/ohttp-res`. */
  async handle(body: Uint8Array, app: (r: BhttpRequest) => BhttpResponseInit): Promise<Uint8Array> {
    if (body.length < HDR + NENC + TAG) throw new Error('OHTTP: request too short');
    const hdr = body.subarray(0, HDR);
    const v = new DataView(hdr.buffer, hdr.byteOffset, HDR);
    if (hdr[0] !== this.keyId || v.getUint16(1) !== KEM_X25519 || v.getUint16(3) !== KDF_SHA256 || v.getUint16(5) !== AEAD_AES128GCM) {
      throw new Error('OHTTP: unknown key or suite');
    }
    const enc = body.subarray(HDR, HDR + NENC);
    const recipient: RecipientContext = await suite.createRecipientContext({
      recipientKey: this.privateKey,
      enc: arrayBufferOf(enc),
      info: requestInfo(hdr),
    });
    const request = decodeRequest(new Uint8Array(await recipient.open(arrayBufferOf(body, HDR + NENC))));
    const response = encodeResponse(app(request));
    const secret = await recipient.export(RESPONSE_LABEL, Math.max(NN, NK));
    const responseNonce = randomBytes(Math.max(NN, NK));
    const { key, nonce } = responseKeys(secret, enc, responseNonce);
    return Buffer.concat([responseNonce, gcmSeal(key, nonce, response)]);
  }
}

/** The client's side: encapsulates a request for one key configuration and opens its response. */
export class OhttpClient {
  private constructor(
    private readonly keyId: number,
    private readonly publicKey: webcrypto.CryptoKey,
  ) {}

  /** Reads the first configuration of an `application/ohttp-keys` body (RFC 9458 §3.2); it must be our suite. */
  static async fromKeyConfig(keys: Uint8Array): Promise<OhttpClient> {
    const v = new DataView(keys.buffer, keys.byteOffset, keys.byteLength);
    const len = v.getUint16(0);
    if (keys.length < 2 + len || len < 3 + NENC + 6) throw new Error('OHTTP: short key configuration');
    if (v.getUint16(3) !== KEM_X25519) throw new Error('OHTTP: KEM is not X25519');
    const algs = v.getUint16(5 + NENC);
    let ok = false;
    for (let i = 0; i < algs; i += 4) {
      if (v.getUint16(7 + NENC + i) === KDF_SHA256 && v.getUint16(9 + NENC + i) === AEAD_AES128GCM) ok = true;
    }
    if (!ok) throw new Error('OHTTP: no HKDF-SHA256 / AES-128-GCM in the key configuration');
    const publicKey = await suite.kem.deserializePublicKey(arrayBufferOf(keys, 5, 5 + NENC));
    return new OhttpClient(keys[2]!, publicKey);
  }

  /** Encapsulates one Binary HTTP request; `open` decapsulates the matching response. */
  async encapsulate(bhttpRequest: Uint8Array): Promise<{ body: Uint8Array; open: (res: Uint8Array) => Promise<Uint8Array> }> {
    const hdr = header(this.keyId);
    const sender = await suite.createSenderContext({ recipientPublicKey: this.publicKey, info: requestInfo(hdr) });
    const enc = new Uint8Array(sender.enc);
    const sealed = new Uint8Array(await sender.seal(bhttpRequest));
    const body = Buffer.concat([hdr, enc, sealed]);
    const open = async (res: Uint8Array): Promise<Uint8Array> => {
      const nonceLen = Math.max(NN, NK);
      if (res.length < nonceLen + TAG) throw new Error('OHTTP: response too short');
      const secret = await sender.export(RESPONSE_LABEL, nonceLen);
      const { key, nonce } = responseKeys(secret, enc, res.subarray(0, nonceLen));
      return gcmOpen(key, nonce, res.subarray(nonceLen));
    };
    return { body, open };
  }
}

// The ATLS bench server's echo; it reads neither peer nor context.
const echo = (r: BhttpRequest): BhttpResponseInit => echoRawApp(r, undefined as never, undefined as never) as BhttpResponseInit;

/**
 * The gateway as a `node:http` server: `GET /ohttp-keys` gives the key configuration, `POST` of a
 * `message/ohttp-req` anywhere else is decapsulated and answered by the echo raw app (what the ATLS
 * bench server runs), as a `message/ohttp-res`. A request that does not decapsulate gets 400 (RFC 9458 §5.2).
 */
export function ohttpGatewayServer(gateway: OhttpGateway): Server {
  return createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/ohttp-keys') {
      res.writeHead(200, { 'content-type': OHTTP_KEYS, 'content-length': gateway.keyConfig.length });
      res.end(gateway.keyConfig);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
      gateway.handle(body, echo).then(
        (out) => {
          res.writeHead(200, { 'content-type': OHTTP_RES, 'content-length': out.length });
          res.end(out);
        },
        () => {
          res.writeHead(400, { 'content-length': 0 });
          res.end();
        },
      );
    });
  });
}
