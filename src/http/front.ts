/**
 * A lean HTTP/1.1 front for the ATLS endpoints on a `node:http` server. It
 * reads each connection itself and serves the strict common subset of
 * HTTP/1.1 that the ATLS clients send (a POST or DELETE to an endpoint, a
 * body by Content-Length, unambiguous field lines) straight into the
 * handler's byte-level core, writing the reply's bytes itself: no parser
 * object, `IncomingMessage`, `ServerResponse` or stream per request. Anything
 * else (another path, a chunked body, HTTP/1.0, Expect, Upgrade, a duplicated
 * field, anything odd or malformed) is handed to `node:http` at a request
 * boundary: the unread bytes are put back on the socket and the connection
 * belongs to `node:http`'s own connection listener for the rest of its life,
 * so its rules and answers (400s, fallback app, streamed bodies) apply
 * unchanged. Security rests on the subset being one that `node:http` (llhttp)
 * cannot read differently (docs/decisions.md, "A lean HTTP/1.1 front").
 *
 * @example
 * ```ts
 * const server = http.createServer(atlsNodeListener(handler));
 * attachFront(server, handler, { maxBodyBytes: wholeBodyCap() });
 * ```
 * @module
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { AtlsError } from '../errors.js';
import type { AtlsHandler, AtlsRawRequest } from './server.js';
import { errorReply, type HttpReply } from './wire.js';
import { connectionActivity, type ConnectionActivity } from './connections.js';
import { drainedOrClosed } from '../streams.js';
import { pooledBytes } from '../bytes.js';

/** Options of {@link attachFront}. */
export interface FrontOptions {
  /** Requests count as https (behind a TLS terminator). Default false: the server's sockets are plain. */
  https?: boolean;
  /** Longest body read whole (the handler's whole-body cap); a longer declared body goes to `node:http`, which streams it. */
  maxBodyBytes: number;
  /** Called when the handler itself fails (a bug); the client gets a 500. */
  onError?: (error: unknown) => void;
}

/** Longest request head the front reads; a longer one goes to `node:http`, whose own limit (16 KiB by default) answers it. */
export const FRONT_MAX_HEAD_BYTES = 8192;
/** Bytes of later (pipelined) requests held while one is answered; beyond them reading stops until the answer is out. */
const MAX_AHEAD_BYTES = 65536;
/** Bodies up to this size go out in one buffer with their head (one write, no writev). */
const COPY_BODY_BYTES = 16384;

// Where a connection is: reading a head, reading a body, answering, waiting for the socket to drain, gone.
const HEAD = 0;
const BODY = 1;
const BUSY = 2;
const DRAINING = 3;
const CLOSED = 4;

// What the current deadline is for: nothing, an idle kept-alive connection, a request still arriving.
const WAIT_NONE = 0;
const WAIT_IDLE = 1;
const WAIT_REQUEST = 2;

/** parseHead: the head has not ended yet; the request is not the front's (hand it to node:http). */
const INCOMPLETE = -1;
const HAND_OFF = -2;

