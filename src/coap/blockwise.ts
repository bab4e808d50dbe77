/**
 * Block-wise transfer (RFC 7959) with Request-Tag (RFC 9175).
 *
 * Server side ({@link BlockwiseServer}): reassembles Block1 request bodies
 * keyed on peer endpoint + Request-Tag + method + Uri-Path, NOT on the token,
 * because clients such as libcoap change the token on every block; serves
 * large responses as Block2 blocks from a cache, so that a continuation never
 * runs the application handler again; bounds the number of transfers per peer
 * and globally and the size of every body.
 *
 * Client side ({@link blockwiseRequest}): splits a large request body into
 * Block1 blocks with a fresh Request-Tag and fetches every Block2 block of a
 * large response.
 *
 * @example
 * ```ts
 * const bw = new BlockwiseServer({ maxBodyBytes: 64 * 1024 });
 * endpoint.handle((msg, peer) => bw.handle(msg, peer, async (req) => ({ code: CoapCode.Content, payload: req.payload })));
 * ```
 * @module
 */
import { randomBytes } from 'node:crypto';
import { AtlsError } from '../errors.js';
import { concatBytes } from '../bytes.js';
import { CoapCode, MAX_SZX, MIN_SZX, OptionNumber, DEFAULT_BLOCK_SIZE } from './constants.js';
import { FairShareLedger } from '../store/fair-shares.js';
import { peerGroup } from '../peers.js';
import {
  decodeUint,
  encodeUint,
  getOption,
  getOptions,
  getUintOption,
  uintOption,
  withoutOptions,
  type CoapMessage,
  type CoapOption,
} from './packet.js';

/** A Block1 or Block2 option value (RFC 7959 §2.2). */
export interface BlockValue {
  /** Block number (0 .. 2^20-1). */
  num: number;
  /** More blocks follow. */
  more: boolean;
  /** Size exponent: block size is 2^(szx+4), 0..6. */
  szx: number;
}

/** Block size in bytes of an SZX (RFC 7959 §2.2). */
export function blockSizeOf(szx: number): number {
  return 1 << (szx + 4);
}

/** The SZX of a block size 16..1024 that is a power of two; throws INVALID_ARGUMENT otherwise. */
export function szxOf(size: number): number {
  const szx = Math.log2(size) - 4;
  if (!Number.isInteger(szx) || szx < MIN_SZX || szx > MAX_SZX) {
    throw new AtlsError('INVALID_ARGUMENT', `block size ${size} is not one of 16, 32, ..., 1024`);
  }
  return szx;
}

/** Encodes a block option value: NUM | M | SZX in 0..3 bytes (RFC 7959 §2.2). */
export function encodeBlock(b: BlockValue): Uint8Array {
  if (!Number.isInteger(b.num) || b.num < 0 || b.num >= 1 << 20) throw new AtlsError('INVALID_ARGUMENT', 'block number out of range');
  return encodeUint(b.num * 16 + (b.more ? 8 : 0) + b.szx);
}

/** Decodes a block option value; more than 3 bytes or SZX 7 is malformed (RFC 7959 §2.2). */
export function decodeBlock(value: Uint8Array): BlockValue {
  if (value.length > 3) throw new AtlsError('MALFORMED_MESSAGE', `block option of ${value.length} bytes`, { source: 'remote' });
  const v = decodeUint(value, 'block option');
  const szx = v & 0x07;
  if (szx === 7) throw new AtlsError('MALFORMED_MESSAGE', 'block option with reserved SZX 7', { source: 'remote' }); // RFC 7959 §2.2
  return { num: v >> 4, more: (v & 0x08) !== 0, szx };
}

/** A Block1/Block2 option. */
export function blockOption(number: number, b: BlockValue): CoapOption {
  return { number, value: encodeBlock(b) };
}

/** A response before the endpoint adds type, message id and token. */
export interface CoapResponse {
  code: number;
  options?: CoapOption[];
  payload?: Uint8Array;
}

/** Where a datagram came from. */
export interface Peer {
  address: string;
  port: number;
}

