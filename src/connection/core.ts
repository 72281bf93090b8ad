import type { Logger } from 'pino';
import type { GatewayConfig } from '../config/index.js';
import type { TopicLimits } from '../protocol/topic.js';
import type { Hub, Outgoing } from '../pubsub/hub.js';
import type { Session, Connection, RequestContext } from './session.js';

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
  slowConsumerCloses: number;
  rateLimitPauses: number;
  rateLimitCloses: number;
  heartbeatPings: number;
  heartbeatTerminations: number;
  httpPublishes: number;
  /** Messages wiregate deflated itself (a broadcast counts once, however many subscribers). */
  deflated: number;
  /** Errors sent to clients, by error code; -1 = malformed frame, -2 = text frame. */
  errors: Map<number, number>;
  /** Upgrades refused before the WebSocket existed, by reason. */
  upgradesRejected: Map<string, number>;
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
    slowConsumerCloses: 0,
    rateLimitPauses: 0,
    rateLimitCloses: 0,
    heartbeatPings: 0,
    heartbeatTerminations: 0,
    httpPublishes: 0,
    deflated: 0,
    errors: new Map(),
    upgradesRejected: new Map(),
  };
}

export type MethodHandler = (ctx: RequestContext, payload: unknown) => unknown;

export interface Hooks {
  onConnection?: (conn: Connection) => void;
  onClose?: (conn: Connection, code: number, reason: string) => void;
  authorizeSubscribe?: (conn: Connection, pattern: string) => boolean | PromiseLike<boolean>;
  authorizePublish?: (conn: Connection, topic: string, payload: unknown) => boolean | PromiseLike<boolean>;
}

/** What a Session needs from the gateway. */
export interface GatewayCore {
  readonly config: GatewayConfig;
  readonly stats: Stats;
  readonly hub: Hub;
  readonly hooks: Hooks;
  readonly handlers: ReadonlyMap<string, MethodHandler>;
  readonly log: Logger;
  readonly topicLimits: TopicLimits;
  readonly maxDepth: number;
  readonly draining: boolean;
  /** Whether sessions may use the pre-framed direct socket write path. */
  readonly fastPath: boolean;
  /** The compressed frame of a broadcast for `bits` window bits, computed once per publish. */
  sharedCompressed(out: Outgoing, bits: number): Buffer;
  /** A session corked its socket; uncork it at the end of this tick. */
  corked(s: Session): void;
  /** Coarse clock used for liveness stamps. */
  clock(): number;
  countError(code: number): void;
  slowConsumer(s: Session): void;
  admitInbound(s: Session, bytes: number): boolean;
  refresh(s: Session, id: number, token: string): void;
  closed(s: Session, code: number, reason: string): void;
  onSocketError(s: Session, err: Error): void;
}