/** tchar (RFC 9110 §5.6.2): the bytes of a field name. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TCHAR[c.charCodeAt(0)] = 1;

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const VERSION = Buffer.from(' HTTP/1.1\r\n', 'latin1');
const POST = Buffer.from('POST ', 'latin1');
const DELETE = Buffer.from('DELETE ', 'latin1');
/** Content-Length as llhttp and the core read it alike: no sign, no leading zero, at most 15 digits. */
const CONTENT_LENGTH = /^(?:0|[1-9][0-9]{0,14})$/;
const FIELD_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Field names clients send on every request (Go's net/http, undici, curl, the ATLS clients), matched on
 * their bytes without regard to case so that no string is made or lower-cased for them; the index is
 * the slot of the connection's last value (see {@link FrontConnection.lastValues}).
 */
const KNOWN_NAMES = [
  'host', 'user-agent', 'content-length', 'content-type', 'accept', 'accept-encoding', 'accept-language', 'cookie',
  'connection', 'atls-flight-length', 'transfer-encoding', 'expect', 'upgrade', 'te', 'keep-alive', 'forwarded',
  'x-forwarded-for', 'sec-fetch-mode', 'authorization', 'cache-control', 'origin', 'referer', 'pragma',
];
interface KnownName {
  /** Lower case, as the front names fields. */
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly slot: number;
}
const KNOWN_BY_LENGTH: KnownName[][] = [];
KNOWN_NAMES.forEach((name, slot) => (KNOWN_BY_LENGTH[name.length] ??= []).push({ name, bytes: Buffer.from(name, 'latin1'), slot }));

/** The known name that bytes `at..end` of `buf` spell in any case (they are tchars), or undefined. */
function knownName(buf: Buffer, at: number, end: number): KnownName | undefined {
  const candidates = KNOWN_BY_LENGTH[end - at];
  if (candidates === undefined) return undefined;
  next: for (const k of candidates) {
    const b = k.bytes;
    // The names are lower-case letters and '-': a tchar ORed with 0x20 equals one of them only when it is that letter in either case, or '-'.
    for (let i = 0; i < b.length; i++) if ((buf[at + i]! | 0x20) !== b[i]) continue next;
    return k;
  }
  return undefined;
}

/** Bytes `at..` of `buf` spell `s` (a client repeats its values request after request). */
function spells(buf: Buffer, at: number, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (buf[at + i] !== s.charCodeAt(i)) return false;
  return true;
}

const HOST = KNOWN_NAMES.indexOf('host');
const CONNECTION = KNOWN_NAMES.indexOf('connection');
const CONTENT_LENGTH_SLOT = KNOWN_NAMES.indexOf('content-length');
const TRANSFER_ENCODING = KNOWN_NAMES.indexOf('transfer-encoding');
const EXPECT = KNOWN_NAMES.indexOf('expect');
const UPGRADE = KNOWN_NAMES.indexOf('upgrade');
/** Slot of each known name. */
const KNOWN_SLOT = new Map(KNOWN_NAMES.map((name, slot) => [name, slot]));

/** `buf` so far agrees with the start of `prefix` (it may still be shorter than the prefix). */
function beginsWith(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  for (let i = 0; i < n; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}

function startsWith(buf: Buffer, at: number, prefix: Buffer): boolean {
  if (buf.length - at < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[at + i] !== prefix[i]) return false;
  return true;
}

let cachedDate: string | undefined;
/** The Date field, built at most once a second (as `node:http` does). */
function utcDate(): string {
  if (cachedDate === undefined) {
    const d = new Date();
    cachedDate = d.toUTCString();
    setTimeout(() => (cachedDate = undefined), 1000 - d.getMilliseconds()).unref();
  }
  return cachedDate;
}

/** One request the front serves, as the handler's core sees it. */
class FrontRequest implements AtlsRawRequest {
  read: Uint8Array | undefined = undefined;
  content: Uint8Array = EMPTY;

  constructor(
    private readonly conn: FrontConnection,
    readonly method: string,
    readonly pathname: string,
    readonly https: boolean,
    readonly authority: string,
    /** Values of the known fields by slot ({@link KNOWN_NAMES}), of the others by lower-case name (the front hands off a request that repeats a name). */
    private readonly values: Array<string | undefined>,
    private readonly others: Map<string, string> | undefined,
    readonly length: number,
    /** The client asked to close the connection after the answer. */
    readonly close: boolean,
  ) {}

  get remoteAddress(): string | undefined {
    return this.conn.remoteAddress;
  }

  header(name: string): string | undefined {
    const slot = KNOWN_SLOT.get(name);
    return slot !== undefined ? this.values[slot] : this.others?.get(name);
  }

  body(max: number): Uint8Array {
    // The body arrived whole before the core ran (at most the whole-body cap): no promise.
    if (this.content.length > max) throw new AtlsError('TOO_LARGE', `body of ${this.content.length} bytes exceeds ${max}`, { source: 'remote' });
    this.read = this.content;
    return this.content;
  }

  outer(): Request {
    const url = new URL(this.pathname, `${this.https ? 'https' : 'http'}://${this.authority}`);
    const headers = new Headers();
    this.values.forEach((value, slot) => value !== undefined && headers.append(KNOWN_NAMES[slot]!, value));
    for (const [name, value] of this.others ?? []) headers.append(name, value);
    const hasBody = this.method !== 'GET' && this.method !== 'HEAD';
    return new Request(url, { method: this.method, headers, ...(hasBody ? { body: this.content } : {}) });
  }
}

const EMPTY = new Uint8Array(0);
const EMPTY_BUFFER = Buffer.alloc(0);
/** The first buffer of a body that arrives in pieces: at most this, unless more is already there. */
const MIN_BODY_BUFFER = 65536;

/**
 * Parses one request head at the start of `buf` (strictly: RFC 9112 §2-§6 without any of the leniencies
 * llhttp or other parsers allow). Returns the request, INCOMPLETE, or HAND_OFF for anything outside the subset.
 */
function parseHead(front: Front, conn: FrontConnection, buf: Buffer, scanFrom: number): FrontRequest | number {
  // Bytes that cannot begin "POST " or "DELETE " go to node:http at once: a TLS ClientHello sent to the
  // plain port is answered 400 now, not held until the head's deadline (it has no CRLFCRLF).
  if (scanFrom === 0 && !beginsWith(buf, POST) && !beginsWith(buf, DELETE)) return HAND_OFF;
  const at = buf.indexOf(CRLFCRLF, scanFrom);
  if (at < 0) return buf.length > FRONT_MAX_HEAD_BYTES ? HAND_OFF : INCOMPLETE;
  if (at + 4 > FRONT_MAX_HEAD_BYTES) return HAND_OFF;
  let method: string;
  let i: number;
  if (startsWith(buf, 0, POST)) {
    method = 'POST';
    i = 5;
  } else if (startsWith(buf, 0, DELETE)) {
    method = 'DELETE';
    i = 7;
  } else return HAND_OFF;
  // origin-form target (RFC 9112 §3.2.1): visible ASCII, and exactly an endpoint path (no query).
  const targetAt = i;
  while (i < at && buf[i] !== 0x20) {
    const c = buf[i]!;
    if (c < 0x21 || c > 0x7e) return HAND_OFF;
    i++;
  }
  if (i === targetAt || buf[targetAt] !== 0x2f) return HAND_OFF;
  const last = conn.lastTarget;
  const target = last !== undefined && last.length === i - targetAt && spells(buf, targetAt, last) ? last : buf.toString('latin1', targetAt, i);
  if (!front.handler.matches(target)) return HAND_OFF;
  conn.lastTarget = target; // an endpoint path: short
  if (!startsWith(buf, i, VERSION)) return HAND_OFF; // HTTP/1.1 only, one SP, CRLF
  i += VERSION.length;
  // Known fields by slot, others (rare) in a map made when the first one comes.
  const values = new Array<string | undefined>(KNOWN_NAMES.length);
  let others: Map<string, string> | undefined;
  const lastValues = conn.lastValues;
  const end = at + 2; // the last field line's CRLF
  while (i < end) {
    // field-name ":" OWS field-value OWS CRLF (RFC 9112 §5): no space before the colon, no obs-fold.
    const nameAt = i;
    let upper = false;
    for (let c = buf[i]!; TCHAR[c] === 1; c = buf[++i]!) if (c >= 0x41 && c <= 0x5a) upper = true;
    if (i === nameAt || buf[i] !== 0x3a) return HAND_OFF;
    const nameEnd = i;
    const known = knownName(buf, nameAt, nameEnd);
    i++;
    while (buf[i] === 0x20 || buf[i] === 0x09) i++;
    let value: string | undefined;
    if (known !== undefined) {
      // The connection's last value of this field, when the line repeats it up to its CR: that string, no scan
      // (its bytes passed the scan below when it was made, and it ends in no OWS).
      const last = lastValues[known.slot];
      if (last !== undefined && buf[i + last.length] === 0x0d && spells(buf, i, last)) {
        value = last;
        i += last.length;
      }
    }
    if (value === undefined) {
      const valueAt = i;
      let valueEnd = i;
      for (;;) {
        const c = buf[i]!;
        if (c === 0x0d) break;
        // VCHAR, SP, HTAB only: no CTL, no NUL, no bare LF, no obs-text.
        if (c > 0x7e || (c < 0x20 && c !== 0x09)) return HAND_OFF;
        i++;
        if (c !== 0x20 && c !== 0x09) valueEnd = i;
      }
      value = buf.toString('latin1', valueAt, valueEnd);
      if (known !== undefined) conn.keep(known.slot, value);
    }
    if (buf[i + 1] !== 0x0a) return HAND_OFF; // a bare CR
    i += 2;
    // A repeated field: node:http joins (or drops) them by rules of its own.
    if (known !== undefined) {
      if (values[known.slot] !== undefined) return HAND_OFF;
      values[known.slot] = value;
    } else {
      const raw = buf.toString('latin1', nameAt, nameEnd);
      const name = upper ? raw.toLowerCase() : raw;
      others ??= new Map();
      const before = others.size;
      others.set(name, value);
      if (others.size === before) return HAND_OFF;
    }
  }
  // Framing and connection management the subset leaves to node:http (RFC 9112 §6.1, §9.3; RFC 9110 §10.1.1, §7.8).
  if (values[TRANSFER_ENCODING] !== undefined || values[EXPECT] !== undefined || values[UPGRADE] !== undefined) return HAND_OFF;
  const host = values[HOST];
  if (host === undefined) return HAND_OFF; // RFC 9112 §3.2: node:http answers 400
  let close = false;
  const connection = values[CONNECTION];
  if (connection !== undefined) {
    const c = connection.toLowerCase();
    if (c === 'close') close = true;
    else if (c !== 'keep-alive') return HAND_OFF;
  }
  let length = 0;
  const declared = values[CONTENT_LENGTH_SLOT];
  if (declared !== undefined) {
    if (!CONTENT_LENGTH.test(declared)) return HAND_OFF;
    length = Number(declared);
    if (length > front.maxBodyBytes) return HAND_OFF; // node:http streams it (or answers 413)
  }
  conn.headBytes = at + 4;
  return new FrontRequest(conn, method, target, front.https, host, values, others, length, close);
}

/** The status line and field lines of a reply, in the order and spelling `node:http` writes them. */
function replyHead(front: Front, reply: HttpReply, keepAlive: boolean, length: number): string {
  let head = `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? 'unknown'}\r\n`;
  for (const [name, value] of reply.headers) {
    // As node:http refuses them (ERR_INVALID_HTTP_TOKEN, ERR_INVALID_CHAR): a field line must not be split.
    if (!FIELD_NAME.test(name) || BAD_VALUE.test(value)) throw new AtlsError('INTERNAL', `invalid reply field ${JSON.stringify(name)}`);
    head += `${name}: ${value}\r\n`;
  }
  if (length >= 0) head += `content-length: ${length}\r\n`;
  head += `Date: ${utcDate()}\r\n`;
  if (keepAlive) {
    head += 'Connection: keep-alive\r\n';
    const timeout = front.server.keepAliveTimeout;
    if (timeout) head += `Keep-Alive: timeout=${Math.floor(timeout / 1000)}\r\n`;
  } else head += 'Connection: close\r\n';
  if (length < 0) head += 'Transfer-Encoding: chunked\r\n';
  return `${head}\r\n`;
}

/**
 * The head of the reply the front sends most (a protected answer: the handler's frozen field list), as the
 * bytes before and after its content-length digits, made once per `Date` second and connection setting.
 */
interface HeadTemplate {
  readonly headers: HttpReply['headers'];
  readonly status: number;
  readonly keepAlive: boolean;
  readonly timeout: number;
  readonly date: string;
  readonly before: Buffer;
  readonly after: Buffer;
}
let headTemplate: HeadTemplate | undefined;

/** The template for `reply`, or undefined when its fields may change (an array that is not frozen). */
function templateFor(front: Front, reply: HttpReply, keepAlive: boolean): HeadTemplate | undefined {
  if (!Object.isFrozen(reply.headers)) return undefined;
  const date = utcDate();
  const timeout = front.server.keepAliveTimeout;
  const t = headTemplate;
  if (t !== undefined && t.headers === reply.headers && t.status === reply.status && t.keepAlive === keepAlive && t.timeout === timeout && t.date === date) {
    return t;
  }
  const head = replyHead(front, reply, keepAlive, 0);
  const at = head.indexOf('\r\ncontent-length: 0\r\n') + 18;
  headTemplate = {
    headers: reply.headers,
    status: reply.status,
    keepAlive,
    timeout,
    date,
    before: Buffer.from(head.slice(0, at), 'latin1'),
    after: Buffer.from(head.slice(at + 1), 'latin1'),
  };
  return headTemplate;
}

/** Digits of non-negative integer `n` in decimal. */
function decimalDigits(n: number): number {
  let digits = 1;
  for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
  return digits;
}

/** Writes non-negative integer `n`, `digits` long, in decimal into `out` at `at`. */
function writeDecimal(out: Uint8Array, at: number, digits: number, n: number): void {
  for (let i = at + digits - 1, x = n; i >= at; i--, x = Math.floor(x / 10)) out[i] = 0x30 + (x % 10);
}

/**
 * Chars of field values a connection keeps between requests (the Go client's and undici's repeated values
 * are ~150-250): a connection idle between requests holds at most this much of them, whatever heads it sent.
 */
const KEPT_VALUE_CHARS = 1024;

/** Answers being given at once, on this stack (at most one: see FrontConnection.serve). */
let syncAnswers = 0;

/** One connection while the front holds it. */
class FrontConnection {
  state = HEAD;
  /** Bytes received and not yet parsed (a head in progress, later pipelined requests). */
  buf: Buffer | undefined = undefined;
  /** How much of `buf` was searched for the head's end already. */
  scanned = 0;
  /** Length of the head just parsed. */
  headBytes = 0;
  /** The last request's target and known fields' values (by {@link KNOWN_NAMES} slot): the next request's strings when it repeats their bytes. */
  lastTarget: string | undefined = undefined;
  readonly lastValues: Array<string | undefined> = KNOWN_NAMES.map(() => undefined);
  /** Chars of the kept values: at most {@link KEPT_VALUE_CHARS}, so that an idle connection holds little. */
  keptChars = 0;
  /** The request being read or answered. */
  request: FrontRequest | undefined = undefined;
  /**
   * The body being read, copied in as it arrives: it starts at 64 KiB at most and doubles up to the declared
   * length, so that a client trickling a byte at a time holds one buffer, and one declaring a length it never
   * sends holds no more than it sent (as node:http's reading does).
   */
  body: Buffer = EMPTY_BUFFER;
  have = 0;
  waiting = WAIT_REQUEST;
  /** Date.now() at which the current wait ends. */
  deadline: number;
  /** Date.now() at which the request in progress must have arrived whole. */
  requestDeadline: number;
  /** Close once the answer in progress is out (the client asked, ended its side, or the server closes). */
  closeAfter = false;
  paused = false;
  readonly remoteAddress: string | undefined;
  readonly onData = (chunk: Buffer): void => this.data(chunk);
  readonly onEnd = (): void => this.ended();
  readonly onClose = (): void => this.closed();
  readonly onDrain = (): void => this.drained();
  readonly onReply = (reply: HttpReply): void => this.answer(reply);
  readonly onServeError = (e: unknown): void => {
    this.front.options.onError?.(e); // serve() never rejects: a bug of ours
    this.answer(errorReply(e));
  };

  constructor(
    readonly front: Front,
    readonly socket: Socket,
  ) {
    this.remoteAddress = socket.remoteAddress;
    // As node:http: the first request's head is due headersTimeout after connecting.
    const now = Date.now();
    this.deadline = after(now, front.server.headersTimeout);
    this.requestDeadline = after(now, front.server.requestTimeout);
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('error', noop); // 'close' follows
    socket.on('close', this.onClose);
  }

  /** Keeps `value` as the connection's last of `slot` while the kept values stay within their budget; forgets the old one. */
  keep(slot: number, value: string): void {
    const old = this.lastValues[slot];
    const chars = this.keptChars - (old === undefined ? 0 : old.length);
    if (chars + value.length <= KEPT_VALUE_CHARS) {
      this.lastValues[slot] = value;
      this.keptChars = chars + value.length;
    } else {
      this.lastValues[slot] = undefined;
      this.keptChars = chars;
    }
  }

  private data(chunk: Buffer): void {
    switch (this.state) {
      case HEAD:
        if (this.buf === undefined) {
          this.buf = chunk;
          if (this.waiting === WAIT_IDLE) {
            // The first byte of a request: its head and the whole of it are due from now.
            const now = Date.now();
            this.deadline = after(now, this.front.server.headersTimeout);
            this.requestDeadline = after(now, this.front.server.requestTimeout);
            this.waiting = WAIT_REQUEST;
          }
        } else this.buf = Buffer.concat([this.buf, chunk]);
        this.parse();
        return;
      case BODY:
        this.bodyData(chunk);
        return;
      case BUSY:
      case DRAINING:
        // Pipelined requests wait for the answer in progress; a client that sends too far ahead is not read from.
        this.buf = this.buf === undefined ? chunk : Buffer.concat([this.buf, chunk]);
        if (this.buf.length > MAX_AHEAD_BYTES && !this.paused) {
          this.paused = true;
          this.socket.pause();
        }
        return;
      default:
        return; // closing: the rest is not read
    }
  }

  /** Reads requests out of `buf` while the connection is free to answer one. */
  private parse(): void {
    const buf = this.buf!;
    const got = parseHead(this.front, this, buf, this.scanned > 3 ? this.scanned - 3 : 0);
    if (got === INCOMPLETE) {
      this.scanned = buf.length;
      return;
    }
    this.scanned = 0;
    if (got === HAND_OFF) {
      this.handOff();
      return;
    }
    const request = got as FrontRequest;
    this.request = request;
    this.front.activity?.busy(this.socket);
    const bodyAt = this.headBytes;
    const rest = buf.length - bodyAt;
    if (rest >= request.length) {
      request.content = buf.subarray(bodyAt, bodyAt + request.length);
      this.buf = rest === request.length ? undefined : buf.subarray(bodyAt + request.length);
      this.serve();
      return;
    }
    this.state = BODY;
    this.deadline = this.requestDeadline;
    this.body = Buffer.allocUnsafe(Math.min(request.length, Math.max(MIN_BODY_BUFFER, 2 * rest)));
    this.have = 0;
    this.buf = undefined;
    if (rest > 0) this.bodyData(buf.subarray(bodyAt));
  }

  private bodyData(chunk: Buffer): void {
    const request = this.request!;
    const take = Math.min(chunk.length, request.length - this.have);
    if (this.have + take > this.body.length) {
      const grown = Buffer.allocUnsafe(Math.min(request.length, Math.max(2 * this.body.length, this.have + take)));
      this.body.copy(grown, 0, 0, this.have);
      this.body = grown;
    }
    chunk.copy(this.body, this.have, 0, take);
    this.have += take;
    if (this.have < request.length) return;
    request.content = this.body.subarray(0, request.length);
    this.body = EMPTY_BUFFER;
    this.buf = take === chunk.length ? undefined : chunk.subarray(take);
    this.serve();
  }

  private serve(): void {
    this.state = BUSY;
    this.waiting = WAIT_NONE;
    if (this.request!.close) this.closeAfter = true;
    const request = this.request!;
    if (syncAnswers > 0) {
      // Inside an answer given at once (a pipelined request read after it): through a promise, so that a
      // long pipelined burst does not answer request after request on one stack.
      this.front.handler.serve(request).then(this.onReply, this.onServeError);
      return;
    }
    let reply: HttpReply | Promise<HttpReply>;
    try {
      reply = this.front.handler.serveHeld(request, request.content);
    } catch (e) {
      this.onServeError(e); // serveHeld never throws: a bug of ours
      return;
    }
    if (reply instanceof Promise) {
      reply.then(this.onReply, this.onServeError);
      return;
    }
    syncAnswers++;
    try {
      this.answer(reply);
    } finally {
      syncAnswers--;
    }
  }

  private answer(reply: HttpReply): void {
    const socket = this.socket;
    this.request = undefined;
    if (this.state === CLOSED || socket.destroyed) return;
    // A closing server answers what it has with Connection: close, as node:http does.
    if (!this.front.server.listening) this.closeAfter = true;
    const keepAlive = !this.closeAfter;
    const body = reply.body;
    try {
      if (body instanceof Uint8Array) {
        const template = body.length <= COPY_BODY_BYTES ? templateFor(this.front, reply, keepAlive) : undefined;
        if (template !== undefined) {
          // Head and body in one buffer, the head copied from the template: no string is built or encoded per reply.
          const digits = decimalDigits(body.length);
          const out = pooledBytes(template.before.length + digits + template.after.length + body.length);
          out.set(template.before, 0);
          writeDecimal(out, template.before.length, digits, body.length);
          out.set(template.after, template.before.length + digits);
          out.set(body, template.before.length + digits + template.after.length);
          socket.write(out);
        } else if (body.length <= COPY_BODY_BYTES) {
          const head = replyHead(this.front, reply, keepAlive, body.length);
          const out = Buffer.allocUnsafe(head.length + body.length);
          out.write(head, 0, 'latin1');
          out.set(body, head.length);
          socket.write(out);
        } else {
          socket.cork();
          socket.write(replyHead(this.front, reply, keepAlive, body.length), 'latin1');
          socket.write(body);
          socket.uncork();
        }
      } else {
        socket.write(replyHead(this.front, reply, keepAlive, -1), 'latin1');
        void this.writeChunks(body);
        return;
      }
    } catch (e) {
      this.front.options.onError?.(e);
      socket.destroy();
      return;
    }
    this.answered();
  }

  /** A streamed body, chunked (RFC 9112 §7.1), read only as fast as the client takes it; one that fails is cut off. */
  private async writeChunks(body: ReadableStream<Uint8Array>): Promise<void> {
    const socket = this.socket;
    const reader = body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (socket.destroyed) throw new Error('client went away');
        if (value.length === 0) continue;
        socket.cork();
        socket.write(`${value.length.toString(16)}\r\n`, 'latin1');
        socket.write(value);
        const more = socket.write('\r\n', 'latin1');
        socket.uncork();
        if (!more) await drainedOrClosed(socket);
      }
      if (socket.destroyed) throw new Error('client went away');
      socket.write('0\r\n\r\n', 'latin1');
    } catch {
      // A body that fails half-way must not look complete: the connection is cut before the last chunk.
      socket.destroy();
      await reader.cancel().catch(() => undefined);
      return;
    }
    this.answered();
  }

  /** The answer is written: the next request may be read once the socket has taken it. */
  private answered(): void {
    this.front.activity?.idle(this.socket);
    if (this.closeAfter) {
      this.finish();
      return;
    }
    if (this.socket.writableNeedDrain) {
      this.state = DRAINING;
      this.socket.once('drain', this.onDrain);
      return;
    }
    this.drained();
  }

  /** Ends the connection once what is written has gone out. */
  private finish(): void {
    this.state = CLOSED;
    this.front.conns.delete(this);
    this.socket.destroySoon();
  }

  private drained(): void {
    if (this.state === CLOSED) return;
    if (this.closeAfter) {
      this.finish();
      return;
    }
    this.state = HEAD;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    const now = Date.now();
    if (this.buf === undefined) {
      this.waiting = WAIT_IDLE;
      this.deadline = after(now, this.front.server.keepAliveTimeout);
      return;
    }
    this.waiting = WAIT_REQUEST;
    this.deadline = after(now, this.front.server.headersTimeout);
    this.requestDeadline = after(now, this.front.server.requestTimeout);
    this.parse();
  }

  /** Gives the connection to node:http from the request that starts `buf` on. */
  handOff(): void {
    const socket = this.socket;
    this.state = CLOSED;
    this.front.conns.delete(this);
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('error', noop);
    socket.off('close', this.onClose);
    // Paused with no 'data' listener, so that the bytes put back wait for node:http's parser.
    socket.pause();
    if (this.buf !== undefined) socket.unshift(this.buf);
    this.buf = undefined;
    // node:http reads the socket through its 'data' events, where the put-back bytes are, not straight from the handle.
    const handle = (socket as Socket & { _handle?: { _consumed?: boolean } | null })._handle;
    if (handle) handle._consumed = true;
    this.front.nodeListener.call(this.front.server, socket);
    socket.resume();
  }

  /** The client ended its side: an answer in progress still goes out, then the connection closes. */
  private ended(): void {
    if (this.state === BUSY || this.state === DRAINING) {
      this.closeAfter = true;
      if (this.state === DRAINING) this.finish();
      return;
    }
    this.state = CLOSED;
    this.front.conns.delete(this);
    if (this.buf === undefined && this.request === undefined) {
      this.socket.end(); // between requests
      return;
    }
    // A request cut short (RFC 9112 §8: incomplete): 400, as node:http's parser answers its own EOF error.
    this.clientError(Object.assign(new Error('Parse Error: Invalid EOF state'), { code: 'HPE_INVALID_EOF_STATE' }), 'HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  }

  /** node:http's way with a request it cannot serve: the server's 'clientError' listeners answer, else `answer` does. */
  private clientError(err: Error, answer: string): void {
    if (this.front.server.listenerCount('clientError') > 0) this.front.server.emit('clientError', err, this.socket);
    else {
      this.socket.end(answer);
      this.socket.destroySoon();
    }
  }

  private closed(): void {
    this.state = CLOSED;
    this.front.conns.delete(this);
    if (this.request !== undefined) {
      this.request = undefined;
      this.front.activity?.idle(this.socket);
    }
  }

  /** A request not all there by its deadline (408 as node:http sends it), or a kept-alive connection idle too long. */
  expire(): void {
    this.state = CLOSED;
    this.front.conns.delete(this);
    if (this.waiting === WAIT_IDLE) {
      this.socket.destroy();
      return;
    }
    this.clientError(Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
  }

  /** Between requests, nothing received of the next. */
  get idle(): boolean {
    return this.state === HEAD && this.buf === undefined;
  }
}

function noop(): void {}

/** A deadline `ms` from `now`; 0 means none (as node:http reads its timeouts). */
function after(now: number, ms: number): number {
  return ms > 0 ? now + ms : Infinity;
}

/** The front of one server. */
class Front {
  readonly conns = new Set<FrontConnection>();
  readonly https: boolean;
  readonly maxBodyBytes: number;
  activity: ConnectionActivity | undefined;
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly server: Server,
    readonly handler: AtlsHandler,
    readonly nodeListener: (socket: Socket) => void,
    readonly options: FrontOptions,
  ) {
    this.https = options.https ?? false;
    this.maxBodyBytes = options.maxBodyBytes;
  }

  readonly onConnection = (socket: Socket): void => {
    if (socket.destroyed) return; // refused by the connection limits
    if (this.server.maxRequestsPerSocket) {
      this.nodeListener.call(this.server, socket); // node:http counts requests per socket and answers 503s beyond
      return;
    }
    this.activity ??= connectionActivity(this.server);
    this.conns.add(new FrontConnection(this, socket));
  };

  /** Deadlines are checked every quarter of the shortest timeout, at most every second (as node:http's connectionsCheckingInterval). */
  start(): void {
    if (this.sweeper) return;
    const shortest = Math.min(this.server.headersTimeout, this.server.keepAliveTimeout || Infinity, this.server.requestTimeout || Infinity);
    const every = Math.min(1000, Math.max(50, Math.floor(shortest / 4)));
    this.sweeper = setInterval(() => this.sweep(), every).unref();
  }

  stop(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private sweep(): void {
    const now = Date.now();
    for (const conn of this.conns) {
      if (conn.waiting !== WAIT_NONE && now > conn.deadline) conn.expire();
    }
  }

  closeIdle(): void {
    for (const conn of this.conns) {
      if (conn.idle) {
        this.conns.delete(conn);
        conn.state = CLOSED;
        conn.socket.destroy();
      }
    }
  }

  closeAll(): void {
    for (const conn of this.conns) {
      conn.state = CLOSED;
      conn.socket.destroy();
    }
    this.conns.clear();
  }
}

/**
 * Puts the front before `server`'s own `node:http` connection handling: every new connection is read by
 * the front until a request falls outside its subset. Call it on a fresh `http.Server` (before `listen`),
 * after {@link limitConnections} if that guards the server. `closeIdleConnections`, `closeAllConnections`
 * and `close` cover the front's connections too.
 */
export function attachFront(server: Server, handler: AtlsHandler, options: FrontOptions): void {
  const own = server.listeners('connection');
  const nodeListener = own.find((l) => l.name === 'connectionListener') as ((socket: Socket) => void) | undefined;
  if (!nodeListener) throw new AtlsError('INVALID_STATE', 'not a fresh node:http server');
  server.off('connection', nodeListener);
  const front = new Front(server, handler, nodeListener, options);
  server.on('connection', front.onConnection);
  server.on('listening', () => front.start());
  server.on('close', () => front.stop());
  const closeIdle = server.closeIdleConnections.bind(server);
  const closeAll = server.closeAllConnections.bind(server);
  server.closeIdleConnections = (): void => {
    front.closeIdle();
    closeIdle();
  };
  server.closeAllConnections = (): void => {
    front.closeAll();
    closeAll();
  };
}
