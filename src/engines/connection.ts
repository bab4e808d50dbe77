/**
 * The one wrapper under every server-capable engine's connections: what an
 * {@link EngineConnection} promises whatever TLS stack is inside.
 *
 * It owns the sticky failure (the first fatal error is thrown by every later
 * call), the close bookkeeping (close_notify sent or received, destroyed),
 * the flight cap (one option, `maxFlightBytes`), the exporter's argument
 * checks, and the checks on a peer flight before the stack sees it: a fatal
 * alert in the clear is read here (a stack already using record protection
 * would call it a bad record), a flight that ends inside a record is refused
 * (the stack would wait forever). A stack implements the five `stack*` steps.
 *
 * @example
 * ```ts
 * class MyConnection extends WrappedConnection {
 *   protected stackReceive(flight: Uint8Array): Promise<EngineStep> { ... }
 *   ...
 * }
 * ```
 * @module
 */
import { AlertDescription, AtlsError, receivedAlertError, type AtlsErrorCode } from '../errors.js';
import { scanRecords, type TlsRecord } from '../records.js';
import type { EngineConnection, EngineStep } from './types.js';

/** Largest peer flight a connection accepts unless configured otherwise; larger ones fail with TOO_LARGE. */
export const DEFAULT_MAX_FLIGHT_BYTES = 256 * 1024;
/** RFC 8446 §7.5 / §7.1: HKDF-Expand-Label output is at most 255 x Hash.length (8160 bytes with SHA-256). */
export const MAX_EXPORT = 255 * 32;
/** RFC 5705 §4: the context length is a uint16. */
const MAX_EXPORT_CONTEXT = 0xffff;
/** Worst-case record overhead per 16 KiB of data (TLS 1.2 AEAD: 5 header + 8 nonce + 16 tag). */
const RECORD_OVERHEAD = 29;
const ALERT = 21;
const HEADER = 5;
const EMPTY = new Uint8Array(0);

/**
 * An unprotected alert record: `15 03 03 00 02 <level> <description>`
 * (RFC 8446 §5.1, §6; RFC 5246 §7.2). An engine sends one when its stack
 * cannot send the alert itself, so that a failure never reaches the peer as
 * silence.
 */
export function plaintextAlert(description: number, level = 2): Uint8Array {
  return Uint8Array.of(ALERT, 3, 3, 0, 2, level, description);
}

/** An alert read from an unprotected alert record. */
export interface PlainAlert {
  level: number;
  description: number;
}

/**
 * The unprotected alert records among `records` (from {@link scanRecords}). A
 * protected record always carries at least an AEAD tag (16 bytes; RFC 8446
 * §5.2, RFC 5246 §6.2.3.3), so a two-byte alert record is readable without
 * keys in any state.
 */
export function plaintextAlerts(records: readonly TlsRecord[]): PlainAlert[] {
  const alerts: PlainAlert[] = [];
  for (const r of records) {
    if (r.contentType === ALERT && r.length === 2 && r.headerLength === HEADER) {
      alerts.push({ level: r.fragment[0]!, description: r.fragment[1]! });
    }
  }
  return alerts;
}

/** True when `flight` is nothing but plaintext alert records (or empty). */
export function onlyPlaintextAlerts(flight: Uint8Array): boolean {
  const scan = scanRecords(flight);
  return plaintextAlerts(scan.records).length === scan.records.length;
}

/**
 * An unknown PSK identity in TLS 1.3 makes OpenSSL fall back to certificates
 * and fail with handshake_failure when it has none; say what happened
 * instead (RFC 8446 §6.2: unknown_psk_identity). Only plaintext alerts are
 * rewritten; an encrypted one goes out as the stack wrote it. For servers
 * whose pskLookup knew none of the identities offered.
 */
