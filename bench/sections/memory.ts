/**
 * Figure 4: server memory per established architecture-(b) session and per
 * half-open handshake, measured in a child process with `--expose-gc`
 * (bench/procs/memory.ts) so earlier sections leave nothing on its heap.
 * @module
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { MemoryJob, MemoryPoint } from '../procs/memory.js';
import type { BenchPki } from '../lib/scenarios.js';
import { fmt, type BenchRow } from '../lib/stats.js';

/** Runs one memory job in a fresh process. */
export function memoryChild(job: MemoryJob): Promise<MemoryPoint[]> {
  const child = fork(fileURLToPath(new URL('../procs/memory.ts', import.meta.url)), [], {
    execArgv: ['--import', 'tsx', '--expose-gc', '--max-old-space-size=4096'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve, reject) => {
    child.once('message', (m: { type: string; points?: MemoryPoint[]; message?: string }) => {
      if (m.type === 'memory' && m.points) resolve(m.points);
      else reject(new Error(m.message ?? 'memory child failed'));
    });
    child.once('exit', (code) => reject(new Error(`memory child exited with ${code}`)));
    child.send({ type: 'memory', job });
  });
}

/** Figure 4: `counts` established sessions with ECDSA and with PSK, and the half-open cap. */
export async function memorySection(pki: BenchPki, ecdsaCounts: number[], pskCounts: number[], recordsCounts: number[] = []): Promise<BenchRow[]> {
  const S = '4 server memory';
  const rows: BenchRow[] = [];
  const runs: Array<[string, MemoryJob]> = [
    ['ECDSA', { pki, credential: 'ecdsa', checkpoints: ecdsaCounts, halfOpen: true }],
    ['PSK', { pki, credential: 'psk', checkpoints: pskCounts, halfOpen: false }],
    ...(recordsCounts.length ? [['ECDSA', { pki, credential: 'ecdsa', checkpoints: recordsCounts, halfOpen: false, mode: 'records' }] as [string, MemoryJob]] : []),
  ];
  for (const [cred, job] of runs) {
    for (const p of await memoryChild(job)) {
      rows.push({
        section: S,
        name: p.what === 'established' ? `established ${p.mode === 'records' ? 'arch (a) records-mode' : 'arch (b)'} session, ${fmt(p.sessions)} sessions, ${cred}` : `half-open handshake, ${fmt(p.sessions)} (the cap), ${cred}`,
        value: p.heapBytesPerSession,
        unit: 'B/session heap',
        note:
          `RSS ${fmt(p.rssBytesPerSession)} B/session${p.what === 'established' && p.mode === 'exported' ? ' (target <= 2048 B of RSS at 100,000)' : ''}` +
          (p.mallocBytesPerSession !== undefined ? `; malloc ${fmt(p.mallocBytesPerSession)} B/session` : '') +
          (p.rssTrimmedBytesPerSession !== undefined ? `; RSS after malloc_trim ${fmt(p.rssTrimmedBytesPerSession)} B/session` : '') +
          `; built in ${fmt(p.seconds)} s`,
        extra: { ...p, credential: cred },
      });
    }
  }
  return rows;
}
