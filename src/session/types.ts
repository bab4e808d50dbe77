/**
 * Public types of ATLS sessions: options, events, states.
 * @module
 */
import type { Alert } from '../errors.js';
import type { HandshakeInfo, TlsEngine } from '../engines/types.js';
import type { ProtectedChannelOptions } from '../protect/index.js';

/**
 * How application data travels once the handshake is done (draft §6.1):
 * - `records`: inside the ATLS session's own TLS records (draft Figure 5);
 * - `exported`: in compact protected messages keyed by the RFC 5705 exporter
 *   (draft Figure 6, §7); the TLS engine is released once keys are derived.
 */
export type Mode = 'records' | 'exported';

/**
 * Session life cycle. One table drives it (see `transitions` in session.ts):
 * - `idle`: created, nothing sent or received;
 * - `handshaking`: flights are being exchanged;
 * - `confirming`: client only: the handshake is complete locally but the
 *   server has not yet answered the client's final flight (TLS 1.3 full
 *   handshakes and TLS 1.2 resumption end on a client flight);
 * - `established`: both sides agree; data may flow;
 * - `closed`: closed cleanly by either side;
 * - `failed`: a fatal error; every call rethrows it.
 */
export type SessionState = 'idle' | 'handshaking' | 'confirming' | 'established' | 'closed' | 'failed';

/** Events reported by `start()` / `receive()`. */
export type SessionEvent =
  /** The session is established (client: the server accepted its final flight). */
  | { type: 'handshake'; info: HandshakeInfo }
  /** Application data received in TLS records (mode `records`). */
  | { type: 'data'; data: Uint8Array; /** TLS 1.3 early data (replayable, RFC 8446 §8): a server that accepted 0-RTT. */ early?: boolean }
  /** Client: resumption state; pass it as `tls.session` to resume later. */
  | { type: 'ticket'; session: Uint8Array }
  /** A warning alert from the peer (fatal alerts reject instead). */
  | { type: 'alert'; alert: Alert }
  /** The peer closed the session (close_notify). */
  | { type: 'closed' };

/** The outbound flight (possibly empty: send it anyway) and what happened. */
export interface FlightResult {
  flight: Uint8Array;
  events: SessionEvent[];
}

/** Options common to client and server sessions. */
export interface SessionOptions {
  /** TLS engine; default: the best available (`defaultEngine()`). */
  engine?: TlsEngine;
  /** Default `exported` (draft §9.5 recommends key export over HTTP). */
  mode?: Mode;
  /** Largest peer flight accepted, in bytes (default 256 KiB). */
  maxFlightBytes?: number;
  /** Options of the protected-message channel (replay window, limits). */
  protection?: ProtectedChannelOptions;
  /** Mode `exported`: keep the TLS engine after keys are derived (default false). */
  retainEngine?: boolean;
}
