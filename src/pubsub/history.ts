// Per-topic message history for the memory broker, under one memory cap shared by every topic.
//
// Each topic keeps its messages in an array with a head index (removals only ever happen at the
// oldest end, so dropping one is `head++`; the array is compacted once the dead prefix is half of
// it, which keeps appends and removals O(1) amortised). Every entry is also linked into one global
// FIFO in insertion order, so the memory cap evicts the oldest messages of all topics in O(evicted)
// without scanning topics. The global oldest entry is always the oldest of its own topic (both
// orders are insertion order and a topic only ever loses its oldest entries), which is why eviction
// can use the same `head++` removal.
//
// The store knows nothing of epochs: the broker passes the topic's current position to `read`.
import type { HistoryPage, HistoryPolicy, HistoryQuery, Publication, StreamPosition } from './broker.js';

/**
 * Bytes charged per stored message on top of its payload: an estimate of the entry object, its
 * Publication and the two array/list slots that point to it. It keeps many tiny messages from
 * slipping under the cap.
 */
export const HISTORY_ENTRY_OVERHEAD = 64;

export interface HistoryStoreOptions {
  /** Memory cap over all topics: payload bytes + HISTORY_ENTRY_OVERHEAD per message. */
  maxBytes: number;
  /** Clock for message ages (default Date.now). */
  now?: () => number;
}

export interface HistoryStats {
  /** Bytes charged for the messages held now. */
  bytes: number;
  /** Messages held now. */
  messages: number;
  /** Topics holding at least one message. */
  topics: number;
  /** Messages removed to honour the global memory cap (cumulative). */
  evicted: number;
  /** Messages removed by their topic's count limit or age limit (cumulative). */
  expired: number;
}

interface Entry {
  readonly pub: Publication;
  readonly topic: TopicHistory;
  /** Neighbours in the global FIFO. */
  older: Entry | null;
  newer: Entry | null;
}

class TopicHistory {
  /** Live entries are entries[head .. length), oldest first; slots before head are cleared. */
  entries: (Entry | undefined)[] = [];
  head = 0;
  /** The age limit of the latest append's policy: reads apply it too. */
  ttl = 0;
  constructor(readonly name: string) {}

  get size(): number {
    return this.entries.length - this.head;
  }
  /** The i-th live entry (0 = oldest); callers stay within [0, size). */
  at(i: number): Entry {
    return this.entries[this.head + i]!;
  }
}

const entryBytes = (pub: Publication): number => pub.payload.byteLength + HISTORY_ENTRY_OVERHEAD;

export class HistoryStore {
  private readonly maxBytes: number;
  private readonly now: () => number;
  private readonly topics = new Map<string, TopicHistory>();
  /** The global FIFO: oldest is the next victim of the memory cap. */
  private oldest: Entry | null = null;
  private newest: Entry | null = null;
  private bytes = 0;
  private messages = 0;
  private evicted = 0;
  private expired = 0;

  constructor(opts: HistoryStoreOptions) {
    this.maxBytes = opts.maxBytes;
    this.now = opts.now ?? Date.now;
  }

  get stats(): HistoryStats {
    return { bytes: this.bytes, messages: this.messages, topics: this.topics.size, evicted: this.evicted, expired: this.expired };
  }

  /** Records a message; `pub.seq` must be greater than every seq already appended to `topic`. */
  append(topic: string, pub: Publication, policy: HistoryPolicy): void {
    let t = this.topics.get(topic);
    if (entryBytes(pub) > this.maxBytes) {
      // It could not stay even alone, and evicting every other topic's history first would be for
      // nothing. The topic's older messages go too: a history missing its newest message can
      // serve neither a recovery nor a "latest N" read.
      if (t !== undefined) while (this.topics.has(topic)) this.removeOldest(t, true);
      this.evicted++;
      return;
    }
    if (t === undefined) this.topics.set(topic, (t = new TopicHistory(topic)));
    t.ttl = policy.ttl;
    const e: Entry = { pub, topic: t, older: this.newest, newer: null };
    if (this.newest === null) this.oldest = e;
    else this.newest.newer = e;
    this.newest = e;
    t.entries.push(e);
    this.bytes += entryBytes(pub);
    this.messages++;

    while (t.size > policy.limit) this.removeOldest(t, false);
    if (t.ttl > 0 && t.size > 0) this.expire(t, this.now());
    while (this.bytes > this.maxBytes) this.removeOldest(this.oldest!.topic, true);
  }

