/**
 * Who may end a session with a CoAP DELETE of `/atls/<id>`: the id travels
 * in clear on every request, so knowing it proves nothing. One rule for the
 * ATLS CoAP server and the CoAP-to-HTTP gateway:
 *
 * 1. A DELETE that carries a protected message (Content-Format `protected`
 *    or `protectedHttp`) ends the session when the message proves it: only a
 *    holder of the session's keys can make one.
 * 2. An established architecture-(b) session takes nothing less; nor does
 *    a session whose state the judge cannot see (the gateway's mappings: it
 *    holds no TLS state, so it cannot tell a handshake from a session).
 * 3. A session that no message can prove (half-open; mode `records`) at the
 *    server that holds it takes a DELETE only from the endpoint that started
 *    its handshake.
 *
 * Anyone else gets 4.03 and the session goes on.
 *
 * @example
 * ```ts
 * const refusal = await deleteRefusal(
 *   { proofRequired: true, prove: (m) => core.endIfProven(s, m) },
 *   { contentFormat: cf, payload: msg.payload, peer },
 *   [formats.protected, formats.protectedHttp],
 * );
 * if (refusal) return { code: CoapCode.Forbidden, payload: enc.encode(refusal) };
 * ```
 * @module
 */
import { peerKey, type Peer } from './blockwise.js';

/** What is known of the session a DELETE names. */
export interface DeleteTarget {
  /** True when only a protected message proves a DELETE: an exported session, or one whose state is not known. */
  proofRequired: boolean;
  /** The endpoint (`peerKey`) that started the handshake, when known. */
  origin?: string | undefined;
  /**
   * Checks a protected message of the session and, when it proves the
   * session, ends it (true). Undefined when the session can be proved by no
   * message (half-open, mode `records`). Throws for failures that are not
   * about the proof (a store that does not answer).
   */
  prove?: ((message: Uint8Array) => Promise<boolean>) | undefined;
}

/** The DELETE request as it arrived. */
export interface DeleteRequest {
  contentFormat: number | undefined;
  payload: Uint8Array;
  peer: Peer;
}

/**
 * Undefined when the DELETE may end the session (with a proof, `prove` has
 * ended it already); otherwise why not, for a 4.03 diagnostic payload.
 */
export async function deleteRefusal(target: DeleteTarget, request: DeleteRequest, proofFormats: readonly number[]): Promise<string | undefined> {
  const cf = request.contentFormat;
  if (target.prove && cf !== undefined && proofFormats.includes(cf)) {
    return (await target.prove(request.payload)) ? undefined : 'DELETE did not prove the session';
  }
  if (target.proofRequired) return 'DELETE carries a protected message of this session';
  if (target.origin === undefined || target.origin !== peerKey(request.peer)) return "DELETE from another endpoint than the session's";
  return undefined;
}
