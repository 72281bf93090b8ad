// The gateway's internals, wired once at construction: config -> ws server -> upgrade admission
// -> sessions -> dispatcher -> hub -> broker, plus the shared timers (heartbeat, request
// timeouts, the once-a-second housekeeping) and the HTTP server's lifecycle (listen, drain).
// Not exported from the package: the public surface is the Gateway class in gateway.ts.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { pino, type Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Registry } from 'prom-client';
import { ConfigError, parseHistoryEntry, type GatewayConfig } from './config/index.js';
import { CloseCode } from './protocol/codes.js';
import { SUBPROTOCOL_BATCH, encodePayload } from './protocol/messages.js';
import { DEFAULT_MAX_DEPTH } from './protocol/scan.js';
import { topicError, topicMatches, type TopicLimits } from './protocol/topic.js';
import { Hub, SlowPolicy } from './pubsub/hub.js';
import { Presence } from './pubsub/presence.js';
import { randomBytes } from 'node:crypto';
import { MemoryBroker } from './pubsub/memory-broker.js';
import { RedisBroker } from './pubsub/redis-broker.js';
import { NatsBroker } from './pubsub/nats-broker.js';
import { BrokerHealth } from './pubsub/broker-health.js';
import { encodeGap } from './protocol/messages.js';
import type { Broker, HistoryPolicy } from './pubsub/broker.js';
import { Session, type SessionContext } from './connection/session.js';
import { Dispatcher } from './connection/dispatch.js';
import { RequestTimer } from './connection/requests.js';
import { newStats, type Hooks, type MethodHandler, type Stats } from './connection/core.js';
import { Heartbeat } from './heartbeat/heartbeat.js';
import { createMetrics } from './metrics/metrics.js';
import { compileTrustProxy } from './transport/http-util.js';
import { Admission, DRAINING, isWebSocketHandshake, pickProtocol, type Refusal, type Reservation } from './transport/admission.js';
import { TickWriter } from './transport/writer.js';
import { normaliseDeflateOffer, perMessageDeflateOptions } from './transport/deflate-offer.js';
import { fastPaths, inflateStats, type FastPaths } from './transport/ws-internals.js';
import { createHttpHandler, type ClusterLink } from './http/routes.js';
import { AuthError, createAuthenticator, extractToken, type Authenticator, type Identity } from './auth/jwt.js';
import { Credentials, permissionsFor } from './auth/credentials.js';
import { runtimeInfo, type RuntimeInfo } from './info.js';

/** Identity attached to a connection at upgrade (from a JWT or the `authenticate` hook). */
export type Authenticate = (req: IncomingMessage) => Identity | null | Promise<Identity | null>;

export interface RuntimeOptions {
  config: GatewayConfig;
  broker?: Broker;
  hooks?: Hooks;
  logger?: Logger;
}

export class Runtime {
  readonly config: GatewayConfig;
  readonly stats: Stats = newStats();
  readonly log: Logger;
  readonly hub: Hub;
  readonly hooks: Hooks;
  readonly handlers = new Map<string, MethodHandler>();
  readonly topicLimits: TopicLimits;
  readonly info: RuntimeInfo & { fastPaths: FastPaths };
  readonly fastPaths: FastPaths;
  readonly metrics: Registry | null;
  readonly admission: Admission;
  readonly writer: TickWriter;
  readonly requests: RequestTimer;
  readonly credentials: Credentials<Session>;
  readonly presence: Presence<Session>;
  readonly dispatcher: Dispatcher;
  readonly brokerHealth: BrokerHealth;
  /** Open sessions. */
  readonly sessions = new Set<Session>();
  authenticate: Authenticate | null = null;
  /** Set in a worker of `wiregate start --workers N` (src/cli/cluster.ts): /metrics and /info then cover every worker. */
  cluster: ClusterLink | null = null;
  private drainingFlag = false;
  private nextId = 1;
  private readonly wss: WebSocketServer;
  private readonly heartbeat: Heartbeat<Session>;
  private readonly authenticator: Authenticator | null;
  private readonly clientIp: (req: IncomingMessage) => string;
  private readonly sessionContext: SessionContext;
  private server: Server | null = null;
  private housekeeping: ReturnType<typeof setInterval> | null = null;
  private closePromise: Promise<void> | null = null;
  private started: Promise<void> | null = null;
  readonly httpHandler: ReturnType<typeof createHttpHandler>;

