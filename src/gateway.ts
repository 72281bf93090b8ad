// Wires config -> http/ws server -> sessions -> hub -> broker, and owns listen / close (drain).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Registry } from 'prom-client';
import { redactConfig, resolveConfig, type GatewayConfig, type GatewayOptions } from './config/index.js';
import { CloseCode, ErrorCode } from './protocol/codes.js';
import { SUBPROTOCOL, SUBPROTOCOL_BATCH, encodePayload, encodeResult } from './protocol/messages.js';
import { DEFAULT_MAX_DEPTH } from './protocol/scan.js';
import { topicError, topicMatches, type TopicLimits } from './protocol/topic.js';
import { Hub, type Outgoing } from './pubsub/hub.js';
import { compressedFrame } from './transport/deflate.js';
import { ExpiryHeap } from './util/expiry-heap.js';
import { MemoryBroker } from './pubsub/memory-broker.js';
import type { Broker } from './pubsub/broker.js';
import { Session, type Connection } from './connection/session.js';
import { newStats, type GatewayCore, type Hooks, type MethodHandler, type Stats } from './connection/core.js';
import { TokenBucket } from './connection/rate.js';
import { Heartbeat } from './heartbeat/heartbeat.js';
import { createMetrics } from './metrics/metrics.js';
import { abortHandshake, remoteIp } from './transport/http-util.js';
import { wsInternalsSupported } from './transport/ws-internals.js';
import { createHttpHandler } from './http/routes.js';
import { AuthError, createAuthenticator, createPermissionChecker, extractToken, patternWithin, type Identity } from './auth/jwt.js';
import { runtimeInfo, type RuntimeInfo } from './info.js';

export interface EmbedOptions {
  /** Message broker; defaults to the in-process MemoryBroker. */
  broker?: Broker;
  hooks?: Hooks;
  /** A pino logger to use instead of creating one. */
  logger?: Logger;
  /** A config already resolved with resolveConfig() (the CLI passes this); other options are then ignored. */
  config?: GatewayConfig;
}

export type CreateGatewayOptions = GatewayOptions & EmbedOptions;

export interface PublishResult {
  seq: number;
}

/** Identity attached to a connection at upgrade (from a JWT or the `authenticate` hook). */
export type Authenticate = (req: IncomingMessage) => Identity | null | Promise<Identity | null>;

export class Gateway implements GatewayCore {
  readonly config: GatewayConfig;
  readonly stats: Stats = newStats();
  readonly hub: Hub;
  readonly hooks: Hooks;
  readonly handlers = new Map<string, MethodHandler>();
  readonly log: Logger;
  readonly topicLimits: TopicLimits;
  readonly maxDepth = DEFAULT_MAX_DEPTH;
  readonly metrics: Registry | null;
  readonly info: RuntimeInfo;
  draining = false;
  readonly fastPath: boolean;
  private corkedSessions: Session[] = [];
  private flushScheduled = false;
  private readonly flushCorked = () => {
    const list = this.corkedSessions;
    this.corkedSessions = [];
    this.flushScheduled = false;
    for (let i = 0; i < list.length; i++) list[i].uncork();
  };

  /** Open sessions. */
  readonly sessions = new Set<Session>();
  private nextId = 1;
  private readonly wss: WebSocketServer;
  private readonly heartbeat: Heartbeat<Session>;
  private server: Server | null = null;
  private readonly perIp = new Map<string, number>();
  private readonly perUser = new Map<string, number>();
  private readonly handshakeBuckets = new Map<string, TokenBucket>();
  private reserved = 0;
  private housekeeping: ReturnType<typeof setInterval> | null = null;
  /** Token expiry deadlines of authenticated sessions (the sweep visits only those due). */
  private readonly expiries = new ExpiryHeap<Session>();
  private readonly authenticator: ReturnType<typeof createAuthenticator> | null;
  private authenticate: Authenticate | null = null;
  private closePromise: Promise<void> | null = null;
  private started: Promise<void> | null = null;
  readonly httpHandler: (req: IncomingMessage, res: ServerResponse) => void;

