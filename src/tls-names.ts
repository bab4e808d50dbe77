/**
 * IANA names for the TLS code points an inspector meets in practice: content
 * types, protocol versions, handshake types, cipher suites, named groups,
 * extensions and signature schemes. Values outside the tables print as hex
 * (`0x1234`); GREASE values (RFC 8701) print as `GREASE`.
 *
 * Sources: the IANA "TLS Parameters" registries, RFC 8446 §4.2 and §B.4,
 * RFC 8701 (GREASE), RFC 6655 / RFC 7251 (CCM), RFC 8442 (ECDHE-PSK),
 * RFC 7905 (ChaCha20), RFC 7919 (ffdhe), RFC 6209 (ARIA). The cipher suite names were checked
 * against `openssl ciphers -V -stdname` where OpenSSL knows the suite.
 *
 * @example
 * ```ts
 * cipherSuiteName(0x1301); // 'TLS_AES_128_GCM_SHA256'
 * groupName(0x1a1a);       // 'GREASE'
 * extensionName(0xabcd);   // '0xabcd'
 * ```
 * @module
 */

/** A code point with its name, JSON-friendly. */
export interface NamedValue {
  value: number;
  name: string;
}

/** `0x` + lower-case hex of `v`, zero-padded to `digits`. */
export function hexName(v: number, digits = 4): string {
  return '0x' + v.toString(16).padStart(digits, '0');
}

/** True for the 16-bit GREASE values 0x0a0a, 0x1a1a, ... 0xfafa (RFC 8701 §2). */
export function isGrease16(v: number): boolean {
  return (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);
}

/** True for the GREASE PskKeyExchangeMode values 0x0b, 0x2a, ... 0xe4 (RFC 8701 §2). */
export function isGreasePskMode(v: number): boolean {
  return v >= 0x0b && v <= 0xe4 && (v - 0x0b) % 0x1f === 0;
}

function table(entries: Record<number, string>): ReadonlyMap<number, string> {
  return new Map(Object.entries(entries).map(([k, v]) => [Number(k), v]));
}

/** RFC 8446 §5.1, RFC 6520 (heartbeat), RFC 9146 (tls12_cid). */
const CONTENT_TYPES = table({
  20: 'change_cipher_spec',
  21: 'alert',
  22: 'handshake',
  23: 'application_data',
  24: 'heartbeat',
  25: 'tls12_cid',
});

const VERSIONS = table({
  0x0300: 'SSLv3',
  0x0301: 'TLSv1.0',
  0x0302: 'TLSv1.1',
  0x0303: 'TLSv1.2',
  0x0304: 'TLSv1.3',
  0xfeff: 'DTLSv1.0',
  0xfefd: 'DTLSv1.2',
  0xfefc: 'DTLSv1.3',
});

/** RFC 8446 §4 and §B.3, RFC 6347 §4.3.2, RFC 8879, RFC 6066. */
const HANDSHAKE_TYPES = table({
  0: 'hello_request',
  1: 'client_hello',
  2: 'server_hello',
  3: 'hello_verify_request',
  4: 'new_session_ticket',
  5: 'end_of_early_data',
  6: 'hello_retry_request',
  8: 'encrypted_extensions',
  9: 'request_connection_id',
  10: 'new_connection_id',
  11: 'certificate',
  12: 'server_key_exchange',
  13: 'certificate_request',
  14: 'server_hello_done',
  15: 'certificate_verify',
  16: 'client_key_exchange',
  17: 'client_certificate_request',
  20: 'finished',
  21: 'certificate_url',
  22: 'certificate_status',
  23: 'supplemental_data',
  24: 'key_update',
  25: 'compressed_certificate',
  26: 'ekt_key',
  254: 'message_hash',
});

