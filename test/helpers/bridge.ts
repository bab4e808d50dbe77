/**
 * A small TCP bridge between an ATLS session (flights in, flights out) and a
 * real TLS peer on a socket (`openssl s_server`, `gnutls-cli`, ...).
 *
 * TCP has no flight delimiters, so the peer's bytes are grouped into a flight
 * when they form whole TLS records AND nothing more arrived for
 * {@link QUIET_MS}. Every flight our session produces is written as is.
 *
 * @example
 * ```ts
 * const ch = new FlightChannel(await connectTcp(port));
 * const stats = await clientHandshake(client, ch);
 * await sendData(client, ch, 'ping\n');
 * const reply = await receiveData(client, ch, (s) => s.includes('\n'));
 * ch.close();
 * ```
 */
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { AtlsError } from '../../src/errors.js';
import type { SessionEvent } from '../../src/session/types.js';

/**
 * How long the peer must stay silent before its bytes count as one flight.
 * The tools write a flight in one go, so loopback segments of one flight
 * arrive within a millisecond or two; 100 ms leaves room for a loaded CI
 * machine while keeping a handshake well under a second.
 */
export const QUIET_MS = 100;

/**
 * Client in state `confirming` (its final flight is out, the server has not
 * answered yet): over HTTP the response confirms, over raw TCP a server may
 * legitimately send nothing more (a TLS 1.3 server that skips client
 * authentication may send its tickets with its own Finished, RFC 8446 §4.6.1,
 * as GnuTLS does). After this much silence the handshake loop hands over to
 * the data phase; the first answer of the server then establishes the session.
 */
export const CONFIRM_SILENCE_MS = 3 * QUIET_MS;

/** Default bound for one handshake or one data exchange over the bridge. */
export const STEP_TIMEOUT_MS = 5000;

/** Largest peer backlog the bridge buffers (a flight larger than this is an error). */
const MAX_BUFFERED = 256 * 1024;

/** TLSPlaintext/TLSCiphertext header: type(1) version(2) length(2) (RFC 8446 §5.1). */
const RECORD_HEADER = 5;
/** Largest record body any version allows: 2^14 + 2048 (RFC 5246 §6.2.3). */
const MAX_RECORD_BODY = 16384 + 2048;

/** Byte length of the whole records at the start of `buf`; throws on an impossible header. */
function wholeRecordPrefix(buf: Uint8Array): number {
  let off = 0;
  while (buf.length - off >= RECORD_HEADER) {
    const len = (buf[off + 3]! << 8) | buf[off + 4]!;
    if (len > MAX_RECORD_BODY) {
      throw new AtlsError('MALFORMED_RECORD', `peer record of ${len} bytes exceeds ${MAX_RECORD_BODY}`); // RFC 5246 §6.2.3
    }
    if (buf.length - off - RECORD_HEADER < len) break;
    off += RECORD_HEADER + len;
  }
  return off;
}

/** One flight seen on the bridge, for the figures the tests print. */
export interface FlightRecord {
  /** `us`: produced by our session; `peer`: read from the socket. */
  from: 'us' | 'peer';
  bytes: number;
}

