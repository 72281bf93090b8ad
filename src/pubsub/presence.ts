// Presence on this node: which local connections are present on which topics (entries kept in the
// broker, refreshed every ttl/3 so that a node that vanishes has its entries expire), and which
// local connections asked for join/leave events of a topic. Only topics matching
// `presence.topics` are tracked; everything else costs nothing.
import { topicMatches } from '../protocol/topic.js';
import { encodePresenceEvent } from '../protocol/messages.js';
import type { Broker, PresenceEntry } from './broker.js';

/** A local connection as presence sees it. */
export interface PresenceMember {
  readonly id: number;
  readonly userId: string | null;
  /** Encoded client info (msgpack) from the token's `info` claim, or null. */
  readonly presenceInfo: Uint8Array | null;
  send(msg: Uint8Array): boolean;
}

export class Presence<M extends PresenceMember> {
  /** topic -> members present (they subscribed to the exact topic). */
  private readonly members = new Map<string, Set<M>>();
  /** topic -> members that want join/leave events. */
  private readonly watchers = new Map<string, Set<M>>();
  private timer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly broker: Broker,
    private readonly patterns: readonly string[],
    /** Node id: entry ids are `<node>:<connection id>`, unique across a cluster. */
    readonly node: string,
    private readonly ttl: number,
    private readonly onError: (err: unknown) => void,
  ) {}

  /** Whether `topic` (an exact topic) is tracked. */
  enabled(topic: string): boolean {
    if (this.patterns.length === 0) return false;
    for (const p of this.patterns) if (topicMatches(p, topic)) return true;
    return false;
  }

  entry(m: M): PresenceEntry {
    return { client: `${this.node}:${m.id}`, user: m.userId, info: m.presenceInfo };
  }

  join(m: M, topic: string): void {
    let set = this.members.get(topic);
    if (set === undefined) this.members.set(topic, (set = new Set()));
    if (set.has(m)) return;
    set.add(m);
    this.call(() => this.broker.presenceAdd(topic, this.entry(m), this.ttl));
    if (this.timer === null) {
      this.timer = setInterval(() => this.refresh(), Math.max(100, Math.floor(this.ttl / 3)));
      this.timer.unref();
    }
  }

  leave(m: M, topic: string): void {
    const set = this.members.get(topic);
    if (set === undefined || !set.delete(m)) return;
    if (set.size === 0) this.members.delete(topic);
    this.call(() => this.broker.presenceRemove(topic, this.entry(m).client));
  }

  watch(m: M, topic: string): void {
    let set = this.watchers.get(topic);
    if (set === undefined) this.watchers.set(topic, (set = new Set()));
    set.add(m);
  }

  unwatch(m: M, topic: string): void {
    const set = this.watchers.get(topic);
    if (set === undefined) return;
    set.delete(m);
    if (set.size === 0) this.watchers.delete(topic);
  }

  /** A join or leave from the broker (this node's or another's): sent to the topic's watchers. */
  event(topic: string, kind: 'join' | 'leave', entry: PresenceEntry): void {
    const set = this.watchers.get(topic);
    if (set === undefined) return;
    const msg = encodePresenceEvent(topic, kind === 'join' ? 1 : 2, entry);
    for (const m of set) m.send(msg);
  }

  /** Re-adds every local entry before its ttl runs out. */
  refresh(): void {
    for (const [topic, set] of this.members) for (const m of set) this.call(() => this.broker.presenceAdd(topic, this.entry(m), this.ttl));
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private call(fn: () => void | Promise<void>): void {
    try {
      const r = fn();
      if (r !== undefined) r.catch(this.onError);
    } catch (err) {
      this.onError(err);
    }
  }
}
