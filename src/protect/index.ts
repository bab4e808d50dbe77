/**
 * Architecture (b) of draft-friel-tls-atls-00 (Figure 6, §7): keys exported
 * from the ATLS session protect application data in compact messages.
 *
 * @example
 * ```ts
 * import { EXPORTER_LABEL, aeadForSuite, keyBlockLength, ProtectedChannel } from './protect/index.js';
 * const spec = aeadForSuite(info.cipherSuite);
 * const block = conn.exportKeyingMaterial(keyBlockLength(spec), EXPORTER_LABEL); // no context
 * const channel = ProtectedChannel.fromKeyBlock(block, spec, 'client');
 * ```
 * @module
 */
export {
  EXPORTER_LABEL,
  FORMAT_VERSION,
  IV_LENGTH,
  MAX_SEQUENCE,
  LIMIT_UNIT_BYTES,
  DEFAULT_REPLAY_WINDOW,
  MAX_REPLAY_WINDOW,
} from './constants.js';
export { aeadForSuite, type AeadSpec, type AeadAlgorithm } from './suites.js';
export { keyBlockLength, splitKeyBlock, type KeyBlock } from './key-block.js';
export { encodeHeader, parseHeader, type ProtectedHeader } from './header.js';
export { nonceFor } from './nonce.js';
export { ReplayWindow, ReplayVerdict, type ReplayWindowState } from './replay-window.js';
export {
  ProtectedChannel,
  type ProtectedChannelOptions,
  type ProtectedChannelStats,
  type ChannelRole,
  type ProtectedChannelState,
  type AuthenticatedMessage,
} from './channel.js';
export { CHUNK_FLAG, FINAL_FLAG, MAX_CHUNK_PLAINTEXT } from './header.js';
export {
  StreamSealer,
  StreamOpener,
  chunksFor,
  protectBody,
  unprotectBody,
  startsChunkStream,
  type BodySealer,
  type ChunkOpening,
  type ProtectBodyOptions,
} from './stream.js';
