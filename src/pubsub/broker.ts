// The broker moves published messages between gateway nodes and assigns per-topic sequence
// numbers. The hub talks only to this interface: the in-memory broker serves one process, a Redis
// broker (same interface, same conformance suite) serves a cluster.

/** Called by the broker for every message published on a topic this node subscribed to. */
export type BrokerDeliver = (topic: string, seq: number, payload: Uint8Array, exclude: number) => void;

export interface Broker {
  /** Connects the broker to the hub's delivery function. Called once before any other method. */
  start(deliver: BrokerDeliver): void | Promise<void>;
  /**
   * Publishes an encoded payload on a concrete topic. Resolves to the topic's new sequence number
   * (1, 2, 3, ... per topic). `exclude` is an opaque local connection id that must not receive the
   * message (0 = none); only meaningful on the node that published.
   */
  publish(topic: string, payload: Uint8Array, exclude: number): number | Promise<number>;
  /** This node now has at least one local subscriber for `pattern`. */
  subscribe(pattern: string): void | Promise<void>;
  /** This node no longer has local subscribers for `pattern`. */
  unsubscribe(pattern: string): void | Promise<void>;
  close(): void | Promise<void>;
}
