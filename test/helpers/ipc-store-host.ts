/**
 * A child process that plays the cluster primary for the IPC store tests:
 * it holds a MemoryStateStore and answers store calls on its IPC channel.
 * Started with `fork(..., { serialization: 'advanced' })`.
 */
import { IpcPeer } from '../../src/store/ipc.js';
import { stateStoreHandlers } from '../../src/store/cluster.js';
import { MemoryStateStore } from '../../src/store/memory-state.js';

const store = new MemoryStateStore({ sweepIntervalMs: 0 });
const parent = new IpcPeer((m) => process.send!(m), stateStoreHandlers(store));
process.on('message', (m) => parent.deliver(m));
process.on('disconnect', () => process.exit(0));
process.send!({ ready: true });
