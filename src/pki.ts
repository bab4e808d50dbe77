/**
 * A development PKI generated in-process: a root CA, server and client
 * certificates, all made with `@peculiar/x509` over Node's WebCrypto (no
 * openssl CLI). The certificates are shaped so that OpenSSL 3 (and therefore
 * `node:tls`) accepts them in chain verification: CA certificates carry a
 * critical `basicConstraints CA:TRUE` and `keyUsage keyCertSign, cRLSign`;
 * leaves carry `CA:FALSE`, `digitalSignature` (+ `keyEncipherment` for RSA),
 * the right `extKeyUsage`, a SAN, SKI/AKI and a random positive serial.
 *
 * For development and tests only: keys are generated in memory and written
 * unencrypted.
 *
 * @example
 * ```ts
 * const pki = await createDevPki();
 * tls.createServer({ cert: pki.server.cert, key: pki.server.key });
 * tls.connect({ ca: pki.ca.cert, servername: 'localhost', port });
 * ```
 * @module
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AtlsError } from './errors.js';

type WebCryptoKey = webcrypto.CryptoKey;
type WebCryptoKeyPair = webcrypto.CryptoKeyPair;

// Node's WebCrypto, passed explicitly so no global provider is assumed. (The
// DOM's `Crypto` types used by @peculiar/x509 are not in this project's libs.)
const crypto = webcrypto;
x509.cryptoProvider.set(crypto);

/** Key algorithms a certificate can be issued for. */
export type KeyType = 'ecdsa-p256' | 'rsa-2048';

/** Which extended key usage a leaf gets: `serverAuth`, `clientAuth` or both. */
export type CertUsage = 'server' | 'client' | 'both';

/** A certificate and its private key, both PEM (key: unencrypted PKCS#8). */
export interface PemPair {
  /** PEM certificate; for a leaf issued under an intermediate, see {@link IssuedCertificate.chain}. */
  cert: string;
  /** PEM PKCS#8 private key (`-----BEGIN PRIVATE KEY-----`). */
  key: string;
}

/** A certificate issued by {@link issueCertificate} or {@link createCa}. */
export interface IssuedCertificate extends PemPair {
  /** DER of the certificate. */
  certDer: Uint8Array;
  /** DER of the PKCS#8 private key. */
  keyDer: Uint8Array;
  /** The key algorithm. */
  keyType: KeyType;
  /** Subject common name. */
  commonName: string;
  /** Serial number, lowercase hex. */
  serialNumber: string;
  notBefore: Date;
  notAfter: Date;
  /**
   * PEM chain to send to a peer: this certificate followed by every
   * intermediate up to, not including, the self-signed root. Equal to `cert`
   * when the issuer is a root.
   */
  chain: string;
}

/** A CA able to issue certificates (a root, or an intermediate under another CA). */
export interface CertificateAuthority extends IssuedCertificate {
  /** True for a self-signed root. */
  selfSigned: boolean;
}

/** Options for {@link createCa}. */
export interface CreateCaOptions {
  /** Subject CN. Default `atls development CA`. */
  commonName?: string;
  /** Default `ecdsa-p256`. */
  keyType?: KeyType;
  /** Default: one hour ago (tolerates small clock skew between peers). */
  notBefore?: Date;
  /** Default: ten years after `notBefore`. */
  notAfter?: Date;
  /** Parent CA; when given, the new CA is an intermediate signed by it. */
  issuer?: CertificateAuthority;
  /** basicConstraints pathLenConstraint; default none. */
  pathLength?: number;
}

/** Options for {@link issueCertificate}. */
export interface IssueCertificateOptions {
  /** The signing CA. */
  issuer: CertificateAuthority;
  /** Subject CN. */
  commonName: string;
  /** Default `ecdsa-p256`. */
  keyType?: KeyType;
  /** DNS names for the SAN. */
  dnsNames?: string[];
  /** IPv4 / IPv6 addresses for the SAN. */
  ipAddresses?: string[];
  /** Default: one hour ago. */
  notBefore?: Date;
  /** Default: one year after `notBefore`. */
  notAfter?: Date;
  /** Extended key usage. Default `server`. */
  usage?: CertUsage;
}