export function unknownPskError(error: AtlsError, output: Uint8Array): AtlsError {
  if (error.code !== 'HANDSHAKE_FAILED' && error.code !== 'PSK_UNKNOWN') return error;
  const plainOnly = onlyPlaintextAlerts(output);
  return new AtlsError('PSK_UNKNOWN', 'the client offered only unknown PSK identities', {
    source: 'remote',
    alert: plainOnly ? AlertDescription.unknown_psk_identity : (error.alert ?? AlertDescription.unknown_psk_identity),
    alertFlight: plainOnly ? plaintextAlert(AlertDescription.unknown_psk_identity) : error.alertFlight,
    cause: error,
  });
}

/** Checks RFC 5705 exporter arguments; throws INVALID_ARGUMENT. */
export function checkExporterArguments(length: number, label: string, context: Uint8Array | undefined): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_EXPORT) {
    throw new AtlsError('INVALID_ARGUMENT', `exporter length must be an integer in 1..${MAX_EXPORT}`);
  }
  // RFC 5705 §4: labels are ASCII strings.
  if (typeof label !== 'string' || !/^[\x20-\x7e]{1,255}$/.test(label)) {
    throw new AtlsError('INVALID_ARGUMENT', 'exporter label must be 1..255 printable ASCII characters');
  }
  if (context !== undefined && (!(context instanceof Uint8Array) || context.length > MAX_EXPORT_CONTEXT)) {
    throw new AtlsError('INVALID_ARGUMENT', `exporter context must be a Uint8Array of at most ${MAX_EXPORT_CONTEXT} bytes`);
  }
}

function bytesOf(data: unknown, what: string): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new AtlsError('INVALID_ARGUMENT', `${what} must be a Uint8Array`);
  return data;
}

/** The common part of every engine connection; the stack underneath implements the `stack*` steps. */
export abstract class WrappedConnection implements EngineConnection {
  protected failure: AtlsError | undefined;
  protected destroyed = false;
  /** A stack whose steps take turns of the event loop sets this while one runs. */
  protected busy = false;
  private closeSent = false;
  /** The handshake completed (and the engine's own peer checks passed). */
  protected established = false;
  /** The peer sent close_notify. */
  protected peerClosed = false;

  protected constructor(
    protected readonly role: 'client' | 'server',
    /** Largest peer flight accepted; writes are bounded so that their records fit in one. */
    protected readonly maxFlightBytes: number,
    /** Read plaintext alerts and refuse truncated flights before the stack does (TLS; DTLS records are datagrams). */
    private readonly checkFlights = true,
  ) {}

  // ---- what a stack implements ---------------------------------------------

  /** Client: produce the first flight. */
  protected abstract stackStart(): Promise<EngineStep>;
  /** Feed a whole peer flight; `garbage`: it holds bytes that are not records (the stack should answer them). */
  protected abstract stackReceive(flight: Uint8Array, garbage: boolean): Promise<EngineStep>;
  /** Encrypt application data (non-empty, within the cap, after the handshake). */
  protected abstract stackWrite(data: Uint8Array): Promise<EngineStep>;
  /** Send close_notify (after the handshake). */
  protected abstract stackClose(): Promise<EngineStep>;
  /** The exporter, arguments already checked. */
  protected abstract stackExport(length: number, label: string, context: Uint8Array | undefined): Uint8Array;
  /** Free the stack; called once on failure, close before the handshake, or destroy (may be called again). */
  protected abstract teardown(): void;

  // ---- the interface -----------------------------------------------------

