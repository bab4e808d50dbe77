/**
 * An annotated text rendering of {@link FlightSummary}, in the spirit of
 * subtls's annotated hex dumps: one line per record (offset, header bytes
 * split into their fields, type, version, length), then the handshake
 * messages that start in it, indented, with what the hellos reveal.
 *
 * @example
 * ```ts
 * import { inspectFlight } from './records.js';
 * process.stdout.write(formatInspection(inspectFlight(body)));
 * // TLS flight: 1 record, 517 bytes
 * // @0     16 0301 0200   handshake   TLSv1.0   512 B   client_hello
 * //          client_hello   508 B
 * //            server_name     api.example
 * //            ...
 * ```
 * @module
 */
import type { ClientHelloInfo, FlightSummary, RecordSummary, ServerHelloInfo } from './records.js';
import type { NamedValue } from './tls-names.js';

const WIDTH = 100;

/** Escapes control characters so that text from a summary cannot drive a terminal. */
function safe(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
}

function hex4(v: number): string {
  return '0x' + v.toString(16).padStart(4, '0');
}

function nv(v: NamedValue): string {
  return v.name.startsWith('0x') ? v.name : `${v.name} (${hex4(v.value)})`;
}

/** Splits a header's hex into its fields: TLS type|version|length, DTLS type|version|epoch|seq|[cid|]length. */
function headerFields(r: RecordSummary): string {
  const h = r.header;
  if (r.epoch === undefined) return [h.slice(0, 2), h.slice(2, 6), h.slice(6, 10)].join(' ');
  const fields = [h.slice(0, 2), h.slice(2, 6), h.slice(6, 10), h.slice(10, 22)];
  if (h.length > 26) fields.push(h.slice(22, h.length - 4));
  fields.push(h.slice(h.length - 4));
  return fields.join(' ');
}

/** `label  a, b, c` wrapped at WIDTH with continuation lines aligned under the first item. */
function field(out: string[], indent: string, label: string, items: readonly string[]): void {
  const head = `${indent}${label.padEnd(16)}`;
  const pad = ' '.repeat(head.length);
  let line = head;
  items.forEach((item, i) => {
    const piece = safe(item) + (i < items.length - 1 ? ',' : '');
    if (line.length > head.length && line.length + 1 + piece.length > WIDTH) {
      out.push(line);
      line = pad + piece;
    } else {
      line += (line.length > head.length ? ' ' : '') + piece;
    }
  });
  out.push(line);
}

function clientHelloLines(out: string[], ind: string, ch: ClientHelloInfo): void {
  field(out, ind, 'legacy_version', [`${ch.legacyVersionName} (${hex4(ch.legacyVersion)})`]);
  field(out, ind, 'random', [ch.random]);
  field(out, ind, 'session_id', [ch.sessionId.length === 0 ? '(empty)' : `${ch.sessionId.length / 2} B ${ch.sessionId}`]);
  if (ch.cookie !== undefined) field(out, ind, 'cookie', [ch.cookie.length === 0 ? '(empty)' : ch.cookie]);
  if (ch.serverName !== undefined) field(out, ind, 'server_name', [ch.serverName]);
  if (ch.alpn) field(out, ind, 'alpn', ch.alpn);
  if (ch.supportedVersions) field(out, ind, 'versions', ch.supportedVersions);
  field(out, ind, `cipher_suites`, ch.cipherSuites.map(nv));
  if (ch.supportedGroups) field(out, ind, 'groups', ch.supportedGroups.map((g) => g.name));
  if (ch.keyShareGroups) field(out, ind, 'key_share', ch.keyShareGroups.map((g) => g.name));
  if (ch.signatureAlgorithms) field(out, ind, 'sig_algs', ch.signatureAlgorithms.map((s) => s.name));
  if (ch.pskKeyExchangeModes) field(out, ind, 'psk_modes', ch.pskKeyExchangeModes);
  if (ch.hasPreSharedKey) {
    const n = ch.pskIdentities ?? 0;
    field(out, ind, 'pre_shared_key', [`${n} ${n === 1 ? 'identity' : 'identities'} offered`]);
  }
  if (ch.hasEarlyData) field(out, ind, 'early_data', ['offered']);
  if (ch.hasCookie) field(out, ind, 'cookie_ext', ['echoed (after HelloRetryRequest)']);
  field(out, ind, 'compression', ch.compressionMethods.map((c) => (c === 0 ? 'null' : String(c))));
  field(out, ind, 'extensions', ch.extensions.map((e) => `${e.name}[${e.length}]`));
}

