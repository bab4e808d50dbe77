/**
 * A CoAP endpoint over UDP (RFC 7252 §4): Confirmable retransmission with
 * exponential back-off, message-id deduplication for EXCHANGE_LIFETIME in a
 * bounded cache, piggy-backed responses (separate ones when the handler is
 * slow), Non-confirmable requests and responses, pings and resets.
 *
 * One endpoint is both a server (`handle`) and a client (`request`).
 *
 * @example
 * ```ts
 * const ep = await CoapEndpoint.bind({ host: '127.0.0.1', port: 0 });
 * ep.handle(async (msg) => ({ code: CoapCode.Content, payload: msg.payload }));
 * const res = await ep.request({ address: '127.0.0.1', port: ep.port }, { code: CoapCode.POST, options: [], payload: data });
 * await ep.close();
 * ```
 * @module
 */
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes, randomInt } from 'node:crypto';
import { isIP } from 'node:net';
import { AtlsError } from '../errors.js';
import {
  CoapCode,
  DEFAULT_TRANSMISSION,
  KNOWN_OPTIONS,
  MessageType,
  exchangeLifetime,
  isCriticalOption,
  isRequestCode,
  isResponseCode,
  maxTransmitWait,
  nonLifetime,
  type TransmissionParameters,
} from './constants.js';
import { decodeMessage, encodeMessage, type CoapMessage } from './packet.js';
import { codeFromHint, peerKey, type CoapResponse, type OutgoingRequest, type Peer } from './blockwise.js';

/** Handles one request; the endpoint adds type, message id and token. */
export type RequestHandler = (msg: CoapMessage, peer: Peer) => Promise<CoapResponse> | CoapResponse;

/** Options of {@link CoapEndpoint.bind}. */
export interface EndpointOptions {
  /** Address to bind (default `127.0.0.1`; `::` or `::1` for IPv6). */
  host?: string;
  /** UDP port (default 0: any free port). */
  port?: number;
  /** RFC 7252 §4.8 parameters; tests shorten ACK_TIMEOUT. */
  transmission?: Partial<TransmissionParameters>;
  /** Entries of the deduplication cache (default 4096); the oldest is evicted when full. */
  dedupCapacity?: number;
  /** Answer with an empty ACK and a separate response when the handler takes longer (default 1000 ms). */
  separateResponseAfterMs?: number;
  /** Datagrams longer than this are dropped (default 65507). */
  maxDatagramBytes?: number;
  /** Called for dropped malformed datagrams and handler failures (logging). */
  onError?: (error: unknown, peer: Peer) => void;
  /** Called each time a Confirmable request is sent again for want of an ACK (progress logs). */
  onRetransmit?: (e: { peer: Peer; messageId: number; attempt: number; nextWaitMs: number }) => void;
}

/** Per-request options of {@link CoapEndpoint.request}. */
export interface RequestOptions {
  /** Send Non-confirmable (no retransmission) instead of Confirmable. */
  nonConfirmable?: boolean;
  /** Give up after this long (default MAX_TRANSMIT_WAIT, 93 s with the RFC defaults). */
  timeoutMs?: number;
  /** A token to use (default 4 random bytes). */
  token?: Uint8Array;
}

/** Counters, for tests and monitoring. */
export interface EndpointStats {
  received: number;
  sent: number;
  /** UDP payload bytes received and sent (CoAP headers included). */
  bytesReceived: number;
  bytesSent: number;
  malformed: number;
  duplicates: number;
  retransmissions: number;
  dedupEntries: number;
  pendingRequests: number;
}

interface DedupEntry {
  expires: number;
  /** Bytes last sent for this message id (ACK, response or RST); undefined while the handler runs. */
  reply: Uint8Array | undefined;
}

