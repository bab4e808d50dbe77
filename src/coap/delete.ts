/**
 * Who may end a session with a CoAP DELETE of `/atls/<id>`: the id travels
 * in clear on every request and a UDP source address can be spoofed, so
 * neither proves anything. One rule for the ATLS CoAP server and the
 * CoAP-to-HTTP gateway (and the HTTP binding's DELETE):
 *
 * 1. A DELETE ends the session when its payload proves it, in a
 *    Content-Format the session can be proved in: a protected message of an
 *    exported session (`protected`, `protectedHttp`), the peer's close_notify
 *    records of a records-mode session (`records`: the engine authenticates
 *    them; a forged record is dropped, RFC 6347 §4.1.2.7). Only a holder of
 *    the session's keys can make either.
 * 2. Nothing else ends it, whoever sends it. A half-open handshake has no
 *    keys yet, so no DELETE ends it: it idles out under the half-open limits.
 *
 * Anyone else gets 4.03 and the session goes on.
 *
 * @example
 * ```ts
 * const refusal = await deleteRefusal(
 *   { proofFormats: [formats.protected, formats.protectedHttp], prove: (m) => core.endIfProven(s, m) },
 *   { contentFormat: cf, payload: msg.payload },
 * );
 * if (refusal) return { code: CoapCode.Forbidden, payload: enc.encode(refusal) };
 * ```
 * @module
 */

/** What is known of the session a DELETE names. */
export interface DeleteTarget {
  /** The Content-Formats a proof of this session comes in; empty when nothing can prove it (half-open). */
  proofFormats: readonly number[];
  /**
   * Checks a proof of the session and, when it proves the session, ends it
   * (true). Throws for failures that are not about the proof (a store that
   * does not answer).
   */
  prove: (proof: Uint8Array, contentFormat: number) => Promise<boolean>;
}

/** The DELETE request as it arrived. */
export interface DeleteRequest {
  contentFormat: number | undefined;
  payload: Uint8Array;
}

/** The 4.03 diagnostic of a DELETE without a proof. */
export const DELETE_NEEDS_PROOF = 'DELETE carries a proof of this session: a protected message (exported) or its close_notify records (records)';
/** The 4.03 diagnostic of a half-open session's DELETE. */
export const DELETE_HALF_OPEN = 'a handshake in progress has no keys to prove a DELETE: it idles out';

/**
 * Undefined when the DELETE ended the session (`prove` has ended it);
 * otherwise why not, for a 4.03 diagnostic payload.
 */
export async function deleteRefusal(target: DeleteTarget, request: DeleteRequest): Promise<string | undefined> {
  if (target.proofFormats.length === 0) return DELETE_HALF_OPEN;
  const cf = request.contentFormat;
  if (cf === undefined || !target.proofFormats.includes(cf)) return DELETE_NEEDS_PROOF;
  return (await target.prove(request.payload, cf)) ? undefined : 'DELETE did not prove the session';
}
