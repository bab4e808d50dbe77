/**
 * Two recency lists at once, oldest to newest: every entry, and its group's
 * (a peer's). Used where the oldest must give way, overall or within one
 * peer: the fair-share ledger's sessions (src/store/fair-shares.ts) and the
 * connection table's idle connections (src/http/connections.ts).
 *
 * The lists are linked through the entries themselves, not kept in a Map's
 * insertion order: moving a key to a Map's end (delete, then set) leaves a
 * dead entry in its hash chain until the table is rehashed, so one busy entry
 * among 10,000 idle ones paid ~15-20 µs per move; here a move is a few
 * pointer writes.
 * @module
 */

/** An entry's links: fields of the entry itself. */
export interface RecencyEntry<E> {
  older: E | undefined;
  newer: E | undefined;
  groupOlder: E | undefined;
  groupNewer: E | undefined;
}

/** One group's list. */
export interface RecencyGroup<E> {
  oldest: E | undefined;
  newest: E | undefined;
  size: number;
}

/** A group with no entries yet. */
export function emptyGroup<E>(): RecencyGroup<E> {
  return { oldest: undefined, newest: undefined, size: 0 };
}

export class RecencyLists<E extends RecencyEntry<E>> {
  oldest: E | undefined = undefined;
  newest: E | undefined = undefined;
  size = 0;

  /** Links `e` in as the newest of both lists. */
  append(e: E, group: RecencyGroup<E>): void {
    e.older = this.newest;
    e.newer = undefined;
    if (this.newest) this.newest.newer = e;
    else this.oldest = e;
    this.newest = e;
    e.groupOlder = group.newest;
    e.groupNewer = undefined;
    if (group.newest) group.newest.groupNewer = e;
    else group.oldest = e;
    group.newest = e;
    group.size++;
    this.size++;
  }

  /** Takes `e` (linked in `group`) out of both lists. */
  unlink(e: E, group: RecencyGroup<E>): void {
    if (e.older) e.older.newer = e.newer;
    else this.oldest = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.newest = e.older;
    if (e.groupOlder) e.groupOlder.groupNewer = e.groupNewer;
    else group.oldest = e.groupNewer;
    if (e.groupNewer) e.groupNewer.groupOlder = e.groupOlder;
    else group.newest = e.groupOlder;
    e.older = e.newer = e.groupOlder = e.groupNewer = undefined;
    group.size--;
    this.size--;
  }

  clear(): void {
    this.oldest = this.newest = undefined;
    this.size = 0;
  }
}
