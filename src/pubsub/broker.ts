// The broker is the one seam between the hub (local fan-out) and where messages, sequence numbers,
// history, retained values and presence live. The in-memory broker serves one process; a Redis or
// NATS broker (same interface, same conformance suite in test/broker/) serves a cluster.
//
// Methods return a value or a promise: a network broker is asynchronous, while the memory broker
// answers synchronously so that its hot path (publish -> deliver) allocates no promise.
//
// Sequence numbers and epochs: every topic has its own sequence, 1, 2, 3, ... assigned by the
// broker at publish time, together with an epoch, an opaque string that identifies the history the
// numbers belong to. The epoch changes whenever the broker may have lost what it knew about the
// topic (the memory broker: at process start; a Redis broker: when the topic's keys are gone). A
// client that saw {seq, epoch} may recover exactly what followed only while the epoch is unchanged.

/** Where a client stands in a topic's stream. */
export interface StreamPosition {
  /** Last sequence number seen (0: nothing yet). */
  seq: number;
  epoch: string;
}

/** One message as stored in history. */
export interface Publication {
  seq: number;
  payload: Uint8Array;
  /** Milliseconds since the epoch when the broker accepted it. */
  time: number;
}

/**
 * Called by the broker for every message published on a topic this node subscribed to (after
 * `subscribe(pattern)` for a matching pattern), in sequence order per topic. A broker may also
 * hand over messages no subscribed pattern matches (the memory broker hands over everything: the
 * hub's trie filters anyway, and matching twice would double the hot path's cost); the hub ignores
 * them. `exclude` is the publisher's local connection id (0 = none); only meaningful on the node
 * that published.
 */
export type BrokerDeliver = (topic: string, seq: number, epoch: string, payload: Uint8Array, exclude: number) => void;

/** Presence of one connection on one topic. */
export interface PresenceEntry {
  /** Unique across the cluster (node id + connection id). */
  client: string;
  user: string | null;
  /** Optional client info from the token (already encoded msgpack), or null. */
  info: Uint8Array | null;
}

/** A join or leave on a topic (also for entries that expired because their node vanished). */
export type PresenceListener = (topic: string, kind: 'join' | 'leave', entry: PresenceEntry) => void;

/** How long the broker keeps a topic's history (decided per topic by the gateway's configuration). */
export interface HistoryPolicy {
  /** Most messages kept (>= 1). */
  limit: number;
  /** Messages older than this many milliseconds are dropped (0: no age limit). */
  ttl: number;
}

export interface BrokerPublishOptions {
  /** Local connection id that must not receive the message (0 = none). */
  exclude: number;
  /** Keep the message in the topic's history under this policy (null: no history). */
  history: HistoryPolicy | null;
  /**
   * Keep the payload as the topic's retained value (MQTT semantics). A retained publish whose
   * payload is msgpack nil (0xc0) clears the retained value; it is still delivered.
   */
  retain: boolean;
}

export interface BrokerPublishResult {
  seq: number;
  epoch: string;
}

export interface HistoryQuery {
  /**
   * Return the messages after this position. When its epoch differs from the topic's, or the
   * history no longer holds every message after `since.seq`, the page is `complete: false` and
   * carries no messages (recovery is all or nothing).
   */
  since?: StreamPosition;
  /** Most messages returned (>= 0; 0 returns only the position). */
  limit: number;
  /** Newest first (only without `since`). */
  reverse?: boolean;
}

export interface HistoryPage {
  publications: Publication[];
  /** The topic's current position (its latest seq and epoch). */
  position: StreamPosition;
  /**
   * With `since`: true when `publications` are exactly the messages after `since.seq` up to
   * `position.seq` (or the first `limit` of them, see `more`). Without `since`: always true.
   */
  complete: boolean;
  /** More messages follow the ones returned (the limit cut the page). */
  more: boolean;
}

export interface RetainedMessage {
  topic: string;
  seq: number;
  epoch: string;
  payload: Uint8Array;
}

/** What a broker implements; configuration that needs a missing feature is refused at start. */
export interface BrokerFeatures {
  history: boolean;
  retained: boolean;
  presence: boolean;
}

/** What a broker holds, for /metrics (a network broker may report what it can see, or nothing). */
export interface BrokerStats {
  historyBytes: number;
  historyMessages: number;
  /** Messages removed from history by the memory cap (cumulative). */
  historyEvictions: number;
  retainedTopics: number;
  retainedBytes: number;
  /** Retained publishes refused by the caps (cumulative). */
  retainedRejected: number;
}

/** A network broker's connection went away (`up` false) or came back with subscriptions restored (true). */
export type BrokerStatusListener = (up: boolean, reason: string) => void;

export interface Broker {
  readonly features: BrokerFeatures;
  /** Optional: what the broker holds, read when /metrics is scraped. */
  stats?(): BrokerStats;
  /**
   * Connects the broker to the hub's delivery function. Called before any other method; called
   * again after a rejection (the gateway retries while `brokerStartTimeout` allows).
   * `onStatus` is told when a network broker loses its connection (false) and when it has it back
   * with every subscription of this node restored (true).
   */
  start(deliver: BrokerDeliver, onPresence?: PresenceListener, onStatus?: BrokerStatusListener): void | Promise<void>;
  /** Optional: one round trip to the broker (resolves when it answered); the gateway's stall check. */
  ping?(): Promise<void>;
  /** Publishes an encoded payload on a concrete topic; resolves to its {seq, epoch}. */
  publish(topic: string, payload: Uint8Array, opts: BrokerPublishOptions): BrokerPublishResult | Promise<BrokerPublishResult>;
  /** This node now has at least one local subscriber for `pattern`. */
  subscribe(pattern: string): void | Promise<void>;
  /** This node no longer has local subscribers for `pattern`. */
  unsubscribe(pattern: string): void | Promise<void>;
  /** A topic's current position (seq 0 when nothing was published in this epoch). */
  position(topic: string): StreamPosition | Promise<StreamPosition>;
  /** Reads a topic's history. */
  history(topic: string, query: HistoryQuery): HistoryPage | Promise<HistoryPage>;
  /** Retained values of every topic `pattern` matches (wildcards included), at most `limit`, in topic order. */
  retained(pattern: string, limit: number): RetainedMessage[] | Promise<RetainedMessage[]>;
  /** Adds or refreshes a presence entry; it expires after `ttl` ms unless refreshed. */
  presenceAdd(topic: string, entry: PresenceEntry, ttl: number): void | Promise<void>;
  presenceRemove(topic: string, client: string): void | Promise<void>;
  /** Everyone present on a topic. */
  presence(topic: string): PresenceEntry[] | Promise<PresenceEntry[]>;
  close(): void | Promise<void>;
}
