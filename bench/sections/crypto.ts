/**
 * Figure 5: the crypto-only limit on this machine, measured with
 * `node:crypto` (the same OpenSSL the TLS stacks use): X25519 key generation
 * and derivation, ECDSA P-256 sign and verify, AES-128-GCM per message, and
 * our protected-message channel per message.
 * @module
 */
import { createCipheriv, createDecipheriv, diffieHellman, generateKeyPairSync, randomBytes, sign, verify } from 'node:crypto';
import { ProtectedChannel, aeadForSuite, keyBlockLength } from '../../src/protect/index.js';
import { measureRate, type BenchRow } from '../lib/stats.js';

/** Per-operation costs in µs, used by the other sections' ratios. */
export interface CryptoCosts {
  x25519: number;
  ecdsaSign: number;
  ecdsaVerify: number;
  /** AES-128-GCM seal + open of one message of each size (µs, both directions). */
  aead: Record<number, number>;
  /** Server-side crypto of one handshake, µs (see {@link handshakeCryptoUs}). */
  handshake: { serverOnly: number; mutual: number; resumed: number };
}

/**
 * Server-side public-key work of one TLS 1.3 handshake (RFC 8446 §4.4.3):
 * an X25519 key pair and shared secret, one CertificateVerify signature; with
 * a client certificate also its CertificateVerify and the chain signature
 * (two verifications); resumption (psk_dhe_ke) only the key exchange.
 */
export function handshakeCryptoUs(c: Pick<CryptoCosts, 'x25519' | 'ecdsaSign' | 'ecdsaVerify'>): CryptoCosts['handshake'] {
  return {
    serverOnly: c.x25519 + c.ecdsaSign,
    mutual: c.x25519 + c.ecdsaSign + 2 * c.ecdsaVerify,
    resumed: c.x25519,
  };
}

/** Runs figure 5; `minMs` per measurement. */
export async function cryptoSection(minMs: number, sizes: readonly number[]): Promise<{ rows: BenchRow[]; costs: CryptoCosts }> {
  const S = '5 crypto-only';
  const rows: BenchRow[] = [];
  const peer = generateKeyPairSync('x25519');
  const x = await measureRate(
    () => {
      const kp = generateKeyPairSync('x25519');
      diffieHellman({ privateKey: kp.privateKey, publicKey: peer.publicKey });
    },
    { minMs },
  );
  rows.push({ section: S, name: 'X25519 keygen + derive', value: x.opsPerSec, unit: 'op/s', note: `${x.usPerOp.toFixed(1)} µs` });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const transcript = randomBytes(130);
  const sig = sign('sha256', transcript, ec.privateKey);
  const s = await measureRate(() => sign('sha256', transcript, ec.privateKey), { minMs });
  const v = await measureRate(() => verify('sha256', transcript, ec.publicKey, sig), { minMs });
  rows.push({ section: S, name: 'ECDSA P-256 sign', value: s.opsPerSec, unit: 'op/s', note: `${s.usPerOp.toFixed(1)} µs` });
  rows.push({ section: S, name: 'ECDSA P-256 verify', value: v.opsPerSec, unit: 'op/s', note: `${v.usPerOp.toFixed(1)} µs` });
  const hs = handshakeCryptoUs({ x25519: x.usPerOp, ecdsaSign: s.usPerOp, ecdsaVerify: v.usPerOp });
  rows.push({ section: S, name: 'server handshake crypto, server-only auth', value: 1e6 / hs.serverOnly, unit: 'hs/s/core', note: 'X25519 + 1 sign' });
  rows.push({ section: S, name: 'server handshake crypto, mutual auth', value: 1e6 / hs.mutual, unit: 'hs/s/core', note: 'X25519 + 1 sign + 2 verify' });
  rows.push({ section: S, name: 'server handshake crypto, resumed', value: 1e6 / hs.resumed, unit: 'hs/s/core', note: 'X25519 (psk_dhe_ke)' });

  const aead: Record<number, number> = {};
  const key = randomBytes(16);
  const aad = randomBytes(13);
  const spec = aeadForSuite('TLS_AES_128_GCM_SHA256');
  const block = randomBytes(keyBlockLength(spec));
  const client = ProtectedChannel.fromKeyBlock(new Uint8Array(block), spec, 'client');
  const server = ProtectedChannel.fromKeyBlock(new Uint8Array(block), spec, 'server');
  for (const size of sizes) {
    const msg = randomBytes(size);
    let ctr = 0;
    const r = await measureRate(
      () => {
        const iv = Buffer.alloc(12);
        iv.writeUInt32BE(ctr++, 8);
        const c = createCipheriv('aes-128-gcm', key, iv);
        c.setAAD(aad);
        const ct = Buffer.concat([c.update(msg), c.final()]);
        const tag = c.getAuthTag();
        const d = createDecipheriv('aes-128-gcm', key, iv);
        d.setAAD(aad);
        d.setAuthTag(tag);
        Buffer.concat([d.update(ct), d.final()]);
      },
      { minMs },
    );
    aead[size] = r.usPerOp;
    rows.push({ section: S, name: `AES-128-GCM seal + open, ${label(size)}`, value: r.opsPerSec, unit: 'msg/s', note: `${r.usPerOp.toFixed(1)} µs` });
    const p = await measureRate(() => server.open(client.seal(msg)), { minMs });
    rows.push({ section: S, name: `ProtectedChannel seal + open, ${label(size)}`, value: p.opsPerSec, unit: 'msg/s', note: `${p.usPerOp.toFixed(1)} µs (ours, incl. header + replay window)` });
  }
  client.destroy();
  server.destroy();
  return { rows, costs: { x25519: x.usPerOp, ecdsaSign: s.usPerOp, ecdsaVerify: v.usPerOp, aead, handshake: hs } };
}

/** `100 B` / `64 KiB`. */
export function label(size: number): string {
  return size >= 1024 && size % 1024 === 0 ? `${size / 1024} KiB` : `${size} B`;
}
