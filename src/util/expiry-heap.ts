// Deadlines for many items, checked by one periodic sweep that touches only what is due: a binary
// min-heap of (deadline, item). An item whose deadline changes is pushed again; the sweep drops
// entries that no longer match the item's current deadline (lazy deletion), so updates are
// O(log n) and the sweep costs O(due · log n) instead of a scan of every connection.

interface Entry<T> {
  at: number;
  item: T;
}

export class ExpiryHeap<T> {
  private h: Entry<T>[] = [];
  private dead = 0;

  get size(): number {
    return this.h.length;
  }

  push(at: number, item: T): void {
    const h = this.h;
    h.push({ at, item });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p].at <= h[i].at) break;
      [h[p], h[i]] = [h[i], h[p]];
      i = p;
    }
  }

  /**
   * Notes that an item left (e.g. a connection closed) before its deadline. Its entries stay until
   * dead ones are half the heap; then the heap is rebuilt from the entries `alive` keeps, so it
   * never holds more than about twice the live items.
   */
  forget(alive: (item: T) => boolean): void {
    if (++this.dead * 2 <= this.h.length) return;
    this.h = this.h.filter((e) => alive(e.item));
    this.dead = 0;
    for (let i = (this.h.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** Removes and visits every entry due at `now` or earlier, earliest first. */
  popDue(now: number, visit: (item: T, at: number) => void): void {
    const h = this.h;
    while (h.length > 0 && h[0].at <= now) {
      const top = h[0];
      const last = h.pop()!;
      if (h.length > 0) {
        h[0] = last;
        this.down(0);
      }
      visit(top.item, top.at);
    }
  }

  private down(i: number): void {
    const h = this.h;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && h[l].at < h[m].at) m = l;
      if (r < n && h[r].at < h[m].at) m = r;
      if (m === i) return;
      [h[m], h[i]] = [h[i], h[m]];
      i = m;
    }
  }
}
