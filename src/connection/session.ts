// One WebSocket connection: its identity and state (user, permissions, subscriptions, liveness,
// protocol-error count) and its lifecycle. The outbound side (budget, batching, fast path) is the
// base class in outbound.ts; decoding and dispatch live in dispatch.ts; rate limits in inbound.ts.
// ws listeners are module-level functions that reach the session through a symbol on the
// WebSocket, so a connection allocates no closures.
import type { IncomingHttpHeaders } from 'node:http';
import type { WebSocket, RawData } from 'ws';
import { CloseCode, ErrorCode, PROTOCOL_ERROR_CODES } from '../protocol/codes.js';
import { encodeError, encodePayload } from '../protocol/messages.js';
import type { Subscriber } from '../pubsub/hub.js';
import type { Beating } from '../heartbeat/heartbeat.js';
import type { Identity } from '../auth/jwt.js';
import type { Credentialed, Permissions } from '../auth/credentials.js';
import { installSyncInflate } from '../transport/ws-internals.js';
import { Outbound, type OutboundContext } from './outbound.js';
import { InboundThrottle, throttleEnabled, type ThrottleLimits, type Throttled } from './inbound.js';
import type { Dispatcher } from './dispatch.js';

const kSession = Symbol('wiregate.session');

/** What a connection looks like to application code (hooks and handlers). */
export interface Connection {
  readonly id: number;
  readonly ip: string;
  readonly url: string;
  /**
   * The upgrade request's headers: all of them during the `onConnection` hook, afterwards only
   * those named in the `retainHeaders` option (idle connections should not carry them).
   */
  readonly headers: IncomingHttpHeaders;
  readonly protocol: string;
  /** Authenticated user id, or null. */
  readonly userId: string | null;
  /** Verified token claims / identity attached at upgrade, or null. */
  readonly user: unknown;
  /** Patterns this connection is subscribed to. */
  readonly subscriptions: ReadonlySet<string>;
  /** Free slot for the application. */
  data: Record<string, unknown>;
  /** Closes the connection with a WebSocket close code (see CloseCode) and reason. */
  close(code?: number, reason?: string): void;
}

export interface RequestContext {
  readonly connection: Connection;
  readonly method: string;
  readonly requestId: number;
}

/** What a session needs from the gateway, fixed at construction and shared by every session. */
export interface SessionContext extends OutboundContext {
  readonly dispatcher: Dispatcher;
  readonly limits: ThrottleLimits & { readonly maxProtocolErrors: number };
  /** Coarse clock used for liveness stamps. */
  clock(): number;
  /** The socket closed: the gateway forgets the session. */
  closed(s: Session, code: number, reason: string): void;
}

export interface SessionInit {
  ip: string;
  url: string;
  headers: IncomingHttpHeaders;
  protocol: string;
  batch: boolean;
  identity: Identity | null;
  permissions: Permissions;
}

export class Session extends Outbound implements Subscriber, Beating, Connection, Credentialed, Throttled {
  // hub / heartbeat fields (flat, numbers first)
  stamp = 0;
  lastActivity: number;
  pingAt = 0;
  /** Requests whose handler has not settled (the dispatcher counts them). */
  pendingRequests = 0;
  private protocolErrors = 0;
  /** Created on first subscribe: an idle connection carries no Set. */
  private subs: Set<string> | null = null;
  private appData: Record<string, unknown> | null = null;
  private hdrs: IncomingHttpHeaders;
  private identity: Identity | null;
  private perms: Permissions;
  readonly ip: string;
  readonly url: string;
  readonly protocol: string;
  private readonly throttle: InboundThrottle | null;
  /** Releases the synchronous inflater's per-connection state (null: none installed). */
  private releaseInflate: (() => void) | null = null;
  /** Set when the socket has closed and the gateway was told. */
  private ended = false;

  constructor(
    readonly id: number,
    ws: WebSocket,
    private readonly sctx: SessionContext,
    init: SessionInit,
  ) {
    super(ws, sctx, init.batch);
    this.ip = init.ip;
    this.url = init.url;
    this.hdrs = init.headers;
    this.protocol = init.protocol;
    this.identity = init.identity;
    this.perms = init.permissions;
    this.lastActivity = sctx.clock();
    this.throttle = throttleEnabled(sctx.limits) ? new InboundThrottle(this, sctx.limits, sctx.stats) : null;
    if (sctx.fastPaths.syncInflate && ws.extensions.includes('permessage-deflate')) this.releaseInflate = installSyncInflate(ws);
    (ws as unknown as Record<symbol, Session>)[kSession] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('ping', onPong);
    ws.on('close', onClose);
    ws.on('error', onError);
  }

  get headers(): IncomingHttpHeaders {
    return this.hdrs;
  }

  get userId(): string | null {
    return this.identity?.userId ?? null;
  }

  get user(): unknown {
    return this.identity;
  }

  /** Token expiry in ms since the epoch, or null. */
  get expiresAt(): number | null {
    return this.identity?.expiresAt ?? null;
  }

  /** Client info shown in presence: the token's `info` claim, encoded (null without one). */
  get presenceInfo(): Uint8Array | null {
    const info = this.identity?.claims.info;
    return info === undefined ? null : encodePayload(info);
  }

  get canPublish(): ((topic: string) => boolean) | null {
    return this.perms.canPublish;
  }

  get canSubscribe(): ((pattern: string) => boolean) | null {
    return this.perms.canSubscribe;
  }

  get subscriptions(): ReadonlySet<string> {
    return this.subs ?? NO_SUBSCRIPTIONS;
  }

