// Public types of the client SDK. Platform-neutral.

/** A point in one topic's stream (docs/protocol.md section 10). */
export interface StreamPosition {
  seq: number;
  epoch: string;
}

export interface ClientOptions {
  /** A JWT sent at every upgrade (Node: Authorization header; browsers: a `bearer.<jwt>` subprotocol entry). */
  token?: string;
  /**
   * Where fresh tokens come from: called before a connection when there is no token or it expires
   * within a second, before the token's `exp` on a live connection (in-band REFRESH), and after
   * 4002 / 4501 closes and HTTP 401. One call at a time: concurrent triggers share it.
   */
  getToken?: () => string | Promise<string>;
  /** A WebSocket constructor; default: `ws` in Node, globalThis.WebSocket in browsers. */
  WebSocket?: unknown;
  /** Reconnection with backoff (see backoffDelay); false: never reconnect by itself. */
  reconnect?: { initialDelay?: number; maxDelay?: number; maxAttempts?: number } | false;
  /** Timeout of request(), history(), presence(), subscribe() and acknowledged publishes (ms, default 10000). */
  requestTimeout?: number;
  /** Application-level PING after `interval` ms without traffic; no answer within `timeout` ms: reconnect. */
  ping?: { interval?: number; timeout?: number } | false;
  /** Publishes while disconnected are queued, at most `max` (default 1000); more are refused with QUEUE_FULL. */
  offlineQueue?: { max?: number };
  /** Node only: offer permessage-deflate (default false). Browsers always offer it. */
  compression?: boolean;
}

export interface SubscribeOptions {
  /** Resume from this position (a topic without wildcards). */
  since?: StreamPosition;
  /** Receive the retained values of the matching topics (default true). */
  retained?: boolean;
  /** Receive presence events of the topic (a topic without wildcards in presence.topics). */
  presence?: boolean;
  /** After a reconnect, resubscribe with `since` the last position seen (default true). */
  recover?: boolean;
}

export interface Message {
  /** The concrete topic published to. */
  topic: string;
  payload: unknown;
  seq: number;
  /** The epoch of `seq`, when known (subscriptions to a topic without wildcards that keeps history, and history()). */
  epoch?: string;
  /** The topic's retained value, sent when the subscription started: a state, not a step of the stream. */
  retained: boolean;
  /** Replayed from history after a reconnect (or a `since`). */
  recovered: boolean;
  /** history() only: when the gateway accepted the message (ms since 1970). */
  time?: number;
}

export interface Subscription {
  readonly pattern: string;
  /** The last position delivered (or the server's, after `recovered: false`); null when the epoch is not known. */
  readonly position: StreamPosition | null;
  unsubscribe(): Promise<void>;
}

export interface PresenceEntry {
  client: string;
  user: string | null;
  info: unknown;
}

export type ClientState = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface ClientEvents {
  connecting: { attempt: number; delay: number };
  /** v1 has no CONNECTED message: `client` is not set; `reconnected` is false for the first connection. */
  connected: { client?: string; protocol: string; reconnected: boolean };
  disconnected: { code: number; reason: string; reconnect: boolean };
  resubscribed: { subscriptions: { pattern: string; recovered: boolean; error?: Error }[] };
  presence: { topic: string; kind: 'join' | 'leave'; entry: PresenceEntry };
  /**
   * GAP: the server skipped `dropped` messages of `topic` for this slow client (`recovered` false);
   * or, `dropped` 0 and `topic` a subscription's pattern, the gateway had lost its broker: for a
   * topic with a known position the client filled the hole from history first (`recovered` true:
   * nothing is missing), otherwise messages may be lost and the numbering may have restarted.
   */
  gap: { topic: string; dropped: number; recovered: boolean };
  error: Error;
}

/** The subset of the WHATWG WebSocket (browsers, `ws`) the client uses. */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: cut the TCP connection without a closing handshake. */
  terminate?(): void;
}

export type SocketConstructor = new (url: string, protocols?: string | string[]) => SocketLike;