  /** Reads a topic's history; `position` is the topic's current {seq, epoch} (see HistoryQuery). */
  read(topic: string, position: StreamPosition, query: HistoryQuery): HistoryPage {
    let t = this.topics.get(topic);
    if (t !== undefined && t.ttl > 0) {
      this.expire(t, this.now());
      if (t.size === 0) t = undefined;
    }
    const limit = query.limit > 0 ? query.limit : 0;
    const since = query.since;

    if (since === undefined) {
      const n = t === undefined ? 0 : t.size;
      const k = Math.min(limit, n);
      const publications = new Array<Publication>(k);
      // The newest k: live indexes n-k .. n-1.
      for (let j = 0; j < k; j++) publications[j] = t!.at(query.reverse === true ? n - 1 - j : n - k + j).pub;
      return { publications, position, complete: true, more: n > k };
    }

    // Another epoch's numbers mean nothing here; a seq beyond the topic's is one we never issued.
    if (since.epoch !== position.epoch || since.seq > position.seq) return incomplete(position);
    if (since.seq === position.seq) return { publications: [], position, complete: true, more: false };
    if (t === undefined) return incomplete(position);
    // Recovery is all or nothing: the history must hold since.seq+1 .. position.seq without a gap.
    // Seqs are strictly increasing, so the range is gap-free exactly when its span equals its count
    // (a gap appears when some publishes on the topic were not recorded, e.g. history was off).
    const first = since.seq + 1;
    const i = lowerBound(t, first);
    const n = t.size;
    if (i === n || t.at(i).pub.seq !== first) return incomplete(position);
    const last = t.at(n - 1).pub.seq;
    if (last !== position.seq || last - first !== n - 1 - i) return incomplete(position);
    const k = Math.min(limit, n - i);
    const publications = new Array<Publication>(k);
    for (let j = 0; j < k; j++) publications[j] = t.at(i + j).pub;
    return { publications, position, complete: true, more: n - i > k };
  }

  /** Drops the topic's messages older than its ttl (the oldest come first, so stop at the first young one). */
  private expire(t: TopicHistory, now: number): void {
    const cutoff = now - t.ttl;
    while (t.size > 0 && t.at(0).pub.time < cutoff) this.removeOldest(t, false);
  }

  /** Removes the topic's oldest entry from the topic and the global FIFO; forgets an emptied topic. */
  private removeOldest(t: TopicHistory, evicted: boolean): void {
    const e = t.at(0);
    t.entries[t.head++] = undefined; // let the payload go now, not at the next compaction
    if (t.size === 0) this.topics.delete(t.name);
    else if (t.head >= 32 && t.head * 2 >= t.entries.length) {
      t.entries.splice(0, t.head);
      t.head = 0;
    }
    if (e.older === null) this.oldest = e.newer;
    else e.older.newer = e.newer;
    if (e.newer === null) this.newest = e.older;
    else e.newer.older = e.older;
    this.bytes -= entryBytes(e.pub);
    this.messages--;
    if (evicted) this.evicted++;
    else this.expired++;
  }
}

function incomplete(position: StreamPosition): HistoryPage {
  return { publications: [], position, complete: false, more: false };
}

/** Index (0 = oldest live) of the first entry whose seq is >= seq; size when there is none. */
function lowerBound(t: TopicHistory, seq: number): number {
  let lo = 0;
  let hi = t.size;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (t.at(mid).pub.seq < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