function serverHelloLines(out: string[], ind: string, sh: ServerHelloInfo): void {
  field(out, ind, 'version', [
    sh.selectedVersion === sh.legacyVersionName
      ? sh.selectedVersion
      : `${sh.selectedVersion} (legacy ${sh.legacyVersionName})`,
  ]);
  field(out, ind, 'cipher_suite', [nv(sh.cipherSuite)]);
  if (!sh.isHelloRetryRequest) field(out, ind, 'random', [sh.random]);
  if (sh.downgradeSentinel) field(out, ind, 'downgrade', [`sentinel for ${sh.downgradeSentinel}`]);
  field(out, ind, 'session_id', [sh.sessionId.length === 0 ? '(empty)' : `${sh.sessionId.length / 2} B ${sh.sessionId}`]);
  if (sh.keyShareGroup) field(out, ind, sh.isHelloRetryRequest ? 'wants group' : 'key_share', [sh.keyShareGroup.name]);
  if (sh.alpn !== undefined) field(out, ind, 'alpn', [sh.alpn]);
  if (sh.hasPreSharedKey) field(out, ind, 'pre_shared_key', [`identity ${sh.selectedPskIdentity ?? '?'} selected`]);
  if (sh.hasCookie) field(out, ind, 'cookie', ['sent']);
  field(out, ind, 'extensions', sh.extensions.map((e) => `${e.name}[${e.length}]`));
}

/**
 * Renders an inspection as annotated text, one record per line with its
 * handshake details indented below. Peer-chosen text (SNI, ALPN) arrives
 * escaped from the parser and is escaped again here, so the output is safe
 * to print on a terminal.
 */
export function formatInspection(summary: FlightSummary): string {
  const out: string[] = [];
  const n = summary.records.length;
  out.push(`${summary.protocol} flight: ${n} record${n === 1 ? '' : 's'}, ${summary.length} bytes`);
  if (n === 0) out.push('  (empty flight)');
  const offWidth = Math.max(4, String(summary.length).length + 1);
  const hdrWidth = Math.max(0, ...summary.records.map((r) => headerFields(r).length));
  const typeWidth = Math.max(0, ...summary.records.map((r) => r.contentTypeName.length));
  let shownClientHello = false;
  let shownServerHello = false;
  for (const r of summary.records) {
    const what = r.handshake?.join(', ') ?? r.note ?? '';
    const dtls = r.epoch !== undefined ? `  epoch ${r.epoch} seq ${r.sequence ?? 0}` : '';
    out.push(
      `@${String(r.offset).padEnd(offWidth)} ${headerFields(r).padEnd(hdrWidth)}  ${r.contentTypeName.padEnd(typeWidth)}  ` +
        `${r.versionName.padEnd(8)} ${String(r.length).padStart(5)} B${dtls}  ${safe(what)}`.trimEnd(),
    );
    for (const m of summary.handshake.filter((h) => h.recordOffset === r.offset)) {
      const seq = m.messageSeq !== undefined ? `, message_seq ${m.messageSeq}` : '';
      out.push(`         ${m.name}  ${m.length} B${seq}`);
      const ind = '           ';
      if (m.name === 'client_hello' && summary.clientHello && !shownClientHello) {
        shownClientHello = true;
        clientHelloLines(out, ind, summary.clientHello);
      } else if ((m.name === 'server_hello' || m.name === 'hello_retry_request') && summary.serverHello && !shownServerHello) {
        shownServerHello = true;
        serverHelloLines(out, ind, summary.serverHello);
      } else if (m.name === 'hello_verify_request' && summary.helloVerifyRequest) {
        field(out, ind, 'server_version', [summary.helloVerifyRequest.serverVersionName]);
        field(out, ind, 'cookie', [summary.helloVerifyRequest.cookie || '(empty)']);
      } else if (m.certificateLengths) {
        field(out, ind, 'certificates', m.certificateLengths.map((l) => `${l} B`));
      }
    }
  }
  for (const note of summary.notes) out.push(`note: ${safe(note)}`);
  if (summary.error) out.push(`error: ${summary.error.code}: ${safe(summary.error.message)}`);
  return out.join('\n') + '\n';
}