  constructor(opts: RuntimeOptions) {
    const c = (this.config = opts.config);
    this.clientIp = compileTrustProxy(c.trustProxy);
    this.log = opts.logger ?? pino({ level: c.log.level, base: { name: 'wiregate' } });
    this.hooks = { ...opts.hooks };
    this.fastPaths = fastPaths();
    this.topicLimits = Object.freeze({ maxLength: c.limits.maxTopicLength, maxLevels: c.limits.maxTopicLevels });
    const broker: Broker =
      opts.broker ??
      (c.broker === 'memory'
        ? new MemoryBroker({ historyMaxBytes: c.history.maxBytes, retainedMaxTopics: c.retained.maxTopics, retainedMaxBytes: c.retained.maxBytes })
        : brokerFromUrl(c.broker, c.brokerPrefix, c.brokerTimeout, c.retained));
    this.hub = new Hub(broker, outboundPolicy(c), historyPolicy(c));
    this.brokerHealth = new BrokerHealth(this.hub, {
      startTimeout: c.brokerStartTimeout,
      timeout: c.brokerTimeout,
      log: this.log,
      onChange: (up, reason, forMs) => this.brokerChanged(up, reason, forMs),
    });
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
    this.admission = new Admission({
      limits: c.limits,
      allowedOrigins: c.allowedOrigins,
      allowNoOrigin: c.allowNoOrigin,
      requireSubprotocol: c.requireSubprotocol,
    });
    this.writer = new TickWriter(c.compression);
    this.requests = new RequestTimer(c.requestTimeout);
    this.presence = new Presence<Session>(broker, c.presence.topics, randomBytes(4).toString('hex'), c.presence.ttl, (err) => this.log.error({ err }, 'presence update failed'));
    this.credentials = new Credentials<Session>(this.authenticator, (s) => this.sessions.has(s));
    this.dispatcher = new Dispatcher({
      stats: this.stats,
      log: this.log,
      hub: this.hub,
      hooks: this.hooks,
      handlers: this.handlers,
      topicLimits: this.topicLimits,
      maxDepth: DEFAULT_MAX_DEPTH,
      maxSubscriptions: c.limits.maxSubscriptions,
      maxPendingRequests: c.limits.maxPendingRequests,
      requests: this.requests,
      credentials: this.credentials,
      presence: this.presence,
      maxRecover: c.history.maxRecover,
      retainedOff: c.retained.maxTopics === 0 || !broker.features.retained,
      draining: () => this.drainingFlag,
    });
    this.sessionContext = {
      stats: this.stats,
      log: this.log,
      writer: this.writer,
      budget: c.outbound.maxBufferedBytes,
      compressMin: c.compression.threshold,
      fastPaths: this.fastPaths,
      dispatcher: this.dispatcher,
      limits: c.limits,
      clock: () => this.heartbeat.now,
      closed: (s, code, reason) => this.closed(s, code, reason),
    };
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      maxPayload: c.maxPayload,
      maxFragments: c.limits.maxFragments,
      maxBufferedChunks: c.limits.maxBufferedChunks,
      perMessageDeflate: perMessageDeflateOptions(c.compression),
      handleProtocols: (protocols) => pickProtocol(protocols) ?? false,
      skipUTF8Validation: true, // text frames are refused anyway (1003)
    } as ConstructorParameters<typeof WebSocketServer>[0]);
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
        s.terminate();
      },
    });
    this.info = { ...runtimeInfo(c), fastPaths: this.fastPaths };
    this.metrics = c.metrics.enabled
      ? createMetrics(
          this.stats,
          {
            connections: () => this.sessions.size,
            patterns: () => this.hub.patternCount,
            draining: () => this.drainingFlag,
            deflated: () => this.writer.deflated,
            syncInflates: () => inflateStats.sync,
            upgradesRejected: () => this.admission.rejected,
            fastPaths: this.fastPaths,
            broker: () => broker.stats?.() ?? null,
            brokerUp: () => this.hub.up,
          },
          c.metrics.eventLoopResolution,
        )
      : null;
    this.httpHandler = createHttpHandler(this);
  }

  get draining(): boolean {
    return this.drainingFlag;
  }

  get connections(): number {
    return this.sessions.size;
  }

  /** Server-side publish; resolves to the sequence number. */
  async publish(topic: string, data: unknown): Promise<{ seq: number }> {
    const err = topicError(topic, false, this.topicLimits);
    if (err !== null) throw new TypeError(`invalid topic ${JSON.stringify(topic)}: ${err}`);
    const { seq } = await this.hub.publish(topic, encodePayload(data), 0);
    this.stats.publishes++;
    return { seq };
  }

  /** Starts broker and timers; listen() and attach() call it. Rejects on unusable configuration. */
  start(): Promise<void> {
    return (this.started ??= (async () => {
      await this.authenticator?.ready();
      // configuration that needs a feature the broker does not have is refused, not silently ignored
      const f = this.hub.broker.features;
      const c = this.config;
      if (c.history.topics.length > 0 && !f.history) throw new ConfigError('history.topics', 'the configured broker keeps no history', c.history.topics, '');
      if (c.presence.topics.length > 0 && !f.presence) throw new ConfigError('presence.topics', 'the configured broker has no presence', c.presence.topics, '');
      await this.brokerHealth.start((topic, kind, entry) => this.presence.event(topic, kind, entry));
      this.heartbeat.start();
      this.housekeeping = setInterval(() => this.sweep(), 1000);
      this.housekeeping.unref();
      const fp = this.fastPaths;
      if (!fp.directWrites || !fp.syncInflate || !fp.closeHook) this.log.warn({ fastPaths: fp }, `fast paths off: ${fp.reason}`);
    })());
  }

  async listen(port: number, host: string): Promise<AddressInfo> {
    await this.start();
    if (this.server) throw new Error('gateway is already listening');
    const c = this.config;
    const server = createServer({
      headersTimeout: c.limits.handshakeTimeout,
      requestTimeout: Math.max(c.limits.handshakeTimeout, 30_000),
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(c.limits.handshakeTimeout / 4))),
    } as Parameters<typeof createServer>[0]);
    server.on('request', this.httpHandler);
    this.attach(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host, backlog: c.backlog }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    const addr = server.address() as AddressInfo;
    this.log.info({ address: addr.address, port: addr.port, path: c.path, ...this.info }, 'wiregate listening');
    return addr;
  }

  get httpServer(): Server | null {
    return this.server;
  }

  attach(server: Server): void {
    this.start().catch((err) => {
      // an embedding host cannot await attach(): report and refuse upgrades instead of crashing it
      this.log.error({ err }, 'gateway failed to start; WebSocket upgrades are refused');
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const path = pathOf(req.url);
      if (path !== this.config.path) {
        if (server.listenerCount('upgrade') === 1) {
          this.admission.refuse(socket, { status: 404, reason: 'not_found', body: { error: 'NOT_FOUND', message: `WebSocket endpoint is ${this.config.path}` } });
        }
        return;
      }
      this.handleUpgrade(req, socket, head);
    });
  }

  close(drainTimeout: number): Promise<void> {
    return (this.closePromise ??= this.doClose(drainTimeout));
  }

  private async doClose(drainTimeout: number): Promise<void> {
    this.drainingFlag = true;
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
      for (const s of this.sessions) s.terminate();
      await gone;
    }
    this.requests.clear();
    this.presence.stop();
    if (this.server) {
      this.server.closeAllConnections();
      await new Promise<void>((r) => this.server!.close(() => r()));
    }
    this.wss.close();
    this.brokerHealth.stop();
    await this.hub.close();
    this.log.info('closed');
  }

  /**
   * The broker was lost (publishes and subscribes now fail with BROKER_UNAVAILABLE, /readyz is 503)
   * or is back with this node's subscriptions restored: then every subscription on this node gets
   * GAP `[21, pattern, 0]`, since messages published meanwhile may not have reached it.
   */
  private brokerChanged(up: boolean, reason: string, forMs: number): void {
    if (!up) {
      this.stats.brokerOutages++;
      this.log.error({ reason }, 'broker lost: publishes and subscribes fail with BROKER_UNAVAILABLE until it is back');
      return;
    }
    let gaps = 0;
    for (const s of this.sessions) {
      if (s.closing) continue;
      for (const pattern of s.subscriptions) {
        s.send(encodeGap(pattern, 0));
        gaps++;
      }
    }
    this.stats.brokerGaps += gaps;
    this.log.warn({ gaps, downForMs: forMs }, 'broker back: subscriptions restored, GAP sent to every subscription');
  }

  // ---- upgrade -----------------------------------------------------------------------------------

  /** Runs the upgrade policy (limits, origin, subprotocol, auth) and completes the handshake. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', swallow);
    const adm = this.admission;
    if (!isWebSocketHandshake(req)) {
      // Not a handshake ws accepts: ws answers it (400/405) and nothing is reserved. Should ws ever
      // complete one (its rules changed), the connection passed no policy check: cut it at once.
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.log.error('ws accepted an upgrade that wiregate took for malformed; terminated');
        ws.terminate();
      });
      return;
    }
    if (this.drainingFlag) return adm.refuse(socket, DRAINING);
    const ip = this.clientIp(req);
    const refused = adm.check(req, ip);
    if (refused !== null) return adm.refuse(socket, refused);
    const protocol = adm.subprotocol(req);
    if (typeof protocol !== 'string') return adm.refuse(socket, protocol);

    // Reserve the slot now so concurrent handshakes cannot overshoot the limits during async auth.
    const slot = adm.reserve(ip, socket);
    let identity: Identity | null | Promise<Identity | null>;
    try {
      identity = this.identify(req);
    } catch (err) {
      slot.release();
      return this.refuseAuth(socket, err);
    }
    if (identity !== null && typeof (identity as Promise<Identity | null>).then === 'function') {
      (identity as Promise<Identity | null>).then(
        (id) => this.proceed(req, socket, head, slot, ip, protocol, id),
        (err) => {
          slot.release();
          this.refuseAuth(socket, err);
        },
      );
    } else this.proceed(req, socket, head, slot, ip, protocol, identity as Identity | null);
  }

  private proceed(req: IncomingMessage, socket: Duplex, head: Buffer, slot: Reservation, ip: string, protocol: string, id: Identity | null): void {
    if (slot.released || socket.destroyed) return slot.release();
    const adm = this.admission;
    if (this.drainingFlag) {
      slot.release();
      return adm.refuse(socket, DRAINING);
    }
    if (id !== null) {
      const refused: Refusal | null = slot.claimUser(id.userId);
      if (refused !== null) {
        slot.release();
        return adm.refuse(socket, refused);
      }
    }
    // ws may still abort (an unparseable header, a socket that is no longer writable): then the
    // callback never runs and the socket's 'close' releases the slot.
    normaliseDeflateOffer(req.headers, this.config.compression);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      socket.removeListener('error', swallow); // ws handles socket errors from here on
      slot.accept();
      this.accept(ws, req, ip, protocol, id);
    });
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

  private refuseAuth(socket: Duplex, err: unknown): void {
    if (err instanceof AuthError) {
      this.log.debug({ code: err.code }, 'upgrade refused: authentication');
      return this.admission.refuse(socket, { status: 401, reason: 'auth', body: { error: err.code, message: err.message }, headers: { 'WWW-Authenticate': 'Bearer' } });
    }
    this.log.error({ err }, 'authentication failed unexpectedly');
    this.admission.refuse(socket, { status: 500, reason: 'auth_error', body: { error: 'INTERNAL', message: 'authentication failed' } });
  }

  private accept(ws: WebSocket, req: IncomingMessage, ip: string, protocol: string, id: Identity | null): void {
    const authOn = this.authenticator !== null || this.authenticate !== null;
    const session = new Session(this.nextId++, ws, this.sessionContext, {
      ip,
      url: req.url ?? '/',
      headers: req.headers,
      protocol,
      batch: protocol === SUBPROTOCOL_BATCH,
      identity: id,
      permissions: permissionsFor(id, authOn),
    });
    this.sessions.add(session);
    this.credentials.track(session);
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

  private closed(s: Session, code: number, reason: string): void {
    if (!this.sessions.delete(s)) return;
    this.stats.connectionsClosed++;
    const subs = s.takeSubscriptions();
    if (subs !== null) {
      for (const pattern of subs) {
        this.presence.leave(s, pattern);
        this.presence.unwatch(s, pattern);
        const r = this.hub.unsubscribe(s, pattern);
        if (r !== undefined) r.catch(() => {});
      }
      this.stats.subscriptions -= subs.size;
    }
    this.credentials.forget(s);
    this.admission.closed(s.ip, s.userId);
    if (this.hooks.onClose) {
      try {
        this.hooks.onClose(s, code, reason);
      } catch (err) {
        this.log.error({ err }, 'onClose hook threw');
      }
    }
  }

  /** Once a second: expired tokens (only the sessions that are due), idle handshake buckets. */
  private sweep(): void {
    this.credentials.sweep();
    this.admission.prune();
  }
}