  constructor(options: CreateGatewayOptions = {}) {
    const { broker, hooks, logger, config, ...rest } = options;
    this.config = config ?? resolveConfig({ options: rest });
    const c = this.config;
    this.fastPath = wsInternalsSupported && process.env.WIREGATE_NO_FAST_PATH !== '1';
    this.log = logger ?? pino({ level: c.log.level, base: { name: 'wiregate' } });
    this.hooks = { ...hooks };
    this.topicLimits = Object.freeze({ maxLength: c.limits.maxTopicLength, maxLevels: c.limits.maxTopicLevels });
    this.hub = new Hub(broker ?? new MemoryBroker(), outboundPolicy(c));
    this.authenticator = c.auth.enabled
      ? createAuthenticator({
          enabled: true,
          secret: c.auth.secret || undefined,
          publicKey: c.auth.publicKey || undefined,
          jwksFile: c.auth.jwksFile || undefined,
          issuer: c.auth.issuer || undefined,
          audience: c.auth.audience || undefined,
        })
      : null;
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: c.maxPayload,
      maxFragments: c.limits.maxFragments,
      maxBufferedChunks: c.limits.maxBufferedChunks,
      perMessageDeflate: c.compression.enabled
        ? {
            threshold: c.compression.threshold,
            concurrencyLimit: c.compression.concurrencyLimit,
            serverNoContextTakeover: c.compression.serverNoContextTakeover,
            clientNoContextTakeover: c.compression.clientNoContextTakeover,
            // ws refuses an offer asking for a smaller window than a configured number (400), so
            // 15 (the protocol maximum) is left unset: clients may then ask for any window.
            serverMaxWindowBits: c.compression.serverMaxWindowBits === 15 ? undefined : c.compression.serverMaxWindowBits,
            clientMaxWindowBits: c.compression.clientMaxWindowBits,
            zlibDeflateOptions: { level: c.compression.level, memLevel: c.compression.memLevel },
            zlibInflateOptions: { chunkSize: 16 * 1024 },
          }
        : false,
      handleProtocols: (protocols) => pickProtocol(protocols) ?? false,
      skipUTF8Validation: true, // text frames are refused anyway (1003)
    });
    this.heartbeat = new Heartbeat<Session>(this.sessions, {
      interval: c.heartbeat.interval,
      timeout: c.heartbeat.timeout,
      ping: (s) => {
        this.stats.heartbeatPings++;
        if (s.ws.readyState === 1) s.ping();
      },
      dead: (s) => {
        this.stats.heartbeatTerminations++;
        this.log.debug({ connection: s.id, ip: s.ip }, 'heartbeat timeout, terminating');
        s.closing = true;
        s.ws.terminate();
      },
    });
    this.info = runtimeInfo(c);
    this.metrics = c.metrics.enabled
      ? createMetrics(this.stats, {
          connections: () => this.sessions.size,
          patterns: () => this.hub.patternCount,
          draining: () => this.draining,
        }, c.metrics.eventLoopResolution)
      : null;
    this.httpHandler = createHttpHandler(this);
  }

  // ---- public API ------------------------------------------------------------------------------

  /** Registers a method for REQUEST messages. The handler's return value (or promise) is the reply. */
  handle(method: string, handler: MethodHandler): this {
    if (typeof method !== 'string' || method.length === 0 || method.length > 128) throw new TypeError('method must be a string of 1..128 characters');
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    this.handlers.set(method, handler);
    return this;
  }

  /** Adds or replaces a hook. */
  hook<K extends keyof Hooks>(name: K, fn: NonNullable<Hooks[K]>): this {
    this.hooks[name] = fn;
    return this;
  }

  /** Sets a custom authenticator used when JWT auth is off (return null to reject with 401). */
  setAuthenticate(fn: Authenticate): this {
    this.authenticate = fn;
    return this;
  }

  /** Publishes from the server to every subscriber of `topic`. Resolves to the sequence number. */
  async publish(topic: string, data: unknown): Promise<PublishResult> {
    const err = topicError(topic, false, this.topicLimits);
    if (err !== null) throw new TypeError(`invalid topic ${JSON.stringify(topic)}: ${err}`);
    const seq = await this.hub.publish(topic, encodePayload(data), 0);
    this.stats.publishes++;
    return { seq };
  }

  /** Number of open connections. */
  get connections(): number {
    return this.sessions.size;
  }

  /** Creates an HTTP server (health, metrics, info, publish API and the WebSocket path) and listens. */
  async listen(opts: { port?: number; host?: string } = {}): Promise<AddressInfo> {
    await this.start();
    if (this.server) throw new Error('gateway is already listening');
    const c = this.config;
    const server = createServer({
      headersTimeout: c.limits.handshakeTimeout,
      requestTimeout: Math.max(c.limits.handshakeTimeout, 30_000),
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(c.limits.handshakeTimeout / 4))),
    } as Parameters<typeof createServer>[0]);
    server.on('request', this.httpHandler);
    this.server = server;
    this.attach(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? c.port, opts.host ?? c.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address() as AddressInfo;
    this.log.info({ address: addr.address, port: addr.port, path: c.path, ...this.info }, 'wiregate listening');
    return addr;
  }

  /** The server created by listen(), if any. */
  get httpServer(): Server | null {
    return this.server;
  }

  /**
   * Accepts WebSocket upgrades on config.path of an existing HTTP server (Express, Fastify, ...).
   * Other upgrade paths are left to the server's other listeners (or get 404 if there are none).
   * HTTP routes are not mounted: use `gateway.httpHandler` for those.
   */
  attach(server: Server): this {
    void this.start();
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = pathOf(req.url);
      if (path !== this.config.path) {
        if (server.listenerCount('upgrade') === 1) {
          this.reject(socket, 404, 'not_found', { error: 'NOT_FOUND', message: `WebSocket endpoint is ${this.config.path}` });
        }
        return;
      }
      this.handleUpgrade(req, socket, head);
    });
    return this;
  }

  /** Starts broker and timers; listen() and attach() call it. */
  start(): Promise<void> {
    return (this.started ??= (async () => {
      await this.hub.start();
      this.heartbeat.start();
      this.housekeeping = setInterval(() => this.sweep(), 1000);
      this.housekeeping.unref();
    })());
  }

  /**
   * Graceful shutdown: refuse new upgrades (503), mark not ready, close every connection with 1001,
   * wait up to drainTimeout for clients to go, terminate the rest, close the HTTP server and broker.
   */
  close(opts: { drainTimeout?: number } = {}): Promise<void> {
    return (this.closePromise ??= this.doClose(opts.drainTimeout ?? this.config.drainTimeout));
  }

  private async doClose(drainTimeout: number): Promise<void> {
    this.draining = true;
    this.log.info({ connections: this.sessions.size, drainTimeout }, 'draining');
    this.heartbeat.stop();
    if (this.housekeeping) clearInterval(this.housekeeping);
    // The listener stays open while draining so that load balancers see /readyz = 503 and new
    // upgrades get an explicit 503 instead of a refused connection.
    const all = [...this.sessions];
    const gone = Promise.all(all.map((s) => new Promise<void>((r) => (s.ws.readyState === 3 ? r() : s.ws.once('close', () => r())))));
    for (const s of all) s.close(CloseCode.GOING_AWAY, 'server shutting down');
    let timer: ReturnType<typeof setTimeout> | undefined;
    const drained = await Promise.race([gone.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), drainTimeout)))]);
    clearTimeout(timer);
    if (!drained) {
      this.log.warn({ remaining: this.sessions.size }, 'drain timeout, terminating remaining connections');
      for (const s of this.sessions) s.ws.terminate();
      await gone;
    }
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise<void>((r) => this.server!.close(() => r()));
    }
    this.wss.close();
    await this.hub.close();
    this.log.info('closed');
  }

  // ---- upgrade -----------------------------------------------------------------------------------

  private reject(socket: Duplex, status: number, reason: string, body: unknown, headers?: Record<string, string | number>): void {
    this.stats.upgradesRejected.set(reason, (this.stats.upgradesRejected.get(reason) ?? 0) + 1);
    abortHandshake(socket, status, body, headers);
  }

  /** Runs the upgrade policy (limits, origin, subprotocol, auth) and completes the handshake. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', swallow);
    const c = this.config;
    if (this.draining) return this.reject(socket, 503, 'draining', { error: 'UNAVAILABLE', message: 'server shutting down' }, { 'Retry-After': 1 });
    if (c.allowedOrigins.length > 0) {
      const origin = req.headers.origin;
      if (!origin || !c.allowedOrigins.includes(origin)) return this.reject(socket, 403, 'origin', { error: 'ORIGIN_NOT_ALLOWED', message: 'origin not allowed' });
    }
    if (this.sessions.size + this.reserved >= c.limits.maxConnections) {
      return this.reject(socket, 503, 'max_connections', { error: 'TOO_MANY_CONNECTIONS', message: 'server is at its connection limit' }, { 'Retry-After': 5 });
    }
    const ip = remoteIp(req, c.trustProxy);
    if (c.limits.maxConnectionsPerIp > 0 && (this.perIp.get(ip) ?? 0) >= c.limits.maxConnectionsPerIp) {
      return this.reject(socket, 429, 'max_connections_per_ip', { error: 'TOO_MANY_CONNECTIONS_FROM_IP', message: 'too many connections from this address' }, { 'Retry-After': 5 });
    }
    if (c.limits.handshakeRate > 0) {
      let b = this.handshakeBuckets.get(ip);
      if (!b) this.handshakeBuckets.set(ip, (b = new TokenBucket(c.limits.handshakeRate, c.limits.handshakeBurst)));
      const wait = b.take(1);
      if (wait > 0) {
        b.tokens += 1; // a refused handshake costs nothing
        return this.reject(socket, 429, 'handshake_rate', { error: 'HANDSHAKE_RATE_LIMITED', message: 'too many connection attempts' }, { 'Retry-After': Math.ceil(wait / 1000) });
      }
    }
    const offered = parseProtocols(req.headers['sec-websocket-protocol']);
    const protocol = pickProtocol(offered);
    if (protocol === null && (c.requireSubprotocol || offered.size > 0 && [...offered].some((p) => !p.startsWith('bearer.')))) {
      return this.reject(socket, 426, 'subprotocol', { error: 'SUBPROTOCOL_REQUIRED', message: `offer Sec-WebSocket-Protocol: ${SUBPROTOCOL}` }, { 'Sec-WebSocket-Protocol': SUBPROTOCOL });
    }
    if (c.requireSubprotocol && protocol === null) return;

    // Reserve the slot now so concurrent handshakes cannot overshoot the limits during async auth.
    this.reserved++;
    inc(this.perIp, ip);
    const release = () => {
      this.reserved--;
      dec(this.perIp, ip);
    };
    let identity: Identity | null | Promise<Identity | null> = null;
    try {
      identity = this.identify(req);
    } catch (err) {
      release();
      return this.rejectAuth(socket, err);
    }
    const proceed = (id: Identity | null) => {
      if (socket.destroyed) return release();
      if (this.draining) {
        release();
        return this.reject(socket, 503, 'draining', { error: 'UNAVAILABLE', message: 'server shutting down' }, { 'Retry-After': 1 });
      }
      if (id && c.limits.maxConnectionsPerUser > 0 && (this.perUser.get(id.userId) ?? 0) >= c.limits.maxConnectionsPerUser) {
        release();
        return this.reject(socket, 429, 'max_connections_per_user', { error: 'TOO_MANY_CONNECTIONS_FOR_USER', message: 'too many connections for this user' }, { 'Retry-After': 5 });
      }
      if (id) inc(this.perUser, id.userId);
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        socket.removeListener('error', swallow); // ws handles socket errors from here on
        this.reserved--;
        this.accept(ws, req, ip, protocol ?? SUBPROTOCOL, id);
      });
    };
    if (identity !== null && typeof (identity as Promise<Identity | null>).then === 'function') {
      (identity as Promise<Identity | null>).then(proceed, (err) => {
        release();
        this.rejectAuth(socket, err);
      });
    } else proceed(identity as Identity | null);
  }

  private identify(req: IncomingMessage): Identity | null | Promise<Identity | null> {
    if (this.authenticator) {
      const token = extractToken(req);
      if (token === null) throw new AuthError('TOKEN_MISSING', 'no token: use Authorization: Bearer, ?token= or a bearer.<token> subprotocol');
      return this.authenticator.verify(token);
    }
    if (this.authenticate) {
      const r = this.authenticate(req);
      const check = (id: Identity | null) => {
        if (id === null) throw new AuthError('TOKEN_MISSING', 'authentication failed');
        return id;
      };
      return r !== null && typeof (r as Promise<Identity | null>).then === 'function' ? (r as Promise<Identity | null>).then(check) : check(r as Identity | null);
    }
    return null;
  }

  private rejectAuth(socket: Duplex, err: unknown): void {
    if (err instanceof AuthError) {
      this.log.debug({ code: err.code }, 'upgrade refused: authentication');
      return this.reject(socket, 401, 'auth', { error: err.code, message: err.message }, { 'WWW-Authenticate': 'Bearer' });
    }
    this.log.error({ err }, 'authentication failed unexpectedly');
    this.reject(socket, 500, 'auth_error', { error: 'INTERNAL', message: 'authentication failed' });
  }

  private accept(ws: WebSocket, req: IncomingMessage, ip: string, protocol: string, id: Identity | null): void {
    const authOn = this.authenticator !== null || this.authenticate !== null;
    const session = new Session(this.nextId++, ws, this, {
      ip,
      url: req.url ?? '/',
      headers: req.headers,
      protocol,
      batch: protocol === SUBPROTOCOL_BATCH,
      userId: id?.userId ?? null,
      user: id,
      expiresAt: id?.expiresAt ?? null,
      canPublish: authOn ? createPermissionChecker(id?.publish ?? []) : null,
      canSubscribe: authOn ? subscribeChecker(id?.subscribe ?? []) : null,
    });
    this.sessions.add(session);
    if (session.expiresAt !== null) this.expiries.push(session.expiresAt, session);
    this.stats.connectionsOpened++;
    if (this.hooks.onConnection) {
      try {
        this.hooks.onConnection(session);
      } catch (err) {
        this.log.error({ err }, 'onConnection hook threw; closing connection');
        session.close(CloseCode.INTERNAL_ERROR, 'internal error');
      }
    }
    session.retainHeaders(this.config.retainHeaders);
  }

  // ---- GatewayCore (called by sessions) ------------------------------------------------------

  clock(): number {
    return this.heartbeat.now;
  }

  sharedCompressed(out: Outgoing, bits: number): Buffer {
    if (out.zBits !== bits || out.z === null) {
      out.z = compressedFrame(out.msg, bits, this.config.compression);
      this.stats.deflated++;
      out.zBits = bits;
    }
    return out.z;
  }

  corked(s: Session): void {
    this.corkedSessions.push(s);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate runs after the poll phase: every write caused by the I/O of this loop
      // iteration (all inbound frames from all sockets) reaches each socket in one writev.
      setImmediate(this.flushCorked);
    }
  }

  countError(code: number): void {
    this.stats.errors.set(code, (this.stats.errors.get(code) ?? 0) + 1);
  }

  slowConsumer(s: Session): void {
    if (s.closing) return;
    this.stats.slowConsumerCloses++;
    this.log.debug({ connection: s.id, buffered: s.ws.bufferedAmount }, 'slow consumer, closing');
    // Nothing more is queued for it, so memory stays bounded. The close frame queues behind the
    // backlog; a client still reading slowly sees 4000, a stuck one is cut off after a second.
    s.closing = true;
    s.ws.close(CloseCode.SLOW_CONSUMER, 'slow consumer');
    setTimeout(() => {
      if (s.ws.readyState !== 3) s.ws.terminate();
    }, 1000).unref();
  }

  admitInbound(s: Session, bytes: number): boolean {
    const now = performance.now();
    const wait = Math.max(s.msgBucket ? s.msgBucket.take(1, now) : 0, s.byteBucket ? s.byteBucket.take(bytes, now) : 0);
    if (wait === 0) return true;
    if (wait > this.config.limits.rateLimitGrace) {
      this.stats.rateLimitCloses++;
      s.close(CloseCode.RATE_LIMITED, 'rate limit exceeded');
      return false;
    }
    if (!s.ws.isPaused) {
      this.stats.rateLimitPauses++;
      s.ws.pause();
      setTimeout(() => {
        if (s.ws.readyState === 1) s.ws.resume();
      }, Math.ceil(wait)).unref();
    }
    return true;
  }

  refresh(s: Session, id: number, token: string): void {
    if (!this.authenticator) return s.reply(id, ErrorCode.UNAUTHORIZED, 'token refresh needs JWT auth to be enabled');
    this.authenticator.verify(token).then(
      (identity) => {
        if (s.closing) return;
        if (identity.userId !== s.userId) {
          s.reply(id, ErrorCode.TOKEN_INVALID, 'token is for another user');
          return;
        }
        s.user = identity;
        s.expiresAt = identity.expiresAt;
        if (s.expiresAt !== null) this.expiries.push(s.expiresAt, s);
        s.canPublish = createPermissionChecker(identity.publish);
        s.canSubscribe = subscribeChecker(identity.subscribe);
        s.send(encodeResult(id, identity.expiresAt === null ? null : { expiresAt: identity.expiresAt }));
      },
      (err) => {
        if (s.closing) return;
        s.reply(id, ErrorCode.TOKEN_INVALID, err instanceof AuthError ? `${err.code}: ${err.message}` : 'token rejected');
      },
    );
  }

  closed(s: Session, code: number, reason: string): void {
    if (!this.sessions.delete(s)) return;
    s.closing = true;
    this.stats.connectionsClosed++;
    s.cleanup();
    if (s.expiresAt !== null) this.expiries.forget((x) => this.sessions.has(x));
    dec(this.perIp, s.ip);
    if (s.userId !== null) dec(this.perUser, s.userId);
    if (this.hooks.onClose) {
      try {
        this.hooks.onClose(s, code, reason);
      } catch (err) {
        this.log.error({ err }, 'onClose hook threw');
      }
    }
  }

  onSocketError(s: Session, err: Error): void {
    // ws closes the connection itself (e.g. 1009 for maxPayload, 1002 for bad framing).
    const code = (err as { code?: string }).code;
    if (code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') this.countError(ErrorCode.PAYLOAD_TOO_LARGE);
    this.log.debug({ connection: s.id, err: err.message, code }, 'socket error');
  }

  /** Once a second: expired tokens (only the sessions that are due), idle handshake buckets. */
  private sweep(): void {
    this.expiries.popDue(Date.now(), (s, at) => {
      // stale entries: the session refreshed its token (a newer entry exists) or is gone
      if (s.expiresAt === at && !s.closing && this.sessions.has(s)) s.close(CloseCode.TOKEN_EXPIRED, 'token expired');
    });
    if (this.handshakeBuckets.size > 0) {
      for (const [ip, b] of this.handshakeBuckets) {
        if (b.take(0) === 0 && b.tokens >= b.burst) this.handshakeBuckets.delete(ip);
      }
    }
  }

  /** Effective configuration with secrets masked. */
  printableConfig(): Record<string, unknown> {
    return redactConfig(this.config);
  }
}

