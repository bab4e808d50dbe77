/**
 * Where one run of the `atls` command reads and writes: the process's own
 * streams, or (tests, run in the test's process) buffers. Long-running
 * commands (serve, proxy, gateway) write their ready line to `stdout` and
 * run until `until` settles (a process's own io: SIGINT or SIGTERM); their
 * logs, `--workers` and `demo` use the process's streams.
 * @module
 */
import { AtlsError } from '../errors.js';

export interface CliIo {
  stdin: AsyncIterable<Uint8Array | string>;
  stdout: { write(chunk: string | Uint8Array): unknown };
  stderr: { write(chunk: string | Uint8Array): unknown };
  /** `-s`: drops the notices that are not the failure itself (process-wide, so only a process's own io has it). */
  silenceNotices?(): Promise<void>;
  /** Long-running commands stop when this settles (default: SIGINT or SIGTERM). */
  until?: Promise<unknown>;
}

/** The process's standard streams (read when used: touching stdin opens it). */
export const processIo: CliIo = {
  get stdin() {
    return process.stdin;
  },
  stdout: process.stdout,
  stderr: process.stderr,
  async silenceNotices() {
    // The engine fallback line and Node's process warnings.
    (await import('../engines/index.js')).setEngineFallbackNotice(undefined);
    process.removeAllListeners('warning');
  },
};

/** Everything `src` yields, refused once it exceeds `limit` bytes. */
export async function readAll(src: AsyncIterable<Uint8Array | string>, limit = Infinity): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of src) {
    const b = Buffer.from(chunk);
    n += b.length;
    if (n > limit) throw new AtlsError('TOO_LARGE', `input exceeds ${limit} bytes`, { source: 'local' });
    parts.push(b);
  }
  return new Uint8Array(Buffer.concat(parts));
}