/** The socket side of the bridge: whole-record flights in, raw flights out. */
export class FlightChannel {
  /** Every flight sent or received, in order. */
  readonly log: FlightRecord[] = [];
  private buf: Uint8Array = new Uint8Array(0);
  private lastArrival = 0;
  private ended = false;
  private error: Error | undefined;
  private wake: (() => void) | undefined;

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      if (this.buf.length + chunk.length > MAX_BUFFERED) {
        this.error = new AtlsError('TOO_LARGE', `peer sent more than ${MAX_BUFFERED} bytes without a flight boundary`);
        socket.destroy();
      } else {
        const next = new Uint8Array(this.buf.length + chunk.length);
        next.set(this.buf);
        next.set(chunk, this.buf.length);
        this.buf = next;
        this.lastArrival = performance.now();
      }
      this.wake?.();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake?.();
    });
    socket.on('error', (e) => {
      // A reset after the peer's alert is normal; remember it, surface on read.
      this.error ??= e;
      this.ended = true;
      this.wake?.();
    });
  }

  /** True once the peer closed its side (or the socket failed). */
  get peerClosed(): boolean {
    return this.ended;
  }

  /**
   * The peer's next flight: whole records followed by {@link QUIET_MS} of
   * silence. After the peer closed, resolves with what is left (possibly
   * empty). With `silenceMs`, resolves with an empty flight when not a byte
   * arrived for that long. Rejects after `timeoutMs`, or when the peer closed
   * mid-record.
   */
  async nextFlight(timeoutMs = STEP_TIMEOUT_MS, silenceMs?: number): Promise<Uint8Array> {
    const start = performance.now();
    const deadline = start + timeoutMs;
    for (;;) {
      const whole = wholeRecordPrefix(this.buf);
      const now = performance.now();
      if (this.ended) {
        if (whole !== this.buf.length) {
          throw new AtlsError('TRUNCATED_FLIGHT', `peer closed after ${this.buf.length - whole} bytes of a partial record`);
        }
        return this.take(whole);
      }
      if (whole > 0 && whole === this.buf.length && now - this.lastArrival >= QUIET_MS) return this.take(whole);
      if (this.error) throw this.error;
      if (silenceMs !== undefined && this.buf.length === 0 && now - start >= silenceMs) return this.take(0);
      if (now >= deadline) {
        throw new Error(`bridge: no complete flight within ${timeoutMs} ms (${this.buf.length} bytes buffered)`);
      }
      let wait = whole > 0 && whole === this.buf.length ? QUIET_MS - (now - this.lastArrival) : deadline - now;
      if (silenceMs !== undefined && this.buf.length === 0) wait = Math.min(wait, start + silenceMs - now);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1, Math.min(wait, deadline - now)));
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = undefined;
    }
  }

  /** Writes one of our flights to the socket (nothing for an empty flight). */
  send(flight: Uint8Array): void {
    if (flight.length === 0) return;
    this.log.push({ from: 'us', bytes: flight.length });
    if (!this.socket.destroyed) this.socket.write(flight);
  }

  /** Half-closes our side, then destroys the socket shortly after. */
  close(): void {
    if (!this.socket.destroyed) this.socket.end();
    setTimeout(() => this.socket.destroy(), 200).unref();
  }

  private take(n: number): Uint8Array {
    const out = this.buf.slice(0, n);
    this.buf = this.buf.slice(n);
    if (n > 0) this.log.push({ from: 'peer', bytes: n });
    return out;
  }
}