  start(): Promise<EngineStep> {
    try {
      this.usable();
      if (this.role !== 'client') {
        throw new AtlsError('INVALID_STATE', 'a server does not start; pass the client flight to receive()');
      }
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.run(() => this.stackStart());
  }

  /**
   * Inject one whole peer flight. `records`: the flight already split by
   * {@link scanRecords} or `splitRecords` (a session does), so it is not
   * parsed twice.
   */
  receive(flight: Uint8Array, records?: readonly TlsRecord[]): Promise<EngineStep> {
    let garbage = false;
    try {
      bytesOf(flight, 'flight');
      this.usable();
      if (this.peerClosed) throw new AtlsError('CLOSED', 'the peer closed the connection');
      this.beforeReceive();
      if (flight.length > this.maxFlightBytes) {
        this.refuse('TOO_LARGE', `peer flight of ${flight.length} bytes exceeds ${this.maxFlightBytes}`, AlertDescription.internal_error);
      }
      if (this.checkFlights) {
        const scan = records ? { records, truncated: false, garbageAt: undefined } : scanRecords(flight);
        const fatal = plaintextAlerts(scan.records).find((a) => a.level === 2);
        // RFC 8446 §6.2: the peer's fatal alert ends the connection; nothing to answer.
        if (fatal) throw this.fail(receivedAlertError(fatal.description, fatal.level));
        // draft §6.1: a flight is whole records.
        if (scan.truncated) this.refuse('TRUNCATED_FLIGHT', 'the flight ends inside a TLS record', AlertDescription.decode_error);
        garbage = scan.garbageAt !== undefined;
      }
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.run(() => this.stackReceive(flight, garbage));
  }

  write(data: Uint8Array): Promise<EngineStep> {
    try {
      const bytes = bytesOf(data, 'data');
      this.usable();
      if (this.closeSent || this.peerClosed) throw new AtlsError('CLOSED', 'the connection is closed');
      if (!this.established) throw new AtlsError('NOT_ESTABLISHED', 'write() before the handshake completed');
      const records = Math.ceil(bytes.length / 16384);
      if (bytes.length + records * RECORD_OVERHEAD > this.maxFlightBytes) {
        throw new AtlsError('TOO_LARGE', `write of ${bytes.length} bytes would exceed the ${this.maxFlightBytes}-byte flight limit`, {
          source: 'local',
        });
      }
      if (bytes.length === 0) return Promise.resolve({ flight: EMPTY, events: [] });
    } catch (e) {
      return Promise.reject(e as Error);
    }
    return this.run(() => this.stackWrite(data));
  }

  exportKeyingMaterial(length: number, label: string, context?: Uint8Array): Uint8Array {
    if (this.destroyed) throw new AtlsError('CLOSED', 'the connection was destroyed');
    if (this.failure) throw this.failure;
    if (!this.established) throw new AtlsError('NOT_ESTABLISHED', 'exportKeyingMaterial() before the handshake completed');
    checkExporterArguments(length, label, context);
    return this.stackExport(length, label, context);
  }

  close(): Promise<EngineStep> {
    try {
      this.usable();
    } catch (e) {
      return Promise.reject(e as Error);
    }
    if (this.closeSent || this.peerClosed) return Promise.resolve({ flight: EMPTY, events: [] });
    this.closeSent = true;
    if (!this.established) {
      // Nothing established to close: just free the stack.
      this.teardown();
      return Promise.resolve({ flight: EMPTY, events: [] });
    }
    return this.run(() => this.stackClose()); // RFC 8446 §6.1: close_notify
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.teardown();
  }

  // ---- for the stacks ------------------------------------------------------

  /** Role checks before a flight is looked at (a node server creates its socket here). */
  protected beforeReceive(): void {}

  /** Destroyed or failed: no call may reach the stack. */
  protected get unusable(): boolean {
    return this.destroyed || this.failure !== undefined;
  }

  /** Rejects calls on destroyed, failed or busy connections. */
  protected usable(): void {
    if (this.destroyed) throw new AtlsError('CLOSED', 'the connection was destroyed');
    if (this.failure) throw this.failure;
    if (this.busy) throw new AtlsError('INVALID_STATE', 'another call on this connection is still running');
  }

  /** Makes `error` the sticky failure, frees the stack, and returns it (to throw). */
  protected fail(error: AtlsError): AtlsError {
    if (this.failure) return this.failure;
    this.failure = error;
    this.teardown();
    return error;
  }

  /** A failure decided before the stack saw the flight, answered with a plaintext alert. */
  protected refuse(code: AtlsErrorCode, message: string, alert: number): never {
    throw this.fail(new AtlsError(code, message, { source: 'remote', alert, alertFlight: plaintextAlert(alert) }));
  }

  /** Runs a stack step; a synchronous throw becomes a rejection. */
  private run(step: () => Promise<EngineStep>): Promise<EngineStep> {
    try {
      return step();
    } catch (e) {
      return Promise.reject(e as Error);
    }
  }
}
