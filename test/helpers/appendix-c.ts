/**
 * Appendix C of the draft (example handshake), from real runs: for each
 * configuration a full exchange over the HTTP binding (the first request
 * riding with the final flight, then one more) or the CoAP binding (the
 * handshake, two inner CoAP requests, the DELETE), written to
 * docs/appendix-c/ as three files:
 *
 * - `<name>.json`: every HTTP exchange (method, path, headers, status, the
 *   body in base64 and how it splits into flight and protected message) or
 *   CoAP exchange (code, options, Content-Format, the payload in base64), the
 *   key block, and every protected message with its plaintext;
 * - `<name>.keylog`: the client's secrets in SSLKEYLOGFILE format (Wireshark
 *   decrypts every record with it);
 * - `<name>.txt`: an annotated hex dump of every body: each record header
 *   field, each plaintext handshake message and the fields of the hellos
 *   (and of every CoAP option).
 *
 * Both bindings are captured the same way: the client's key log, and the
 * client's own record of each exchange as it went (the HTTP client's
 * `transport.fetch`, the CoAP client's `onExchange`).
 *
 * The key block comes from the key log through the RFC exporter formulas
 * (test/vectors/exporter.ts), so the protected messages can be opened with
 * nothing but these files. Regenerate (all, or the examples named):
 *   node --import tsx test/helpers/appendix-c.ts [NAME ...]
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createAtlsHandler } from '../../src/http/server.js';
import { createAtlsClient } from '../../src/http/client.js';
import { getEngine } from '../../src/engines/index.js';
import type { TlsClientConfig, TlsServerConfig } from '../../src/engines/types.js';
import { parseClientHello, parseServerHello, splitRecords, inspectFlight } from '../../src/records.js';
import { HEADER_FLIGHT_LENGTH, MEDIA_TYPE_PROTECTED } from '../../src/http/constants.js';
import { ProtectedChannel, aeadForSuite, keyBlockLength, EXPORTER_LABEL } from '../../src/protect/index.js';
import { cipherSuiteName, contentTypeName, extensionName, handshakeTypeName, versionName } from '../../src/tls-names.js';
import { tls12Exporter, tls13Exporter } from '../vectors/exporter.js';
import { AtlsCoapServer } from '../../src/coap/server.js';
import { AtlsCoapClient } from '../../src/coap/client.js';
import { CoapCode, OptionNumber, codeToString } from '../../src/coap/constants.js';
import { decodeUint, encodeOptionsAndPayload, encodeUint, getUintOption, sortOptions, type CoapOption } from '../../src/coap/packet.js';
import { ByteWriter } from '../../src/bytes.js';
import { testPki, type TestPki } from './pki.js';
import { TEST_PSK } from './http.js';
import { renderHttpExample, type Captured } from './http-example.js';

export const APPENDIX_DIR = new URL('../../docs/appendix-c/', import.meta.url);

/** One example: how both ends are configured, and over which binding (default HTTP). */
export interface Example {
  name: string;
  title: string;
  binding?: 'coap';
  server: (pki: TestPki) => TlsServerConfig;
  client: (pki: TestPki) => TlsClientConfig;
}

const v12 = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' } as const;
const v13 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

