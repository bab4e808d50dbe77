/**
 * What the `atls` command prints and returns when it fails: one line with the
 * reason, the typed code and the likely fix, and an exit code that says the
 * class of failure. Where curl has a number for the same class, it is curl's
 * (README, "Exit codes").
 * @module
 */
import { AtlsError, type AtlsErrorCode } from '../errors.js';

/** Exit codes of the `atls` command. */
export const EXIT = {
  ok: 0,
  /** Any failure not listed below. */
  failure: 1,
  /** Unknown command or flag, missing argument (commander's usage errors). */
  usage: 2,
  /** Could not resolve the host (curl 6). */
  resolve: 6,
  /** Could not connect (curl 7). */
  connect: 7,
  /** The server's answer is not ATLS (curl 8, "weird server reply"). */
  notAtls: 8,
  /** `--fail` and an inner status of 400 or more (curl 22). */
  httpError: 22,
  /** Could not write the output file (curl 23). */
  write: 23,
  /** Could not read a local file named by a flag (curl 26). */
  read: 26,
  /** A timeout expired (curl 28). */
  timeout: 28,
  /** TLS handshake failed, the outer HTTPS or ATLS (curl 35). */
  handshake: 35,
  /** Too many redirects with `-L` (curl 47). */
  redirects: 47,
  /** The connection broke while receiving (curl 56). */
  receive: 56,
  /** A certificate, outer or ATLS, is not trusted (curl 60). */
  untrusted: 60,
  /** A body exceeded a size limit (curl 63). */
  tooLarge: 63,
} as const;

/** The flags of the command that failed, to name the fix precisely. */
export type Flags = Record<string, unknown>;

/** A failure as printed: the exit code and the line after `atls: `. */
export interface Explained {
  exitCode: number;
  line: string;
}

const RESOLVE_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_NONAME', 'EAI_FAIL']);
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'EHOSTDOWN']);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);
const RECEIVE_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);
const TRANSPORT_UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_UNTRUSTED',
]);
const ATLS_UNTRUSTED: AtlsErrorCode[] = ['CERTIFICATE_UNTRUSTED', 'CERTIFICATE_EXPIRED', 'CERTIFICATE_NAME_MISMATCH'];
const ATLS_HANDSHAKE: AtlsErrorCode[] = [
  'HANDSHAKE_FAILED',
  'CERTIFICATE_REQUIRED',
  'PSK_UNKNOWN',
  'PROTOCOL_VERSION',
  'ALERT_RECEIVED',
  'BAD_RECORD_MAC',
];

/** Every error in `e`'s cause chain, outermost first. */
function chain(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let cur = e; cur !== undefined && out.length < 10; cur = cur instanceof Error ? cur.cause : undefined) out.push(cur);
  return out;
}

/** The first system or library error code (`ECONNREFUSED`, `UND_ERR_...`, `CERT_...`) in the chain. */
function systemCode(e: unknown): string | undefined {
  for (const c of chain(e)) {
    const code = (c as { code?: unknown } | null)?.code;
    if (typeof code === 'string' && !(c instanceof AtlsError)) return code;
  }
  return undefined;
}

function isTimeout(e: unknown): boolean {
  return chain(e).some(
    (c) => (c instanceof AtlsError && c.code === 'TIMEOUT') || (c instanceof Error && (c.name === 'TimeoutError' || c.name === 'AbortError')),
  );
}

const flag = (flags: Flags, name: string): string | undefined => (typeof flags[name] === 'string' ? (flags[name] as string) : undefined);

/** The innermost message of the chain, on one line. */
function reasonOf(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.replace(/\s+/g, ' ').trim();
}

/** A transport (outer HTTP) failure: class and fix. */
function transportFailure(e: unknown, code: string | undefined): Explained | undefined {
  const reason = `${reasonOf(e)}${e instanceof AtlsError ? ` [${e.code}]` : ''}`;
  if (isTimeout(e)) return { exitCode: EXIT.timeout, line: `${reason}; check the address, or raise --max-time / --connect-timeout` };
  if (code === undefined) return undefined;
  if (RESOLVE_CODES.has(code)) return { exitCode: EXIT.resolve, line: `${reason}; could not resolve the host: check the host name in the URL` };
  if (CONNECT_CODES.has(code)) {
    return { exitCode: EXIT.connect, line: `${reason}; nothing accepts connections there: check the port, or start the service (atls serve --listen HOST:PORT)` };
  }
  if (TIMEOUT_CODES.has(code)) return { exitCode: EXIT.timeout, line: `${reason}; raise --connect-timeout / --max-time or check the address` };
  if (TRANSPORT_UNTRUSTED.has(code)) {
    return {
      exitCode: EXIT.untrusted,
      line:
        `the outer HTTPS certificate is not trusted (${reason}); give its CA with --transport-ca FILE, ` +
        'or --insecure-transport (ATLS still authenticates the service)',
    };
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number|packet length too long/i.test(reason)) {
    return { exitCode: EXIT.handshake, line: `the outer HTTPS handshake failed${e instanceof AtlsError ? ` [${e.code}]` : ''}: the server does not speak TLS on that port; use http:// for it` };
  }
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO') {
    return { exitCode: EXIT.handshake, line: `the outer HTTPS handshake failed (${reason}); check the https:// URL, --transport-ca and the proxy` };
  }
  if (RECEIVE_CODES.has(code)) return { exitCode: EXIT.receive, line: `${reason}; the connection broke: check the service's logs, or a proxy in between` };
  return undefined;
}