/** Key of a peer endpoint. */
export function peerKey(peer: Peer): string {
  return `${peer.address}|${peer.port}`;
}

/** Limits of a {@link BlockwiseServer}. */
export interface BlockwiseServerOptions {
  /** Largest reassembled request body and largest response body (default 64 KiB). */
  maxBodyBytes?: number;
  /** Concurrent Block1 transfers of one peer endpoint (default 16). */
  maxTransfersPerPeer?: number;
  /** Concurrent Block1 transfers overall (default 256). */
  maxTransfers?: number;
  /** Largest block the server sends or asks for (default 1024). */
  maxBlockSize?: number;
  /** A transfer idle this long is dropped (default 60 s). */
  transferTimeoutMs?: number;
  /** Cached Block2 responses overall (default 256); each lives `transferTimeoutMs`. */
  maxCachedResponses?: number;
  /** Clock, for tests. */
  now?: () => number;
  /** Told when a cap is hit and what gave way or was refused (`peer`: the fairness group). Must not throw. */
  onEvent?: (e: BlockwiseLimitEvent) => void;
}

/** A block-wise cap was hit, a peer's oldest entry gave way, or a transfer was refused. */
export type BlockwiseLimitEvent =
  | { type: 'limit'; limit: 'transfers' | 'transfers-per-endpoint' | 'cached-responses'; peer: string }
  | { type: 'evicted'; what: 'transfer' | 'cached-response'; peer: string; reason: 'transfers' | 'cached-responses' }
  | { type: 'refused'; what: 'transfer'; peer: string; reason: 'transfers-per-endpoint' };

interface Transfer {
  peer: string;
  chunks: Uint8Array[];
  received: number;
  expires: number;
}

interface CachedResponse {
  peer: string;
  tag: string | undefined;
  code: number;
  options: CoapOption[];
  body: Uint8Array;
  expires: number;
}

/** Counters, for tests and monitoring. */
export interface BlockwiseStats {
  transfers: number;
  cachedResponses: number;
  bufferedBytes: number;
}

/** The application handler behind the block-wise layer: sees whole bodies only. */
export type AssembledHandler = (req: CoapMessage, peer: Peer, answer: AnswerShape) => Promise<CoapResponse> | CoapResponse;

/** How the answer to an assembled request will go out: its first datagram carries at most one block. */
export interface AnswerShape {
  /** Largest payload of the answer's first datagram (the block size the client asked for, or the server's). */
  firstBlockBytes: number;
}

function hex(b: Uint8Array | undefined): string {
  return b ? Buffer.from(b).toString('hex') : '';
}

function pathKey(msg: CoapMessage): string {
  return getOptions(msg, OptionNumber.UriPath)
    .map((o) => hex(o.value))
    .join('/');
}

function errorResponse(code: number, diagnostic: string, options: CoapOption[] = []): CoapResponse {
  // A diagnostic payload is allowed on error responses (RFC 7252 §5.5.2).
  return { code, options, payload: new TextEncoder().encode(diagnostic) };
}

/**
 * Server side of RFC 7959: reassembly of Block1 bodies and Block2 serving of
 * large responses, with bounded memory. One instance per server endpoint.
 */
export class BlockwiseServer {
  private readonly maxBody: number;
  private readonly maxPerPeer: number;
  private readonly maxTransfers: number;
  private readonly maxSzx: number;
  private readonly timeout: number;
  private readonly maxCached: number;
  private readonly now: () => number;
  private readonly onEvent: BlockwiseServerOptions['onEvent'];
  private readonly transfers = new Map<string, Transfer>();
  private readonly responses = new Map<string, CachedResponse>();
  /**
   * Fair shares of both tables: at a cap the peer (address, IPv6 /64)
   * holding the most entries loses its oldest, so a flood from other ports
   * or addresses cannot evict or lock out another peer's transfer (expiry
   * stays with the tables' own `expires`).
   */
  private readonly transferShares: FairShareLedger<string>;
  private readonly responseShares: FairShareLedger<string>;