/** The development PKI: a root CA, a server leaf and a client leaf. */
export interface DevPki {
  ca: CertificateAuthority;
  /** Server leaf, SAN `DNS:localhost, IP:127.0.0.1, IP:::1`, serverAuth. */
  server: IssuedCertificate;
  /** Client leaf, CN `atls-client`, clientAuth. */
  client: IssuedCertificate;
}

/** Options for {@link createDevPki}. */
export interface DevPkiOptions {
  /** Key type of all three certificates. Default `ecdsa-p256`. */
  keyType?: KeyType;
  /** Extra DNS names for the server certificate (besides `localhost`). */
  serverDnsNames?: string[];
  /** Extra IP addresses for the server certificate (besides 127.0.0.1 and ::1). */
  serverIpAddresses?: string[];
  /** Client certificate CN. Default `atls-client`. */
  clientCommonName?: string;
  /** Leaf validity in days. Default 365. */
  validityDays?: number;
}

/** Private state of a CA: the signing key, kept out of the plain-data object. */
interface CaSecrets {
  signingKey: WebCryptoKey;
  certificate: x509.X509Certificate;
}
const caSecrets = new WeakMap<CertificateAuthority, CaSecrets>();

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function keyAlgorithm(keyType: KeyType): webcrypto.EcKeyGenParams | webcrypto.RsaHashedKeyGenParams {
  switch (keyType) {
    case 'ecdsa-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'rsa-2048':
      return {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      };
    default:
      throw new AtlsError('INVALID_ARGUMENT', `unsupported key type: ${String(keyType)}`);
  }
}

/** The signature algorithm a CA with this key signs with (always SHA-256). */
function signingAlgorithm(keyType: KeyType): webcrypto.Algorithm | webcrypto.EcdsaParams {
  return keyType === 'ecdsa-p256'
    ? { name: 'ECDSA', hash: 'SHA-256' }
    : { name: 'RSASSA-PKCS1-v1_5' };
}

async function generateKeyPair(keyType: KeyType): Promise<WebCryptoKeyPair> {
  return webcrypto.subtle.generateKey(keyAlgorithm(keyType), true, ['sign', 'verify']);
}

/** 16 random bytes as hex, first byte in 0x01..0x7f: positive, minimal DER (RFC 5280 §4.1.2.2). */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x01;
  return b.toString('hex');
}

function toPem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function checkDates(notBefore: Date, notAfter: Date): void {
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw new AtlsError('INVALID_ARGUMENT', 'notBefore/notAfter must be valid dates');
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new AtlsError('INVALID_ARGUMENT', 'notAfter must be later than notBefore');
  }
}

function checkCommonName(cn: string): void {
  // RFC 5280 Appendix A: ub-common-name 64
  if (typeof cn !== 'string' || cn.length === 0 || cn.length > 64) {
    throw new AtlsError('INVALID_ARGUMENT', 'commonName must be 1..64 characters');
  }
}

function secretsOf(ca: CertificateAuthority): CaSecrets {
  const s = caSecrets.get(ca);
  if (!s) {
    throw new AtlsError(
      'INVALID_ARGUMENT',
      'issuer is not a CertificateAuthority from createCa() or loadCa()',
    );
  }
  return s;
}

