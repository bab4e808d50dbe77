/**
 * A TLS-intercepting HTTP proxy, the "middlebox" of the draft's Figure 8 and
 * §9.8: it answers CONNECT, terminates the client's TLS with a certificate it
 * forges on the fly from its own CA, reads every HTTP request in clear,
 * reports what it saw, and forwards the request over a new TLS connection to
 * the real service. It exists for `atls demo`; the test suites also run
 * mitmproxy, a middlebox we did not write.
 *
 * What it can see of ATLS traffic is exactly what `inspectFlight` reports:
 * record types, the ClientHello's SNI and ALPN; never the application data.
 * @module
 */
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createCa, issueCertificate, type CertificateAuthority } from '../pki.js';

/** One request the middlebox intercepted, as it saw it. */
export interface InterceptedRequest {
  method: string;
  url: string;
  host: string;
  contentType: string | undefined;
  requestHeaders: http.IncomingHttpHeaders;
  requestBody: Uint8Array;
  status: number;
  responseContentType: string | undefined;
  responseHeaders: http.IncomingHttpHeaders;
  responseBody: Uint8Array;
}

export interface MiddleboxOptions {
  /** Trust anchors for the onward TLS connection to services (PEM). */
  upstreamCa?: string | string[];
  /** Called for every intercepted exchange. */
  onIntercept?: (seen: InterceptedRequest) => void;
  /** Largest body recorded per message (default 1 MiB); bigger bodies are refused with 413. */
  maxBody?: number;
}

/** A running middlebox. */
export interface Middlebox {
  /** `http://127.0.0.1:PORT`: use it as HTTPS_PROXY. */
  url: string;
  /** The middlebox's own CA, which clients would have to trust to verify it. */
  ca: CertificateAuthority;
  close(): Promise<void>;
}

async function readAll(stream: NodeJS.ReadableStream, max: number): Promise<Uint8Array | undefined> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > max) return undefined;
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Starts an intercepting proxy on 127.0.0.1 (port 0 = any free port). */
export async function startMiddlebox(options: MiddleboxOptions = {}, port = 0): Promise<Middlebox> {
  const ca = await createCa({ commonName: 'Intercepting Middlebox CA' });
  const maxBody = options.maxBody ?? 1024 * 1024;
  const forged = new Map<string, Promise<tls.SecureContext>>();
  const contextFor = (host: string): Promise<tls.SecureContext> => {
    let ctx = forged.get(host);
    if (!ctx) {
      const isIp = /^[\d.]+$/.test(host) || host.includes(':');
      ctx = issueCertificate({
        issuer: ca,
        commonName: host,
        ...(isIp ? { ipAddresses: [host] } : { dnsNames: [host] }),
      }).then((leaf) => tls.createSecureContext({ cert: leaf.cert, key: leaf.key }));
      forged.set(host, ctx);
    }
    return ctx;
  };

  // The clear-text side: requests decrypted from the client's tunnel.
  const inner = http.createServer((req, res) => {
    void (async () => {
      const target = (req.socket as tls.TLSSocket & { atlsTarget?: string }).atlsTarget ?? '';
      const body = await readAll(req, maxBody);
      if (!body) {
        res.writeHead(413).end();
        return;
      }
      const [hostname, portText] = splitHostPort(target);
      const headers = { ...req.headers };
      delete headers['content-length'];
      const upstream = https.request({
        hostname,
        port: Number(portText),
        method: req.method,
        path: req.url,
        headers: { ...headers, 'content-length': String(body.length) },
        ...(options.upstreamCa ? { ca: options.upstreamCa } : {}),
        servername: /^[\d.]+$/.test(hostname) ? undefined : hostname,
      });
      upstream.on('response', (ures) => {
        void (async () => {
          const rbody = (await readAll(ures, maxBody)) ?? new Uint8Array(0);
          options.onIntercept?.({
            method: req.method ?? '',
            url: req.url ?? '',
            host: target,
            contentType: req.headers['content-type'],
            requestHeaders: req.headers,
            requestBody: body,
            status: ures.statusCode ?? 0,
            responseContentType: ures.headers['content-type'],
            responseHeaders: ures.headers,
            responseBody: rbody,
          });
          const out = { ...ures.headers };
          delete out['content-length'];
          delete out['transfer-encoding'];
          res.writeHead(ures.statusCode ?? 502, { ...out, 'content-length': String(rbody.length) });
          res.end(rbody);
        })();
      });
      upstream.on('error', (e) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`middlebox: upstream failed: ${e.message}`);
      });
      upstream.end(body);
    })();
  });

  const front = http.createServer((_req, res) => res.writeHead(405).end());
  front.on('connect', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = req.url ?? '';
    const [host] = splitHostPort(target);
    socket.on('error', () => socket.destroy());
    socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    void contextFor(host).then(
      (secureContext) => {
        if (head.length) socket.unshift(head);
        const tlsSocket = new tls.TLSSocket(socket, { isServer: true, secureContext });
        (tlsSocket as tls.TLSSocket & { atlsTarget?: string }).atlsTarget = target;
        tlsSocket.on('error', () => tlsSocket.destroy());
        inner.emit('connection', tlsSocket);
      },
      () => socket.destroy(),
    );
  });

  await new Promise<void>((resolve) => front.listen(port, '127.0.0.1', resolve));
  const { port: bound } = front.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${bound}`,
    ca,
    close: async () => {
      front.closeAllConnections();
      inner.closeAllConnections();
      await new Promise<void>((resolve) => front.close(() => resolve()));
    },
  };
}

function splitHostPort(target: string): [string, string] {
  const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(target);
  return m ? [m[1]!, m[2]!] : [target, '443'];
}
