/**
 * The certificates every test suite needs, generated once per process (about
 * 0.3 s, mostly the two RSA keys) with src/pki.ts.
 *
 * @example
 * ```ts
 * const pki = await testPki();
 * tls.createServer({ cert: pki.server.cert, key: pki.server.key });
 * tls.connect({ ca: pki.ca.cert, servername: 'localhost', port });
 * ```
 */
import { createCa, issueCertificate, writePemPair } from '../../src/pki.js';
import type { CertificateAuthority, IssuedCertificate, KeyType, CertUsage } from '../../src/pki.js';

/** A PEM certificate (or chain, leaf first) and its PEM PKCS#8 key. */
export interface TestPair {
  cert: string;
  key: string;
}

/** Every certificate the suites use. Names are also the file names of {@link writeTestPki}. */
export interface TestPki {
  /** ECDSA P-256 root that signs everything below unless stated otherwise. */
  ca: TestPair;
  /** An unrelated ECDSA root: trust it and nothing of `ca` verifies. */
  otherCa: TestPair;
  /** ECDSA, SAN localhost + 127.0.0.1 + ::1, serverAuth, by `ca`. */
  server: TestPair;
  /** RSA 2048, same SANs, by `ca`. */
  serverRsa: TestPair;
  /** ECDSA, CN `atls-test-client`, clientAuth, by `ca`. */
  client: TestPair;
  /** RSA 2048, CN `atls-test-client-rsa`, clientAuth, by `ca`. */
  clientRsa: TestPair;
  /** Like `server` but its validity ended yesterday. */
  expiredServer: TestPair;
  /** SAN `wrong.example` only. */
  wrongNameServer: TestPair;
  /** Same SANs as `server`, issued by `otherCa`. */
  untrustedServer: TestPair;
  /** Like `client` (CN `atls-test-client-expired`) but expired yesterday. */
  expiredClient: TestPair;
  /** CN `atls-test-client-untrusted`, issued by `otherCa`. */
  untrustedClient: TestPair;
  /** ECDSA intermediate CA under `ca` (`cert` is the intermediate alone). */
  intermediate: TestPair;
  /** Server (same SANs) issued by `intermediate`; `cert` is the chain leaf + intermediate. */
  serverViaIntermediate: TestPair;
}

/** Names of the {@link TestPki} entries, in a stable order. */
export const TEST_PKI_NAMES = [
  'ca',
  'otherCa',
  'server',
  'serverRsa',
  'client',
  'clientRsa',
  'expiredServer',
  'wrongNameServer',
  'untrustedServer',
  'expiredClient',
  'untrustedClient',
  'intermediate',
  'serverViaIntermediate',
] as const satisfies readonly (keyof TestPki)[];

const DAY = 24 * 3_600_000;
const SERVER_DNS = ['localhost'];
const SERVER_IPS = ['127.0.0.1', '::1'];

let memo: Promise<TestPki> | undefined;

function pair(c: IssuedCertificate): TestPair {
  // `chain` is the leaf plus intermediates (equal to `cert` under a root).
  return { cert: c.chain, key: c.key };
}

async function generate(): Promise<TestPki> {
  const now = Date.now();
  const expired = { notBefore: new Date(now - 30 * DAY), notAfter: new Date(now - DAY) };
  const [ca, otherCa] = await Promise.all([
    createCa({ commonName: 'atls test CA' }),
    createCa({ commonName: 'atls other test CA' }),
  ]);
  const intermediate = await createCa({ commonName: 'atls test intermediate CA', issuer: ca, pathLength: 0 });
  const leaf = (
    issuer: CertificateAuthority,
    commonName: string,
    usage: CertUsage,
    extra: { keyType?: KeyType; dnsNames?: string[]; notBefore?: Date; notAfter?: Date } = {},
  ): Promise<IssuedCertificate> =>
    issueCertificate({
      issuer,
      commonName,
      usage,
      ...(usage === 'server' ? { dnsNames: SERVER_DNS, ipAddresses: SERVER_IPS } : {}),
      ...extra,
    });
  // All in parallel: WebCrypto key generation runs on libuv's thread pool.
  const [
    server,
    serverRsa,
    client,
    clientRsa,
    expiredServer,
    wrongNameServer,
    untrustedServer,
    expiredClient,
    untrustedClient,
    serverViaIntermediate,
  ] = await Promise.all([
    leaf(ca, 'localhost', 'server'),
    leaf(ca, 'localhost', 'server', { keyType: 'rsa-2048' }),
    leaf(ca, 'atls-test-client', 'client'),
    leaf(ca, 'atls-test-client-rsa', 'client', { keyType: 'rsa-2048' }),
    leaf(ca, 'localhost', 'server', expired),
    issueCertificate({ issuer: ca, commonName: 'wrong.example', dnsNames: ['wrong.example'], usage: 'server' }),
    leaf(otherCa, 'localhost', 'server'),
    leaf(ca, 'atls-test-client-expired', 'client', expired),
    leaf(otherCa, 'atls-test-client-untrusted', 'client'),
    leaf(intermediate, 'localhost', 'server'),
  ]);
  return {
    ca: pair(ca),
    otherCa: pair(otherCa),
    server: pair(server),
    serverRsa: pair(serverRsa),
    client: pair(client),
    clientRsa: pair(clientRsa),
    expiredServer: pair(expiredServer),
    wrongNameServer: pair(wrongNameServer),
    untrustedServer: pair(untrustedServer),
    expiredClient: pair(expiredClient),
    untrustedClient: pair(untrustedClient),
    intermediate: { cert: intermediate.cert, key: intermediate.key },
    serverViaIntermediate: pair(serverViaIntermediate),
  };
}

/**
 * The test PKI, generated on first call and shared by every later call in the
 * same process. Treat the returned object as read-only.
 */
export function testPki(): Promise<TestPki> {
  memo ??= generate().catch((e: unknown) => {
    memo = undefined; // let a later call retry
    throw e;
  });
  return memo;
}

/**
 * Writes every entry of {@link testPki} to `dir` as `<name>.pem` (certificate
 * or chain) and `<name>.key` (mode 0600), for external tools such as
 * `openssl s_server` and `gnutls-serv`. Returns the paths by name.
 *
 * @example
 * ```ts
 * const files = await writeTestPki(tmpDir);
 * spawn('openssl', ['s_server', '-cert', files.server.cert, '-key', files.server.key]);
 * ```
 */
export async function writeTestPki(
  dir: string,
): Promise<Record<keyof TestPki, { cert: string; key: string }>> {
  const pki = await testPki();
  const out = {} as Record<keyof TestPki, { cert: string; key: string }>;
  for (const name of TEST_PKI_NAMES) out[name] = await writePemPair(dir, name, pki[name]);
  return out;
}