  constructor(options: BlockwiseServerOptions = {}) {
    this.maxBody = options.maxBodyBytes ?? 64 * 1024;
    this.maxPerPeer = options.maxTransfersPerPeer ?? 16;
    this.maxTransfers = options.maxTransfers ?? 256;
    this.maxSzx = szxOf(options.maxBlockSize ?? DEFAULT_BLOCK_SIZE);
    this.timeout = options.transferTimeoutMs ?? 60_000;
    this.maxCached = options.maxCachedResponses ?? 256;
    this.now = options.now ?? Date.now;
    this.onEvent = options.onEvent;
    this.transferShares = new FairShareLedger<string>(this.maxTransfers, Number.MAX_SAFE_INTEGER);
    this.responseShares = new FairShareLedger<string>(this.maxCached, Number.MAX_SAFE_INTEGER);
  }

  private dropTransfer(key: string): void {
    this.transfers.delete(key);
    this.transferShares.delete(key);
  }

  private dropResponse(key: string): void {
    this.responses.delete(key);
    this.responseShares.delete(key);
  }

  /** Current counters. */
  get stats(): BlockwiseStats {
    let bytes = 0;
    for (const t of this.transfers.values()) bytes += t.received;
    for (const r of this.responses.values()) bytes += r.body.length;
    return { transfers: this.transfers.size, cachedResponses: this.responses.size, bufferedBytes: bytes };
  }

  /** Drops every transfer and cached response of a peer whose state was reset. */
  forgetPeer(peer: Peer): void {
    const p = peerKey(peer);
    for (const [k, t] of this.transfers) if (t.peer === p) this.dropTransfer(k);
    for (const [k, r] of this.responses) if (r.peer === p) this.dropResponse(k);
  }