/** Connects to 127.0.0.1:`port` (the only address the suite uses). */
export function connectTcp(port: number, host = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** A listener on 127.0.0.1, port chosen by the system, for one connection. */
export interface OneShotListener {
  port: number;
  /** The first connection; rejects after `timeoutMs`. */
  accept(timeoutMs?: number): Promise<Socket>;
  close(): void;
}

/** Listens on 127.0.0.1:0 (loopback only) for a single connection. */
export function listenOnce(): Promise<OneShotListener> {
  let gotSocket: (s: Socket) => void = () => undefined;
  const first = new Promise<Socket>((resolve) => (gotSocket = resolve));
  const srv: Server = createServer({ noDelay: true }, (sock) => {
    srv.close(); // one connection per case
    gotSocket(sock);
  });
  const accept = async (timeoutMs = STEP_TIMEOUT_MS): Promise<Socket> => {
    let timer: NodeJS.Timeout | undefined = undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`bridge: no connection within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([first, timeout]);
    } finally {
      clearTimeout(timer);
    }
  };
  return new Promise((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      resolve({ port, accept, close: () => srv.close() });
    });
  });
}

/** The session surface the bridge drives (both roles). */
export interface BridgedSession {
  readonly state: string;
  receive(flight: Uint8Array): Promise<{ flight: Uint8Array; events: SessionEvent[] }>;
  send(data: Uint8Array): Promise<Uint8Array>;
}

/** What a handshake over the bridge took. */
export interface HandshakeStats {
  /** Peer flights our session consumed until it was established. */
  roundTrips: number;
  /** Flights in order with their sizes. */
  flights: FlightRecord[];
  /** Events the session reported during the handshake. */
  events: SessionEvent[];
  /**
   * Client: the server sent nothing after our final flight, so the session
   * is still `confirming` (see {@link CONFIRM_SILENCE_MS}).
   */
  unconfirmed: boolean;
}

/** `us 517 > peer 1234 > us 80` for logs. */
export function describeFlights(flights: readonly FlightRecord[]): string {
  return flights.map((f) => `${f.from} ${f.bytes}`).join(' > ');
}

/** Feeds one peer flight to the session; on failure delivers our alert records first. */
async function step(
  session: BridgedSession,
  ch: FlightChannel,
  flight: Uint8Array,
): Promise<{ flight: Uint8Array; events: SessionEvent[] }> {
  try {
    const r = await session.receive(flight);
    ch.send(r.flight);
    return r;
  } catch (e) {
    if (e instanceof AtlsError) ch.send(e.alertFlight);
    throw e;
  }
}

async function drive(session: BridgedSession, ch: FlightChannel, timeoutMs: number): Promise<HandshakeStats> {
  const deadline = performance.now() + timeoutMs;
  const events: SessionEvent[] = [];
  let roundTrips = 0;
  let unconfirmed = false;
  while (session.state !== 'established') {
    if (session.state === 'closed' || session.state === 'failed') {
      throw new Error(`bridge: session ended in state ${session.state} during the handshake`);
    }
    const confirming = session.state === 'confirming';
    const flight = await ch.nextFlight(
      Math.max(1, deadline - performance.now()),
      confirming ? CONFIRM_SILENCE_MS : undefined,
    );
    if (flight.length === 0) {
      if (confirming && !ch.peerClosed) {
        unconfirmed = true;
        break;
      }
      throw new AtlsError('HANDSHAKE_FAILED', 'peer closed the connection during the handshake');
    }
    roundTrips++;
    events.push(...(await step(session, ch, flight)).events);
  }
  return { roundTrips, flights: [...ch.log], events, unconfirmed };
}

/**
 * Runs our client's handshake against the peer on `ch`: sends the first
 * flight, then answers every peer flight until the session is established
 * (or stays `confirming` because the server is silent, see `unconfirmed`).
 * Fatal errors send our alert records to the peer, then reject.
 */
export async function clientHandshake(
  session: BridgedSession & { start(): Promise<{ flight: Uint8Array; events: SessionEvent[] }> },
  ch: FlightChannel,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<HandshakeStats> {
  let first;
  try {
    first = await session.start();
  } catch (e) {
    if (e instanceof AtlsError) ch.send(e.alertFlight);
    throw e;
  }
  ch.send(first.flight);
  const stats = await drive(session, ch, timeoutMs);
  return { ...stats, events: [...first.events, ...stats.events] };
}

/** Runs our server's handshake: answers client flights until established. */
export function serverHandshake(
  session: BridgedSession,
  ch: FlightChannel,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<HandshakeStats> {
  return drive(session, ch, timeoutMs);
}

/** Encrypts `data` into records (mode `records`) and writes them to the peer. */
export async function sendData(session: BridgedSession, ch: FlightChannel, data: string | Uint8Array): Promise<void> {
  ch.send(await session.send(typeof data === 'string' ? new TextEncoder().encode(data) : data));
}

/**
 * Reads peer flights until the application data received (as latin1 text)
 * satisfies `done`; answers any flight the session produces meanwhile.
 */
export async function receiveData(
  session: BridgedSession,
  ch: FlightChannel,
  done: (text: string) => boolean,
  timeoutMs = STEP_TIMEOUT_MS,
): Promise<string> {
  const deadline = performance.now() + timeoutMs;
  let text = '';
  while (!done(text)) {
    const flight = await ch.nextFlight(Math.max(1, deadline - performance.now()));
    if (flight.length === 0) throw new Error(`bridge: peer closed; application data so far: ${JSON.stringify(text)}`);
    for (const ev of (await step(session, ch, flight)).events) {
      if (ev.type === 'data') text += Buffer.from(ev.data).toString('latin1');
    }
  }
  return text;
}
