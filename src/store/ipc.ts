/**
 * Calls between the processes of one `atls serve --workers N` over Node's IPC
 * channel (node:cluster): the primary answers the shared session store's
 * operations and relays handshake flights to the worker that holds the
 * session's TLS engine. A call is one message out and one reply back, matched
 * by a number; both ends can call and answer.
 *
 * The channel must use `serialization: 'advanced'` (structured clone), so
 * that Uint8Array and bigint cross as they are.
 *
 * @example
 * ```ts
 * // worker
 * const primary = new IpcPeer((m) => process.send!(m), { flight: (req) => serveLocally(req) });
 * process.on('message', (m) => primary.deliver(m));
 * const reply = await primary.call('store.get', { id });
 * ```
 * @module
 */
import { AtlsError, type AtlsErrorCode } from '../errors.js';

/** What answers a call of one type; a thrown AtlsError reaches the caller with its code. */
export type IpcHandler = (payload: unknown) => unknown;

/** Default time a call may take before it fails (a relayed handshake flight is the slowest). */
export const IPC_CALL_TIMEOUT_MS = 10_000;

/** Tag of our messages on a channel that may carry others. */
const TAG = 'atls-ipc';

interface CallMessage {
  [TAG]: 'call';
  n: number;
  type: string;
  payload: unknown;
}

interface ReplyMessage {
  [TAG]: 'reply';
  n: number;
  value?: unknown;
  error?: { code: AtlsErrorCode; message: string; source: 'local' | 'remote'; retryAfter?: number };
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  timer: NodeJS.Timeout;
}

/** One end of an IPC channel: makes calls, answers the other end's. */
export class IpcPeer {
  private next = 0;
  private readonly pending = new Map<number, Pending>();
  private down: AtlsError | undefined;

  constructor(
    private readonly send: (message: unknown) => void,
    private readonly handlers: Record<string, IpcHandler>,
    private readonly timeoutMs = IPC_CALL_TIMEOUT_MS,
  ) {}

  /** Calls `type` on the other end; rejects with its AtlsError, or STORE_UNAVAILABLE when the channel is gone or silent. */
  call(type: string, payload: unknown): Promise<unknown> {
    if (this.down) return Promise.reject(this.down);
    const n = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(n);
        reject(new AtlsError('STORE_UNAVAILABLE', `no answer from the other process to ${type} within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(n, { resolve, reject, timer });
      try {
        this.send({ [TAG]: 'call', n, type, payload } satisfies CallMessage);
      } catch (e) {
        clearTimeout(timer);
        this.pending.delete(n);
        reject(new AtlsError('STORE_UNAVAILABLE', `the other process cannot be reached: ${String(e)}`, { cause: e }));
      }
    });
  }

  /** Feeds one message from the channel; false when it is not one of ours. */
  deliver(message: unknown): boolean {
    if (typeof message !== 'object' || message === null || !(TAG in message)) return false;
    const m = message as CallMessage | ReplyMessage;
    if (m[TAG] === 'reply') {
      const p = this.pending.get(m.n);
      if (!p) return true; // timed out already
      this.pending.delete(m.n);
      clearTimeout(p.timer);
      if (m.error) {
        const { code, message: text, source, retryAfter } = m.error;
        p.reject(new AtlsError(code, text, { source, ...(retryAfter !== undefined ? { retryAfter } : {}) }));
      } else p.resolve(m.value);
      return true;
    }
    void this.answer(m);
    return true;
  }

  /** The other end is gone: every pending and later call fails with `reason`. */
  close(reason: AtlsError): void {
    this.down = reason;
    for (const [n, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(n);
      p.reject(reason);
    }
  }

  private async answer(m: CallMessage): Promise<void> {
    let reply: ReplyMessage;
    try {
      const handler = this.handlers[m.type];
      if (!handler) throw new AtlsError('UNSUPPORTED', `no IPC handler for ${m.type}`);
      reply = { [TAG]: 'reply', n: m.n, value: await handler(m.payload) };
    } catch (e) {
      const err = e instanceof AtlsError ? e : new AtlsError('INTERNAL', `IPC handler ${m.type} failed: ${String(e)}`);
      const error = { code: err.code, message: err.message, source: err.source };
      reply = { [TAG]: 'reply', n: m.n, error: err.retryAfter === undefined ? error : { ...error, retryAfter: err.retryAfter } };
    }
    try {
      this.send(reply);
    } catch {
      // The caller went away; its own timeout or exit handling covers it.
    }
  }
}