  /**
   * Handles one request: answers block-wise control traffic itself (2.31
   * Continue, 4.08, 4.13, Block2 continuations) and calls `app` once per
   * whole request body. Never throws for peer input.
   */
  async handle(msg: CoapMessage, peer: Peer, app: AssembledHandler): Promise<CoapResponse> {
    this.sweep();
    let block1: BlockValue | undefined;
    let block2: BlockValue | undefined;
    let size1: number | undefined;
    try {
      const b1 = getOption(msg, OptionNumber.Block1);
      const b2 = getOption(msg, OptionNumber.Block2);
      block1 = b1 ? decodeBlock(b1.value) : undefined;
      block2 = b2 ? decodeBlock(b2.value) : undefined;
      size1 = getUintOption(msg, OptionNumber.Size1);
    } catch (e) {
      return errorResponse(CoapCode.BadOption, e instanceof Error ? e.message : 'bad block option');
    }
    const tooLarge = (): CoapResponse =>
      // RFC 7959 §2.9.3 and §4: 4.13 with Size1 telling the largest acceptable body.
      errorResponse(CoapCode.RequestEntityTooLarge, `body exceeds ${this.maxBody} bytes`, [
        uintOption(OptionNumber.Size1, this.maxBody),
      ]);
    if (size1 !== undefined && size1 > this.maxBody) return tooLarge();

    const p = peerKey(peer);
    const tag = hex(getOption(msg, OptionNumber.RequestTag)?.value);
    const respKey = `${p}#${msg.code}#${pathKey(msg)}`;

    // A Block2 continuation (NUM > 0, no request body): serve from the cache (RFC 7959 §2.4).
    if (block2 && block2.num > 0 && !block1) {
      return this.serveBlock2(respKey, tag, block2);
    }

    let body = msg.payload;
    let lastBlock1: BlockValue | undefined;
    if (block1) {
      const key = `${p}#${tag}#${msg.code}#${pathKey(msg)}`;
      const size = blockSizeOf(block1.szx);
      const existing = this.transfers.get(key);
      if (block1.num === 0) {
        if (existing) this.dropTransfer(key); // a fresh start replaces an old transfer
        if (msg.payload.length > this.maxBody) return tooLarge();
        if (block1.more) {
          if (msg.payload.length !== size) {
            return errorResponse(CoapCode.BadRequest, 'a non-final block must fill its block size'); // RFC 7959 §2.2
          }
          const group = peerGroup(peer.address);
          if (this.countPeer(p) >= this.maxPerPeer) {
            this.emit({ type: 'limit', limit: 'transfers-per-endpoint', peer: group });
            this.emit({ type: 'refused', what: 'transfer', peer: group, reason: 'transfers-per-endpoint' });
            return errorResponse(CoapCode.ServiceUnavailable, 'too many concurrent block-wise transfers');
          }
          // At the global cap the busiest peer's oldest transfer gives way, never another peer's only one.
          const displaced = this.transferShares.admit(key, key, group);
          if (displaced.length > 0) this.emit({ type: 'limit', limit: 'transfers', peer: group });
          for (const d of displaced) {
            this.transfers.delete(d.value);
            this.emit({ type: 'evicted', what: 'transfer', peer: d.peer, reason: 'transfers' });
          }
          this.transfers.set(key, { peer: p, chunks: [msg.payload], received: msg.payload.length, expires: this.now() + this.timeout });
          return this.continueResponse(block1);
        }
      } else {
        // RFC 7959 §2.9.2: 4.08 for a block whose predecessors are missing,
        // out of order, or for a transfer that is already finished.
        if (!existing) return errorResponse(CoapCode.RequestEntityIncomplete, 'no transfer in progress for this block');
        if (block1.num * size !== existing.received) {
          this.dropTransfer(key);
          return errorResponse(CoapCode.RequestEntityIncomplete, `block ${block1.num} does not follow byte ${existing.received}`);
        }
        if (existing.received + msg.payload.length > this.maxBody) {
          this.dropTransfer(key);
          return tooLarge();
        }
        if (block1.more && msg.payload.length !== size) {
          this.dropTransfer(key);
          return errorResponse(CoapCode.BadRequest, 'a non-final block must fill its block size');
        }
        existing.chunks.push(msg.payload);
        existing.received += msg.payload.length;
        existing.expires = this.now() + this.timeout;
        if (block1.more) return this.continueResponse(block1);
        this.dropTransfer(key);
        body = concatBytes(existing.chunks);
      }
      lastBlock1 = block1;
    } else if (msg.payload.length > this.maxBody) {
      return tooLarge();
    }

    const whole: CoapMessage = {
      ...msg,
      options: withoutOptions(msg.options, OptionNumber.Block1, OptionNumber.Block2, OptionNumber.Size1, OptionNumber.Size2),
      payload: body,
    };
    // Response blocks: the size the client asked for (Block2), else the size it sent in (Block1).
    const szx = Math.min(block2?.szx ?? lastBlock1?.szx ?? this.maxSzx, this.maxSzx);
    const size = blockSizeOf(szx);
    let res: CoapResponse;
    try {
      res = await app(whole, peer, { firstBlockBytes: size });
    } catch (e) {
      res = errorResponse(
        e instanceof AtlsError ? codeFromHint(e.coapCode) : CoapCode.InternalServerError,
        e instanceof AtlsError ? e.code : 'internal error',
      );
    }
    const extra: CoapOption[] = [];
    // The final response to a Block1 transfer echoes the last block (RFC 7959 §2.3).
    if (lastBlock1) extra.push(blockOption(OptionNumber.Block1, { num: lastBlock1.num, more: false, szx: lastBlock1.szx }));
    const payload = res.payload ?? new Uint8Array(0);
    const options = withoutOptions(res.options ?? [], OptionNumber.Block1, OptionNumber.Block2, OptionNumber.Size2);
    if (payload.length <= size) return { code: res.code, options: [...options, ...extra], payload };
    if (payload.length > this.maxBody) {
      return errorResponse(CoapCode.InternalServerError, 'response too large');
    }
    this.cacheResponse(respKey, peer, { peer: p, tag: tag || undefined, code: res.code, options, body: payload, expires: this.now() + this.timeout });
    return {
      code: res.code,
      // Every block keeps the response's own options, Content-Format included (RFC 7959 §2.4).
      options: [
        ...options,
        ...extra,
        blockOption(OptionNumber.Block2, { num: 0, more: true, szx }),
        uintOption(OptionNumber.Size2, payload.length),
      ],
      payload: payload.subarray(0, size),
    };
  }

