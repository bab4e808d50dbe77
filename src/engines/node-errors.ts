/**
 * Maps what node:tls reports (OpenSSL reason codes as `ERR_SSL_*`, received
 * alerts as "SSL alert number N", certificate verification codes) to
 * {@link AtlsError} codes and TLS alerts.
 *
 * @example
 * ```ts
 * classifyStackError(err, { tls13: true }); // { code: 'BAD_RECORD_MAC', alert: 20, received: false }
 * certificateFailure('CERT_HAS_EXPIRED');   // { code: 'CERTIFICATE_EXPIRED', alert: 45 }
 * ```
 * @module
 */
import { AlertDescription as A, codeForAlert, type AtlsErrorCode } from '../errors.js';

/** A failure reduced to a code and the alert that goes (or went) with it. */
export interface Classified {
  code: AtlsErrorCode;
  /** Alert description, when known. */
  alert: number | undefined;
  /** True when the error is an alert the peer sent (nothing to answer). */
  received: boolean;
}

/**
 * Certificate verification results (OpenSSL `X509_V_ERR_*` names as node:tls
 * spells them) to codes, with the alert OpenSSL's own `ssl_verify_alarm_type`
 * would send (ssl/statem/statem_lib.c).
 */
const CERT_FAILURES: Record<string, [AtlsErrorCode, number]> = {
  CERT_HAS_EXPIRED: ['CERTIFICATE_EXPIRED', A.certificate_expired],
  CERT_NOT_YET_VALID: ['CERTIFICATE_EXPIRED', A.bad_certificate],
  ERR_TLS_CERT_ALTNAME_INVALID: ['CERTIFICATE_NAME_MISMATCH', A.bad_certificate],
  HOSTNAME_MISMATCH: ['CERTIFICATE_NAME_MISMATCH', A.bad_certificate],
  IP_ADDRESS_MISMATCH: ['CERTIFICATE_NAME_MISMATCH', A.bad_certificate],
  UNABLE_TO_GET_ISSUER_CERT: ['CERTIFICATE_UNTRUSTED', A.unknown_ca],
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: ['CERTIFICATE_UNTRUSTED', A.unknown_ca],
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: ['CERTIFICATE_UNTRUSTED', A.unknown_ca],
  SELF_SIGNED_CERT_IN_CHAIN: ['CERTIFICATE_UNTRUSTED', A.unknown_ca],
  DEPTH_ZERO_SELF_SIGNED_CERT: ['CERTIFICATE_UNTRUSTED', A.unknown_ca],
  CERT_UNTRUSTED: ['CERTIFICATE_UNTRUSTED', A.unknown_ca],
  CERT_REVOKED: ['CERTIFICATE_UNTRUSTED', A.certificate_revoked],
  INVALID_PURPOSE: ['CERTIFICATE_UNTRUSTED', A.unsupported_certificate],
  CERT_SIGNATURE_FAILURE: ['CERTIFICATE_UNTRUSTED', A.decrypt_error],
};

/** The code and alert for a failed certificate check (`verifyError().code` or a checkServerIdentity error code). */
export function certificateFailure(verifyCode: string | undefined): { code: AtlsErrorCode; alert: number } {
  const hit = verifyCode === undefined ? undefined : CERT_FAILURES[verifyCode];
  return hit ? { code: hit[0], alert: hit[1] } : { code: 'CERTIFICATE_UNTRUSTED', alert: A.bad_certificate };
}

/**
 * OpenSSL reasons whose meaning is sharper than the alert OpenSSL sends for
 * them, with that alert (used when the alert record is encrypted and cannot
 * be read back from the flight).
 */
