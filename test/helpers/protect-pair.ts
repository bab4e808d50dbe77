/**
 * Test helper: a client and a server ProtectedChannel sharing one key block,
 * as two ends of an ATLS session would after key export.
 */
import { randomBytes } from 'node:crypto';
import {
  ProtectedChannel,
  aeadForSuite,
  keyBlockLength,
  type ProtectedChannelOptions,
} from '../../src/protect/index.js';

/** One suite per supported AEAD (the five of the brief plus AES-256-CCM). */
export const SUITES_PER_AEAD = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_CCM_SHA256',
  'TLS_AES_128_CCM_8_SHA256',
  'TLS_ECDHE_ECDSA_WITH_AES_256_CCM',
] as const;

/** A connected client/server pair; `block` defaults to random bytes. */
export function channelPair(
  suite: string,
  options: { client?: ProtectedChannelOptions; server?: ProtectedChannelOptions; block?: Uint8Array } = {},
): { client: ProtectedChannel; server: ProtectedChannel } {
  const spec = aeadForSuite(suite);
  const block = options.block ?? new Uint8Array(randomBytes(keyBlockLength(spec)));
  return {
    client: ProtectedChannel.fromKeyBlock(block, spec, 'client', options.client),
    server: ProtectedChannel.fromKeyBlock(block, spec, 'server', options.server),
  };
}