  private continueResponse(b: BlockValue): CoapResponse {
    // 2.31 Continue echoes the block; a smaller SZX asks the client for smaller blocks (RFC 7959 §2.3).
    return { code: CoapCode.Continue, options: [blockOption(OptionNumber.Block1, { num: b.num, more: true, szx: Math.min(b.szx, this.maxSzx) })] };
  }

  private serveBlock2(key: string, tag: string, b: BlockValue): CoapResponse {
    const cached = this.responses.get(key);
    if (!cached || (tag && cached.tag && cached.tag !== tag)) {
      return errorResponse(CoapCode.RequestEntityIncomplete, 'no response body to continue');
    }
    const szx = Math.min(b.szx, this.maxSzx);
    const size = blockSizeOf(szx);
    const start = b.num * blockSizeOf(b.szx);
    if (start >= cached.body.length) return errorResponse(CoapCode.BadOption, 'block beyond the end of the body');
    const end = Math.min(start + size, cached.body.length);
    const more = end < cached.body.length;
    cached.expires = this.now() + this.timeout;
    return {
      code: cached.code,
      options: [...cached.options, blockOption(OptionNumber.Block2, { num: start / size, more, szx })],
      payload: cached.body.subarray(start, end),
    };
  }

  private cacheResponse(key: string, peer: Peer, r: CachedResponse): void {
    this.dropResponse(key);
    const group = peerGroup(peer.address);
    const displaced = this.responseShares.admit(key, key, group);
    if (displaced.length > 0) this.emit({ type: 'limit', limit: 'cached-responses', peer: group });
    for (const d of displaced) {
      this.responses.delete(d.value);
      this.emit({ type: 'evicted', what: 'cached-response', peer: d.peer, reason: 'cached-responses' });
    }
    this.responses.set(key, r);
  }

  private emit(e: BlockwiseLimitEvent): void {
    try {
      this.onEvent?.(e);
    } catch {
      // A logging hook must not break the protocol.
    }
  }

  private countPeer(p: string): number {
    let n = 0;
    for (const t of this.transfers.values()) if (t.peer === p) n++;
    return n;
  }

  private sweep(): void {
    const now = this.now();
    for (const [k, t] of this.transfers) if (t.expires <= now) this.dropTransfer(k);
    for (const [k, r] of this.responses) if (r.expires <= now) this.dropResponse(k);
  }
}

/** A CoAP code from an AtlsError hint such as `"4.13"`. */
export function codeFromHint(hint: string): number {
  const [c, d] = hint.split('.');
  return ((Number(c) & 7) << 5) | (Number(d) & 0x1f);
}

// ---- client side ----

/** A request as the block-wise client layer sends it (no type, message id, token). */
export interface OutgoingRequest {
  code: number;
  options: CoapOption[];
  payload: Uint8Array;
}

/** Sends one request message and resolves with its response message. */
export type SendOne = (req: OutgoingRequest) => Promise<CoapMessage>;

/** Options of {@link blockwiseRequest}. */
export interface BlockwiseClientOptions {
  /** Block size for request bodies and the preferred size of response blocks (default 1024). */
  blockSize?: number;
  /** Largest response body accepted (default 64 KiB). */
  maxBodyBytes?: number;
  /** Always send Block1 / ask for Block2 even for small bodies (tests). */
  forceBlockwise?: boolean;
}

/** A reassembled response. */
export interface AssembledResponse {
  code: number;
  options: CoapOption[];
  payload: Uint8Array;
}

/**
 * Sends a request whose body may exceed one block and reassembles a response
 * that may come in Block2 blocks (RFC 7959 §2.3, §2.4, §2.7).
 */
