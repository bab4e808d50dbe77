/**
 * Calls between the processes of one `atls serve --workers N` over Node's IPC
 * channel (node:cluster): the primary answers the shared session store's
 * operations and hands out the workers' configuration. A call is one message
 * out and one reply back, matched by a number; both ends can call and answer.
 *
 * The channel must use `serialization: 'advanced'` (structured clone), so
 * that Uint8Array and bigint cross as they are.
 *
 * @example
 * ```ts
 * // worker
 * const primary = new IpcPeer((m) => process.send!(m), {});
 * process.on('message', (m) => primary.deliver(m));
 * const reply = await primary.call('store.get', { id });
 * ```
 * @module
 */
import { AtlsError, type AtlsErrorCode } from '../errors.js';

/** What answers a call of one type; a thrown AtlsError reaches the caller with its code. */
export type IpcHandler = (payload: unknown) => unknown;

/** Default time a call may take before it fails. */
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

/** Messages written in one go: every call and reply made during one turn of the event loop. */
interface BatchMessage {
  [TAG]: 'batch';
  m: Array<CallMessage | ReplyMessage>;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  type: string;
  deadline: number;
}

/** One end of an IPC channel: makes calls, answers the other end's. */
export class IpcPeer {
  private next = 0;
  private readonly pending = new Map<number, Pending>();
  private down: AtlsError | undefined;
  /**
   * Calls and replies of this turn, written as one message when the turn
   * ends: one pipe write (and one wake-up of the other process) for all the
   * requests a worker read from its sockets at once, instead of one each.
   */
  private outbox: Array<CallMessage | ReplyMessage> = [];
  private sweeper: NodeJS.Timeout | undefined;

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
      this.pending.set(n, { resolve, reject, type, deadline: Date.now() + this.timeoutMs });
      // One timer for every call: a call not answered by its deadline fails (checked every second).
      this.sweeper ??= setInterval(() => this.expire(), Math.min(1000, this.timeoutMs)).unref();
      this.post({ [TAG]: 'call', n, type, payload });
    });
  }

  /** Feeds one message from the channel; false when it is not one of ours. */
  deliver(message: unknown): boolean {
    if (typeof message !== 'object' || message === null || !(TAG in message)) return false;
    const batch = message as BatchMessage;
    if (batch[TAG] !== 'batch' || !Array.isArray(batch.m)) return false;
    for (const m of batch.m) {
      if (m[TAG] === 'call') {
        void this.answer(m);
        continue;
      }
      const p = this.pending.get(m.n);
      if (!p) continue; // timed out already
      this.pending.delete(m.n);
      if (m.error) {
        const { code, message: text, source, retryAfter } = m.error;
        p.reject(new AtlsError(code, text, { source, ...(retryAfter !== undefined ? { retryAfter } : {}) }));
      } else p.resolve(m.value);
    }
    return true;
  }

  /** The other end is gone: every pending and later call fails with `reason`. */
  close(reason: AtlsError): void {
    this.down = reason;
    this.outbox = [];
    this.failAll(reason);
  }

  private failAll(reason: AtlsError): void {
    for (const [n, p] of this.pending) {
      this.pending.delete(n);
      p.reject(reason);
    }
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private expire(): void {
    const now = Date.now();
    for (const [n, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(n);
      p.reject(new AtlsError('STORE_UNAVAILABLE', `no answer from the other process to ${p.type} within ${this.timeoutMs} ms`, { retryAfter: 1 }));
    }
    if (this.pending.size === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Queues a message; the first of a turn schedules the write. */
  private post(m: CallMessage | ReplyMessage): void {
    if (this.outbox.push(m) === 1) setImmediate(() => this.flush());
  }

  private flush(): void {
    const m = this.outbox;
    this.outbox = [];
    if (m.length === 0 || this.down) return;
    try {
      this.send({ [TAG]: 'batch', m } satisfies BatchMessage);
    } catch (e) {
      // The channel is closed: the other process is gone (its exit handler closes this peer too).
      this.close(new AtlsError('STORE_UNAVAILABLE', `the other process cannot be reached: ${String(e)}`, { cause: e, retryAfter: 1 }));
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
    this.post(reply);
  }
}