const CIPHER_SUITES = table({
  0x0000: 'TLS_NULL_WITH_NULL_NULL',
  0x000a: 'TLS_RSA_WITH_3DES_EDE_CBC_SHA',
  0x002f: 'TLS_RSA_WITH_AES_128_CBC_SHA',
  0x0032: 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA',
  0x0033: 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA',
  0x0035: 'TLS_RSA_WITH_AES_256_CBC_SHA',
  0x0038: 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA',
  0x0039: 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA',
  0x003c: 'TLS_RSA_WITH_AES_128_CBC_SHA256',
  0x003d: 'TLS_RSA_WITH_AES_256_CBC_SHA256',
  0x0040: 'TLS_DHE_DSS_WITH_AES_128_CBC_SHA256',
  0x0067: 'TLS_DHE_RSA_WITH_AES_128_CBC_SHA256',
  0x006a: 'TLS_DHE_DSS_WITH_AES_256_CBC_SHA256',
  0x006b: 'TLS_DHE_RSA_WITH_AES_256_CBC_SHA256',
  0x008c: 'TLS_PSK_WITH_AES_128_CBC_SHA',
  0x008d: 'TLS_PSK_WITH_AES_256_CBC_SHA',
  0x0090: 'TLS_DHE_PSK_WITH_AES_128_CBC_SHA',
  0x0091: 'TLS_DHE_PSK_WITH_AES_256_CBC_SHA',
  0x0094: 'TLS_RSA_PSK_WITH_AES_128_CBC_SHA',
  0x0095: 'TLS_RSA_PSK_WITH_AES_256_CBC_SHA',
  0x009c: 'TLS_RSA_WITH_AES_128_GCM_SHA256',
  0x009d: 'TLS_RSA_WITH_AES_256_GCM_SHA384',
  0x009e: 'TLS_DHE_RSA_WITH_AES_128_GCM_SHA256',
  0x009f: 'TLS_DHE_RSA_WITH_AES_256_GCM_SHA384',
  0x00a2: 'TLS_DHE_DSS_WITH_AES_128_GCM_SHA256',
  0x00a3: 'TLS_DHE_DSS_WITH_AES_256_GCM_SHA384',
  0x00a8: 'TLS_PSK_WITH_AES_128_GCM_SHA256',
  0x00a9: 'TLS_PSK_WITH_AES_256_GCM_SHA384',
  0x00aa: 'TLS_DHE_PSK_WITH_AES_128_GCM_SHA256',
  0x00ab: 'TLS_DHE_PSK_WITH_AES_256_GCM_SHA384',
  0x00ac: 'TLS_RSA_PSK_WITH_AES_128_GCM_SHA256',
  0x00ad: 'TLS_RSA_PSK_WITH_AES_256_GCM_SHA384',
  0x00ae: 'TLS_PSK_WITH_AES_128_CBC_SHA256',
  0x00af: 'TLS_PSK_WITH_AES_256_CBC_SHA384',
  0x00b2: 'TLS_DHE_PSK_WITH_AES_128_CBC_SHA256',
  0x00b3: 'TLS_DHE_PSK_WITH_AES_256_CBC_SHA384',
  0x00b6: 'TLS_RSA_PSK_WITH_AES_128_CBC_SHA256',
  0x00b7: 'TLS_RSA_PSK_WITH_AES_256_CBC_SHA384',
  0x00ff: 'TLS_EMPTY_RENEGOTIATION_INFO_SCSV',
  // RFC 8446 §B.4
  0x1301: 'TLS_AES_128_GCM_SHA256',
  0x1302: 'TLS_AES_256_GCM_SHA384',
  0x1303: 'TLS_CHACHA20_POLY1305_SHA256',
  0x1304: 'TLS_AES_128_CCM_SHA256',
  0x1305: 'TLS_AES_128_CCM_8_SHA256',
  0x5600: 'TLS_FALLBACK_SCSV',
  0xc009: 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA',
  0xc00a: 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA',
  0xc013: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA',
  0xc014: 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA',
  0xc023: 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256',
  0xc024: 'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384',
  0xc027: 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
  0xc028: 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384',
  0xc02b: 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
  0xc02c: 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
  0xc02f: 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
  0xc030: 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384',
  0xc035: 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA',
  0xc036: 'TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA',
  0xc037: 'TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA256',
  0xc038: 'TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA384',
  // RFC 6209 (ARIA, in OpenSSL's default list)
  0xc050: 'TLS_RSA_WITH_ARIA_128_GCM_SHA256',
  0xc051: 'TLS_RSA_WITH_ARIA_256_GCM_SHA384',
  0xc052: 'TLS_DHE_RSA_WITH_ARIA_128_GCM_SHA256',
  0xc053: 'TLS_DHE_RSA_WITH_ARIA_256_GCM_SHA384',
  0xc056: 'TLS_DHE_DSS_WITH_ARIA_128_GCM_SHA256',
  0xc057: 'TLS_DHE_DSS_WITH_ARIA_256_GCM_SHA384',
  0xc05c: 'TLS_ECDHE_ECDSA_WITH_ARIA_128_GCM_SHA256',
  0xc05d: 'TLS_ECDHE_ECDSA_WITH_ARIA_256_GCM_SHA384',
  0xc060: 'TLS_ECDHE_RSA_WITH_ARIA_128_GCM_SHA256',
  0xc061: 'TLS_ECDHE_RSA_WITH_ARIA_256_GCM_SHA384',
  // RFC 6655, RFC 7251
  0xc09c: 'TLS_RSA_WITH_AES_128_CCM',
  0xc09d: 'TLS_RSA_WITH_AES_256_CCM',
  0xc09e: 'TLS_DHE_RSA_WITH_AES_128_CCM',
  0xc09f: 'TLS_DHE_RSA_WITH_AES_256_CCM',
  0xc0a0: 'TLS_RSA_WITH_AES_128_CCM_8',
  0xc0a1: 'TLS_RSA_WITH_AES_256_CCM_8',
  0xc0a2: 'TLS_DHE_RSA_WITH_AES_128_CCM_8',
  0xc0a3: 'TLS_DHE_RSA_WITH_AES_256_CCM_8',
  0xc0a4: 'TLS_PSK_WITH_AES_128_CCM',
  0xc0a5: 'TLS_PSK_WITH_AES_256_CCM',
  0xc0a6: 'TLS_DHE_PSK_WITH_AES_128_CCM',
  0xc0a7: 'TLS_DHE_PSK_WITH_AES_256_CCM',
  0xc0a8: 'TLS_PSK_WITH_AES_128_CCM_8',
  0xc0a9: 'TLS_PSK_WITH_AES_256_CCM_8',
  0xc0aa: 'TLS_PSK_DHE_WITH_AES_128_CCM_8',
  0xc0ab: 'TLS_PSK_DHE_WITH_AES_256_CCM_8',
  0xc0ac: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM',
  0xc0ad: 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM',
  0xc0ae: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
  0xc0af: 'TLS_ECDHE_ECDSA_WITH_AES_256_CCM_8',
  // RFC 7905
  0xcca8: 'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  0xcca9: 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
  0xccaa: 'TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256',
  0xccab: 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256',
  0xccac: 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
  0xccad: 'TLS_DHE_PSK_WITH_CHACHA20_POLY1305_SHA256',
  0xccae: 'TLS_RSA_PSK_WITH_CHACHA20_POLY1305_SHA256',
  // RFC 8442
  0xd001: 'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256',
  0xd002: 'TLS_ECDHE_PSK_WITH_AES_256_GCM_SHA384',
  0xd003: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
  0xd005: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_SHA256',
});

