/**
 * Captures the flights of a real handshake between Node's own TLS client and
 * server, run over in-memory duplexes (no sockets), so parsers can be checked
 * against bytes a real stack wrote.
 *
 * Consecutive writes by the same side form one flight; the handshake strictly
 * alternates, so this matches the ATLS flights.
 *
 * @example
 * ```ts
 * const { flights, cipher } = await captureHandshake({ client: { servername: 'api.example', ALPNProtocols: ['h2'] } });
 * flights[0]; // { from: 'client', bytes: <ClientHello record> }
 * cipher;     // 'TLS_AES_256_GCM_SHA384', as the client's stack reports it
 * ```
 */
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { concatBytes } from '../../src/bytes.js';
import { testPki } from './pki.js';

/** One side's consecutive output. */
export interface CapturedFlight {
  from: 'client' | 'server';
  bytes: Uint8Array;
}

/** The flights of one handshake, and what the client's stack says it negotiated. */
export interface CapturedHandshake {
  flights: CapturedFlight[];
  /** `getProtocol()`, e.g. `TLSv1.3`. */
  protocol: string | null;
  /** `getCipher().standardName` (the IANA name). */
  cipher: string;
  /** The ALPN protocol selected, or false. */
  alpnProtocol: string | false | null;
}

/** Options for {@link captureHandshake}; the server certificate defaults to the test PKI's ECDSA server. */
export interface CaptureOptions {
  client?: tls.ConnectionOptions;
  server?: tls.TlsOptions;
  /** Data the client writes once connected (gives application_data records). */
  clientData?: string;
  timeoutMs?: number;
}

class Pipe extends Duplex {
  peer: Pipe | undefined;
  constructor(private readonly onWrite: (b: Uint8Array) => void) {
    super();
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    const copy = new Uint8Array(chunk);
    this.onWrite(copy);
    this.peer?.push(Buffer.from(copy));
    cb();
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Runs one handshake and returns the flights in order. */
export async function captureHandshake(opts: CaptureOptions = {}): Promise<CapturedHandshake> {
  const pki = await testPki();
  const log: { from: 'client' | 'server'; bytes: Uint8Array }[] = [];
  const c = new Pipe((b) => log.push({ from: 'client', bytes: b }));
  const s = new Pipe((b) => log.push({ from: 'server', bytes: b }));
  c.peer = s;
  s.peer = c;

  const server = tls.createServer({ cert: pki.server.cert, key: pki.server.key, ...opts.server });
  const serverDone = new Promise<tls.TLSSocket>((resolve, reject) => {
    server.once('secureConnection', resolve);
    server.once('tlsClientError', reject);
  });
  server.emit('connection', s);
  const client = tls.connect({ socket: c, rejectUnauthorized: false, ...opts.client });
  const clientDone = new Promise<void>((resolve, reject) => {
    client.once('secureConnect', () => resolve());
    client.once('error', reject);
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('handshake capture timed out')), opts.timeoutMs ?? 5000);
  });
  let negotiated: Omit<CapturedHandshake, 'flights'>;
  try {
    const [serverSocket] = await Promise.race([Promise.all([serverDone, clientDone]), timeout]);
    negotiated = {
      protocol: client.getProtocol(),
      cipher: client.getCipher().standardName,
      alpnProtocol: client.alpnProtocol,
    };
    if (opts.clientData !== undefined) client.write(opts.clientData);
    // Let the tickets (TLS 1.3) and the data settle: output stops growing.
    let last = -1;
    while (last !== log.length) {
      last = log.length;
      for (let i = 0; i < 3; i++) await turn();
    }
    serverSocket.destroy();
  } finally {
    clearTimeout(timer);
    client.destroy();
  }

  const flights: CapturedFlight[] = [];
  for (const entry of log) {
    const prev = flights[flights.length - 1];
    if (prev && prev.from === entry.from) prev.bytes = concatBytes([prev.bytes, entry.bytes]);
    else flights.push({ from: entry.from, bytes: entry.bytes });
  }
  return { flights, ...negotiated };
}