const STACK_ERRORS: Record<string, [AtlsErrorCode, number | 'cert-required']> = {
  ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC: ['BAD_RECORD_MAC', A.bad_record_mac],
  ERR_SSL_DECRYPTION_FAILED: ['BAD_RECORD_MAC', A.bad_record_mac],
  // OpenSSL 3 reports a failed TLS 1.2 AEAD open from the provider first.
  ERR_SSL_CIPHER_OPERATION_FAILED: ['BAD_RECORD_MAC', A.bad_record_mac],
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: ['CERTIFICATE_REQUIRED', 'cert-required'],
  ERR_SSL_PSK_IDENTITY_NOT_FOUND: ['PSK_UNKNOWN', A.unknown_psk_identity],
  ERR_SSL_WRONG_VERSION_NUMBER: ['MALFORMED_RECORD', A.protocol_version],
  ERR_SSL_PACKET_LENGTH_TOO_LONG: ['MALFORMED_RECORD', A.record_overflow],
  ERR_SSL_ENCRYPTED_LENGTH_TOO_LONG: ['MALFORMED_RECORD', A.record_overflow],
  ERR_SSL_DATA_LENGTH_TOO_LONG: ['MALFORMED_RECORD', A.record_overflow],
  ERR_SSL_RECORD_LENGTH_MISMATCH: ['MALFORMED_RECORD', A.decode_error],
  ERR_SSL_LENGTH_MISMATCH: ['MALFORMED_RECORD', A.decode_error],
  ERR_SSL_BAD_LENGTH: ['MALFORMED_RECORD', A.decode_error],
  ERR_SSL_LENGTH_TOO_SHORT: ['MALFORMED_RECORD', A.decode_error],
  ERR_SSL_BAD_PACKET_LENGTH: ['MALFORMED_RECORD', A.decode_error],
  ERR_SSL_BAD_RECORD_TYPE: ['MALFORMED_RECORD', A.unexpected_message],
  ERR_SSL_UNEXPECTED_RECORD: ['MALFORMED_RECORD', A.unexpected_message],
  ERR_SSL_UNEXPECTED_MESSAGE: ['MALFORMED_RECORD', A.unexpected_message],
  ERR_SSL_UNEXPECTED_CCS_MESSAGE: ['MALFORMED_RECORD', A.unexpected_message],
  ERR_SSL_CCS_RECEIVED_EARLY: ['MALFORMED_RECORD', A.unexpected_message],
  ERR_SSL_HTTP_REQUEST: ['MALFORMED_RECORD', A.protocol_version],
  ERR_SSL_HTTPS_PROXY_REQUEST: ['MALFORMED_RECORD', A.protocol_version],
  ERR_SSL_UNSUPPORTED_PROTOCOL: ['PROTOCOL_VERSION', A.protocol_version],
  ERR_SSL_VERSION_TOO_LOW: ['PROTOCOL_VERSION', A.protocol_version],
  ERR_SSL_VERSION_TOO_HIGH: ['PROTOCOL_VERSION', A.protocol_version],
  ERR_SSL_UNSUPPORTED_SSL_VERSION: ['PROTOCOL_VERSION', A.protocol_version],
  ERR_SSL_DIGEST_CHECK_FAILED: ['HANDSHAKE_FAILED', A.decrypt_error],
  ERR_SSL_BAD_SIGNATURE: ['HANDSHAKE_FAILED', A.decrypt_error],
  ERR_SSL_NO_APPLICATION_PROTOCOL: ['HANDSHAKE_FAILED', A.no_application_protocol],
};

/** Reads "SSL alert number N" from an OpenSSL error text: the peer sent alert N. */
export function receivedAlertNumber(message: string): number | undefined {
  const m = /SSL alert number (\d{1,3})\b/.exec(message);
  const n = m ? Number(m[1]) : NaN;
  return n >= 0 && n <= 255 ? n : undefined;
}

/**
 * Classifies an error node:tls emitted. `ownAlert` is the description of a
 * plaintext alert record the stack wrote in the same step, if any.
 */
export function classifyStackError(
  err: unknown,
  opts: { tls13: boolean | undefined; established: boolean; ownAlert?: number | undefined },
): Classified {
  const e = err as { code?: unknown; message?: unknown } | null | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const received = receivedAlertNumber(message);
  if (received !== undefined) return { code: codeForAlert(received), alert: received, received: true };
  const nodeCode = typeof e?.code === 'string' ? e.code : '';
  const known = STACK_ERRORS[nodeCode];
  if (known) {
    const [code, alert] = known;
    const fallback = alert === 'cert-required' ? (opts.tls13 === false ? A.handshake_failure : A.certificate_required) : alert;
    // RFC 8446 §4.4.2.4 / RFC 5246 §7.4.6: 1.3 answers a missing certificate with certificate_required, 1.2 with handshake_failure.
    return { code, alert: opts.ownAlert ?? fallback, received: false };
  }
  if (opts.ownAlert !== undefined) return { code: codeForAlert(opts.ownAlert), alert: opts.ownAlert, received: false };
  return {
    code: opts.established ? 'MALFORMED_RECORD' : 'HANDSHAKE_FAILED',
    alert: opts.established ? A.unexpected_message : A.handshake_failure,
    received: false,
  };
}