/** RFC 8446 §4.2.7, RFC 7919, RFC 8734, draft-ietf-tls-ecdhe-mlkem. */
const GROUPS = table({
  23: 'secp256r1',
  24: 'secp384r1',
  25: 'secp521r1',
  26: 'brainpoolP256r1',
  27: 'brainpoolP384r1',
  28: 'brainpoolP512r1',
  29: 'x25519',
  30: 'x448',
  31: 'brainpoolP256r1tls13',
  32: 'brainpoolP384r1tls13',
  33: 'brainpoolP512r1tls13',
  256: 'ffdhe2048',
  257: 'ffdhe3072',
  258: 'ffdhe4096',
  259: 'ffdhe6144',
  260: 'ffdhe8192',
  512: 'MLKEM512',
  513: 'MLKEM768',
  514: 'MLKEM1024',
  4587: 'SecP256r1MLKEM768',
  4588: 'X25519MLKEM768',
  4589: 'SecP384r1MLKEM1024',
  25497: 'X25519Kyber768Draft00',
});

/** RFC 8446 §4.2 (the first group), then common others from the IANA registry. */
const EXTENSIONS = table({
  0: 'server_name',
  1: 'max_fragment_length',
  5: 'status_request',
  10: 'supported_groups',
  13: 'signature_algorithms',
  14: 'use_srtp',
  15: 'heartbeat',
  16: 'application_layer_protocol_negotiation',
  18: 'signed_certificate_timestamp',
  19: 'client_certificate_type',
  20: 'server_certificate_type',
  21: 'padding',
  41: 'pre_shared_key',
  42: 'early_data',
  43: 'supported_versions',
  44: 'cookie',
  45: 'psk_key_exchange_modes',
  47: 'certificate_authorities',
  48: 'oid_filters',
  49: 'post_handshake_auth',
  50: 'signature_algorithms_cert',
  51: 'key_share',
  // others seen in practice
  2: 'client_certificate_url',
  3: 'trusted_ca_keys',
  4: 'truncated_hmac',
  6: 'user_mapping',
  7: 'client_authz',
  8: 'server_authz',
  9: 'cert_type',
  11: 'ec_point_formats',
  12: 'srp',
  17: 'status_request_v2',
  22: 'encrypt_then_mac',
  23: 'extended_master_secret',
  24: 'token_binding',
  25: 'cached_info',
  27: 'compress_certificate',
  28: 'record_size_limit',
  34: 'delegated_credential',
  35: 'session_ticket',
  53: 'connection_id_deprecated',
  54: 'connection_id',
  57: 'quic_transport_parameters',
  13172: 'next_protocol_negotiation',
  17513: 'application_settings_old',
  17613: 'application_settings',
  65037: 'encrypted_client_hello',
  65281: 'renegotiation_info',
});