export const EXAMPLES: Example[] = [
  {
    name: 'tls13-certificate',
    title: 'TLS 1.3, server certificate (ECDSA P-256), TLS_AES_128_GCM_SHA256',
    server: (p) => ({ ...v13, ciphersuites: 'TLS_AES_128_GCM_SHA256', cert: p.server.cert, key: p.server.key }),
    client: (p) => ({ ...v13, ciphersuites: 'TLS_AES_128_GCM_SHA256', ca: p.ca.cert, serverName: 'localhost' }),
  },
  {
    name: 'tls12-certificate',
    title: 'TLS 1.2, server certificate (ECDSA P-256), ECDHE-ECDSA-AES128-GCM-SHA256, Extended Master Secret',
    server: (p) => ({ ...v12, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', cert: p.server.cert, key: p.server.key }),
    client: (p) => ({ ...v12, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256', ca: p.ca.cert, serverName: 'localhost' }),
  },
  {
    name: 'tls13-psk',
    title: `TLS 1.3, external PSK "${TEST_PSK.identity}" = ${Buffer.from(TEST_PSK.key).toString('hex')}, psk_dhe_ke, TLS_AES_128_GCM_SHA256`,
    server: () => ({ ...v13, ciphersuites: 'TLS_AES_128_GCM_SHA256', pskLookup: (id) => (id === TEST_PSK.identity ? TEST_PSK.key : undefined) }),
    client: () => ({ ...v13, ciphersuites: 'TLS_AES_128_GCM_SHA256', psk: TEST_PSK, serverName: 'localhost' }),
  },
  {
    name: 'coap-tls13-psk',
    binding: 'coap',
    title: `CoAP, TLS 1.3, external PSK "${TEST_PSK.identity}" = ${Buffer.from(TEST_PSK.key).toString('hex')}, psk_dhe_ke, TLS_AES_128_GCM_SHA256, inner CoAP`,
    server: () => ({ ...v13, ciphersuites: 'TLS_AES_128_GCM_SHA256', pskLookup: (id) => (id === TEST_PSK.identity ? TEST_PSK.key : undefined) }),
    client: () => ({ ...v13, ciphersuites: 'TLS_AES_128_GCM_SHA256', psk: TEST_PSK, serverName: 'localhost' }),
  },
];

/** One HTTP message of the exchange. */
export interface ExampleMessage {
  headers: Array<[string, string]>;
  /** The body, base64. */
  body: string;
  /** Bytes of TLS records at the start of the body (all of it for a flight, 0 for a protected message). */
  flightBytes: number;
}

export interface ExampleExchange {
  request: ExampleMessage & { method: string; target: string };
  response: ExampleMessage & { status: number };
}

/** A protected message of the exchange and what it carries (Binary HTTP, hex). */
export interface ExampleProtected {
  exchange: number;
  sender: 'client' | 'server';
  message: string;
  plaintext: string;
}

export interface ExampleFile {
  description: string;
  title: string;
  version: string;
  cipherSuite: string;
  keyBlock: string;
  exchanges: ExampleExchange[];
  protected: ExampleProtected[];
}

/** One CoAP option: string options as text, uint options as numbers, others as hex. */
export interface ExampleCoapOption {
  number: number;
  name: string;
  value: string | number;
}

/** One CoAP message of the exchange (after block-wise reassembly: there is none at these sizes). */
export interface ExampleCoapMessage {
  code: string;
  options: ExampleCoapOption[];
  contentFormat: number | null;
  /** The payload, base64. */
  body: string;
  /** Bytes of TLS records (all of the payload for Content-Format `records`, 0 for a protected message). */
  flightBytes: number;
}

/** The CoAP example's file: as {@link ExampleFile}, with CoAP exchanges (plaintexts are inner CoAP messages). */
export interface ExampleCoapFile extends Omit<ExampleFile, 'exchanges'> {
  binding: 'coap';
  exchanges: Array<{ request: ExampleCoapMessage; response: ExampleCoapMessage }>;
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function messageOf(headers: Headers, body: Uint8Array): ExampleMessage {
  const list: Array<[string, string]> = [];
  headers.forEach((v, k) => {
    if (k !== 'set-cookie') list.push([k, v]);
  });
  for (const sc of headers.getSetCookie()) list.push(['set-cookie', sc]);
  const split = headers.get(HEADER_FLIGHT_LENGTH);
  const protectedOnly = (headers.get('content-type') ?? '').startsWith(MEDIA_TYPE_PROTECTED);
  return { headers: list, body: b64(body), flightBytes: protectedOnly ? 0 : split !== null ? Number(split) : body.length };
}

/** The first exchange whose answer carries records: the ClientHello and the ServerHello (over CoAP the address check's 4.01 + Echo may come first). */
export function helloExchange<X extends { response: { flightBytes: number } }>(exchanges: X[]): X {
  const x = exchanges.find((e) => e.response.flightBytes > 0);
  if (!x) throw new Error('no exchange answered with a flight');
  return x;
}

/** The key block both ends derived, recomputed from the client's key log and the hello randoms. */
export function keyBlockFromKeyLog(keyLog: string[], cipherSuite: string, version: string, clientHello: Uint8Array, serverHello: Uint8Array): Uint8Array {
  const spec = aeadForSuite(cipherSuite);
  const length = keyBlockLength(spec);
  const clientRandom = Buffer.from(parseClientHello(clientHello).random, 'hex');
  const secret = (label: string): Buffer => {
    const line = keyLog.find((l) => l.startsWith(`${label} ${clientRandom.toString('hex')} `));
    if (!line) throw new Error(`no ${label} in the key log`);
    return Buffer.from(line.split(' ')[2]!, 'hex');
  };
  const hash = /SHA384$/.test(cipherSuite) ? 'sha384' : 'sha256';
  if (version === 'TLSv1.3') return tls13Exporter(hash, secret('EXPORTER_SECRET'), EXPORTER_LABEL, length);
  const serverRandom = Buffer.from(parseServerHello(serverHello).random, 'hex');
  return tls12Exporter(hash, secret('CLIENT_RANDOM'), clientRandom, serverRandom, EXPORTER_LABEL, length);
}

/** What openAll needs of a file: the suite, the key block, and each message's body and split. */
type Openable = Pick<ExampleFile, 'cipherSuite' | 'keyBlock'> & {
  exchanges: Array<{ request: { body: string; flightBytes: number }; response: { body: string; flightBytes: number } }>;
};

/** Opens every protected message of the exchanges with the key block, in order. */
export function openAll(file: Openable): ExampleProtected[] {
  const spec = aeadForSuite(file.cipherSuite);
  const block = (): Buffer => Buffer.from(file.keyBlock, 'hex');
  const asServer = ProtectedChannel.fromKeyBlock(block(), spec, 'server'); // opens what the client sealed
  const asClient = ProtectedChannel.fromKeyBlock(block(), spec, 'client');
  const out: ExampleProtected[] = [];
  file.exchanges.forEach((x, i) => {
    for (const [sender, m] of [['client', x.request], ['server', x.response]] as const) {
      const body = Buffer.from(m.body, 'base64');
      if (m.flightBytes >= body.length) continue;
      const message = body.subarray(m.flightBytes);
      const plaintext = (sender === 'client' ? asServer : asClient).open(message);
      out.push({ exchange: i, sender, message: hex(message), plaintext: hex(plaintext) });
    }
  });
  return out;
}

const KEY_BLOCK_NOTE =
  'keyBlock = client_write_key | server_write_key | client_write_IV | server_write_IV, derived from the .keylog file with the RFC 5705 / RFC 8446 §7.5 exporter (label application-layer-tls, no context).';

/** Runs one HTTP example (node engine, for its key log) and returns the three files' contents. */
export async function capture(example: Example, pki: TestPki): Promise<{ json: ExampleFile; keyLog: string; dump: string }> {
  const engine = getEngine('node');
  const keyLog: string[] = [];
  const handler = createAtlsHandler({
    tls: example.server(pki),
    engine,
    app: (req) => new Response(`hello ${new URL(req.url).pathname}`, { headers: { 'content-type': 'text/plain' } }),
  });
  const exchanges: ExampleExchange[] = [];
  let cipherSuite = '';
  let version = '';
  const client = createAtlsClient({
    tls: { ...example.client(pki), keyLog: (line) => keyLog.push(line) },
    engine,
    resumption: false,
    onEvent: (e) => {
      if (e.type === 'handshake') {
        cipherSuite = e.info.cipherSuite;
        version = e.info.version;
      }
    },
    transport: {
      fetch: async (request) => {
        const requestBody = new Uint8Array(await request.clone().arrayBuffer());
        const response = await handler(request);
        const responseBody = new Uint8Array(await response.clone().arrayBuffer());
        const url = new URL(request.url);
        exchanges.push({
          request: { method: request.method, target: url.pathname, ...messageOf(request.headers, requestBody) },
          response: { status: response.status, ...messageOf(response.headers, responseBody) },
        });
        return response;
      },
    },
  });
  try {
    await (await client.fetch('http://localhost/a')).text();
    await (await client.fetch('http://localhost/b')).text();
  } finally {
    await client.close();
    await handler.close();
  }
  const first = exchanges[0]!;
  const keyBlock = keyBlockFromKeyLog(keyLog, cipherSuite, version, Buffer.from(first.request.body, 'base64'), Buffer.from(first.response.body, 'base64'));
  const base = {
    description: `A real ATLS exchange over HTTP (docs/protocol.md §5.13). Bodies in base64; flightBytes = TLS records at the start of the body, the rest is one protected message (§4). ${KEY_BLOCK_NOTE}`,
    title: example.title,
    version,
    cipherSuite,
    keyBlock: hex(keyBlock),
    exchanges,
  };
  const json: ExampleFile = { ...base, protected: openAll(base) };
  return { json, keyLog: `${keyLog.join('\n')}\n`, dump: annotate(json) };
}

/** Option names by number, from the constants' keys (UriPath -> Uri-Path). */
const OPTION_NAMES = new Map<number, string>(Object.entries(OptionNumber).map(([k, v]) => [v, k.replace(/([a-z])([A-Z])/g, '$1-$2')]));
const STRING_OPTIONS = new Set<number>([OptionNumber.UriHost, OptionNumber.LocationPath, OptionNumber.UriPath, OptionNumber.UriQuery, OptionNumber.LocationQuery, OptionNumber.ProxyUri, OptionNumber.ProxyScheme]);
const UINT_OPTIONS = new Set<number>([OptionNumber.UriPort, OptionNumber.ContentFormat, OptionNumber.MaxAge, OptionNumber.Accept, OptionNumber.Size1, OptionNumber.Size2]);

function coapOptionOf(o: CoapOption): ExampleCoapOption {
  const name = OPTION_NAMES.get(o.number) ?? `option ${o.number}`;
  const value = STRING_OPTIONS.has(o.number) ? Buffer.from(o.value).toString('utf8') : UINT_OPTIONS.has(o.number) ? decodeUint(o.value) : hex(o.value);
  return { number: o.number, name, value };
}

function coapMessageOf(code: number, options: CoapOption[], payload: Uint8Array, recordsFormat: number): ExampleCoapMessage {
  const contentFormat = getUintOption({ options }, OptionNumber.ContentFormat) ?? null;
  return {
    code: `${codeToString(code)} ${CODE_NAMES.get(code) ?? ''}`.trimEnd(),
    options: sortOptions(options).map(coapOptionOf),
    contentFormat,
    body: b64(payload),
    flightBytes: contentFormat === recordsFormat ? payload.length : 0,
  };
}

const CODE_NAMES = new Map<number, string>(Object.entries(CoapCode).map(([k, v]) => [v, k.replace(/([a-z])([A-Z])/g, '$1 $2')]));

/** The option back as the client sent it (the inverse of {@link coapOptionOf}). */
function coapOptionBack(o: ExampleCoapOption): CoapOption {
  if (typeof o.value === 'number') return { number: o.number, value: encodeUint(o.value) };
  return { number: o.number, value: STRING_OPTIONS.has(o.number) ? Buffer.from(o.value, 'utf8') : Buffer.from(o.value, 'hex') };
}

/**
 * Runs the CoAP example: an `AtlsCoapServer` on loopback, the client's
 * handshake, GET /a and GET /b as inner CoAP requests, and the DELETE that
 * ends the session (node engine, for its key log).
 */
export async function captureCoap(example: Example, pki: TestPki): Promise<{ json: ExampleCoapFile; keyLog: string; dump: string }> {
  const engine = getEngine('node');
  const keyLog: string[] = [];
  const server = await AtlsCoapServer.listen({
    tls: example.server(pki),
    engine,
    handler: (req) => ({ code: CoapCode.Content, contentFormat: 0, payload: `hello ${req.path}` }),
  });
  const exchanges: ExampleCoapFile['exchanges'] = [];
  const recordsFormat = 65000;
  const client = new AtlsCoapClient({
    url: server.url,
    tls: { ...example.client(pki), keyLog: (line) => keyLog.push(line) },
    engine,
    onExchange: ({ request, response }) =>
      exchanges.push({
        request: coapMessageOf(request.code, request.options, request.payload, recordsFormat),
        response: coapMessageOf(response.code, response.options, response.payload, recordsFormat),
      }),
  });
  let info;
  try {
    info = await client.connect();
    await client.request({ method: 'GET', pathname: '/a' });
    await client.request({ method: 'GET', pathname: '/b' });
  } finally {
    await client.close();
    await server.close();
  }
  const first = helloExchange(exchanges);
  const keyBlock = keyBlockFromKeyLog(keyLog, info.cipherSuite, info.version, Buffer.from(first.request.body, 'base64'), Buffer.from(first.response.body, 'base64'));
  const base = {
    description: `A real ATLS exchange over CoAP (docs/protocol.md §5.13, §6). Payloads in base64 after block-wise reassembly (none was needed); Content-Format 65000 = TLS records (flightBytes = all of it), 65001 = one protected message (§4) whose plaintext is an inner CoAP message (§6.6). Message type, id and token are the transport's and not recorded. ${KEY_BLOCK_NOTE}`,
    title: example.title,
    version: info.version,
    cipherSuite: info.cipherSuite,
    keyBlock: hex(keyBlock),
    binding: 'coap' as const,
    exchanges,
  };
  const json: ExampleCoapFile = { ...base, protected: openAll(base) };
  return { json, keyLog: `${keyLog.join('\n')}\n`, dump: annotateCoap(json) };
}

/** Each option's bytes as encoded in the message (RFC 7252 §3.1): the encoding of the options up to it, less that of those before. */
function optionLines(options: ExampleCoapOption[]): string[] {
  const encoded = (n: number): Uint8Array => {
    const w = new ByteWriter(64);
    encodeOptionsAndPayload(w, options.slice(0, n).map(coapOptionBack), new Uint8Array(0));
    return w.finish();
  };
  return options.map((o, i) => {
    const bytes = encoded(i + 1).subarray(encoded(i).length);
    return `    ${hex(bytes).padEnd(24)}  ${o.name} (${o.number}): ${typeof o.value === 'string' && STRING_OPTIONS.has(o.number) ? JSON.stringify(o.value) : o.value}`;
  });
}

/** The whole dump of the CoAP example: code, options byte by byte, then the payload as {@link annotateBody} reads it. */
export function annotateCoap(file: ExampleCoapFile): string {
  const out = [`# ${file.title}`, `# ${file.version} ${file.cipherSuite}; key block ${file.keyBlock}`, ''];
  file.exchanges.forEach((x, i) => {
    const req = Buffer.from(x.request.body, 'base64');
    const res = Buffer.from(x.response.body, 'base64');
    out.push(`## exchange ${i + 1}: ${x.request.code}, ${req.length} bytes -> ${x.response.code}, ${res.length} bytes`);
    out.push(`> ${x.request.code}`, ...optionLines(x.request.options), ...annotateBody(req, x.request.flightBytes));
    out.push(`< ${x.response.code}`, ...optionLines(x.response.options), ...annotateBody(res, x.response.flightBytes));
    for (const p of file.protected.filter((p) => p.exchange === i)) out.push(`  ${p.sender} protected message opens to (inner CoAP): ${p.plaintext || '(empty)'}`);
    out.push('');
  });
  return out.join('\n');
}

/** A byte reader that names what it takes. */
class Fields {
  private at = 0;
  readonly lines: string[] = [];
  constructor(
    private readonly b: Uint8Array,
    private readonly indent: string,
  ) {}
  get left(): number {
    return this.b.length - this.at;
  }
  take(n: number, name: string, note = ''): Uint8Array {
    const v = this.b.subarray(this.at, this.at + n);
    this.lines.push(`${this.indent}${hex(v).padEnd(Math.min(2 * n, 64))}  ${name}${note ? `: ${note}` : ''}`.replace(/^(\s*)(\S{64})\S+/, '$1$2...'));
    this.at += n;
    return v;
  }
  num(n: number, name: string, describe?: (v: number) => string): number {
    const v = this.b.subarray(this.at, this.at + n).reduce((a, x) => a * 256 + x, 0);
    this.take(n, name, describe ? describe(v) : String(v));
    return v;
  }
  vector(lenBytes: number, name: string): Uint8Array {
    const n = this.num(lenBytes, `${name} length`);
    return this.take(n, name);
  }
}

/** The fields of a ClientHello or ServerHello body (RFC 8446 §4.1.2, §4.1.3; RFC 5246 §7.4.1). */
function helloFields(body: Uint8Array, client: boolean, indent: string): string[] {
  const f = new Fields(body, indent);
  f.num(2, 'legacy_version', (v) => versionName(v));
  f.take(32, 'random');
  f.vector(1, client ? 'legacy_session_id' : 'legacy_session_id_echo');
  if (client) {
    const suites = f.num(2, 'cipher_suites length');
    for (let i = 0; i < suites / 2; i++) f.num(2, 'cipher_suite', (v) => cipherSuiteName(v));
    f.vector(1, 'legacy_compression_methods');
  } else {
    f.num(2, 'cipher_suite', (v) => cipherSuiteName(v));
    f.num(1, 'legacy_compression_method');
  }
  if (f.left === 0) return f.lines;
  f.num(2, 'extensions length');
  while (f.left >= 4) {
    const type = f.num(2, 'extension type', (v) => extensionName(v));
    const n = f.num(2, `${extensionName(type)} length`);
    if (n > 0) f.take(n, `${extensionName(type)} data`);
  }
  return f.lines;
}

/** The annotated hex dump of one body. */
export function annotateBody(body: Uint8Array, flightBytes: number): string[] {
  const out: string[] = [];
  const flight = body.subarray(0, flightBytes);
  const encrypted = flight.length > 0 ? inspectFlight(flight, { dtls: false }).records.map((r) => r.encrypted) : [];
  splitRecords(flight).forEach((r, i) => {
    out.push(`  record @${r.offset}: ${contentTypeName(r.contentType)}, ${r.length} bytes${encrypted[i] ? ', encrypted' : ''}`);
    const h = new Fields(flight.subarray(r.offset, r.offset + 5), '    ');
    h.num(1, 'content_type', (v) => contentTypeName(v));
    h.num(2, 'legacy_record_version', (v) => versionName(v));
    h.num(2, 'length');
    out.push(...h.lines);
    const f = new Fields(r.fragment, '    ');
    if (r.contentType === 22 && !encrypted[i]) {
      while (f.left >= 4) {
        const type = f.num(1, 'handshake msg_type', (v) => handshakeTypeName(v));
        const len = f.num(3, `${handshakeTypeName(type)} length`);
        const msg = r.fragment.subarray(r.fragment.length - f.left, r.fragment.length - f.left + len);
        if (type === 1 || type === 2) {
          out.push(...f.lines.splice(0), ...helloFields(msg, type === 1, '      '));
          f.take(len, '(the hello above)');
          f.lines.pop();
        } else {
          f.take(len, handshakeTypeName(type));
        }
      }
      out.push(...f.lines);
    } else {
      f.take(r.fragment.length, encrypted[i] ? 'encrypted_record (AEAD ciphertext and tag)' : 'fragment');
      out.push(...f.lines);
    }
  });
  if (flightBytes < body.length) {
    const m = body.subarray(flightBytes);
    const f = new Fields(m, '    ');
    out.push(`  protected message @${flightBytes}: ${m.length} bytes (docs/protocol.md §4)`);
    const flags = f.num(1, 'flags', (v) => `version ${v >> 5}, reserved ${(v >> 3) & 3}, sequence number bytes ${(v & 7) + 1}`);
    f.num((flags & 7) + 1, 'sequence number');
    f.take(m.length - 1 - ((flags & 7) + 1), 'AEAD ciphertext and tag');
    out.push(...f.lines);
  }
  return out;
}

/** The whole dump of an example. */
export function annotate(file: ExampleFile): string {
  const out = [`# ${file.title}`, `# ${file.version} ${file.cipherSuite}; key block ${file.keyBlock}`, ''];
  file.exchanges.forEach((x, i) => {
    const req = Buffer.from(x.request.body, 'base64');
    const res = Buffer.from(x.response.body, 'base64');
    out.push(`## exchange ${i + 1}: POST ${x.request.target}, ${req.length} bytes -> ${x.response.status}, ${res.length} bytes`);
    out.push(`> ${x.request.method} ${x.request.target}`, ...x.request.headers.map(([k, v]) => `> ${k}: ${v}`), ...annotateBody(req, x.request.flightBytes));
    out.push(`< ${x.response.status}`, ...x.response.headers.map(([k, v]) => `< ${k}: ${v}`), ...annotateBody(res, x.response.flightBytes));
    for (const p of file.protected.filter((p) => p.exchange === i)) out.push(`  ${p.sender} protected message opens to (Binary HTTP): ${p.plaintext}`);
    out.push('');
  });
  return out.join('\n');
}

export const SECTION_START = '<!-- worked-example:start -->';
export const SECTION_END = '<!-- worked-example:end -->';

/** docs/protocol.md §5.10: the tls13-psk example rendered as HTTP messages, with its key block. */
export async function workedExample(file: ExampleFile): Promise<string> {
  const exchanges: Captured[] = file.exchanges.map((x) => {
    const requestBody = Buffer.from(x.request.body, 'base64');
    const responseBody = Buffer.from(x.response.body, 'base64');
    return {
      request: new Request(`http://localhost${x.request.target}`, { method: x.request.method, headers: x.request.headers, body: requestBody }),
      requestBody,
      response: new Response(responseBody, { status: x.response.status, headers: x.response.headers }),
      responseBody,
    };
  });
  const spec = aeadForSuite(file.cipherSuite);
  const k = spec.keyLength * 2;
  const block = file.keyBlock;
  const keys = [
    '```text',
    `key block          ${block}`,
    `client_write_key   ${block.slice(0, k)}`,
    `server_write_key   ${block.slice(k, 2 * k)}`,
    `client_write_IV    ${block.slice(2 * k, 2 * k + 24)}`,
    `server_write_IV    ${block.slice(2 * k + 24)}`,
    '```',
    '',
  ].join('\n');
  return `${keys}\n${await renderHttpExample(exchanges)}`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const pki = await testPki();
  mkdirSync(APPENDIX_DIR, { recursive: true });
  const wanted = process.argv.slice(2);
  for (const example of EXAMPLES.filter((e) => wanted.length === 0 || wanted.includes(e.name))) {
    const { json, keyLog, dump } = example.binding === 'coap' ? await captureCoap(example, pki) : await capture(example, pki);
    const psk = example.name === 'tls13-psk' ? (json as ExampleFile) : undefined;
    writeFileSync(new URL(`${example.name}.json`, APPENDIX_DIR), `${JSON.stringify(json, null, 2)}\n`);
    writeFileSync(new URL(`${example.name}.keylog`, APPENDIX_DIR), keyLog);
    writeFileSync(new URL(`${example.name}.txt`, APPENDIX_DIR), dump);
    console.log(`wrote docs/appendix-c/${example.name}.{json,keylog,txt}`);
    if (psk) {
      const docUrl = new URL('../protocol.md', APPENDIX_DIR);
      const doc = readFileSync(docUrl, 'utf8');
      const a = doc.indexOf(SECTION_START);
      const b = doc.indexOf(SECTION_END);
      if (a < 0 || b < 0) throw new Error('worked example markers not found in docs/protocol.md');
      writeFileSync(docUrl, `${doc.slice(0, a + SECTION_START.length)}\n${await workedExample(psk)}\n${doc.slice(b)}`);
      console.log('rewrote docs/protocol.md §5.10');
    }
  }
}
