// Retained values (the last retained publish of each topic, MQTT-style) for the memory broker.
//
// Topics are indexed in a trie keyed by level, so a wildcard lookup walks only the branches the
// pattern can match: a literal level is one map lookup, '+' visits the children of the nodes
// reached so far, and a final '#' visits the subtree it matches. Nothing ever scans every topic.
//
// Results are in topic (string) order and cut at `limit`. String order is not the trie's
// level-by-level order ('a-b' sorts between 'a' and 'a/x', because '-' < '/'), so matches are
// merged into a sorted list of the best `limit`; children are visited in sorted order, and once the
// list is full a child whose topic (a prefix of everything below it) sorts after the last kept
// result is skipped together with every later sibling. A `limit`-bounded lookup under a wide
// subtree therefore visits about `limit` nodes per level, not the whole subtree.
import type { RetainedMessage } from './broker.js';

export interface RetainedStoreOptions {
  /** Most topics with a retained value. */
  maxTopics: number;
  /**
   * Most payload bytes over all retained values. Per-topic overhead is not charged here: maxTopics
   * already bounds it.
   */
  maxBytes: number;
}

export interface RetainedStats {
  topics: number;
  /** Payload bytes held. */
  bytes: number;
  /** `set` calls refused by a cap (cumulative). */
  rejected: number;
}

class Node {
  readonly children = new Map<string, Node>();
  /**
   * The children ordered by level, built by the first lookup that needs them and then kept up to
   * date on every insertion and removal (null: not built; bulk loading stays O(1) per insert).
   */
  sorted: Node[] | null = null;
  value: RetainedMessage | null = null;
  /** Full topic of this node ('' for the root). */
  readonly topic: string;

  constructor(
    readonly parent: Node | null,
    readonly level: string,
  ) {
    this.topic = parent === null ? '' : parent.parent === null ? level : `${parent.topic}/${level}`;
  }
}

export class RetainedStore {
  private readonly maxTopics: number;
  private readonly maxBytes: number;
  private readonly root = new Node(null, '');
  /** Topic -> its trie node (which holds a value), for O(1) get and replacement. */
  private readonly nodes = new Map<string, Node>();
  private bytes = 0;
  private rejected = 0;
  /** Trie nodes the last `match` visited (instrumentation for tests). */
  lastVisited = 0;

  constructor(opts: RetainedStoreOptions) {
    this.maxTopics = opts.maxTopics;
    this.maxBytes = opts.maxBytes;
  }

  get size(): number {
    return this.nodes.size;
  }

  get stats(): RetainedStats {
    return { topics: this.nodes.size, bytes: this.bytes, rejected: this.rejected };
  }

  get(topic: string): RetainedMessage | undefined {
    return this.nodes.get(topic)?.value ?? undefined;
  }

  /**
   * Makes `msg` the retained value of `topic` (a topic name, no wildcards). Returns false, keeping
   * the previous value, when a cap would be exceeded: a new topic beyond maxTopics, or bytes beyond
   * maxBytes (a replacement is charged only the size difference).
   */
  set(topic: string, msg: { seq: number; epoch: string; payload: Uint8Array }): boolean {
    const node = this.nodes.get(topic);
    const old = node === undefined ? 0 : node.value!.payload.byteLength;
    if ((node === undefined && this.nodes.size >= this.maxTopics) || this.bytes - old + msg.payload.byteLength > this.maxBytes) {
      this.rejected++;
      return false;
    }
    const value: RetainedMessage = { topic, seq: msg.seq, epoch: msg.epoch, payload: msg.payload };
    this.bytes += msg.payload.byteLength - old;
    if (node !== undefined) {
      node.value = value;
      return true;
    }
    let n = this.root;
    for (const level of topic.split('/')) {
      let child = n.children.get(level);
      if (child === undefined) {
        child = new Node(n, level);
        n.children.set(level, child);
        if (n.sorted !== null) n.sorted.splice(sortedIndex(n.sorted, level), 0, child);
      }
      n = child;
    }
    n.value = value;
    this.nodes.set(topic, n);
    return true;
  }

  /** Removes the topic's retained value; returns whether there was one. */
  clear(topic: string): boolean {
    const node = this.nodes.get(topic);
    if (node === undefined) return false;
    this.nodes.delete(topic);
    this.bytes -= node.value!.payload.byteLength;
    node.value = null;
    // Prune the branch that now leads to nothing.
    for (let n = node; n.parent !== null && n.value === null && n.children.size === 0; n = n.parent) {
      const p = n.parent;
      p.children.delete(n.level);
      if (p.sorted !== null) p.sorted.splice(sortedIndex(p.sorted, n.level), 1);
    }
    return true;
  }

  /**
   * The retained values of every topic `pattern` matches (as topicMatches in src/protocol/topic.ts:
   * '+' is one level, '#' the rest including the parent level), at most `limit`, in topic order.
   * The returned objects are the stored ones: do not modify them.
   */
  match(pattern: string, limit: number): RetainedMessage[] {
    this.lastVisited = 0;
    const best: RetainedMessage[] = [];
    if (limit > 0 && this.nodes.size > 0) this.walk(this.root, pattern.split('/'), 0, limit, best);
    return best;
  }

  /** Visits `node`, which matched levels[0 .. i), and goes on with levels[i ..]. */
  private walk(node: Node, levels: string[], i: number, limit: number, best: RetainedMessage[]): void {
    this.lastVisited++;
    if (i === levels.length) {
      if (node.value !== null) keep(best, node.value, limit);
      return;
    }
    const level = levels[i];
    if (level === '#') return this.subtree(node, limit, best);
    if (level !== '+') {
      const child = node.children.get(level);
      if (child !== undefined) this.walk(child, levels, i + 1, limit, best);
      return;
    }
    for (const child of sortedChildren(node)) {
      if (full(best, limit, child)) break;
      this.walk(child, levels, i + 1, limit, best);
    }
  }

  /** Keeps the values of `node` (already counted as visited) and of everything below it. */
  private subtree(node: Node, limit: number, best: RetainedMessage[]): void {
    if (node.value !== null) keep(best, node.value, limit);
    if (node.children.size === 0) return;
    for (const child of sortedChildren(node)) {
      if (full(best, limit, child)) break;
      this.lastVisited++;
      this.subtree(child, limit, best);
    }
  }
}

function sortedChildren(node: Node): Node[] {
  return (node.sorted ??= [...node.children.values()].sort((a, b) => (a.level < b.level ? -1 : 1)));
}

/**
 * Whether `best` holds `limit` results that all sort before `child`'s topic, hence before
 * everything below it and below its later siblings: the walk can stop there.
 */
function full(best: RetainedMessage[], limit: number, child: Node): boolean {
  return best.length >= limit && best[best.length - 1].topic < child.topic;
}

/** Inserts `m` into `best` (sorted by topic), dropping whatever falls beyond `limit`. */
function keep(best: RetainedMessage[], m: RetainedMessage, limit: number): void {
  let lo = 0;
  let hi = best.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (best[mid].topic < m.topic) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= limit) return;
  best.splice(lo, 0, m);
  if (best.length > limit) best.pop();
}

/** Where `level` is (or belongs) among nodes sorted by level. */
function sortedIndex(sorted: Node[], level: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid].level < level) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
