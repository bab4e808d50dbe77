/**
 * `atls fetch URL`: one request through ATLS, over HTTP(S) or CoAP. Prints the
 * inner response body to stdout (like curl, an inner 4xx/5xx is still a
 * successful exchange); ATLS or transport failures exit 1 with one line.
 * `-v` prints each flight (size, what a middlebox sees of it), the version,
 * cipher suite and round trips to stderr.
 */
import { readFileSync } from 'node:fs';
import { AtlsError } from '../errors.js';
import { inspectFlight } from '../records.js';
import { X509Certificate } from 'node:crypto';
import { createAtlsClient, type AtlsClientEvent } from '../http/index.js';
import { clientTlsFrom, clientTransportFrom } from './client-options.js';
import { engineFrom, modeFrom } from './options.js';

function bodyFrom(data: unknown): Uint8Array | undefined {
  if (typeof data !== 'string') return undefined;
  if (data.startsWith('@')) {
    try {
      return readFileSync(data.slice(1));
    } catch (e) {
      throw new AtlsError('INVALID_ARGUMENT', `-d ${data}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  return new TextEncoder().encode(data);
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

function verboseLogger(): (e: AtlsClientEvent) => void {
  return (e) => {
    const err = process.stderr;
    if (e.type === 'flight') {
      const arrow = e.direction === 'sent' ? '>' : '<';
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

export async function runFetch(url: string, opts: Record<string, unknown>): Promise<void> {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new AtlsError('INVALID_ARGUMENT', `not a URL: ${url}`);
  }
  const method = String(opts.request ?? 'GET').toUpperCase();
  const body = bodyFrom(opts.data);
  const tls = clientTlsFrom(opts);
  const mode = modeFrom(opts);
  if (target.protocol === 'coap:') {
    const { fetchCoap } = await import('./coap-fetch.js');
    const payload = await fetchCoap(target, { tls, mode, method, body, opts, ...engineFrom(opts) });
    process.stdout.write(payload);
    return;
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new AtlsError('INVALID_ARGUMENT', `unsupported URL scheme ${target.protocol}`);
  }
  const client = createAtlsClient({
    tls,
    mode,
    ...engineFrom(opts),
    ...(typeof opts.proxy === 'string' ? { proxy: opts.proxy } : {}),
    ...clientTransportFrom(opts),
    ...(opts.verbose ? { onEvent: verboseLogger() } : {}),
  });
  try {
    const res = await client.fetch(target, {
      method,
      headers: headersFrom(opts.header),
      ...(body !== undefined ? { body } : {}),
    });
    if (opts.verbose) process.stderr.write(`* inner response: ${res.status} ${res.statusText}\n`);
    process.stdout.write(new Uint8Array(await res.arrayBuffer()));
  } finally {
    await client.close();
  }
}
