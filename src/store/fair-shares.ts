/**
 * Fair shares of per-peer state under pressure: half-open handshakes,
 * established sessions, CoAP block-wise transfers and cached responses. A
 * flood (replayed ClientHellos cost the sender nothing; completed handshakes
 * cost it little more) must not keep honest peers out. So at a cap a
 * newcomer is never refused while something can make room: the peer holding
 * the most entries (an address, a /64) loses its oldest (least recently
 * used) one, the newcomer counting with its coming entry; when every peer
 * holds one entry the oldest overall gives way. A flooding peer only ever
 * displaces its own state; a flood from many addresses gives each entry as
 * long as the flood takes to fill the table (1000 half-open slots at 2,000
 * hellos per second: half a second, many round trips).
 *
 * Finding the heaviest peer is O(1): peers are kept in buckets by the number
 * of entries they hold, so a table of 100,000 sessions from as many
 * addresses costs the same per admission as one of ten.
 *
 * @example
 * ```ts
 * const ledger = new FairShareLedger<Entry>(1000, 30_000);
 * const evicted = ledger.admit(id, entry, peerGroup(address)); // drop `evicted`, if any
 * ledger.touch(id);  // used again: it becomes the peer's newest
 * ledger.delete(id); // completed, failed, ended
 * ```
 * @module
 */
import { emptyGroup, RecencyLists, type RecencyEntry, type RecencyGroup } from '../recency.js';

/** A slot, in two recency lists (src/recency.ts): all slots, and its peer's. */
interface Slot<T> extends RecencyEntry<Slot<T>> {
  readonly key: string;
  value: T;
  readonly peer: string;
  expires: number;
}

/** One peer's slots, oldest to newest. */
type PeerSlots<T> = RecencyGroup<Slot<T>>;

/** What gave way for a newcomer. */
export interface Displaced<T> {
  key: string;
  value: T;
  peer: string;
  reason: 'expired' | 'pressure';
}

export class FairShareLedger<T> {
  /** Every slot by key. */
  private readonly slots = new Map<string, Slot<T>>();
  /** Least recently admitted or touched first (the TTL is the same for all, so also by expiry). */
  private readonly order = new RecencyLists<Slot<T>>();
  /** Each peer's slots, in the same order. */
  private readonly byPeer = new Map<string, PeerSlots<T>>();
  /** Peers by the number of slots they hold (n -> peers holding n). */
  private readonly buckets = new Map<number, Set<string>>();
  /** The largest n with a non-empty bucket (0 when empty). */
  private top = 0;

  constructor(
    readonly max: number,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.slots.size;
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** The value of `key`'s slot, unless it expired. */
  get(key: string): T | undefined {
    const s = this.slots.get(key);
    return s && s.expires > this.now() ? s.value : undefined;
  }

  /** Slots held by one peer. */
  heldBy(peer: string): number {
    return this.byPeer.get(peer)?.size ?? 0;
  }

  /** The peer holding the most slots, and how many (undefined when empty). */
  heaviest(): { peer: string; held: number } | undefined {
    const first = this.buckets.get(this.top)?.values().next();
    return first && !first.done ? { peer: first.value, held: this.top } : undefined;
  }

  /**
   * Takes a slot for `key`; returns what had to give way (already out of
   * the ledger: the caller drops it). Never refuses.
   */
  admit(key: string, value: T, peer: string): Array<Displaced<T>> {
    this.delete(key); // a key holds one slot
    const out: Array<Displaced<T>> = [];
    while (this.slots.size >= this.max) {
      const d = this.giveWay(peer);
      if (!d) break;
      out.push(d);
    }
    const slot: Slot<T> = { key, value, peer, expires: this.now() + this.ttlMs, older: undefined, newer: undefined, groupOlder: undefined, groupNewer: undefined };
    this.slots.set(key, slot);
    let mine = this.byPeer.get(peer);
    if (!mine) this.byPeer.set(peer, (mine = emptyGroup()));
    this.order.append(slot, mine);
    this.move(peer, mine.size - 1, mine.size);
    return out;
  }

  /**
   * Takes out the one slot that gives way for a newcomer of `peer`: an
   * expired one, else the heaviest peer's oldest, else (every peer holding
   * one) the oldest overall. Undefined when the ledger is empty. For tables
   * whose cap is counted elsewhere (sessions: the store holds them).
   */
  giveWay(newcomer: string): Displaced<T> | undefined {
    const oldest = this.order.oldest;
    if (!oldest) return undefined;
    if (oldest.expires <= this.now()) return this.take(oldest, 'expired');
    const mine = this.heldBy(newcomer) + 1; // the newcomer counts with its coming slot
    const heaviest = this.heaviest();
    let from = oldest;
    if (mine > 1 && mine >= (heaviest?.held ?? 0)) from = this.byPeer.get(newcomer)!.oldest!;
    else if (heaviest && heaviest.held > 1) from = this.byPeer.get(heaviest.peer)!.oldest!;
    return this.take(from, 'pressure');
  }

  /** The slot was used again: its time starts over and it becomes its peer's newest. */
  touch(key: string): void {
    const s = this.slots.get(key);
    if (!s) return;
    s.expires = this.now() + this.ttlMs;
    if (s === this.order.newest) return; // then it is its peer's newest too
    const mine = this.byPeer.get(s.peer)!;
    this.order.unlink(s, mine);
    this.order.append(s, mine);
  }

  /** Completed, failed, ended. */
  delete(key: string): boolean {
    const s = this.slots.get(key);
    if (!s) return false;
    this.slots.delete(key);
    const mine = this.byPeer.get(s.peer)!;
    this.order.unlink(s, mine);
    if (mine.size === 0) this.byPeer.delete(s.peer);
    this.move(s.peer, mine.size + 1, mine.size);
    return true;
  }

  /** Expired slots, oldest first (removed from the ledger). */
  expired(): Array<Displaced<T>> {
    const now = this.now();
    const out: Array<Displaced<T>> = [];
    while (this.order.oldest && this.order.oldest.expires <= now) out.push(this.take(this.order.oldest, 'expired'));
    return out;
  }

  clear(): void {
    this.slots.clear();
    this.order.clear();
    this.byPeer.clear();
    this.buckets.clear();
    this.top = 0;
  }

  private take(s: Slot<T>, reason: Displaced<T>['reason']): Displaced<T> {
    this.delete(s.key);
    return { key: s.key, value: s.value, peer: s.peer, reason };
  }

  /** `peer` went from holding `from` slots to `to`. */
  private move(peer: string, from: number, to: number): void {
    if (from > 0) {
      const b = this.buckets.get(from)!;
      b.delete(peer);
      if (b.size === 0) this.buckets.delete(from);
    }
    if (to > 0) {
      const b = this.buckets.get(to);
      if (b) b.add(peer);
      else this.buckets.set(to, new Set([peer]));
    }
    if (to > this.top) this.top = to;
    while (this.top > 0 && !this.buckets.has(this.top)) this.top--;
  }
}
