/**
 * `atls serve --workers N`: N processes on one port (node:cluster), every one
 * able to answer every session.
 *
 * - Established architecture-(b) sessions live in a shared state store: the
 *   `--store` Redis when given, otherwise a memory store held by the primary
 *   and reached over IPC with the same contract (src/store/cluster.ts).
 * - A handshake in progress, and a records-mode session, lives in the TLS
 *   engine of the worker that minted its id (the id's first random character
 *   names it, src/store/ids.ts). A worker that receives such a flight relays
 *   it to its owner over the owner's Unix socket, in a directory the primary
 *   makes for them (src/http/relay.ts): bodies stream both ways.
 * - TLS ticket keys are shared: the `--ticket-keys` file, or 48 random bytes
 *   the primary hands to every worker. The CoAP Echo key is derived from them,
 *   so the worker that takes over CoAP verifies the Echo values issued before.
 * - CoAP is served by worker 0 alone (a datagram carries no cookie to relay
 *   a handshake by); a new worker 0 binds the same port.
 * - A worker that dies is started again under the same index; the sessions
 *   only its engine held (handshakes, records mode) are gone, and their
 *   clients handshake again.
 *
 * @module
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AtlsError } from '../errors.js';
import { listenForRelays, relayingHandler } from '../http/relay.js';
import { IpcStateStore, stateStoreHandlers } from '../store/cluster.js';
import { IpcPeer, type IpcHandler } from '../store/ipc.js';
import { MemoryStateStore } from '../store/memory-state.js';
import { serveWorkersMetrics } from './observe.js';
import { parseSize, untilSignal } from './options.js';
import { DEFAULT_MAX_BODY_BYTES } from '../http/constants.js';
import { connectionLimitsFrom, serverTlsFrom, startService, storeChoiceFrom } from './serve.js';

/** Environment variable that tells a worker its index. */
const WORKER_INDEX = 'ATLS_WORKER_INDEX';

/** Runs the primary or, in a forked worker, the worker. */
export async function runWorkers(opts: Record<string, unknown>, count: number): Promise<void> {
  if (cluster.isPrimary) return runPrimary(opts, count);
  return runWorker(opts, count);
}

function gone(index: number): AtlsError {
  return new AtlsError('CLOSED', `worker ${index}, which held this handshake, is gone: handshake again`, { source: 'remote' });
}

/** The Unix socket on which worker `index` takes the flights its siblings relay. */
function relaySocket(dir: string, index: number): string {
  return join(dir, `${index}.sock`);
}

async function runPrimary(opts: Record<string, unknown>, count: number): Promise<void> {
  // Refuse bad flags here, once, before any worker starts.
  serverTlsFrom(opts);
  const choice = storeChoiceFrom(opts);
  const shared = choice.kind === 'memory' ? new MemoryStateStore() : undefined;
  const ticketKeys = opts.ticketKeys === undefined ? new Uint8Array(randomBytes(48)) : undefined;
  // mkdtemp makes it 0700: only this user can connect to the workers' relay sockets.
  const relayDir = mkdtempSync(join(tmpdir(), 'atls-workers-'));
  cluster.setupPrimary({ serialization: 'advanced' });
  const workers = new Map<number, { worker: Worker; peer: IpcPeer }>();
  let stopping = false;
  let line: string | undefined;
  let ready = 0;
  let allReady: () => void = () => undefined;
  const handlers: Record<string, IpcHandler> = {
    ...(shared ? stateStoreHandlers(shared) : {}),
    'cluster.config': () => ({ ticketKeys, relayDir }),
    'cluster.listening': (p) => {
      const { line: said, index } = p as { line: string; index: number };
      if (index === 0 || line === undefined) line = said; // worker 0's names the CoAP endpoint too
      if (++ready === count) allReady();
      return true;
    },
  };
  const start = (index: number): void => {
    const worker = cluster.fork({ [WORKER_INDEX]: String(index) });
    const peer = new IpcPeer((m) => worker.send(m as never), handlers);
    workers.set(index, { worker, peer });
    worker.on('message', (m) => peer.deliver(m));
    worker.on('exit', (code, signal) => {
      peer.close(gone(index));
      if (workers.get(index)?.worker === worker) workers.delete(index);
      if (stopping) return;
      process.stderr.write(`atls: worker ${index} exited (${signal ?? code}); starting it again\n`);
      setTimeout(() => stopping || start(index), 200).unref();
    });
  };
  for (let i = 0; i < count; i++) start(i);
  // Every worker listening (the cluster shares one socket among them), then one start-up line.
  try {
    await new Promise<void>((resolve, reject) => {
      allReady = resolve;
      cluster.once('exit', (_w, code) => {
        if (ready < count) reject(new AtlsError('INVALID_ARGUMENT', `a worker exited with ${code} while starting (see its message above)`));
      });
    });
  } catch (e) {
    stopping = true;
    for (const { worker } of workers.values()) worker.kill('SIGTERM');
    rmSync(relayDir, { recursive: true, force: true });
    throw e;
  }
  const metrics = typeof opts.metrics === 'string' ? await serveWorkersMetrics(opts.metrics) : undefined;
  process.stdout.write(`${line!.replace(/\)$/, `, ${count} workers)`)}${metrics ? `, metrics at ${metrics.url}` : ''}\n`);
  await untilSignal();
  stopping = true;
  await metrics?.close();
  await Promise.all(
    [...workers.values()].map(
      ({ worker }) =>
        new Promise<void>((resolve) => {
          worker.once('exit', () => resolve());
          worker.kill('SIGTERM');
        }),
    ),
  );
  await shared?.close();
  rmSync(relayDir, { recursive: true, force: true });
}

async function runWorker(opts: Record<string, unknown>, count: number): Promise<void> {
  const index = Number(process.env[WORKER_INDEX]);
  const primary = new IpcPeer((m) => process.send!(m), {});
  process.on('message', (m) => primary.deliver(m));
  const { ticketKeys, relayDir } = (await primary.call('cluster.config', null)) as { ticketKeys: Uint8Array | undefined; relayDir: string };
  const connections = connectionLimitsFrom(opts);
  const choice = storeChoiceFrom(opts);
  const service = await startService(opts, {
    ...(choice.kind === 'memory' ? { store: new IpcStateStore(primary) } : {}),
    idOwner: { index, count },
    wrap: (handler) =>
      relayingHandler(handler, {
        self: index,
        count,
        maxBodyBytes: typeof opts.maxBody === 'string' ? parseSize(opts.maxBody, '--max-body') : DEFAULT_MAX_BODY_BYTES,
        socketOf: (to) => relaySocket(relayDir, to),
      }),
    // CoAP is served by worker 0 alone (datagrams carry no cookie to relay by).
    coap: index === 0,
    ...(ticketKeys ? { ticketKeys } : {}),
    metricsByPrimary: true,
  });
  // Until this listens, a relayed flight finds no owner (CLOSED): the client handshakes again.
  const relays = await listenForRelays(service.handler, relaySocket(relayDir, index), connections);
  await primary.call('cluster.listening', { line: service.line, index });
  await untilSignal();
  relays.closeAllConnections();
  relays.close();
  await service.close();
  process.exit(0);
}