async function finish(
  cert: x509.X509Certificate,
  keys: WebCryptoKeyPair,
  keyType: KeyType,
  commonName: string,
  issuerChain: string | undefined,
): Promise<IssuedCertificate> {
  const certDer = new Uint8Array(cert.rawData);
  const keyDer = new Uint8Array(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const pem = toPem('CERTIFICATE', certDer);
  return {
    cert: pem,
    key: toPem('PRIVATE KEY', keyDer),
    certDer,
    keyDer,
    keyType,
    commonName,
    serialNumber: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    chain: pem + (issuerChain ?? ''),
  };
}

/**
 * Creates a CA: a self-signed root, or an intermediate when `issuer` is given.
 *
 * @example
 * ```ts
 * const root = await createCa({ commonName: 'my root' });
 * const inter = await createCa({ commonName: 'my intermediate', issuer: root });
 * ```
 */
export async function createCa(options: CreateCaOptions = {}): Promise<CertificateAuthority> {
  const commonName = options.commonName ?? 'atls development CA';
  const keyType = options.keyType ?? 'ecdsa-p256';
  const notBefore = options.notBefore ?? new Date(Date.now() - HOUR);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + 3650 * DAY);
  checkCommonName(commonName);
  checkDates(notBefore, notAfter);
  const pathLength = options.pathLength;
  if (pathLength !== undefined && (!Number.isInteger(pathLength) || pathLength < 0)) {
    throw new AtlsError('INVALID_ARGUMENT', 'pathLength must be a non-negative integer');
  }
  const parentCa = options.issuer;
  const parent = parentCa ? secretsOf(parentCa) : undefined;
  const keys = await generateKeyPair(keyType);
  const name: x509.JsonName = [{ CN: [commonName] }];
  const extensions: x509.Extension[] = [
    // RFC 5280 §4.2.1.9: basicConstraints MUST be critical in CA certificates
    new x509.BasicConstraintsExtension(true, pathLength, true),
    // RFC 5280 §4.2.1.3: keyCertSign for certificate signers, should be critical
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    // RFC 5280 §4.2.1.2: SKI MUST appear in CA certificates
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    // RFC 5280 §4.2.1.1: AKI from the signer's key (own key for a root)
    await x509.AuthorityKeyIdentifierExtension.create(
      (parent ? parent.certificate.publicKey : keys.publicKey) as x509.PublicKeyType,
      false,
      crypto,
    ),
  ];
  const params = {
    serialNumber: randomSerial(),
    notBefore,
    notAfter,
    extensions,
  };
  const cert =
    parent && parentCa
      ? await x509.X509CertificateGenerator.create(
          {
            ...params,
            subject: name,
            issuer: parent.certificate.subject,
            publicKey: keys.publicKey,
            signingKey: parent.signingKey,
            signingAlgorithm: signingAlgorithm(parentCa.keyType),
          },
          crypto,
        )
      : await x509.X509CertificateGenerator.createSelfSigned(
          { ...params, name, keys, signingAlgorithm: signingAlgorithm(keyType) },
          crypto,
        );
  // An intermediate's chain holds itself plus its parent's intermediates, never the root.
  const parentChain = parentCa && !parentCa.selfSigned ? parentCa.chain : undefined;
  const issued = await finish(cert, keys, keyType, commonName, parentChain);
  const ca: CertificateAuthority = { ...issued, selfSigned: !parent };
  caSecrets.set(ca, { signingKey: keys.privateKey, certificate: cert });
  return ca;
}

/**
 * Issues a leaf certificate with a fresh key pair.
 *
 * @example
 * ```ts
 * const server = await issueCertificate({
 *   issuer: ca, commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'],
 * });
 * ```
 */
export async function issueCertificate(options: IssueCertificateOptions): Promise<IssuedCertificate> {
  const issuer = secretsOf(options.issuer);
  const keyType = options.keyType ?? 'ecdsa-p256';
  const usage = options.usage ?? 'server';
  const notBefore = options.notBefore ?? new Date(Date.now() - HOUR);
  const notAfter = options.notAfter ?? new Date(notBefore.getTime() + 365 * DAY);
  checkCommonName(options.commonName);
  checkDates(notBefore, notAfter);
  if (usage !== 'server' && usage !== 'client' && usage !== 'both') {
    throw new AtlsError('INVALID_ARGUMENT', `unsupported usage: ${String(usage)}`);
  }
  const sans: x509.JsonGeneralNames = [];
  for (const dns of options.dnsNames ?? []) {
    // RFC 5280 §4.2.1.6: dNSName is an IA5String in preferred name syntax
    if (typeof dns !== 'string' || !/^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$/.test(dns) || dns.length > 253) {
      throw new AtlsError('INVALID_ARGUMENT', `invalid DNS name: ${String(dns)}`);
    }
    sans.push({ type: 'dns', value: dns });
  }
  for (const ip of options.ipAddresses ?? []) {
    if (typeof ip !== 'string' || isIP(ip) === 0) {
      throw new AtlsError('INVALID_ARGUMENT', `invalid IP address: ${String(ip)}`);
    }
    sans.push({ type: 'ip', value: ip });
  }
  const keys = await generateKeyPair(keyType);
  let ku = x509.KeyUsageFlags.digitalSignature;
  // TLS 1.2 RSA key exchange encrypts to the key: keyEncipherment (RFC 5246 §7.4.2)
  if (keyType === 'rsa-2048') ku |= x509.KeyUsageFlags.keyEncipherment;
  const eku: string[] = [];
  if (usage !== 'client') eku.push(x509.ExtendedKeyUsage.serverAuth);
  if (usage !== 'server') eku.push(x509.ExtendedKeyUsage.clientAuth);
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(ku, true),
    new x509.ExtendedKeyUsageExtension(eku, false),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
    await x509.AuthorityKeyIdentifierExtension.create(
      issuer.certificate.publicKey as x509.PublicKeyType,
      false,
      crypto,
    ),
  ];
  // RFC 5280 §4.2.1.6: an empty SAN extension is not allowed
  if (sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: [{ CN: [options.commonName] }],
      issuer: issuer.certificate.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: issuer.signingKey,
      signingAlgorithm: signingAlgorithm(options.issuer.keyType),
      extensions,
    },
    crypto,
  );
  const issuerChain = options.issuer.selfSigned ? undefined : options.issuer.chain;
  return finish(cert, keys, keyType, options.commonName, issuerChain);
}

