/**
 * `atls fetch URL`: one request through ATLS, over HTTP(S) or CoAP, with
 * curl's habits where curl has an answer: `-d`/`--data-binary` (`@FILE`,
 * `@-`) imply POST, `-i`, `-o`, `-s`, `-f` (exit 22), `-L`, `--max-time`,
 * `--connect-timeout`, a URL without a scheme means `http://`, and exit codes
 * by class of failure (src/cli/failures.ts). `-v` prints, as it happens, the
 * outer HTTP requests and responses (`>` and `<` lines), each flight (size,
 * what a middlebox sees of it), the handshake and, over CoAP, each exchange
 * and retransmission.
 */
import { closeSync, createReadStream, openSync, readFileSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { STATUS_CODES } from 'node:http';
import { AtlsError } from '../errors.js';
import { inspectFlight } from '../records.js';
import { X509Certificate } from 'node:crypto';
import { createAtlsClient, type AtlsClientEvent } from '../http/index.js';
import { clientTlsFrom, clientTransportFrom } from './client-options.js';
import { engineFrom, modeFrom } from './options.js';
import { CliExit, EXIT } from './failures.js';
import { readAll, type CliIo } from './io.js';

/** Default waits (curl has none for the response; every wait here has one). */
export const DEFAULT_CONNECT_TIMEOUT_S = 10;
export const DEFAULT_RESPONSE_TIMEOUT_S = 60;

/** Reads `@FILE` or `@-` (standard input) as curl does; `strip` drops CR and LF like curl's `-d @FILE`. */
async function readData(value: string, flagName: string, strip: boolean, stdin: CliIo['stdin']): Promise<Uint8Array> {
  if (!value.startsWith('@')) return new TextEncoder().encode(value);
  const name = value.slice(1);
  let bytes: Uint8Array;
  try {
    bytes = name === '-' ? await readAll(stdin) : readFileSync(name);
  } catch (e) {
    throw new CliExit(EXIT.read, `${flagName} ${value}: cannot read ${name === '-' ? 'standard input' : name} (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the file name`);
  }
  return strip ? new Uint8Array(bytes.filter((b) => b !== 0x0a && b !== 0x0d)) : new Uint8Array(bytes);
}

/** `-T FILE` (or `-` for stdin): the file as a stream, sent as it is read; exit 26 when it cannot be opened. */
async function readUpload(name: string, stdin: CliIo['stdin']): Promise<ReadableStream<Uint8Array>> {
  const source: AsyncIterable<Uint8Array | string> = name === '-' ? stdin : createReadStream(name);
  const it = source[Symbol.asyncIterator]();
  // The first read opens the file, so that a missing one fails here, before anything is sent.
  let pending: IteratorResult<Uint8Array | string> | undefined;
  try {
    pending = await it.next();
  } catch (e) {
    throw new CliExit(EXIT.read, `-T ${name}: cannot read ${name} (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the file name`);
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const r = pending ?? (await it.next());
      pending = undefined;
      if (r.done) controller.close();
      else controller.enqueue(typeof r.value === 'string' ? new TextEncoder().encode(r.value) : new Uint8Array(r.value));
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** The request body from `-d`/`--data`, `--data-binary` and `--data-raw` (several are joined with `&`, as curl does). */
export async function bodyFrom(opts: Record<string, unknown>, stdin: CliIo['stdin']): Promise<Uint8Array | undefined> {
  const parts: Uint8Array[] = [];
  for (const d of asList(opts.data)) parts.push(await readData(d, '-d', true, stdin));
  for (const d of asList(opts.dataBinary)) parts.push(await readData(d, '--data-binary', false, stdin));
  for (const d of asList(opts.dataRaw)) parts.push(new TextEncoder().encode(d));
  if (parts.length === 0) return undefined;
  const joined: number[] = [];
  parts.forEach((p, i) => {
    if (i > 0) joined.push(0x26);
    for (const b of p) joined.push(b);
  });
  return Uint8Array.from(joined);
}

function asList(v: unknown): string[] {
  return v === undefined ? [] : Array.isArray(v) ? (v as string[]) : [String(v)];
}

function headersFrom(list: unknown): Headers {
  const h = new Headers();
  for (const line of (list as string[] | undefined) ?? []) {
    const at = line.indexOf(':');
    if (at <= 0) throw new AtlsError('INVALID_ARGUMENT', `-H wants 'Name: value', got ${JSON.stringify(line)}`);
    h.append(line.slice(0, at).trim(), line.slice(at + 1).trim());
  }
  return h;
}

/** A URL without a scheme means http://, as in curl. */
export function targetUrl(text: string): URL {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`;
  try {
    return new URL(withScheme);
  } catch {
    throw new AtlsError('INVALID_ARGUMENT', `not a URL: ${JSON.stringify(text)}; write it as http://HOST:PORT/PATH (or https://, coap://)`);
  }
}

/** `--max-time` / `--connect-timeout`: positive seconds. */
export function secondsFrom(value: unknown, flagName: string, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new AtlsError('INVALID_ARGUMENT', `${flagName} wants a number of seconds above 0, got ${JSON.stringify(value)}`);
  return n;
}

/** What a middlebox would see of a body: record types and hello details. */
function describeBody(bytes: Uint8Array, flightBytes: number): string {
  if (flightBytes === 0) return 'protected message';
  try {
    const s = inspectFlight(bytes.subarray(0, flightBytes));
    const types = s.records.map((r) => r.contentTypeName).join(',');
    const hs = s.handshake.map((m) => m.name).join(',');
    const extra = flightBytes < bytes.length ? ` + protected message ${bytes.length - flightBytes} B` : '';
    return `${s.records.length} record(s) [${types}]${hs ? ` {${hs}}` : ''}${extra}`;
  } catch {
    return 'unparseable';
  }
}

/** The outer HTTP request or response head, curl -v style (`>` sent, `<` received). */
function outerHttpLines(e: Extract<AtlsClientEvent, { type: 'flight' }>): string {
  const lines: string[] = [];
  if (e.direction === 'sent') {
    const url = new URL(e.url ?? e.origin);
    lines.push(`POST ${url.pathname}${url.search} HTTP/1.1`, `Host: ${url.host}`);
    e.headers?.forEach((v, k) => lines.push(`${k}: ${v}`));
    lines.push(`content-length: ${e.bytes.length}`);
  } else {
    lines.push(`HTTP/1.1 ${e.status ?? '?'} ${STATUS_CODES[e.status ?? 0] ?? ''}`.trimEnd());
    e.headers?.forEach((v, k) => lines.push(`${k}: ${v}`));
  }
  const arrow = e.direction === 'sent' ? '>' : '<';
  return lines.map((l) => `${arrow} ${l}\n`).join('') + `${arrow}\n`;
}

function verboseLogger(err: CliIo['stderr']): (e: AtlsClientEvent) => void {
  return (e) => {
    if (e.type === 'flight') {
      const arrow = e.direction === 'sent' ? '>' : '<';
      err.write(outerHttpLines(e));
      const status = e.status !== undefined ? ` HTTP ${e.status}` : '';
      err.write(`${arrow} round trip ${e.roundTrip}: ${e.direction} ${e.bytes.length} B${status}: ${describeBody(e.bytes, e.flightBytes)}\n`);
    } else if (e.type === 'handshake') {
      const peer = e.info.pskIdentity !== undefined ? `psk ${e.info.pskIdentity}` : `${e.info.peerCertificates.length} certificate(s)`;
      err.write(
        `* handshake: ${e.info.version} ${e.info.cipherSuite}, ${e.roundTrips} round trips, ` +
          `${e.bytesSent} B sent, ${e.bytesReceived} B received, ${e.durationMs.toFixed(1)} ms, ${peer}` +
          `${e.info.resumed ? ', resumed' : ''}${e.piggyBacked ? ', first request rode with the final flight' : ''}\n`,
      );
    } else if (e.type === 'policy') {
      const t = e.transport;
      const seen = e.origin.startsWith('http:') ? 'none: http' : t === undefined ? 'not checked' : t.verified ? 'verified' : `not verified: ${t.reason ?? 'unknown'}`;
      const issuer = t?.chain[0] ? `, issuer ${new X509Certificate(t.chain[0]).issuer.split('\n').join(', ')}` : '';
      err.write(`* policy ${e.policy}: ${e.use === 'plain' ? 'plain HTTP(S), no ATLS' : 'ATLS'} (transport ${seen}${issuer})\n`);
    } else if (e.type === 'session-lost') {
      err.write(`* session lost (HTTP ${e.status})${e.resend ? ', handshaking again' : ''}\n`);
    }
  };
}

/** What `-w` can name about the transfer (curl's variable names). */
interface Transfer {
  status: number;
  url: string;
  contentType: string;
  sizeDownload: number;
  method: string;
  started: number;
}

/** `-w FORMAT` as curl writes it: `%{variable}`, `%%`, and the escapes `\n`, `\r`, `\t`, `\\`; an unknown variable writes nothing and a warning. */
export function writeOut(format: string, t: Transfer, warn: (line: string) => void): string {
  const values: Record<string, string> = {
    http_code: String(t.status).padStart(3, '0'),
    response_code: String(t.status).padStart(3, '0'),
    url_effective: t.url,
    content_type: t.contentType,
    size_download: String(t.sizeDownload),
    method: t.method,
    time_total: ((performance.now() - t.started) / 1000).toFixed(6),
  };
  return format.replace(/%\{([a-z_]+)\}|%%|\\([nrt\\])/g, (whole, name: string | undefined, escape: string | undefined) => {
    if (whole === '%%') return '%';
    if (escape !== undefined) return escape === 'n' ? '\n' : escape === 'r' ? '\r' : escape === 't' ? '\t' : '\\';
    const value = values[name!];
    if (value === undefined) warn(`-w: unknown variable %{${name!}} (known: ${Object.keys(values).join(', ')})`);
    return value ?? '';
  });
}

/** `-O`: the last segment of the URL's path, as curl names the file. */
function remoteName(url: URL): string {
  const name = decodeURIComponent(url.pathname.slice(url.pathname.lastIndexOf('/') + 1));
  if (name === '') throw new CliExit(EXIT.write, `-O: the URL ${url.href} has no file name at the end of its path; name the file with -o FILE`);
  return name;
}

/** Where the body goes: `-o FILE`, `-O` (the URL's file name), or stdout (also `-o -`). */
function outputFile(opts: Record<string, unknown>, url: URL): string | undefined {
  if (typeof opts.output === 'string' && opts.output !== '-') return opts.output;
  if (opts.output === undefined && opts.remoteName === true) return remoteName(url);
  return undefined;
}

/** A writer to the body's destination, the file opened on first use (a refused answer under -f creates no file, as in curl). */
function bodySink(file: string | undefined, stdout: CliIo['stdout']): { write(chunk: Uint8Array): Promise<void>; close(): void } {
  let fd: number | undefined;
  return {
    async write(chunk) {
      if (file === undefined) {
        // A stream that says it is full (a pipe to a slow reader) is waited for: the body is not held.
        if (stdout.write(chunk) === false && 'once' in stdout) {
          await new Promise<void>((resolve) => (stdout as NodeJS.WritableStream).once('drain', () => resolve()));
        }
        return;
      }
      try {
        fd ??= openSync(file, 'w');
        writeSync(fd, chunk);
      } catch (e) {
        throw new CliExit(EXIT.write, `-o ${file}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)}); check the folder exists and is writable`);
      }
    },
    close() {
      if (fd !== undefined) closeSync(fd);
    },
  };
}

/** Writes the inner response: `-i` (or `-I`) head first, then the body, as it arrives, to stdout or the file. */
async function output(opts: Record<string, unknown>, url: URL, head: string, body: AsyncIterable<Uint8Array> | Uint8Array, stdout: CliIo['stdout']): Promise<number> {
  if (opts.include === true || opts.head === true) stdout.write(head);
  const sink = bodySink(outputFile(opts, url), stdout);
  let n = 0;
  try {
    for await (const chunk of body instanceof Uint8Array ? [body] : body) {
      n += chunk.length;
      await sink.write(chunk);
    }
    if (n === 0) await sink.write(new Uint8Array(0)); // the file exists even for an empty body, as with curl
  } finally {
    sink.close();
  }
  return n;
}

export async function runFetch(url: string, opts: Record<string, unknown>, io: CliIo): Promise<void> {
  const started = performance.now();
  const target = targetUrl(url);
  const upload = typeof opts.uploadFile === 'string' ? opts.uploadFile : undefined;
  if (upload !== undefined && (opts.data ?? opts.dataBinary ?? opts.dataRaw) !== undefined) {
    throw new AtlsError('INVALID_ARGUMENT', '-T and -d/--data-binary/--data-raw both give the body: use one');
  }
  const body = await bodyFrom(opts, io.stdin);
  // curl -T FILE: PUT, to URL/FILE when the URL ends with a slash.
  if (upload !== undefined && upload !== '-' && target.pathname.endsWith('/')) target.pathname += encodeURIComponent(basename(upload));
  const headOnly = opts.head === true;
  // curl: a body without -X means POST; -T means PUT; -I means HEAD.
  const method =
    typeof opts.request === 'string' ? opts.request.toUpperCase() : headOnly ? 'HEAD' : upload !== undefined ? 'PUT' : body !== undefined ? 'POST' : 'GET';
  const headers = headersFrom(opts.header);
  if (body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/x-www-form-urlencoded');
  const tls = clientTlsFrom(opts);
  const mode = modeFrom(opts);
  const maxTime = secondsFrom(opts.maxTime, '--max-time', undefined);
  const connectTimeout = secondsFrom(opts.connectTimeout, '--connect-timeout', DEFAULT_CONNECT_TIMEOUT_S)!;
  const failOnError = opts.fail === true;
  const failWithBody = opts.failWithBody === true;
  // curl writes -w also when the transfer fails (http_code 000): scripts read the code from it.
  let reported = false;
  /** -w, then --fail-with-body's exit once the body is out. */
  const report = (t: Omit<Transfer, 'method' | 'started'>): void => {
    reported = true;
    if (typeof opts.writeOut !== 'string') return;
    io.stdout.write(writeOut(opts.writeOut, { ...t, method, started }, (line) => opts.silent !== true && io.stderr.write(`atls: warning: ${line}\n`)));
  };
  const finish = (t: Omit<Transfer, 'method' | 'started'>, failed: boolean, statusText: string): void => {
    report(t);
    if (failWithBody && failed) throw new CliExit(EXIT.httpError, `the inner response is ${statusText} (--fail-with-body)`);
  };
  const transfer = async (): Promise<void> => {
    if (target.protocol === 'coap:') {
      if (headOnly) throw new AtlsError('INVALID_ARGUMENT', '-I/--head is for http:// and https:// (CoAP has no HEAD); use -i to see the inner head');
      const { fetchCoap } = await import('./coap-fetch.js');
      const res = await fetchCoap(target, {
        tls,
        mode,
        method,
        body: upload !== undefined ? await readAll(await readUpload(upload, io.stdin)) : body,
        opts,
        connectTimeoutMs: connectTimeout * 1000,
        ...(maxTime !== undefined ? { maxTimeMs: maxTime * 1000 } : {}),
        ...engineFrom(opts),
        stderr: io.stderr,
      });
      // -w %{http_code} of a CoAP answer: its code as three digits (2.05 is 205), HTTP's as it is (--inner http).
      const code = /^(?:HTTP\/1\.1 (\d+)|CoAP (\d)\.(\d\d))/.exec(res.head);
      const status = code ? Number(code[1] ?? `${code[2]}${code[3]}`) : 0;
      if (failOnError && !failWithBody && res.failed) {
        report({ status, url: target.href, contentType: '', sizeDownload: 0 });
        throw new CliExit(EXIT.httpError, `the inner response is ${res.codeText} (--fail)`);
      }
      const size = await output(opts, target, res.head, res.payload, io.stdout);
      finish({ status, url: target.href, contentType: '', sizeDownload: size }, res.failed, res.codeText);
      return;
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      throw new AtlsError('INVALID_ARGUMENT', `unsupported URL scheme ${target.protocol} (http://, https:// or coap://)`);
    }
    const client = createAtlsClient({
      tls,
      mode,
      ...engineFrom(opts),
      ...(typeof opts.proxy === 'string' ? { proxy: opts.proxy } : {}),
      ...clientTransportFrom(opts, {
        connectTimeoutMs: connectTimeout * 1000,
        responseTimeoutMs: Math.min(DEFAULT_RESPONSE_TIMEOUT_S, maxTime ?? Infinity) * 1000,
      }),
      ...(opts.verbose ? { onEvent: verboseLogger(io.stderr) } : {}),
    });
    try {
      const res = await client.fetch(target, {
        method,
        headers,
        redirect: opts.location === true ? 'follow' : 'manual',
        ...(upload !== undefined ? { body: await readUpload(upload, io.stdin), duplex: 'half' } : body !== undefined ? { body } : {}),
        ...(maxTime !== undefined ? { signal: AbortSignal.timeout(maxTime * 1000) } : {}),
      });
      if (opts.verbose) io.stderr.write(`* inner response: ${res.status} ${res.statusText}\n`);
      const statusText = `${res.status} ${res.statusText || (STATUS_CODES[res.status] ?? '')}`.trimEnd();
      if (failOnError && !failWithBody && res.status >= 400) {
        await res.body?.cancel();
        report({ status: res.status, url: res.url || target.href, contentType: res.headers.get('content-type') ?? '', sizeDownload: 0 });
        throw new CliExit(EXIT.httpError, `the inner response is ${statusText} (--fail)`);
      }
      let head = `HTTP/1.1 ${statusText}\r\n`;
      res.headers.forEach((v, k) => (head += `${k}: ${v}\r\n`));
      if (headOnly) await res.body?.cancel();
      const size = await output(opts, new URL(res.url || target.href), head + '\r\n', headOnly || !res.body ? new Uint8Array(0) : res.body, io.stdout);
      finish({ status: res.status, url: res.url || target.href, contentType: res.headers.get('content-type') ?? '', sizeDownload: size }, res.status >= 400, statusText);
    } catch (e) {
      if (e instanceof Error && e.name === 'TimeoutError' && maxTime !== undefined) {
        throw new AtlsError('TIMEOUT', `no complete answer within --max-time ${maxTime} s`, { source: 'remote', cause: e });
      }
      throw e;
    } finally {
      await client.close();
    }
  };
  try {
    await transfer();
  } catch (e) {
    if (!reported) report({ status: 0, url: target.href, contentType: '', sizeDownload: 0 });
    throw e;
  }
}
