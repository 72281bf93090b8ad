// Subscription index: a trie over topic levels with '+' and '#' branches. Matching a topic costs
// O(levels x wildcard branches) plus the number of matching subscribers, independent of the total
// number of connections and subscriptions.

class Node<S> {
  readonly children = new Map<string, Node<S>>();
  plus: Node<S> | null = null;
  /** Subscribers of exactly this path. */
  exact: Set<S> | null = null;
  /** Subscribers of this path + '/#' (which also matches this path itself). */
  hash: Set<S> | null = null;

  get empty(): boolean {
    return this.children.size === 0 && this.plus === null && this.exact === null && this.hash === null;
  }
}

export class SubscriptionTrie<S> {
  private readonly root = new Node<S>();
  /** Number of distinct patterns with at least one subscriber. */
  patterns = 0;

  /** Adds a subscriber; returns true when the pattern had no subscriber before. */
  add(pattern: string, sub: S): boolean {
    const levels = pattern.split('/');
    let node = this.root;
    const last = levels.length - 1;
    const isHash = levels[last] === '#';
    const end = isHash ? last : levels.length;
    for (let i = 0; i < end; i++) {
      const l = levels[i];
      if (l === '+') node = node.plus ??= new Node<S>();
      else {
        let next = node.children.get(l);
        if (!next) node.children.set(l, (next = new Node<S>()));
        node = next;
      }
    }
    let set: Set<S>;
    if (isHash) set = node.hash ??= new Set<S>();
    else set = node.exact ??= new Set<S>();
    const before = set.size;
    set.add(sub);
    if (before === 0 && set.size === 1) {
      this.patterns++;
      return true;
    }
    return false;
  }

  /** Removes a subscriber; returns true when the pattern has no subscriber left. */
  remove(pattern: string, sub: S): boolean {
    const levels = pattern.split('/');
    const last = levels.length - 1;
    const isHash = levels[last] === '#';
    const end = isHash ? last : levels.length;
    const path: Node<S>[] = [this.root];
    let node: Node<S> | null | undefined = this.root;
    for (let i = 0; i < end && node; i++) {
      const l = levels[i];
      node = l === '+' ? node.plus : node.children.get(l);
      if (node) path.push(node);
    }
    if (!node) return false;
    const set = isHash ? node.hash : node.exact;
    if (!set || !set.delete(sub)) return false;
    if (set.size !== 0) return false;
    if (isHash) node.hash = null;
    else node.exact = null;
    this.patterns--;
    // prune empty nodes bottom-up
    for (let i = path.length - 1; i > 0; i--) {
      const n = path[i];
      if (!n.empty) break;
      const parent = path[i - 1];
      const l = levels[i - 1];
      if (l === '+') parent.plus = null;
      else parent.children.delete(l);
    }
    return true;
  }

  /**
   * Appends to `out` every subscriber set whose pattern matches `topic` and returns how many were
   * appended. Sets may share subscribers (overlapping patterns); the caller de-duplicates.
   */
  match(topic: string, out: Set<S>[]): number {
    const start = out.length;
    if (this.patterns === 0) return 0;
    visit(this.root, topic.indexOf('/') === -1 ? [topic] : topic.split('/'), 0, out);
    return out.length - start;
  }
}

function visit<S>(node: Node<S>, levels: string[], i: number, out: Set<S>[]): void {
  if (node.hash !== null) out.push(node.hash);
  if (i === levels.length) {
    if (node.exact !== null) out.push(node.exact);
    return;
  }
  const child = node.children.get(levels[i]);
  if (child !== undefined) visit(child, levels, i + 1, out);
  if (node.plus !== null) visit(node.plus, levels, i + 1, out);
}
