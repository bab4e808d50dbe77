// 100k handshakes on the native engine with RSS flat, and every native object
// freed: on close, on error, on destroy, and by the finalizer when a
// connection is simply dropped. ATLS_MEMORY_HANDSHAKES sets the count
// (default 100000; e.g. 5000 for a quick run).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nativeLiveObjects, nativeMallocInfo } from '../../src/engines/openssl.js';
import type { EngineConnection, TlsClientConfig, TlsEngine, TlsServerConfig } from '../../src/engines/types.js';
import { testPki } from '../helpers/pki.js';
import { nativeEngineOrSkip } from '../helpers/native-drive.js';

const COUNT = Number(process.env.ATLS_MEMORY_HANDSHAKES ?? 100_000);
const pki = await testPki();

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}

/** One handshake between `c` and `s`; returns whether it completed. */
async function handshake(c: EngineConnection, s: EngineConnection): Promise<boolean> {
  let step = await c.start();
  let toServer = true;
  for (let i = 0; i < 8 && step.flight.length > 0; i++) {
    step = toServer ? await s.receive(step.flight) : await c.receive(step.flight);
    toServer = !toServer;
  }
  return true;
}

function configs(): { c: TlsClientConfig[]; s: TlsServerConfig[] } {
  const key = new Uint8Array(32).fill(5);
  return {
    c: [
      { serverName: 'localhost', ca: pki.ca.cert },
      { serverName: 'localhost', ca: pki.ca.cert, cert: pki.client.cert, key: pki.client.key },
      { psk: { identity: 'dev', key }, verifyPeer: false },
      { serverName: 'localhost', ca: pki.otherCa.cert }, // fails: untrusted
    ],
    s: [
      { cert: pki.server.cert, key: pki.server.key },
      { cert: pki.server.cert, key: pki.server.key, requireClientCert: true, ca: pki.ca.cert },
      { pskLookup: (id) => (id === 'dev' ? key : undefined) },
      { cert: pki.server.cert, key: pki.server.key },
    ],
  };
}

async function round(e: TlsEngine, i: number, cfg: ReturnType<typeof configs>): Promise<void> {
  const kind = i % 10 === 9 ? 3 : i % 10 === 8 ? 2 : i % 10 === 7 ? 1 : 0;
  const c = e.createClient(cfg.c[kind]!);
  const s = e.createServer(cfg.s[kind]!);
  try {
    await handshake(c, s);
  } catch {
    // error path: the engine frees the SSL itself
  }
  switch (i % 4) {
    case 0:
      c.destroy();
      s.destroy();
      break;
    case 1:
      await c.close().catch(() => undefined);
      await s.close().catch(() => undefined);
      break;
    case 2:
      // dropped without destroy: the finalizer frees it
      break;
    default:
      s.destroy(); // one side destroyed, the other dropped
  }
}

void test(`${COUNT} handshakes: RSS flat and every native object freed`, { timeout: 15 * 60_000 }, async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const cfg = configs();
  const base = nativeLiveObjects();
  // Warm-up: the first fifth (allocator arenas, V8 heap sizing, context cache).
  const warm = Math.max(1000, Math.floor(COUNT / 5));
  const t0 = performance.now();
  for (let i = 0; i < warm; i++) {
    await round(e, i, cfg);
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
  }
  await settle();
  const rss0 = process.memoryUsage().rss;
  const samples: number[] = [];
  for (let i = warm; i < COUNT; i++) {
    await round(e, i, cfg);
    // Let the event loop turn now and then, as a server's I/O does: Node runs
    // the finalizers of dropped objects from the loop, never between microtasks.
    if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    if (i % 10_000 === 0) {
      await settle();
      samples.push(process.memoryUsage().rss);
    }
  }
  await settle();
  const rss1 = process.memoryUsage().rss;
  const live = nativeLiveObjects();
  const secs = (performance.now() - t0) / 1000;
  const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
  console.log(
    `# ${COUNT} handshakes in ${secs.toFixed(1)} s; RSS after warm-up ${mb(rss0)} MiB, at end ${mb(rss1)} MiB ` +
      `(samples ${samples.map(mb).join(', ')}); live connections ${live.connections}, contexts ${live.contexts}`,
  );
  // Flat: a leak grows with every handshake, while the allocator and V8 settle
  // into a plateau whose height varies from run to run (one CI run: 95 -> 111
  // -> 119 MiB over the first 20k measured handshakes, then 118-121 to the
  // end). So judge the second half of the measured handshakes, where a leak of
  // 300 B per handshake would already pass the allowance (asserted from 20k
  // handshakes on; quick runs report it), and bound the whole climb loosely.
  if (COUNT >= 20_000) {
    const mid = samples[Math.floor(samples.length / 2)] ?? rss0;
    const perHandshake = (rss1 - mid) / ((COUNT - warm) / 2);
    assert.ok(rss1 - mid < 12 * 2 ** 20, `RSS grew ${mb(rss1 - mid)} MiB over the last half (${perHandshake.toFixed(0)} B per handshake)`);
    assert.ok(rss1 - rss0 < 64 * 2 ** 20, `RSS grew ${mb(rss1 - rss0)} MiB after warm-up`);
  }
  // Every connection freed (a few may wait for the next GC cycle's finalizers).
  assert.ok(live.connections - base.connections <= 8, `live connections: ${live.connections}`);
  assert.ok(live.contexts <= 64, `contexts bounded by the cache: ${live.contexts}`);
});

// A memory BIO keeps the capacity of the largest flight it carried; an idle
// records-mode connection that once moved 64 KiB kept ~170 KB of buffers.
void test('an idle connection keeps no buffer of the data it carried', async (t) => {
  const e = nativeEngineOrSkip(t);
  if (!e) return;
  const inUse = (): number => nativeMallocInfo()?.inUse ?? NaN;
  if (Number.isNaN(inUse())) {
    t.skip('no malloc figures (not glibc)');
    return;
  }
  const cfg = configs();
  const n = 100;
  const body = new Uint8Array(64 * 1024).fill(7);
  const servers: EngineConnection[] = [];
  const one = async (): Promise<EngineConnection> => {
    const c = e.createClient(cfg.c[0]!);
    const s = e.createServer(cfg.s[0]!);
    await handshake(c, s);
    const r = await s.receive((await c.write(body)).flight);
    assert.equal(r.events.filter((ev) => ev.type === 'data').reduce((a, ev) => a + (ev.type === 'data' ? ev.data.length : 0), 0), body.length);
    await c.receive((await s.write(body)).flight);
    c.destroy();
    return s;
  };
  servers.push(await one());
  await settle();
  const before = inUse();
  for (let i = 0; i < n; i++) servers.push(await one());
  await settle();
  const per = (inUse() - before) / n;
  console.log(`# idle TLS 1.3 server connection after 64 KiB each way: ${per.toFixed(0)} B of malloc`);
  // The SSL object itself is ~15 KB; with the buffers kept it was ~170 KB.
  assert.ok(per < 40_000, `${per.toFixed(0)} B per idle connection`);
  for (const s of servers) s.destroy();
});
