// The public Gateway: a small, documented surface over the internals in runtime.ts (which wires
// config -> ws server -> admission -> sessions -> hub -> broker and owns listen / drain).
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { redactConfig, resolveConfig, type GatewayConfig, type GatewayOptions } from './config/index.js';
import type { Broker } from './pubsub/broker.js';
import type { Hooks, MethodHandler } from './connection/core.js';
import { Runtime, type Authenticate } from './runtime.js';

export type { Authenticate } from './runtime.js';

export interface EmbedOptions {
  /** Message broker: an instance, or the `broker` option (`memory` or a redis:// URL); default `memory`. */
  broker?: Broker | string;
  hooks?: Hooks;
  /** A pino logger to use instead of creating one. */
  logger?: Logger;
  /** A config already resolved with resolveConfig() (the CLI passes this); other options are then ignored. */
  config?: GatewayConfig;
}

export type CreateGatewayOptions = Omit<GatewayOptions, 'broker'> & EmbedOptions;

export interface PublishResult {
  seq: number;
}

const kRuntime = Symbol('wiregate.runtime');

export class Gateway {
  /** The effective configuration (frozen). */
  readonly config: GatewayConfig;
  /** The pino logger. */
  readonly log: Logger;
  /** @internal */
  readonly [kRuntime]: Runtime;

  constructor(options: CreateGatewayOptions = {}) {
    const { broker, hooks, logger, config, ...rest } = options;
    this.config = config ?? resolveConfig({ options: typeof broker === 'string' ? { ...rest, broker } : rest });
    const rt = new Runtime({ config: this.config, broker: typeof broker === 'string' ? undefined : broker, hooks, logger });
    this[kRuntime] = rt;
    this.log = rt.log;
  }

  /** Registers a method for REQUEST messages. The handler's return value (or promise) is the reply. */
  handle(method: string, handler: MethodHandler): this {
    if (typeof method !== 'string' || method.length === 0 || method.length > 128) throw new TypeError('method must be a string of 1..128 characters');
    if (typeof handler !== 'function') throw new TypeError('handler must be a function');
    this[kRuntime].handlers.set(method, handler);
    return this;
  }

  /** Adds or replaces a hook. */
  hook<K extends keyof Hooks>(name: K, fn: NonNullable<Hooks[K]>): this {
    this[kRuntime].hooks[name] = fn;
    return this;
  }

  /** Sets a custom authenticator used when JWT auth is off (return null to reject with 401). */
  setAuthenticate(fn: Authenticate): this {
    this[kRuntime].authenticate = fn;
    return this;
  }

  /** Publishes from the server to every subscriber of `topic`. Resolves to the sequence number. */
  publish(topic: string, data: unknown): Promise<PublishResult> {
    return this[kRuntime].publish(topic, data);
  }

  /** Number of open connections. */
  get connections(): number {
    return this[kRuntime].connections;
  }

  /** Versions, native helpers, effective compression and which ws fast paths are active (as on GET /info). */
  get info(): Readonly<Record<string, unknown>> {
    return this[kRuntime].info as unknown as Record<string, unknown>;
  }

  /**
   * Creates an HTTP server (health, metrics, info, publish API and the WebSocket path) and listens.
   * Rejects (and listens on nothing) when the configuration cannot be used, e.g. an unreadable key.
   */
  listen(opts: { port?: number; host?: string } = {}): Promise<AddressInfo> {
    return this[kRuntime].listen(opts.port ?? this.config.port, opts.host ?? this.config.host);
  }

  /** The server created by listen(), if any. */
  get httpServer(): Server | null {
    return this[kRuntime].httpServer;
  }

  /** The HTTP routes (health, readiness, metrics, info, publish API), to mount on your own server. */
  get httpHandler(): (req: IncomingMessage, res: ServerResponse) => void {
    return this[kRuntime].httpHandler;
  }

  /**
   * Accepts WebSocket upgrades on config.path of an existing HTTP server (Express, Fastify, ...).
   * Other upgrade paths are left to the server's other listeners (or get 404 if there are none).
   * HTTP routes are not mounted: use `gateway.httpHandler` for those. Call `await gateway.start()`
   * first to learn about configuration errors; otherwise they are logged and upgrades refused.
   */
  attach(server: Server): this {
    this[kRuntime].attach(server);
    return this;
  }

  /** Hands one upgrade request to the gateway (for servers that route upgrades themselves). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this[kRuntime].handleUpgrade(req, socket, head);
  }

  /** Starts broker and timers; listen() and attach() call it. Rejects on unusable configuration. */
  start(): Promise<void> {
    return this[kRuntime].start();
  }

  /**
   * Graceful shutdown: refuse new upgrades (503), mark not ready, close every connection with 1001,
   * wait up to drainTimeout for clients to go, terminate the rest, close the HTTP server and broker.
   */
  close(opts: { drainTimeout?: number } = {}): Promise<void> {
    return this[kRuntime].close(opts.drainTimeout ?? this.config.drainTimeout);
  }

  /** Effective configuration with secrets masked. */
  printableConfig(): Record<string, unknown> {
    return redactConfig(this.config);
  }
}

/** Creates a gateway. Call `listen()` (own HTTP server) or `attach(server)` (existing one). */
export function createGateway(options: CreateGatewayOptions = {}): Gateway {
  return new Gateway(options);
}

/** @internal The gateway's internals, for wiregate's own tests, HTTP routes and benchmarks. Not part of the API. */
export function internals(gw: Gateway): Runtime {
  return gw[kRuntime];
}
