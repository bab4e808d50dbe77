/**
 * Turning command-line flags into library options, shared by the subcommands.
 * Every failure is an AtlsError('INVALID_ARGUMENT') with a one-line reason.
 * @module
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { AtlsError } from '../errors.js';
import { fromHex } from '../bytes.js';
import { getEngine } from '../engines/index.js';
import type { PskCredential, TlsCommonConfig, TlsEngine } from '../engines/types.js';
import type { Mode } from '../session/types.js';

/** `HOST:PORT` (IPv6 as `[::1]:PORT`) -> host and port. */
export function parseHostPort(text: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} wants HOST:PORT with a port from 0 to 65535 (e.g. 127.0.0.1:8443), got ${JSON.stringify(text)}`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

/** A byte count with an optional binary suffix: `1048576`, `512k`, `64M`, `1G`. */
export function parseSize(text: string, flag: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(text.trim());
  const n = m ? Number(m[1]) * 1024 ** ' kmg'.indexOf((m[2] || ' ').toLowerCase()) : NaN;
  if (!m || !Number.isSafeInteger(n) || n <= 0) throw new AtlsError('INVALID_ARGUMENT', `${flag} wants a byte count such as 1048576, 512k, 64M or 1G, got ${JSON.stringify(text)}`);
  return n;
}

/** A positive number flag (`--max-sessions 500`, `--headers-timeout 2.5`); undefined when not given. */
export function positiveFlag(value: unknown, flag: string, integer = false): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} wants a positive ${integer ? 'integer' : 'number'}, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Reads a PEM file named by a flag; a missing or non-PEM file names the flag and the fix. */
export function readPem(file: string, flag: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'a folder, not a file' : code;
    throw new AtlsError('INVALID_ARGUMENT', `${flag} ${file}: ${why}; check the path (atls certs --out DIR writes a development PKI)`);
  }
  if (!text.includes('-----BEGIN ')) {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} ${file}: not PEM (no -----BEGIN line); give the PEM file`);
  }
  return text;
}

/** An HTTP(S) URL named by a flag; `HOST:PORT` alone means `http://HOST:PORT`, as `atls fetch` reads it. */
export function httpUrlFrom(text: string, flag: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} wants a URL like http://127.0.0.1:3000, got ${JSON.stringify(text)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} wants an http:// or https:// URL, got ${JSON.stringify(text)}`);
  }
  return url.href;
}

/** `--tls-version 1.2|1.3` -> min/max version. */
export function versionRange(version: unknown): Pick<TlsCommonConfig, 'minVersion' | 'maxVersion'> {
  if (version === undefined) return {};
  const v = version === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
  return { minVersion: v, maxVersion: v };
}

/** `--psk-identity ID --psk HEX` -> credential (both or neither). */
export function pskFrom(opts: Record<string, unknown>): PskCredential | undefined {
  const identity = opts.pskIdentity as string | undefined;
  const hex = opts.psk as string | undefined;
  if (identity === undefined && hex === undefined) return undefined;
  if (identity === undefined || hex === undefined) {
    throw new AtlsError('INVALID_ARGUMENT', '--psk-identity and --psk go together');
  }
  const key = fromHex(hex);
  if (key.length < 16) throw new AtlsError('INVALID_ARGUMENT', '--psk must be at least 16 bytes (32 hex digits)');
  return { identity, key };
}

/** `--engine` -> engine (default: the library's choice). */
export function engineFrom(opts: Record<string, unknown>): { engine?: TlsEngine } {
  return typeof opts.engine === 'string' ? { engine: getEngine(opts.engine) } : {};
}

/** `--mode` -> mode. */
export function modeFrom(opts: Record<string, unknown>): Mode {
  return opts.mode === 'records' ? 'records' : 'exported';
}

/** Cipher list that keeps PSK suites available next to the certificate ones. */
export const PSK_CIPHERS =
  'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:' +
  'ECDHE-PSK-CHACHA20-POLY1305:PSK-AES128-GCM-SHA256:PSK-AES256-GCM-SHA384:PSK-CHACHA20-POLY1305:' +
  'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305';

/** The TLS 1.3 suites (RFC 8446 §B.4), all of which OpenSSL implements. */
const TLS13_SUITE_NAMES = new Set([
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_CCM_SHA256',
  'TLS_AES_128_CCM_8_SHA256',
]);

/**
 * `--ciphers` (TLS 1.2, OpenSSL cipher-list syntax) and `--ciphersuites`
 * (TLS 1.3 suite names), as `openssl s_client -cipher/-ciphersuites` take
 * them. Names are checked here, because OpenSSL skips unknown names silently
 * and an all-unknown list would only fail at the first handshake.
 */
export function cipherFlags(opts: Record<string, unknown>, psk: boolean): Pick<TlsCommonConfig, 'ciphers' | 'ciphersuites'> {
  const out: Pick<TlsCommonConfig, 'ciphers' | 'ciphersuites'> = {};
  if (typeof opts.ciphersuites === 'string') {
    const names = opts.ciphersuites.split(':').filter((s) => s.length > 0);
    const unknown = names.find((n) => !TLS13_SUITE_NAMES.has(n));
    if (names.length === 0 || unknown !== undefined) {
      throw new AtlsError('INVALID_ARGUMENT', `--ciphersuites: unknown TLS 1.3 suite ${JSON.stringify(unknown ?? '')} (one of ${[...TLS13_SUITE_NAMES].join(', ')})`);
    }
    out.ciphersuites = names.join(':');
  }
  if (typeof opts.ciphers === 'string') {
    const names = opts.ciphers.split(':').filter((s) => s.length > 0);
    if (names.length === 0) throw new AtlsError('INVALID_ARGUMENT', '--ciphers wants a TLS 1.2 cipher list');
    for (const name of names) {
      if (/^!?TLS_/.test(name)) throw new AtlsError('INVALID_ARGUMENT', `--ciphers: ${name} is a TLS 1.3 suite; give it with --ciphersuites`);
      try {
        createSecureContext({ ciphers: name });
      } catch {
        throw new AtlsError('INVALID_ARGUMENT', `--ciphers: OpenSSL knows no cipher ${JSON.stringify(name)}`);
      }
    }
    out.ciphers = names.join(':');
  } else if (psk) {
    out.ciphers = PSK_CIPHERS;
  }
  return out;
}

/** Resolves when the process is asked to stop (SIGINT / SIGTERM). */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (sig: string): void => resolve(sig);
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/** Until a long-running command should stop: `io.until`, or a signal. */
export function untilStopped(io: { until?: Promise<unknown> }): Promise<unknown> {
  return io.until ?? untilSignal();
}