function swallow(): void {}

/** The broker named by a `broker` URL: redis:// / rediss:// or a comma-separated nats:// (tls://) list. */
export function brokerFromUrl(url: string, prefix: string, timeout = 3000, retained?: { maxTopics: number; maxBytes: number }): Broker {
  if (/^rediss?:/.test(url)) {
    return new RedisBroker({ url, prefix, commandTimeout: timeout || undefined, retainedMaxTopics: retained?.maxTopics, retainedMaxBytes: retained?.maxBytes });
  }
  // NATS: the prefix becomes the subject prefix ('wg:' -> 'wg'); credentials in the URL become options.
  const servers: string[] = [];
  const auth: { user?: string; pass?: string; token?: string } = {};
  let tls = false;
  for (const part of url.split(',')) {
    const u = new URL(part.trim());
    if (u.username !== '') {
      if (u.password !== '') Object.assign(auth, { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) });
      else auth.token = decodeURIComponent(u.username);
    }
    if (u.protocol === 'tls:') tls = true;
    servers.push(`${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${u.port || '4222'}`);
  }
  return new NatsBroker({ servers, prefix: prefix.replace(/[:.]+$/, '') || 'wg', timeout: timeout || undefined, nats: { ...auth, ...(tls ? { tls: {} } : {}) } });
}