interface Exchange {
  peer: string;
  messageId: number;
  token: string;
  acked: boolean;
  resolve: (m: CoapMessage) => void;
  reject: (e: AtlsError) => void;
  retransmit: NodeJS.Timeout | undefined;
  deadline: NodeJS.Timeout;
  /** Separate responses we sent: the peer's ACK completes the exchange. */
  onAck?: () => void;
}

/** A UDP CoAP endpoint: server and client. */
export class CoapEndpoint {
  private handler: RequestHandler | undefined;
  private readonly params: TransmissionParameters;
  private readonly dedup = new Map<string, DedupEntry>();
  private readonly byMid = new Map<string, Exchange>();
  private readonly byToken = new Map<string, Exchange>();
  private nextMid = randomInt(0, 0x10000);
  private closed = false;
  private readonly counters = { received: 0, sent: 0, bytesReceived: 0, bytesSent: 0, malformed: 0, duplicates: 0, retransmissions: 0 };

  private constructor(
    private readonly socket: Socket,
    private readonly options: EndpointOptions,
  ) {
    this.params = { ...DEFAULT_TRANSMISSION, ...options.transmission };
    socket.on('message', (buf, rinfo) => this.onDatagram(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), { address: rinfo.address, port: rinfo.port }));
    socket.on('error', (e) => this.options.onError?.(e, { address: '', port: 0 }));
  }

  /** Binds a UDP socket and resolves with the endpoint. */
  static bind(options: EndpointOptions = {}): Promise<CoapEndpoint> {
    const host = options.host ?? '127.0.0.1';
    const socket = createSocket({ type: isIP(host) === 6 ? 'udp6' : 'udp4' });
    return new Promise((resolve, reject) => {
      socket.once('error', (e) => reject(new AtlsError('INVALID_ARGUMENT', `cannot bind UDP ${host}:${options.port ?? 0}: ${e.message}`, { cause: e })));
      socket.bind(options.port ?? 0, host, () => {
        socket.removeAllListeners('error');
        resolve(new CoapEndpoint(socket, options));
      });
    });
  }

  /** The bound port. */
  get port(): number {
    return this.socket.address().port;
  }

  /** The bound address. */
  get address(): Peer {
    const a = this.socket.address();
    return { address: a.address, port: a.port };
  }

  /** The transmission parameters in force. */
  get transmission(): Readonly<TransmissionParameters> {
    return this.params;
  }

  /** Current counters. */
  get stats(): EndpointStats {
    return { ...this.counters, dedupEntries: this.dedup.size, pendingRequests: this.byMid.size };
  }

  /** Sets the request handler (one per endpoint). */
  handle(handler: RequestHandler): void {
    this.handler = handler;
  }

  /**
   * Sends one request and resolves with its response (piggy-backed,
   * separate, or Non-confirmable). Rejects with TIMEOUT when the peer never
   * answers and with CLOSED when it resets the exchange.
   */
  request(peer: Peer, req: OutgoingRequest, options: RequestOptions = {}): Promise<CoapMessage> {
    if (this.closed) return Promise.reject(new AtlsError('CLOSED', 'endpoint closed'));
    if (isIP(peer.address) === 0) return Promise.reject(new AtlsError('INVALID_ARGUMENT', `not an IP address: ${peer.address}`));
    const token = options.token ?? new Uint8Array(randomBytes(4));
    const mid = this.allocateMid();
    const type = options.nonConfirmable ? MessageType.NON : MessageType.CON;
    let bytes: Uint8Array;
    try {
      bytes = encodeMessage({ type, code: req.code, messageId: mid, token, options: req.options, payload: req.payload });
    } catch (e) {
      return Promise.reject(e);
    }
    const pk = peerKey(peer);
    const timeoutMs = options.timeoutMs ?? maxTransmitWait(this.params);
    return new Promise<CoapMessage>((resolve, reject) => {
      const ex: Exchange = {
        peer: pk,
        messageId: mid,
        token: Buffer.from(token).toString('hex'),
        acked: type === MessageType.NON,
        resolve: (m) => {
          this.finish(ex);
          resolve(m);
        },
        reject: (e) => {
          this.finish(ex);
          reject(e);
        },
        retransmit: undefined,
        deadline: setTimeout(() => ex.reject(new AtlsError('TIMEOUT', `no response from ${peer.address}:${peer.port} within ${timeoutMs} ms`)), timeoutMs),
      };
      this.byMid.set(`${pk}#${mid}`, ex);
      this.byToken.set(`${pk}#${ex.token}`, ex);
      this.send(bytes, peer);
      if (type === MessageType.CON) {
        // RFC 7252 §4.2: initial timeout random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR], doubled each time.
        let timeout = this.params.ackTimeout * (1 + Math.random() * (this.params.ackRandomFactor - 1));
        let count = 0;
        const again = (): void => {
          if (ex.acked) return;
          if (count >= this.params.maxRetransmit) {
            ex.reject(new AtlsError('TIMEOUT', `no ACK from ${peer.address}:${peer.port} after ${count} retransmissions`));
            return;
          }
          count++;
          this.counters.retransmissions++;
          this.send(bytes, peer);
          timeout *= 2;
          this.options.onRetransmit?.({ peer, messageId: mid, attempt: count, nextWaitMs: Math.round(timeout) });
          ex.retransmit = setTimeout(again, timeout);
        };
        ex.retransmit = setTimeout(again, timeout);
      }
    });
  }

  /** Closes the socket; pending requests reject with CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const ex of [...this.byMid.values()]) ex.reject(new AtlsError('CLOSED', 'endpoint closed'));
    this.dedup.clear();
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }

  private finish(ex: Exchange): void {
    clearTimeout(ex.retransmit);
    clearTimeout(ex.deadline);
    this.byMid.delete(`${ex.peer}#${ex.messageId}`);
    this.byToken.delete(`${ex.peer}#${ex.token}`);
  }

  private allocateMid(): number {
    const mid = this.nextMid;
    this.nextMid = (this.nextMid + 1) & 0xffff;
    return mid;
  }

  private send(bytes: Uint8Array, peer: Peer): void {
    if (this.closed) return;
    this.counters.sent++;
    this.counters.bytesSent += bytes.length;
    this.socket.send(bytes, peer.port, peer.address, (e) => {
      if (e) this.options.onError?.(e, peer);
    });
  }

  private reset(messageId: number, peer: Peer): Uint8Array {
    const rst = encodeMessage({ type: MessageType.RST, code: 0, messageId, token: new Uint8Array(0), options: [], payload: new Uint8Array(0) });
    this.send(rst, peer);
    return rst;
  }

  private onDatagram(buf: Uint8Array, peer: Peer): void {
    if (this.closed) return;
    this.counters.received++;
    this.counters.bytesReceived += buf.length;
    if (buf.length > (this.options.maxDatagramBytes ?? 65507)) {
      this.counters.malformed++;
      return;
    }
    let msg: CoapMessage;
    try {
      msg = decodeMessage(buf);
    } catch (e) {
      this.counters.malformed++;
      this.options.onError?.(e, peer);
      // RFC 7252 §4.2: a Confirmable message with a format error is rejected with RST;
      // anything else malformed is silently ignored (§4.3).
      if (buf.length >= 4 && buf[0]! >> 6 === 1 && ((buf[0]! >> 4) & 3) === MessageType.CON) {
        this.reset((buf[2]! << 8) | buf[3]!, peer);
      }
      return;
    }
    const pk = peerKey(peer);
    switch (msg.type) {
      case MessageType.ACK:
      case MessageType.RST: {
        const ex = this.byMid.get(`${pk}#${msg.messageId}`);
        if (!ex) return; // RFC 7252 §4.2: unmatched ACK/RST is ignored
        if (msg.type === MessageType.RST) {
          ex.reject(new AtlsError('CLOSED', `${peer.address}:${peer.port} reset the exchange`, { source: 'remote' }));
          return;
        }
        ex.acked = true;
        clearTimeout(ex.retransmit);
        if (ex.onAck) {
          ex.onAck();
          return;
        }
        if (msg.code === CoapCode.Empty) return; // a separate response follows (RFC 7252 §5.2.2)
        if (isResponseCode(msg.code) && Buffer.from(msg.token).toString('hex') === ex.token) ex.resolve(msg);
        return;
      }
      case MessageType.CON:
      case MessageType.NON:
        if (msg.code === CoapCode.Empty) {
          // CoAP ping (RFC 7252 §4.3): answer a CON with RST; ignore a NON.
          if (msg.type === MessageType.CON) this.reset(msg.messageId, peer);
          return;
        }
        if (isResponseCode(msg.code)) {
          this.onResponse(msg, peer, pk);
          return;
        }
        if (isRequestCode(msg.code)) {
          this.onRequest(msg, peer, pk);
          return;
        }
        // Codes of reserved classes (1, 6, 7): reject a CON, ignore a NON.
        if (msg.type === MessageType.CON) this.reset(msg.messageId, peer);
        return;
    }
  }

  private onResponse(msg: CoapMessage, peer: Peer, pk: string): void {
    const dkey = `${pk}#r${msg.messageId}`;
    const dup = this.dedup.get(dkey);
    if (dup) {
      this.counters.duplicates++;
      if (dup.reply) this.send(dup.reply, peer);
      return;
    }
    const ex = this.byToken.get(`${pk}#${Buffer.from(msg.token).toString('hex')}`);
    let reply: Uint8Array | undefined;
    if (msg.type === MessageType.CON) {
      // RFC 7252 §5.2.2: ACK a separate response; RST one we cannot match.
      reply = ex
        ? encodeMessage({ type: MessageType.ACK, code: 0, messageId: msg.messageId, token: new Uint8Array(0), options: [], payload: new Uint8Array(0) })
        : undefined;
      if (reply) this.send(reply, peer);
      else reply = this.reset(msg.messageId, peer);
    }
    this.remember(dkey, reply, msg.type === MessageType.CON);
    if (ex) ex.resolve(msg);
  }

  private onRequest(msg: CoapMessage, peer: Peer, pk: string): void {
    const dkey = `${pk}#${msg.messageId}`;
    const dup = this.dedup.get(dkey);
    if (dup && dup.expires > Date.now()) {
      // RFC 7252 §4.5: a duplicate gets the same answer again; the handler runs once.
      this.counters.duplicates++;
      if (dup.reply && msg.type === MessageType.CON) this.send(dup.reply, peer);
      return;
    }
    const entry = this.remember(dkey, undefined, msg.type === MessageType.CON);
    const con = msg.type === MessageType.CON;
    let separate = false;
    let timer: NodeJS.Timeout | undefined;
    if (con) {
      timer = setTimeout(() => {
        // Slow handler: empty ACK now, the response later as its own CON (RFC 7252 §5.2.2).
        separate = true;
        const ack = encodeMessage({ type: MessageType.ACK, code: 0, messageId: msg.messageId, token: new Uint8Array(0), options: [], payload: new Uint8Array(0) });
        entry.reply = ack;
        this.send(ack, peer);
      }, this.options.separateResponseAfterMs ?? 1000);
    }
    void this.runHandler(msg, peer).then((res) => {
      clearTimeout(timer);
      if (this.closed) return;
      if (con && !separate) {
        const bytes = this.encodeResponse(MessageType.ACK, msg.messageId, msg.token, res, peer);
        if (bytes) {
          entry.reply = bytes;
          this.send(bytes, peer);
        }
        return;
      }
      if (con) {
        // Separate response: Confirmable, retransmitted until ACKed (RFC 7252 §5.2.2).
        void this.sendSeparate(msg.token, res, peer);
        return;
      }
      // RFC 7252 §5.2.3: a NON request gets a NON response.
      const bytes = this.encodeResponse(MessageType.NON, this.allocateMid(), msg.token, res, peer);
      if (bytes) this.send(bytes, peer);
    });
  }

  private async runHandler(msg: CoapMessage, peer: Peer): Promise<CoapResponse> {
    // RFC 7252 §5.4.1: an unrecognized critical option in a request is rejected with 4.02.
    const unknown = msg.options.find((o) => isCriticalOption(o.number) && !KNOWN_OPTIONS.has(o.number));
    if (unknown) return { code: CoapCode.BadOption, payload: new TextEncoder().encode(`unrecognized critical option ${unknown.number}`) };
    if (!this.handler) return { code: CoapCode.NotFound };
    try {
      return await this.handler(msg, peer);
    } catch (e) {
      this.options.onError?.(e, peer);
      if (e instanceof AtlsError) return { code: codeFromHint(e.coapCode), payload: new TextEncoder().encode(e.code) };
      return { code: CoapCode.InternalServerError };
    }
  }

  private encodeResponse(type: number, messageId: number, token: Uint8Array, res: CoapResponse, peer: Peer): Uint8Array | undefined {
    try {
      return encodeMessage({
        type: type as CoapMessage['type'],
        code: res.code,
        messageId,
        token,
        options: res.options ?? [],
        payload: res.payload ?? new Uint8Array(0),
      });
    } catch (e) {
      this.options.onError?.(e, peer);
      return encodeMessage({ type: type as CoapMessage['type'], code: CoapCode.InternalServerError, messageId, token, options: [], payload: new Uint8Array(0) });
    }
  }

  private async sendSeparate(token: Uint8Array, res: CoapResponse, peer: Peer): Promise<void> {
    const mid = this.allocateMid();
    const bytes = this.encodeResponse(MessageType.CON, mid, token, res, peer);
    if (!bytes) return;
    const pk = peerKey(peer);
    await new Promise<void>((done) => {
      const ex: Exchange = {
        peer: pk,
        messageId: mid,
        token: `sep-${mid}`,
        acked: false,
        resolve: () => {
          this.finish(ex);
          done();
        },
        reject: () => {
          this.finish(ex);
          done();
        },
        retransmit: undefined,
        deadline: setTimeout(() => ex.reject(new AtlsError('TIMEOUT', 'separate response not acknowledged')), maxTransmitWait(this.params)),
      };
      this.byMid.set(`${pk}#${mid}`, ex);
      this.send(bytes, peer);
      ex.onAck = () => ex.resolve({} as CoapMessage);
      let timeout = this.params.ackTimeout * (1 + Math.random() * (this.params.ackRandomFactor - 1));
      let count = 0;
      const again = (): void => {
        if (count >= this.params.maxRetransmit) {
          ex.reject(new AtlsError('TIMEOUT', 'separate response not acknowledged'));
          return;
        }
        count++;
        this.counters.retransmissions++;
        this.send(bytes, peer);
        timeout *= 2;
        ex.retransmit = setTimeout(again, timeout);
      };
      ex.retransmit = setTimeout(again, timeout);
    });
  }

  /** Records a message id for deduplication, evicting expired and then oldest entries (bounded memory). */
  private remember(key: string, reply: Uint8Array | undefined, confirmable: boolean): DedupEntry {
    const now = Date.now();
    const cap = this.options.dedupCapacity ?? 4096;
    // Entries are inserted in time order, so expired ones sit at the front.
    for (const [k, v] of this.dedup) {
      if (v.expires > now && this.dedup.size < cap) break;
      this.dedup.delete(k);
    }
    // RFC 7252 §4.5: EXCHANGE_LIFETIME for CON, NON_LIFETIME for NON.
    const entry: DedupEntry = { expires: now + (confirmable ? exchangeLifetime(this.params) : nonLifetime(this.params)), reply };
    this.dedup.delete(key);
    this.dedup.set(key, entry);
    return entry;
  }
}
