/**
 * The `webcrypto` TLS engine: a TLS 1.3 client written in TypeScript on the
 * Web Crypto API (no Node built-ins), so that a web page can run ATLS.
 *
 * What it lacks, and why:
 * - the server role: a browser page is the client of draft §9.8;
 * - TLS 1.2: every server the project talks to offers TLS 1.3, and 1.2
 *   would double the handshake code for no browser use;
 * - DTLS, early data, a ticket count: client-irrelevant or server-only.
 * Each is refused with a local UNSUPPORTED error when configured. Client
 * certificates (ECDSA P-256/P-384 or RSA keys, PKCS#8) sign with Web Crypto.
 *
 * Hashing, HMAC and HKDF use @noble/hashes because the exporter must be
 * synchronous (key-schedule.ts); ChaCha20-Poly1305 uses @noble/ciphers
 * because Web Crypto has none.
 *
 * @example
 * ```ts
 * const client = webcryptoEngine.createClient({ ca, serverName: 'localhost', alpn: ['atls'] });
 * const hello = await client.start(); // POST hello.flight, feed the answer to client.receive()
 * ```
 * @module
 */
import { AtlsError } from '../../errors.js';
import type { EngineConnection, PemInput, TlsClientConfig, TlsEngine } from '../types.js';
import { WebCryptoClient, type ClientSettings } from './client.js';
import { GROUPS, GROUP_ALIASES, SIGNATURE_SCHEMES } from './crypto.js';
import { SUITES } from './record.js';
import { decodeTicket } from './ticket.js';
import { parseAnchors, pemBlocks } from './verify.js';

function invalid(message: string): AtlsError {
  return new AtlsError('INVALID_ARGUMENT', message, { source: 'local' });
}

function unsupported(message: string): AtlsError {
  return new AtlsError('UNSUPPORTED', `webcrypto engine: ${message}`, { source: 'local' });
}

const DEFAULT_GROUPS = 'X25519:P-256:P-384';
const enc = new TextEncoder();

function suitesOf(ciphers: string | undefined): ClientSettings['suites'] {
  if (ciphers === undefined) return [...SUITES.values()];
  if (typeof ciphers !== 'string') throw invalid('ciphers must be a string');
  const names = ciphers.split(':').filter((n) => n.startsWith('TLS_'));
  const out = [...SUITES.values()].filter((s) => names.includes(s.name));
  out.sort((a, b) => names.indexOf(a.name) - names.indexOf(b.name));
  if (out.length === 0) throw unsupported(`no TLS 1.3 suite it implements in ${JSON.stringify(ciphers)}`);
  return out;
}

function groupsOf(groups: string | undefined): ClientSettings['groups'] {
  const list = (groups ?? DEFAULT_GROUPS).split(':').filter((g) => g.length > 0);
  if (list.length === 0) throw invalid('groups must name at least one group');
  return list.map((name) => {
    const g = GROUPS.find((x) => x.code === GROUP_ALIASES[name.toLowerCase()]);
    if (!g) throw unsupported(`group ${name} (it has X25519, P-256, P-384)`);
    return g;
  });
}

/** OpenSSL's `ECDSA+SHA256` / `RSA-PSS+SHA256` spellings and the IANA names. */
function schemesOf(sigalgs: string | undefined): number[] {
  if (sigalgs === undefined) return SIGNATURE_SCHEMES.map((s) => s.code);
  const aliases: Record<string, string> = {
    'ECDSA+SHA256': 'ecdsa_secp256r1_sha256',
    'ECDSA+SHA384': 'ecdsa_secp384r1_sha384',
    'RSA-PSS+SHA256': 'rsa_pss_rsae_sha256',
    'RSA-PSS+SHA384': 'rsa_pss_rsae_sha384',
    'RSA-PSS+SHA512': 'rsa_pss_rsae_sha512',
  };
  return sigalgs.split(':').map((name) => {
    const s = SIGNATURE_SCHEMES.find((x) => x.name === (aliases[name] ?? name));
    if (!s) throw unsupported(`signature algorithm ${name}`);
    return s.code;
  });
}