/** RFC 8446 §4.2.3, RFC 8734; 0x0201..0x0603 pairs of RFC 5246 §7.4.1.4.1. */
const SIGNATURE_SCHEMES = table({
  0x0201: 'rsa_pkcs1_sha1',
  0x0202: 'dsa_sha1',
  0x0203: 'ecdsa_sha1',
  0x0301: 'rsa_pkcs1_sha224',
  0x0302: 'dsa_sha224',
  0x0303: 'ecdsa_sha224',
  0x0401: 'rsa_pkcs1_sha256',
  0x0402: 'dsa_sha256',
  0x0403: 'ecdsa_secp256r1_sha256',
  0x0501: 'rsa_pkcs1_sha384',
  0x0502: 'dsa_sha384',
  0x0503: 'ecdsa_secp384r1_sha384',
  0x0601: 'rsa_pkcs1_sha512',
  0x0602: 'dsa_sha512',
  0x0603: 'ecdsa_secp521r1_sha512',
  0x0804: 'rsa_pss_rsae_sha256',
  0x0805: 'rsa_pss_rsae_sha384',
  0x0806: 'rsa_pss_rsae_sha512',
  0x0807: 'ed25519',
  0x0808: 'ed448',
  0x0809: 'rsa_pss_pss_sha256',
  0x080a: 'rsa_pss_pss_sha384',
  0x080b: 'rsa_pss_pss_sha512',
  0x081a: 'ecdsa_brainpoolP256r1tls13_sha256',
  0x081b: 'ecdsa_brainpoolP384r1tls13_sha384',
  0x081c: 'ecdsa_brainpoolP512r1tls13_sha512',
});

/** RFC 8446 §4.2.9. */
const PSK_MODES = table({ 0: 'psk_ke', 1: 'psk_dhe_ke' });

function lookup16(t: ReadonlyMap<number, string>, v: number): string {
  return t.get(v) ?? (isGrease16(v) ? 'GREASE' : hexName(v));
}

/** Record content type name (`handshake`), or `0x..` when unknown. */
export function contentTypeName(v: number): string {
  return CONTENT_TYPES.get(v) ?? hexName(v, 2);
}

/** Protocol version name (`TLSv1.3`, `DTLSv1.2`, `GREASE`), or `0x....`. */
export function versionName(v: number): string {
  return lookup16(VERSIONS, v);
}

/** Handshake message type name (`client_hello`), or `0x..`. */
export function handshakeTypeName(v: number): string {
  return HANDSHAKE_TYPES.get(v) ?? hexName(v, 2);
}

/** IANA cipher suite name (`TLS_AES_128_GCM_SHA256`), `GREASE`, or `0x....`. */
export function cipherSuiteName(v: number): string {
  return lookup16(CIPHER_SUITES, v);
}

/** Named group (`x25519`, `secp256r1`, `ffdhe2048`), `GREASE`, or `0x....`. */
export function groupName(v: number): string {
  return lookup16(GROUPS, v);
}

/** Extension name (`server_name`), `GREASE`, or `0x....`. */
export function extensionName(v: number): string {
  return lookup16(EXTENSIONS, v);
}

/** Signature scheme name (`ecdsa_secp256r1_sha256`), `GREASE`, or `0x....`. */
export function signatureSchemeName(v: number): string {
  return lookup16(SIGNATURE_SCHEMES, v);
}

/** PSK key exchange mode name (`psk_dhe_ke`), `GREASE`, or `0x..`. */
export function pskModeName(v: number): string {
  return PSK_MODES.get(v) ?? (isGreasePskMode(v) ? 'GREASE' : hexName(v, 2));
}

/** A {@link NamedValue} from a value and a naming function. */
export function named(value: number, nameOf: (v: number) => string): NamedValue {
  return { value, name: nameOf(value) };
}