/**
 * Turns an existing CA certificate and its PKCS#8 key (both PEM) back into a
 * {@link CertificateAuthority}, e.g. to issue more certificates from a CA
 * written earlier by {@link writeDevPki}. Treated as a root when self-issued.
 *
 * @example
 * ```ts
 * const ca = await loadCa(readFileSync('ca.pem', 'utf8'), readFileSync('ca.key', 'utf8'));
 * ```
 */
export async function loadCa(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  try {
    return await loadCaUnchecked(certPem, keyPem);
  } catch (cause) {
    if (cause instanceof AtlsError) throw cause;
    // Files on disk are input too: whatever the parser throws becomes a typed error.
    throw new AtlsError('INVALID_ARGUMENT', 'CA certificate or key could not be parsed', { cause });
  }
}

async function loadCaUnchecked(certPem: string, keyPem: string): Promise<CertificateAuthority> {
  if (typeof certPem !== 'string' || typeof keyPem !== 'string') {
    throw new AtlsError('INVALID_ARGUMENT', 'certPem and keyPem must be strings');
  }
  let certificate: x509.X509Certificate;
  try {
    certificate = new x509.X509Certificate(certPem);
  } catch (cause) {
    throw new AtlsError('INVALID_ARGUMENT', 'CA certificate is not a PEM certificate', { cause });
  }
  const bc = certificate.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new AtlsError('INVALID_ARGUMENT', 'certificate is not a CA (basicConstraints)');
  const alg = certificate.publicKey.algorithm as { name?: string; namedCurve?: string };
  let keyType: KeyType;
  if (alg.name === 'ECDSA' && alg.namedCurve === 'P-256') keyType = 'ecdsa-p256';
  else if (alg.name === 'RSASSA-PKCS1-v1_5') keyType = 'rsa-2048';
  else throw new AtlsError('UNSUPPORTED', `unsupported CA key algorithm: ${String(alg.name)}`);
  const m = /-----BEGIN PRIVATE KEY-----([A-Za-z0-9+/=\s]+)-----END PRIVATE KEY-----/.exec(keyPem);
  if (!m?.[1]) throw new AtlsError('INVALID_ARGUMENT', 'CA key is not a PEM PKCS#8 private key');
  const keyDer = new Uint8Array(Buffer.from(m[1].replace(/\s+/g, ''), 'base64'));
  const importAlg =
    keyType === 'ecdsa-p256'
      ? { name: 'ECDSA', namedCurve: 'P-256' }
      : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  let signingKey: WebCryptoKey;
  try {
    signingKey = await webcrypto.subtle.importKey('pkcs8', keyDer, importAlg, true, ['sign']);
  } catch (cause) {
    throw new AtlsError('INVALID_ARGUMENT', 'CA key could not be imported', { cause });
  }
  // Prove the key belongs to the certificate before signing anything with it.
  const probe = new Uint8Array(32);
  const sigAlg = keyType === 'ecdsa-p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5' };
  const publicKey = await certificate.publicKey.export(crypto);
  const sig = await webcrypto.subtle.sign(sigAlg, signingKey, probe);
  if (!(await webcrypto.subtle.verify(sigAlg, publicKey as WebCryptoKey, sig, probe))) {
    throw new AtlsError('INVALID_ARGUMENT', 'CA key does not match the CA certificate');
  }
  const certDer = new Uint8Array(certificate.rawData);
  const cn = certificate.subjectName.getField('CN')[0] ?? '';
  const selfSigned = certificate.subject === certificate.issuer;
  const cert = toPem('CERTIFICATE', certDer);
  const ca: CertificateAuthority = {
    cert,
    key: toPem('PRIVATE KEY', keyDer),
    certDer,
    keyDer,
    keyType,
    commonName: cn,
    serialNumber: certificate.serialNumber.toLowerCase(),
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
    chain: cert,
    selfSigned,
  };
  caSecrets.set(ca, { signingKey, certificate });
  return ca;
}

