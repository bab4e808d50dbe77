/**
 * Admission of half-open handshakes under pressure, shared by the HTTP and
 * CoAP bindings. A handshake needs its slot for one round trip; a flood of
 * ClientHellos (replayed ones cost the sender nothing) must not keep honest
 * handshakes out. So at the cap a new handshake is never refused: the peer
 * holding the most slots (an address, a /64) loses its oldest one, and when
 * every peer holds one slot the oldest handshake overall gives way. A
 * flooding peer only ever displaces its own handshakes; a flood from many
 * addresses gives each handshake as long as the flood takes to fill the
 * table (1000 slots at 2,000 hellos per second: half a second, many round trips).
 *
 * @example
 * ```ts
 * const ledger = new HalfOpenLedger<Entry>(1000, 30_000);
 * const evicted = ledger.admit(id, entry, peerGroup(address)); // drop `evicted`, if any
 * ledger.delete(id); // the handshake completed or failed
 * ```
 * @module
 */

interface Slot<T> {
  value: T;
  peer: string;
  expires: number;
}

/** What gave way for a new handshake. */
export interface Displaced<T> {
  value: T;
  peer: string;
  /** `expired`: its time was up anyway; `pressure`: the table was full. */
  reason: 'expired' | 'pressure';
}

export class HalfOpenLedger<T> {
  /** Every slot, oldest first (a Map keeps insertion order; the TTL is the same for all). */
  private readonly slots = new Map<string, Slot<T>>();
  /** Each peer's slots, oldest first. */
  private readonly byPeer = new Map<string, Map<string, Slot<T>>>();

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

  /** Slots held by one peer. */
  heldBy(peer: string): number {
    return this.byPeer.get(peer)?.size ?? 0;
  }

  /**
   * Takes a slot for `key`; returns what had to give way (already out of
   * the ledger: the caller drops it). Never refuses.
   */
  admit(key: string, value: T, peer: string): Array<Displaced<T>> {
    const out: Array<Displaced<T>> = [];
    if (this.slots.size >= this.max) {
      const now = this.now();
      for (const [k, s] of this.slots) {
        if (s.expires > now || this.slots.size < this.max) break;
        this.delete(k);
        out.push({ value: s.value, peer: s.peer, reason: 'expired' });
      }
      while (this.slots.size >= this.max) {
        const victim = this.victim(peer);
        if (!victim) break;
        this.delete(victim[0]);
        out.push({ value: victim[1].value, peer: victim[1].peer, reason: 'pressure' });
      }
    }
    const slot = { value, peer, expires: this.now() + this.ttlMs };
    this.slots.set(key, slot);
    const mine = this.byPeer.get(peer);
    if (mine) mine.set(key, slot);
    else this.byPeer.set(peer, new Map([[key, slot]]));
    return out;
  }

  /** The handshake completed, failed or expired. */
  delete(key: string): boolean {
    const s = this.slots.get(key);
    if (!s) return false;
    this.slots.delete(key);
    const mine = this.byPeer.get(s.peer);
    mine?.delete(key);
    if (mine && mine.size === 0) this.byPeer.delete(s.peer);
    return true;
  }

  /** Expired slots, oldest first (removed from the ledger). */
  expired(): Array<Displaced<T>> {
    const now = this.now();
    const out: Array<Displaced<T>> = [];
    for (const [k, s] of this.slots) {
      if (s.expires > now) break;
      this.delete(k);
      out.push({ value: s.value, peer: s.peer, reason: 'expired' });
    }
    return out;
  }

  clear(): void {
    this.slots.clear();
    this.byPeer.clear();
  }

  /** The oldest slot of the heaviest peer (the newcomer counts with its coming slot); the oldest overall on a tie at one. */
  private victim(newcomer: string): [string, Slot<T>] | undefined {
    let heaviest: Map<string, Slot<T>> | undefined;
    let most = 1;
    for (const [peer, mine] of this.byPeer) {
      const n = mine.size + (peer === newcomer ? 1 : 0);
      if (n > most) {
        most = n;
        heaviest = mine;
      }
    }
    const from = heaviest ?? this.slots;
    const first = from.entries().next();
    return first.done ? undefined : first.value;
  }
}