function swallow(): void {}

function inc(m: Map<string, number>, k: string): void {
  m.set(k, (m.get(k) ?? 0) + 1);
}

function dec(m: Map<string, number>, k: string): void {
  const v = (m.get(k) ?? 0) - 1;
  if (v <= 0) m.delete(k);
  else m.set(k, v);
}

function pathOf(url: string | undefined): string {
  if (!url) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

function parseProtocols(h: string | undefined): Set<string> {
  const out = new Set<string>();
  if (!h) return out;
  for (const p of h.split(',')) {
    const t = p.trim();
    if (t) out.add(t);
  }
  return out;
}

function pickProtocol(offered: Set<string>): string | null {
  if (offered.has(SUBPROTOCOL_BATCH)) return SUBPROTOCOL_BATCH;
  if (offered.has(SUBPROTOCOL)) return SUBPROTOCOL;
  return null;
}

/** Whether deliveries on a topic may be dropped for slow consumers (per-topic overrides first). */
function outboundPolicy(c: GatewayConfig): (topic: string) => boolean {
  const rules = c.outbound.topicPolicies.map((e) => {
    const eq = e.lastIndexOf('=');
    return { pattern: e.slice(0, eq), drop: e.slice(eq + 1) === 'drop' };
  });
  const fallback = c.outbound.policy === 'drop';
  if (rules.length === 0) return () => fallback;
  return (topic) => {
    for (const r of rules) if (topicMatches(r.pattern, topic)) return r.drop;
    return fallback;
  };
}

function subscribeChecker(allowed: string[]): (pattern: string) => boolean {
  return (pattern) => patternWithin(pattern, allowed);
}

/** Creates a gateway. Call `listen()` (own HTTP server) or `attach(server)` (existing one). */
export function createGateway(options: CreateGatewayOptions = {}): Gateway {
  return new Gateway(options);
}
