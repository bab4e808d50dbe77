/**
 * Micro-benchmark of the protected-message AEAD: `ProtectedChannel` seal +
 * open of one message, with node:crypto (a new cipher object per message)
 * and with the native addon's per-key `EVP_CIPHER_CTX` (src/engines/openssl.ts
 * `nativeAead`), for every AEAD of protect/suites.ts.
 *
 * It counts CPU time of the JS thread (CLOCK_THREAD_CPUTIME_ID through the
 * addon), best of five rounds, so a busy machine inflates the figures less.
 *
 * Usage: `node --import tsx bench/aead.ts [size ...]` (default 100 and 16384
 * bytes). ATLS_BENCH_SECONDS (default 0.5) is the length of one round.
 */
import { ProtectedChannel, aeadForSuite, keyBlockLength } from '../src/protect/index.js';
import { nativeAead, threadCpuNs } from '../src/engines/openssl.js';

const ROUND_S = Number(process.env.ATLS_BENCH_SECONDS ?? 0.5);
const sizes = process.argv.slice(2).map(Number).filter((n) => n >= 0);
if (sizes.length === 0) sizes.push(100, 16384);

const SUITES = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'TLS_AES_128_CCM_SHA256',
  'TLS_AES_128_CCM_8_SHA256',
];

/** µs of thread CPU per seal+open (best of five rounds). */
function measure(suite: string, size: number): number {
  const spec = aeadForSuite(suite);
  const block = new Uint8Array(keyBlockLength(spec)).fill(9);
  const c = ProtectedChannel.fromKeyBlock(block, spec, 'client');
  const s = ProtectedChannel.fromKeyBlock(block, spec, 'server');
  const pt = new Uint8Array(size).fill(1);
  for (let i = 0; i < 2000; i++) s.open(c.seal(pt)); // warm-up (JIT, lazy contexts)
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    let n = 0;
    const t0 = threadCpuNs();
    const end = performance.now() + ROUND_S * 1000;
    while (performance.now() < end) {
      for (let i = 0; i < 200; i++) s.open(c.seal(pt));
      n += 200;
    }
    best = Math.min(best, (threadCpuNs() - t0) / n / 1000);
  }
  c.destroy();
  s.destroy();
  return best;
}

const probe = nativeAead('aes-128-gcm', new Uint8Array(16), 16, true);
probe?.free();
console.log(`# ProtectedChannel seal + open, µs of CPU per message (best of 5 x ${ROUND_S} s)`);
console.log(`# native AEAD ${probe ? 'available' : 'UNAVAILABLE (only node:crypto measured)'}`);
console.log('| AEAD | bytes | node:crypto | native | speed-up |');
console.log('|---|---:|---:|---:|---:|');
for (const suite of SUITES) {
  for (const size of sizes) {
    process.env.ATLS_NATIVE_AEAD = '0';
    const node = measure(suite, size);
    delete process.env.ATLS_NATIVE_AEAD;
    const native = probe ? measure(suite, size) : NaN;
    const name = aeadForSuite(suite).name.replace(/^AEAD_/, '');
    console.log(`| ${name} | ${size} | ${node.toFixed(2)} | ${native.toFixed(2)} | ${(node / native).toFixed(1)}x |`);
  }
}
