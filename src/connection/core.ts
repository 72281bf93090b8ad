// Types shared by the connection modules and the gateway: the hot-path counters, hooks, handlers.
import type { Connection, RequestContext } from './session.js';

/** Plain counters on the hot path; the metrics exporter reads them only when scraped. */
export interface Stats {
  connectionsOpened: number;
  connectionsClosed: number;
  framesIn: number;
  messagesIn: number;
  bytesIn: number;
  messagesOut: number;
  bytesOut: number;
  publishes: number;
  requests: number;
  requestTimeouts: number;
  subscriptions: number;
  malformedFrames: number;
  deliveriesDropped: number;
  /** Deliveries held back under the conflate policy and replaced by a newer one on the same topic. */
  deliveriesConflated: number;
  slowConsumerCloses: number;
  rateLimitPauses: number;
  rateLimitCloses: number;
  heartbeatPings: number;
  heartbeatTerminations: number;
  httpPublishes: number;
  /** Messages replayed from history to recovering subscribers. */
  recovered: number;
  /** Times the broker was lost (connection gone or stalled). */
  brokerOutages: number;
  /** GAPs sent to subscribers after the broker came back from an outage. */
  brokerGaps: number;
  /** Errors sent to clients, by error code; -1 = malformed frame, -2 = text frame. */
  errors: Map<number, number>;
}

export function newStats(): Stats {
  return {
    connectionsOpened: 0,
    connectionsClosed: 0,
    framesIn: 0,
    messagesIn: 0,
    bytesIn: 0,
    messagesOut: 0,
    bytesOut: 0,
    publishes: 0,
    requests: 0,
    requestTimeouts: 0,
    subscriptions: 0,
    malformedFrames: 0,
    deliveriesDropped: 0,
    deliveriesConflated: 0,
    slowConsumerCloses: 0,
    rateLimitPauses: 0,
    rateLimitCloses: 0,
    heartbeatPings: 0,
    heartbeatTerminations: 0,
    httpPublishes: 0,
    recovered: 0,
    brokerOutages: 0,
    brokerGaps: 0,
    errors: new Map(),
  };
}

export type MethodHandler = (ctx: RequestContext, payload: unknown) => unknown;

export interface Hooks {
  onConnection?: (conn: Connection) => void;
  onClose?: (conn: Connection, code: number, reason: string) => void;
  authorizeSubscribe?: (conn: Connection, pattern: string) => boolean | PromiseLike<boolean>;
  authorizePublish?: (conn: Connection, topic: string, payload: unknown) => boolean | PromiseLike<boolean>;
}