export async function blockwiseRequest(send: SendOne, req: OutgoingRequest, options: BlockwiseClientOptions = {}): Promise<AssembledResponse> {
  let szx = szxOf(options.blockSize ?? DEFAULT_BLOCK_SIZE);
  const maxBody = options.maxBodyBytes ?? 64 * 1024;
  const base = withoutOptions(req.options, OptionNumber.Block1, OptionNumber.Block2, OptionNumber.Size1, OptionNumber.RequestTag);
  // Early negotiation of the response block size (RFC 7959 §2.4), when smaller than the default.
  const block2Pref = szx < MAX_SZX || options.forceBlockwise ? [blockOption(OptionNumber.Block2, { num: 0, more: false, szx })] : [];
  let res: CoapMessage;
  let tagOpt: CoapOption[] = [];
  if (req.payload.length <= blockSizeOf(szx) && !options.forceBlockwise) {
    res = await send({ code: req.code, options: [...base, ...block2Pref], payload: req.payload });
  } else {
    // RFC 9175 §3.4: a fresh Request-Tag keeps this body apart from any other of the same endpoint.
    tagOpt = [{ number: OptionNumber.RequestTag, value: new Uint8Array(randomBytes(4)) }];
    let offset = 0;
    for (;;) {
      const size = blockSizeOf(szx);
      const num = offset / size;
      const end = Math.min(offset + size, req.payload.length);
      const more = end < req.payload.length;
      const opts = [...base, ...tagOpt, blockOption(OptionNumber.Block1, { num, more, szx })];
      if (num === 0) opts.push(uintOption(OptionNumber.Size1, req.payload.length));
      if (!more) opts.push(...block2Pref);
      res = await send({ code: req.code, options: opts, payload: req.payload.subarray(offset, end) });
      if (!more || res.code !== CoapCode.Continue) break;
      const echoed = getOption(res, OptionNumber.Block1);
      if (echoed) {
        const b = decodeBlock(echoed.value);
        // The server may ask for smaller blocks (RFC 7959 §2.3); never grow.
        if (b.szx < szx) szx = b.szx;
      }
      offset = end;
      if (offset % blockSizeOf(szx) !== 0) throw new AtlsError('MALFORMED_MESSAGE', 'server changed block size off a boundary');
    }
  }
  const b2 = getOption(res, OptionNumber.Block2);
  if (!b2) return { code: res.code, options: res.options, payload: res.payload };
  let block = decodeBlock(b2.value);
  const size2 = getUintOption(res, OptionNumber.Size2);
  if (size2 !== undefined && size2 > maxBody) throw new AtlsError('TOO_LARGE', `response of ${size2} bytes exceeds ${maxBody}`, { source: 'remote' });
  if (block.num !== 0) throw new AtlsError('MALFORMED_MESSAGE', 'first response block is not block 0', { source: 'remote' });
  const chunks: Uint8Array[] = [res.payload];
  let total = res.payload.length;
  const first = res;
  while (block.more) {
    const size = blockSizeOf(block.szx);
    if (res.payload.length !== size) throw new AtlsError('MALFORMED_MESSAGE', 'a non-final response block must fill its size', { source: 'remote' });
    const num = total / size;
    res = await send({
      code: req.code,
      options: [...base, ...tagOpt, blockOption(OptionNumber.Block2, { num, more: false, szx: block.szx })],
      payload: new Uint8Array(0),
    });
    const nb = getOption(res, OptionNumber.Block2);
    if (!nb) throw new AtlsError('MALFORMED_MESSAGE', `response block ${num} without Block2 (code ${res.code})`, { source: 'remote' });
    block = decodeBlock(nb.value);
    if (block.num * blockSizeOf(block.szx) !== total) throw new AtlsError('MALFORMED_MESSAGE', 'response block out of order', { source: 'remote' });
    total += res.payload.length;
    if (total > maxBody) throw new AtlsError('TOO_LARGE', `response exceeds ${maxBody} bytes`, { source: 'remote' });
    chunks.push(res.payload);
  }
  return {
    code: first.code,
    options: withoutOptions(first.options, OptionNumber.Block2, OptionNumber.Size2),
    payload: concatBytes(chunks),
  };
}

/** Option numbers the block-wise layer consumes; the application never sees them. */
export const BLOCKWISE_OPTIONS: readonly number[] = [OptionNumber.Block1, OptionNumber.Block2, OptionNumber.Size1, OptionNumber.Size2];
