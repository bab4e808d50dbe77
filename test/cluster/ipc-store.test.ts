/**
 * The cluster store (workers of `atls serve --workers N` sharing the
 * primary's memory store over IPC) against the same contract suite as the
 * memory and Redis stores, over a real IPC channel to a forked process; and
 * what happens when that process dies.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { AtlsError } from '../../src/errors.js';
import { IpcPeer } from '../../src/store/ipc.js';
import { IpcStateStore } from '../../src/store/cluster.js';
import { runStateStoreContract, sampleState } from '../helpers/state-store-contract.js';

const HOST = fileURLToPath(new URL('../helpers/ipc-store-host.ts', import.meta.url));
const children: ChildProcess[] = [];

/** A store whose primary is a freshly forked process. */
async function remote(): Promise<{ store: IpcStateStore; child: ChildProcess; peer: IpcPeer }> {
  const child = fork(HOST, [], { execArgv: ['--import', 'tsx'], serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  const peer = new IpcPeer((m) => child.send(m as never), {}, 2000);
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  child.on('message', (m) => peer.deliver(m));
  child.on('exit', () => peer.close(new AtlsError('STORE_UNAVAILABLE', 'primary exited', { retryAfter: 1 })));
  return { store: new IpcStateStore(peer), child, peer };
}

after(() => {
  for (const c of children) c.kill();
});

runStateStoreContract('cluster (IPC to the primary)', async () => (await remote()).store);

describe('IpcStateStore', () => {
  it('bigints, bytes and errors cross the channel intact; a dead primary is STORE_UNAVAILABLE, not a hang', async () => {
    const { store, child } = await remote();
    const st = sampleState();
    st.channel.nextSend = 7n;
    assert.equal(await store.create(st, 60_000), true);
    const snap = await store.snapshot(st.id);
    assert.equal(snap?.channel.nextSend, 7n);
    assert.ok(snap?.channel.secrets instanceof Uint8Array);
    assert.equal((await store.commit(st.id, 0, 60_000)).sendSeq, 7);
    // The primary's own refusal arrives as the same AtlsError.
    const bad = sampleState();
    bad.channel.nextSend = 2n ** 60n;
    await assert.rejects(store.create(bad, 60_000), (e: unknown) => e instanceof AtlsError && e.code === 'INVALID_ARGUMENT');
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await assert.rejects(store.commit(st.id, 1, 60_000), (e: unknown) => e instanceof AtlsError && e.code === 'STORE_UNAVAILABLE' && e.httpStatus === 503);
  });
});
