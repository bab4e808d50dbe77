/** Client-side flags shared by `atls fetch` and `atls proxy`. */
import type { TlsClientConfig } from '../engines/types.js';
import { cipherFlags, pskFrom, readPem, versionRange } from './options.js';
import { AtlsError } from '../errors.js';
import type { AtlsClientOptions, AtlsPolicy } from '../http/client.js';

/** The ATLS-layer trust and identity named by the flags (never the transport's). */
export function clientTlsFrom(opts: Record<string, unknown>): TlsClientConfig {
  const psk = pskFrom(opts);
  if ((opts.cert === undefined) !== (opts.key === undefined)) {
    throw new AtlsError('INVALID_ARGUMENT', '--cert and --key go together');
  }
  return {
    ...versionRange(opts.tlsVersion),
    ...(opts.ca !== undefined ? { ca: readPem(opts.ca as string, '--ca') } : {}),
    ...(opts.cert !== undefined ? { cert: readPem(opts.cert as string, '--cert') } : {}),
    ...(opts.key !== undefined ? { key: readPem(opts.key as string, '--key') } : {}),
    ...(typeof opts.serverName === 'string' ? { serverName: opts.serverName } : {}),
    ...(psk ? { psk } : {}),
    ...cipherFlags(opts, psk !== undefined),
  };
}

/**
 * The transport and policy flags shared by `fetch` and `proxy`: `--policy`
 * (draft §6.2), `--transport-ca` (the trust store `auto` verifies against;
 * default Node's root certificates), `--insecure-transport`.
 */
export function clientTransportFrom(
  opts: Record<string, unknown>,
  extra: Omit<NonNullable<AtlsClientOptions['transport']>, 'insecure' | 'ca'> = {},
): Pick<AtlsClientOptions, 'policy' | 'transport'> {
  return {
    ...(typeof opts.policy === 'string' ? { policy: opts.policy as AtlsPolicy } : {}),
    transport: {
      ...extra,
      insecure: opts.insecureTransport === true,
      ...(typeof opts.transportCa === 'string' ? { ca: readPem(opts.transportCa, '--transport-ca') } : {}),
    },
  };
}