function alpnOf(alpn: string[] | undefined): string[] {
  if (alpn === undefined) return [];
  if (!Array.isArray(alpn) || alpn.length === 0) throw invalid('alpn must be a non-empty array of protocol names');
  for (const p of alpn) {
    const n = typeof p === 'string' ? enc.encode(p).length : 0;
    if (n < 1 || n > 255) throw invalid('each ALPN protocol name must be 1..255 bytes'); // RFC 7301 §3.1
  }
  return alpn;
}

function isIpLiteral(name: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(name) || name.includes(':');
}

function createClient(c: TlsClientConfig): EngineConnection {
  const min = c.minVersion ?? 'TLSv1.2';
  const max = c.maxVersion ?? 'TLSv1.3';
  for (const v of [min, max]) if (v !== 'TLSv1.2' && v !== 'TLSv1.3') throw invalid(`unsupported TLS version ${String(v)}`);
  if (min === 'TLSv1.3' && max === 'TLSv1.2') throw invalid('minVersion is above maxVersion');
  if (max !== 'TLSv1.3') throw unsupported('TLS 1.3 only');
  if (c.dtls) throw unsupported('no DTLS');
  // No 0-RTT: early data asked for is never sent and the handshake reports 'none' (decisions.md O5), as on the node engine.
  if ((c.cert === undefined) !== (c.key === undefined)) throw invalid('cert and key must be given together');
  let certificate: ClientSettings['certificate'];
  if (c.cert !== undefined && c.key !== undefined) {
    const keyText = typeof c.key === 'string' ? c.key : new TextDecoder().decode(c.key);
    const [pkcs8] = pemBlocks(keyText, 'PRIVATE KEY');
    if (!pkcs8 || pkcs8.length === 0) throw invalid('key must be a PEM PKCS#8 private key (BEGIN PRIVATE KEY)');
    certificate = { chain: parseAnchors([c.cert], 'cert'), pkcs8 };
  }
  if (c.psk !== undefined) {
    const idLen = typeof c.psk.identity === 'string' ? enc.encode(c.psk.identity).length : 0;
    if (idLen < 1 || idLen > 65535) throw invalid('psk.identity must be 1..65535 bytes');
    if (!(c.psk.key instanceof Uint8Array) || c.psk.key.length < 1 || c.psk.key.length > 255) throw invalid('psk.key must be 1..255 bytes');
  }
  if (c.serverName !== undefined && (typeof c.serverName !== 'string' || c.serverName.length === 0 || c.serverName.length > 253)) {
    throw invalid('serverName must be a host name');
  }
  const verifyPeer = c.verifyPeer !== false;
  const caList: PemInput[] = c.ca === undefined ? [] : Array.isArray(c.ca) ? c.ca : [c.ca];
  const anchors = parseAnchors(caList);
  // No bundled roots here (no node:tls): trust must be configured unless a PSK authenticates.
  if (verifyPeer && anchors.length === 0 && c.psk === undefined) {
    throw invalid('the webcrypto engine has no default trust store: set ca (or verifyPeer: false)');
  }
  const settings: ClientSettings = {
    suites: suitesOf(c.ciphers),
    groups: groupsOf(c.groups),
    signatureSchemes: schemesOf(c.sigalgs),
    serverName: c.serverName,
    sendSni: c.serverName !== undefined && !isIpLiteral(c.serverName),
    alpn: alpnOf(c.alpn),
    verifyPeer,
    anchors,
    psk: c.psk,
    ticket: c.session === undefined ? undefined : decodeTicket(c.session),
    certificate,
    now: () => Date.now(),
  };
  return new WebCryptoClient(settings);
}

/** The webcrypto engine (client role only). */
export const webcryptoEngine: TlsEngine = {
  name: 'webcrypto',
  capabilities: {
    exactFlights: true,
    dtls: false,
    earlyData: false,
    ticketCount: false,
    exporterContextControl: true,
    server: false,
    tlsVersions: ['TLSv1.3'],
    clientCertificates: true,
  },
  createClient,
  createServer(): never {
    throw unsupported('the server role is not implemented (a web page is a client)');
  },
};