function pathOf(url: string | undefined): string {
  if (!url) return '/';
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** The slow-consumer policy of a topic: the first matching `outbound.topicPolicies` entry, else `outbound.policy`. */
function outboundPolicy(c: GatewayConfig): (topic: string) => SlowPolicy {
  const code = (name: string): SlowPolicy => (name === 'conflate' ? SlowPolicy.CONFLATE : name === 'drop' ? SlowPolicy.DROP : SlowPolicy.CLOSE);
  const rules = c.outbound.topicPolicies.map((e) => {
    const eq = e.lastIndexOf('=');
    return { pattern: e.slice(0, eq), policy: code(e.slice(eq + 1)) };
  });
  const fallback = code(c.outbound.policy);
  if (rules.length === 0) return () => fallback;
  return (topic) => {
    for (const r of rules) if (topicMatches(r.pattern, topic)) return r.policy;
    return fallback;
  };
}

/**
 * The history policy of a topic from `history.topics` (first matching pattern wins), or null.
 * Without entries it is a constant null: topics without history cost nothing. With entries the
 * answer per topic is cached (bounded), so the patterns are matched once per topic, not per publish.
 */
function historyPolicy(c: GatewayConfig): (topic: string) => HistoryPolicy | null {
  const rules = c.history.topics.map((e) => parseHistoryEntry(e)!);
  if (rules.length === 0) return () => null;
  const cache = new Map<string, HistoryPolicy | null>();
  return (topic) => {
    let p = cache.get(topic);
    if (p !== undefined) return p;
    p = null;
    for (const r of rules) {
      if (topicMatches(r.pattern, topic)) {
        p = Object.freeze({ limit: r.limit, ttl: r.ttl });
        break;
      }
    }
    if (cache.size >= 100_000) cache.clear();
    cache.set(topic, p);
    return p;
  };
}
