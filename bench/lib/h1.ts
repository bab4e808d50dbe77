/**
 * A minimal HTTP/1.1 client over one socket, for load generation: one request
 * at a time, keep-alive, Content-Length or chunked responses. It does far less
 * work per request than undici or `node:http` (no header objects, no
 * streams), so the load generator stays cheaper than the servers it drives.
 * Benchmark code only: it trusts the server it talks to.
 *
 * @example
 * ```ts
 * const c = await H1Connection.connect({ port: 8080 });
 * const res = await c.request('POST', '/echo', { 'content-type': 'text/plain' }, body);
 * c.close();
 * ```
 * @module
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';

/** A response: status, lower-case header names (repeated values joined by `\n`), whole body. */
export interface H1Response {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/** Where to connect; `tls` makes it HTTPS (`node:tls` options). */
export interface H1ConnectOptions {
  port: number;
  host?: string;
  tls?: ConnectionOptions;
}

const CRLF2 = Buffer.from('\r\n\r\n');

/** One keep-alive HTTP/1.1 connection. */
export class H1Connection {
  /** Bytes written and read on this connection (for wire-size figures). */
  bytesOut = 0;
  bytesIn = 0;
  private buf: Buffer = Buffer.alloc(0);
  private pending: { resolve: (r: H1Response) => void; reject: (e: Error) => void } | undefined;
  private ended = false;
  private readonly hostHeader: string;

  private constructor(
    readonly socket: Socket | TLSSocket,
    host: string,
    port: number,
  ) {
    this.hostHeader = `${host}:${port}`;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.bytesIn += d.length;
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.parse();
    });
    const fail = (e?: Error): void => {
      this.ended = true;
      this.parse();
      const p = this.pending;
      this.pending = undefined;
      p?.reject(e ?? new Error('connection closed'));
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  /** Opens a connection (TLS handshake included for `tls`). */
  static connect(options: H1ConnectOptions): Promise<H1Connection> {
    const host = options.host ?? '127.0.0.1';
    return new Promise((resolve, reject) => {
      let s: Socket | TLSSocket;
      if (options.tls) {
        s = tlsConnect({ ...options.tls, host, port: options.port }, () => resolve(new H1Connection(s, host, options.port)));
      } else {
        s = netConnect({ host, port: options.port }, () => resolve(new H1Connection(s, host, options.port)));
      }
      s.once('error', reject);
    });
  }

  /** Sends one request and resolves with the whole response. */
  request(method: string, path: string, headers: Record<string, string>, body?: Uint8Array): Promise<H1Response> {
    if (this.pending) return Promise.reject(new Error('one request at a time'));
    if (this.ended) return Promise.reject(new Error('connection closed'));
    let head = `${method} ${path} HTTP/1.1\r\nhost: ${this.hostHeader}\r\n`;
    for (const k in headers) head += `${k}: ${headers[k]}\r\n`;
    if (body) head += `content-length: ${body.length}\r\n`;
    head += '\r\n';
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      const h = Buffer.from(head, 'latin1');
      this.bytesOut += h.length + (body?.length ?? 0);
      if (body && body.length > 0) {
        this.socket.cork();
        this.socket.write(h);
        this.socket.write(body);
        this.socket.uncork();
      } else {
        this.socket.write(h);
      }
    });
  }

  /** Closes the socket. */
  close(): void {
    this.socket.destroy();
  }

  private parse(): void {
    if (!this.pending) return;
    const end = this.buf.indexOf(CRLF2);
    if (end < 0) return;
    const lines = this.buf.toString('latin1', 0, end).split('\r\n');
    const status = Number(lines[0]!.slice(9, 12));
    const headers = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i]!;
      const c = l.indexOf(':');
      const k = l.slice(0, c).toLowerCase();
      const v = l.slice(c + 1).trim();
      const prev = headers.get(k);
      headers.set(k, prev === undefined ? v : `${prev}\n${v}`);
    }
    const start = end + 4;
    let body: Buffer | undefined;
    let consumed = 0;
    const cl = headers.get('content-length');
    if (cl !== undefined) {
      const n = Number(cl);
      if (this.buf.length - start < n) return;
      body = this.buf.subarray(start, start + n);
      consumed = start + n;
    } else if (headers.get('transfer-encoding')?.includes('chunked')) {
      const parts: Buffer[] = [];
      let pos = start;
      for (;;) {
        const eol = this.buf.indexOf('\r\n', pos, 'latin1');
        if (eol < 0) return;
        const size = parseInt(this.buf.toString('latin1', pos, eol), 16);
        if (this.buf.length < eol + 2 + size + 2) return;
        if (size === 0) {
          // No trailers from the servers under test.
          consumed = eol + 4;
          break;
        }
        parts.push(this.buf.subarray(eol + 2, eol + 2 + size));
        pos = eol + 2 + size + 2;
      }
      body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    } else {
      if (!this.ended) return; // read to the end of the connection
      body = this.buf.subarray(start);
      consumed = this.buf.length;
    }
    this.buf = this.buf.subarray(consumed);
    const p = this.pending;
    this.pending = undefined;
    p.resolve({ status, headers, body });
  }
}