/**
 * Creates the development PKI: an ECDSA P-256 root, a server certificate for
 * `localhost` / `127.0.0.1` / `::1` and a client certificate, all valid for a year.
 *
 * @example
 * ```ts
 * const { ca, server, client } = await createDevPki();
 * ```
 */
export async function createDevPki(options: DevPkiOptions = {}): Promise<DevPki> {
  const keyType = options.keyType ?? 'ecdsa-p256';
  const days = options.validityDays ?? 365;
  if (!Number.isFinite(days) || days <= 0) {
    throw new AtlsError('INVALID_ARGUMENT', 'validityDays must be a positive number');
  }
  const notBefore = new Date(Date.now() - HOUR);
  const notAfter = new Date(notBefore.getTime() + days * DAY);
  const ca = await createCa({ keyType });
  const [server, client] = await Promise.all([
    issueCertificate({
      issuer: ca,
      commonName: 'localhost',
      keyType,
      dnsNames: ['localhost', ...(options.serverDnsNames ?? [])],
      ipAddresses: ['127.0.0.1', '::1', ...(options.serverIpAddresses ?? [])],
      notBefore,
      notAfter,
      usage: 'server',
    }),
    issueCertificate({
      issuer: ca,
      commonName: options.clientCommonName ?? 'atls-client',
      keyType,
      notBefore,
      notAfter,
      usage: 'client',
    }),
  ]);
  return { ca, server, client };
}

/** Paths written by {@link writeDevPki}. */
export interface DevPkiFiles {
  ca: string;
  caKey: string;
  server: string;
  serverKey: string;
  client: string;
  clientKey: string;
}

/**
 * Writes a PEM pair as `<dir>/<name>.pem` and `<dir>/<name>.key` (key mode
 * 0600). The `.pem` holds the full chain (leaf first). Creates `dir`.
 *
 * @example
 * ```ts
 * await writePemPair('out', 'server', pki.server); // out/server.pem, out/server.key
 * ```
 */
export async function writePemPair(
  dir: string,
  name: string,
  pair: PemPair & { chain?: string },
): Promise<{ cert: string; key: string }> {
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.')) {
    throw new AtlsError('INVALID_ARGUMENT', `invalid file base name: ${name}`);
  }
  await mkdir(dir, { recursive: true });
  const cert = join(dir, `${name}.pem`);
  const key = join(dir, `${name}.key`);
  await writeFile(cert, pair.chain ?? pair.cert, { mode: 0o644 });
  await writeFile(key, pair.key, { mode: 0o600 });
  // `mode` applies only when the file is created; tighten an existing one too.
  await chmod(key, 0o600);
  return { cert, key };
}

/**
 * Writes a development PKI (a new one unless `pki` is given) to `dir` as
 * `ca.pem`, `ca.key`, `server.pem`, `server.key`, `client.pem`, `client.key`;
 * the files behind `atls certs --out DIR`. Keys get mode 0600.
 *
 * @example
 * ```ts
 * const files = await writeDevPki('certs');
 * console.log(files.server); // certs/server.pem
 * ```
 */
export async function writeDevPki(dir: string, pki?: DevPki): Promise<DevPkiFiles> {
  const p = pki ?? (await createDevPki());
  const ca = await writePemPair(dir, 'ca', p.ca);
  const server = await writePemPair(dir, 'server', p.server);
  const client = await writePemPair(dir, 'client', p.client);
  return {
    ca: ca.cert,
    caKey: ca.key,
    server: server.cert,
    serverKey: server.key,
    client: client.cert,
    clientKey: client.key,
  };
}
