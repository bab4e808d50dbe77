/**
 * Turning command-line flags into library options, shared by the subcommands.
 * Every failure is an AtlsError('INVALID_ARGUMENT') with a one-line reason.
 * @module
 */
import { readFileSync } from 'node:fs';
import { AtlsError } from '../errors.js';
import { fromHex } from '../bytes.js';
import { getEngine } from '../engines/index.js';
import type { PskCredential, TlsCommonConfig, TlsEngine } from '../engines/types.js';
import type { Mode } from '../session/types.js';

/** `HOST:PORT` (IPv6 as `[::1]:PORT`) -> host and port. */
export function parseHostPort(text: string, flag = '--listen'): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new AtlsError('INVALID_ARGUMENT', `${flag} wants HOST:PORT, got ${JSON.stringify(text)}`);
  return { host: (m[1] ?? m[2])!, port };
}

/** Reads a PEM file named by a flag. */
export function readPem(file: string, flag: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new AtlsError('INVALID_ARGUMENT', `${flag} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
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

/** Resolves when the process is asked to stop (SIGINT / SIGTERM). */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (sig: string): void => resolve(sig);
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