/** The fix for an ATLS-layer failure, given the flags that were used. */
function atlsFix(e: AtlsError, flags: Flags): string {
  const psk = flag(flags, 'pskIdentity');
  const ca = flag(flags, 'ca');
  const mode = flag(flags, 'mode') ?? 'exported';
  const otherMode = mode === 'records' ? 'exported' : 'records';
  // HTTP 400 or CoAP 4.xx naming the mode the service runs.
  if (/\bmode\b/.test(e.message) && /answered 4(\d\d|\.\d\d)/.test(e.message)) {
    return `the service runs the other mode: try --mode ${otherMode}`;
  }
  switch (e.code) {
    case 'CERTIFICATE_UNTRUSTED':
      if (psk !== undefined) return `the service did not accept PSK identity ${JSON.stringify(psk)} and sent a certificate instead: check --psk-identity and --psk`;
      return ca === undefined
        ? 'name the CA that issued the service certificate with --ca FILE (atls certs writes ca.pem)'
        : `the service certificate was not issued by --ca ${ca}: give the CA that issued it`;
    case 'CERTIFICATE_EXPIRED':
      return 'the certificate has expired: issue a new one (atls certs --out DIR --force for the development PKI)';
    case 'CERTIFICATE_NAME_MISMATCH':
      return 'use the name the certificate carries in the URL, or pass --server-name NAME';
    case 'CERTIFICATE_REQUIRED':
      return 'the service wants a client certificate: pass --cert FILE --key FILE';
    case 'PSK_UNKNOWN':
      return 'the service does not know this PSK: check --psk-identity and --psk';
    case 'PROTOCOL_VERSION':
      return 'the two ends share no TLS version: drop --tls-version or choose the other one';
    case 'HANDSHAKE_FAILED':
    case 'ALERT_RECEIVED':
      return psk !== undefined
        ? 'check --psk-identity and --psk against the service, and --tls-version / --ciphers'
        : 'check --ca, --cert/--key, --tls-version and --ciphers against the service';
    case 'BAD_RECORD_MAC':
    case 'DECRYPT_FAILED':
      return 'the data was changed on the way or the two ends disagree on keys: check --mode and any middlebox';
    case 'ENGINE_UNAVAILABLE':
      return 'choose another --engine (atls doctor lists them)';
    case 'TOO_LARGE':
      return 'the body exceeds a size limit: send less';
    case 'TIMEOUT':
      return 'the peer did not answer in time: check the address, or raise --max-time';
    case 'NOT_ATLS':
      return 'check the host, port and path of the URL: the service needs atls serve or the atls middleware there';
    default:
      return '';
  }
}

/**
 * The exit code and one-line explanation of a failure of `command` run with
 * `flags`. The typed code stays in the line (`[CODE]`) for scripts.
 */
export function explainFailure(e: unknown, flags: Flags): Explained {
  if (e instanceof CliExit) return { exitCode: e.exitCode, line: e.message };
  const code = systemCode(e);
  if (chain(e).some((c) => reasonOf(c) === 'bad port')) {
    // Fetch's port blocklist (https://fetch.spec.whatwg.org/#port-blocking), which undici applies.
    return { exitCode: EXIT.connect, line: `${reasonOf(e)}${e instanceof AtlsError ? ` [${e.code}]` : ''}; the port is one the Fetch standard blocks (e.g. 9, 25, 6000): serve on another port` };
  }
  const transport = transportFailure(e, code);
  if (transport) return transport;
  if (!(e instanceof AtlsError)) {
    if (chain(e).some((c) => /redirect count exceeded/.test(reasonOf(c)))) {
      return { exitCode: EXIT.redirects, line: 'too many redirects (redirect count exceeded); the service redirects in a loop: drop -L to see the first answer' };
    }
    return { exitCode: EXIT.failure, line: reasonOf(e) };
  }
  const tag = `[${e.code}${e.alert ? `, alert ${e.alert.name}` : ''}]`;
  const fix = atlsFix(e, flags);
  const line = `${reasonOf(e)} ${tag}${fix ? `; ${fix}` : ''}`;
  if (ATLS_UNTRUSTED.includes(e.code)) return { exitCode: EXIT.untrusted, line };
  if (ATLS_HANDSHAKE.includes(e.code)) return { exitCode: EXIT.handshake, line };
  if (e.code === 'TOO_LARGE') return { exitCode: EXIT.tooLarge, line };
  if (e.code === 'TIMEOUT') return { exitCode: EXIT.timeout, line };
  if (e.code === 'NOT_ATLS') return { exitCode: EXIT.notAtls, line };
  return { exitCode: EXIT.failure, line };
}

/** A failure whose exit code and line are already decided (e.g. `--fail` on a 404). */
export class CliExit extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
  }
}
