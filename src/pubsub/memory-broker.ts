// The single-process broker: delivers synchronously to the local hub (no promise on the hot path),
// keeps one sequence counter per topic, history (HistoryStore, with a global memory cap), retained
// values (RetainedStore, indexed for wildcard lookups) and presence entries that expire unless
// refreshed. Its epoch is drawn at construction: everything it knew is gone when the process is,
// so a client holding a position from an earlier process is told it cannot recover.
import { randomBytes } from 'node:crypto';
import type {
  Broker,
  BrokerDeliver,
  BrokerFeatures,
  BrokerPublishOptions,
  BrokerPublishResult,
  BrokerStats,
  HistoryPage,
  HistoryQuery,
  PresenceEntry,
  PresenceListener,
  RetainedMessage,
  StreamPosition,
} from './broker.js';
import { HistoryStore } from './history.js';
import { RetainedStore } from './retained.js';

export interface MemoryBrokerOptions {
  /** Memory cap of all topics' history together, in bytes (oldest messages evicted first). */
  historyMaxBytes?: number;
  /** Most topics with a retained value. */
  retainedMaxTopics?: number;
  /** Memory cap of all retained values together, in bytes. */
  retainedMaxBytes?: number;
  /** How often expired presence entries are swept, in ms. */
  presenceSweep?: number;
  /** Clock for history ages and presence expiry (tests). */
  now?: () => number;
}

interface Present {
  entry: PresenceEntry;
  expires: number;
}

const NIL = 0xc0;

export class MemoryBroker implements Broker {
  readonly features: BrokerFeatures = Object.freeze({ history: true, retained: true, presence: true });
  /** This process's epoch: one for every topic. */
  readonly epoch = randomBytes(6).toString('base64url');
  readonly historyStore: HistoryStore;
  readonly retainedStore: RetainedStore;
  private deliver: BrokerDeliver | null = null;
  private onPresence: PresenceListener | null = null;
  private readonly seqs = new Map<string, number>();
  private readonly present = new Map<string, Map<string, Present>>();
  private sweeper: ReturnType<typeof setInterval> | null = null;
  private readonly now: () => number;
  private readonly sweepEvery: number;

  constructor(opts: MemoryBrokerOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.historyStore = new HistoryStore({ maxBytes: opts.historyMaxBytes ?? 64 * 1024 * 1024, now: this.now });
    this.retainedStore = new RetainedStore({ maxTopics: opts.retainedMaxTopics ?? 100_000, maxBytes: opts.retainedMaxBytes ?? 64 * 1024 * 1024 });
    this.sweepEvery = opts.presenceSweep ?? 1000;
  }

  stats(): BrokerStats {
    const h = this.historyStore.stats;
    const r = this.retainedStore.stats;
    return { historyBytes: h.bytes, historyMessages: h.messages, historyEvictions: h.evicted, retainedTopics: r.topics, retainedBytes: r.bytes, retainedRejected: r.rejected };
  }

  start(deliver: BrokerDeliver, onPresence?: PresenceListener): void {
    this.deliver = deliver;
    this.onPresence = onPresence ?? null;
  }

  publish(topic: string, payload: Uint8Array, opts: BrokerPublishOptions): BrokerPublishResult {
    const seq = (this.seqs.get(topic) ?? 0) + 1;
    this.seqs.set(topic, seq);
    const epoch = this.epoch;
    if (opts.history !== null) this.historyStore.append(topic, { seq, payload, time: this.now() }, opts.history);
    if (opts.retain) {
      if (payload.length === 1 && payload[0] === NIL) this.retainedStore.clear(topic);
      // past the caps the message is still delivered, but not retained; an older value is not left
      // standing in its place (it would be stale)
      else if (!this.retainedStore.set(topic, { seq, epoch, payload })) this.retainedStore.clear(topic);
    }
    this.deliver?.(topic, seq, epoch, payload, opts.exclude);
    return { seq, epoch };
  }

  subscribe(): void {}
  unsubscribe(): void {}

  position(topic: string): StreamPosition {
    return { seq: this.seqs.get(topic) ?? 0, epoch: this.epoch };
  }

  history(topic: string, query: HistoryQuery): HistoryPage {
    return this.historyStore.read(topic, this.position(topic), query);
  }

  retained(pattern: string, limit: number): RetainedMessage[] {
    return this.retainedStore.match(pattern, limit);
  }

  presenceAdd(topic: string, entry: PresenceEntry, ttl: number): void {
    let m = this.present.get(topic);
    if (m === undefined) this.present.set(topic, (m = new Map()));
    const had = m.get(entry.client);
    m.set(entry.client, { entry, expires: this.now() + ttl });
    if (had === undefined) this.onPresence?.(topic, 'join', entry);
    if (this.sweeper === null && this.deliver !== null) {
      this.sweeper = setInterval(() => this.sweep(), this.sweepEvery);
      this.sweeper.unref();
    }
  }

  presenceRemove(topic: string, client: string): void {
    const m = this.present.get(topic);
    const had = m?.get(client);
    if (m === undefined || had === undefined) return;
    m.delete(client);
    if (m.size === 0) this.present.delete(topic);
    this.onPresence?.(topic, 'leave', had.entry);
  }

  presence(topic: string): PresenceEntry[] {
    const m = this.present.get(topic);
    if (m === undefined) return [];
    const now = this.now();
    const out: PresenceEntry[] = [];
    for (const p of m.values()) if (p.expires > now) out.push(p.entry);
    return out;
  }

  /** Removes presence entries whose node stopped refreshing them (emits leave for each). */
  sweep(): void {
    const now = this.now();
    for (const [topic, m] of this.present) {
      for (const [client, p] of m) {
        if (p.expires > now) continue;
        m.delete(client);
        this.onPresence?.(topic, 'leave', p.entry);
      }
      if (m.size === 0) this.present.delete(topic);
    }
  }

  close(): void {
    this.deliver = null;
    this.onPresence = null;
    if (this.sweeper !== null) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}
