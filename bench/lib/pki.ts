/**
 * The benchmark's certificates: the test PKI's ECDSA P-256 and RSA 2048
 * servers and ECDSA client under one ECDSA root, plus a fixed external PSK.
 *
 * @example
 * ```ts
 * const pki = await benchPki();
 * ```
 * @module
 */
import { testPki } from '../../test/helpers/pki.js';
import type { BenchPki } from './scenarios.js';

/** Generates (once per process) the certificates every section uses. */
export async function benchPki(): Promise<BenchPki> {
  const t = await testPki();
  return {
    ca: t.ca,
    server: t.server,
    serverRsa: t.serverRsa,
    client: t.client,
    psk: { identity: 'bench-device', keyHex: '5a'.repeat(32) },
  };
}