  get data(): Record<string, unknown> {
    return (this.appData ??= {});
  }

  set data(v: Record<string, unknown>) {
    this.appData = v;
  }

  /** Whether the inbound rate limiter has paused this connection. */
  get throttled(): boolean {
    return this.ws.isPaused;
  }

  /** Drops the upgrade headers except `keep` (called by the gateway after onConnection). */
  retainHeaders(keep: readonly string[]): void {
    const all = this.hdrs;
    if (keep.length === 0) {
      this.hdrs = NO_HEADERS;
      return;
    }
    const kept: IncomingHttpHeaders = {};
    for (const name of keep) {
      const k = name.toLowerCase();
      if (all[k] !== undefined) kept[k] = all[k] as string;
    }
    this.hdrs = kept;
  }

  setIdentity(identity: Identity, permissions: Permissions): void {
    this.identity = identity;
    this.perms = permissions;
  }

  addSubscription(pattern: string): void {
    (this.subs ??= new Set()).add(pattern);
  }

  removeSubscription(pattern: string): boolean {
    return this.subs !== null && this.subs.delete(pattern);
  }

  /**
   * Answers a message with ERROR. The one place where rejected messages are counted towards
   * `limits.maxProtocolErrors` (PROTOCOL_ERROR_CODES in protocol/codes.ts says which codes count).
   */
  sendError(id: number, code: number, message: string): void {
    const errors = this.ctx.stats.errors;
    errors.set(code, (errors.get(code) ?? 0) + 1);
    this.send(encodeError(id, code, message));
    if (PROTOCOL_ERROR_CODES.has(code) && ++this.protocolErrors >= this.sctx.limits.maxProtocolErrors) {
      this.close(CloseCode.BAD_PROTOCOL, 'too many protocol errors');
    }
  }

  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.closing) return;
    // A socket paused by the rate limiter must read again to complete the closing handshake;
    // anything it reads from now on is discarded (closing).
    if (this.ws.isPaused) this.ws.resume();
    this.closeSocket(code, reason);
  }

  /** Cuts the connection without a close frame (heartbeat timeout, drain timeout). */
  terminate(): void {
    this.closing = true;
    this.ws.terminate();
  }

  /** Throttled: one frame through the dispatcher; returns its message count. */
  processFrame(data: Buffer): number {
    return this.sctx.dispatcher.frame(this, data);
  }

  /** Throttled: the connection stayed over its rate for longer than the grace. */
  rateLimited(): void {
    this.close(CloseCode.RATE_LIMITED, 'rate limit exceeded');
  }

  /** Removes and returns every subscription pattern (the gateway unsubscribes them from the hub). */
  takeSubscriptions(): Set<string> | null {
    const subs = this.subs;
    this.subs = null;
    return subs;
  }

  // ---- called by the module-level ws listeners ----------------------------------------------

  /** @internal An inbound frame. */
  onFrame(data: RawData, isBinary: boolean): void {
    const ctx = this.sctx;
    this.lastActivity = ctx.clock();
    if (this.closing) return;
    const buf = data as Buffer; // binaryType 'nodebuffer': always a Buffer
    const stats = ctx.stats;
    stats.framesIn++;
    stats.bytesIn += buf.length;
    if (!isBinary) {
      stats.errors.set(-2, (stats.errors.get(-2) ?? 0) + 1);
      this.close(CloseCode.UNSUPPORTED_DATA, 'binary frames only');
      return;
    }
    try {
      if (this.throttle !== null) this.throttle.frame(buf);
      else ctx.dispatcher.frame(this, buf);
    } catch (err) {
      ctx.log.error({ err, connection: this.id }, 'unexpected error handling a frame');
      this.close(CloseCode.INTERNAL_ERROR, 'internal error');
    }
  }

  /** @internal A pong or ping from the peer: proof of life. */
  onAlive(): void {
    this.lastActivity = this.sctx.clock();
  }

  /** @internal The socket closed: release everything and tell the gateway (once). */
  onSocketClose(code: number, reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.closing = true;
    this.throttle?.stop();
    if (this.releaseInflate !== null) {
      this.releaseInflate();
      this.releaseInflate = null;
    }
    this.sctx.closed(this, code, reason);
  }

  /** @internal ws reports an error; it closes the connection itself (1009 for maxPayload, 1002 for bad framing...). */
  onSocketError(err: Error): void {
    const code = (err as { code?: string }).code;
    const stats = this.ctx.stats;
    if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') stats.errors.set(ErrorCode.PAYLOAD_TOO_LARGE, (stats.errors.get(ErrorCode.PAYLOAD_TOO_LARGE) ?? 0) + 1);
    this.ctx.log.debug({ connection: this.id, err: err.message, code }, 'socket error');
  }
}

const NO_SUBSCRIPTIONS: ReadonlySet<string> = new Set<string>();
const NO_HEADERS: IncomingHttpHeaders = Object.freeze({});

// ---- module-level ws listeners (this = the WebSocket) ------------------------------------------

function sessionOf(ws: WebSocket): Session {
  return (ws as unknown as Record<symbol, Session>)[kSession];
}

function onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  sessionOf(this).onFrame(data, isBinary);
}

function onPong(this: WebSocket): void {
  sessionOf(this).onAlive();
}

function onClose(this: WebSocket, code: number, reason: Buffer): void {
  sessionOf(this).onSocketClose(code, reason.toString());
}

function onError(this: WebSocket, err: Error): void {
  sessionOf(this).onSocketError(err);
}
