/**
 * atls: Application-Layer TLS (draft-friel-tls-atls-00) for Node.js.
 *
 * The root entry point exports the transport-independent core: sessions,
 * engines, key export and protected messages, errors. Transports have their
 * own entry points: `atls/http`, `atls/coap`; keyless record inspection is
 * `atls/records`.
 *
 * @example
 * ```ts
 * import { AtlsClientSession, AtlsServerSession } from 'atls';
 * const client = new AtlsClientSession({ tls: { serverName: 'localhost', ca } });
 * const { flight } = await client.start();
 * ```
 * @module
 */
export { AtlsError, isAtlsError, alertName, AlertDescription } from './errors.js';
export type { Alert, AtlsErrorCode, ErrorSource } from './errors.js';
export { AtlsClientSession, AtlsServerSession } from './session/session.js';
export type { ClientSessionOptions, ServerSessionOptions } from './session/session.js';
export type { FlightResult, Mode, SessionEvent, SessionOptions, SessionState } from './session/types.js';
export { availableEngines, clientEngines, defaultEngine, getEngine, engineNames, engineUnavailableReason } from './engines/index.js';
export type {
  EngineCapabilities,
  EngineConnection,
  HandshakeInfo,
  PskCredential,
  TlsClientConfig,
  TlsEngine,
  TlsServerConfig,
  TlsVersion,
} from './engines/types.js';
export {
  EXPORTER_LABEL,
  ProtectedChannel,
  aeadForSuite,
  keyBlockLength,
  splitKeyBlock,
} from './protect/index.js';
export type { AeadSpec, ProtectedChannelOptions } from './protect/index.js';
export { createDevPki, writeDevPki } from './pki.js';
