// The one defaults table. Every option wiregate reads is a row here: its type, default, rule and
// meaning. Validation, environment variables, CLI flags, docs/configuration.md and the
// GatewayConfig type all derive from it (test/config.test.ts keeps the docs in sync).

export type FieldType = 'int' | 'bool' | 'string' | 'enum' | 'list' | 'proxy';

/**
 * Value of a `proxy` field (trustProxy): `false` or 0 (no proxy), `true` (= 1: exactly one proxy
 * in front), a hop count, or the proxies' addresses and CIDR ranges.
 */
export type TrustProxySetting = boolean | number | readonly string[];

interface FieldCommon {
  /** Dotted path, e.g. 'heartbeat.interval'. */
  key: string;
  doc: string;
  /** Marks values that must not be printed (secrets). */
  secret?: boolean;
  min?: number;
  max?: number;
  values?: readonly string[];
}

/** One row of the table; `type` decides the value's TypeScript type, parsing and validation. */
export type Field = FieldCommon &
  (
    | { type: 'int'; default: number; min: number; max: number }
    | { type: 'bool'; default: boolean }
    | { type: 'string'; default: string }
    | { type: 'enum'; default: string; values: readonly string[] }
    | { type: 'list'; default: readonly string[] }
    | { type: 'proxy'; default: TrustProxySetting; max: number }
  );

export const COMPRESSION_PRESETS = {
  off: { enabled: false },
  // Cheapest CPU; no zlib state kept between messages (memory stays flat per connection), and
  // server_no_context_takeover lets one compressed broadcast serve every subscriber.
  fast: { enabled: true, level: 1, memLevel: 8, threshold: 256, serverMaxWindowBits: 15, clientMaxWindowBits: 15, serverNoContextTakeover: true, clientNoContextTakeover: true },
  // Better ratio on repetitive streams: clients keep their context (upstream telemetry compresses
  // against previous messages); the server side stays context-free for shared broadcasts.
  balanced: { enabled: true, level: 3, memLevel: 8, threshold: 128, serverMaxWindowBits: 15, clientMaxWindowBits: 15, serverNoContextTakeover: true, clientNoContextTakeover: false },
  // Best ratio, most memory and CPU: context takeover both ways.
  max: { enabled: true, level: 9, memLevel: 9, threshold: 64, serverMaxWindowBits: 15, clientMaxWindowBits: 15, serverNoContextTakeover: false, clientNoContextTakeover: false },
  // Small windows for memory-constrained peers (microcontrollers) and many idle connections.
  lowmem: { enabled: true, level: 1, memLevel: 4, threshold: 256, serverMaxWindowBits: 10, clientMaxWindowBits: 10, serverNoContextTakeover: true, clientNoContextTakeover: true },
} as const;
export type CompressionPreset = keyof typeof COMPRESSION_PRESETS | 'custom';

const KiB = 1024;
const MiB = 1024 * 1024;

// `as const` keeps each row's literal type, from which ConfigShape below derives the config's type.
const TABLE = [
  { key: 'host', type: 'string', default: '0.0.0.0', doc: 'Interface to listen on.' },
  { key: 'port', type: 'int', default: 8080, min: 0, max: 65535, doc: 'TCP port to listen on (0 picks a free port).' },
  { key: 'backlog', type: 'int', default: 4096, min: 1, max: 1_000_000, doc: 'Listen backlog: TCP connections the kernel queues until they are accepted (capped by `net.core.somaxconn`). A reconnect storm larger than it has SYNs dropped and retried a second later; Node\'s default is 511.' },
  { key: 'path', type: 'string', default: '/ws', doc: 'URL path that accepts WebSocket upgrades; other paths get 404.' },
  { key: 'maxPayload', type: 'int', default: 64 * KiB, min: 64, max: 64 * MiB, doc: 'Largest inbound message in bytes, checked after decompression too; larger closes with 1009.' },
  { key: 'requireSubprotocol', type: 'bool', default: false, doc: 'Reject upgrades that do not offer `wiregate.v1` (HTTP 426) instead of assuming it.' },
  { key: 'allowedOrigins', type: 'list', default: [], doc: 'If non-empty, upgrades whose Origin header is not in this list get HTTP 403.' },
  { key: 'allowNoOrigin', type: 'bool', default: false, doc: 'With `allowedOrigins` set, also accept upgrades that send no Origin header at all (non-browser clients). Browsers always send Origin, so the check on them is unchanged; an empty Origin header is still refused.' },
  { key: 'trustProxy', type: 'proxy', default: false, max: 100, doc: 'Which address is the client (the key of per-IP limits). `false`: the TCP peer, X-Forwarded-For ignored. A hop count N: N proxies in front, the client is the N-th X-Forwarded-For entry from the right; `true` means 1 (exactly one proxy). A list of proxy addresses/CIDRs (`10.0.0.0/8,::1`, or `loopback`, `linklocal`, `uniquelocal`): the rightmost address that is not a listed proxy. See "Behind a proxy" below.' },
  { key: 'retainHeaders', type: 'list', default: [], doc: 'Upgrade request headers (lower-case names) kept on `connection.headers` after the `onConnection` hook; all of them are there during it. Each kept header costs memory on every connection.' },

  { key: 'limits.maxConnections', type: 'int', default: 50_000, min: 1, max: 10_000_000, doc: 'Connections in total; more get HTTP 503 with Retry-After.' },
  { key: 'limits.maxConnectionsPerIp', type: 'int', default: 0, min: 0, max: 10_000_000, doc: 'Connections per remote IP (0 = unlimited); more get HTTP 429.' },
  { key: 'limits.maxConnectionsPerUser', type: 'int', default: 0, min: 0, max: 10_000_000, doc: 'Connections per authenticated user (0 = unlimited); more get HTTP 429.' },
  { key: 'limits.handshakeRate', type: 'int', default: 0, min: 0, max: 1_000_000, doc: 'Upgrades per second per IP, token bucket (0 = unlimited); more get HTTP 429.' },
  { key: 'limits.handshakeBurst', type: 'int', default: 20, min: 1, max: 1_000_000, doc: 'Token bucket size for limits.handshakeRate.' },
  { key: 'limits.handshakeTimeout', type: 'int', default: 10_000, min: 100, max: 600_000, doc: 'Milliseconds a TCP connection may take to send a complete upgrade request (slowloris guard).' },
  { key: 'limits.maxSubscriptions', type: 'int', default: 1000, min: 1, max: 1_000_000, doc: 'Subscriptions per connection; more get error TOO_MANY_SUBSCRIPTIONS.' },
  { key: 'limits.maxTopicLength', type: 'int', default: 256, min: 1, max: 65535, doc: 'Longest topic or pattern in characters.' },
  { key: 'limits.maxTopicLevels', type: 'int', default: 16, min: 1, max: 1024, doc: 'Most levels (parts between /) in a topic or pattern.' },
  { key: 'limits.messageRate', type: 'int', default: 1000, min: 0, max: 10_000_000, doc: 'Inbound messages per second per connection, token bucket (0 = unlimited). Every message counts, also several in one frame; while the bucket is in debt the socket is not read. On by default so that one client cannot take the event loop from the others; raise it (or set 0) for trusted high-rate publishers.' },
  { key: 'limits.messageBurst', type: 'int', default: 2000, min: 1, max: 10_000_000, doc: 'Token bucket size for limits.messageRate.' },
  { key: 'limits.byteRate', type: 'int', default: 1 * MiB, min: 0, max: 10_000_000_000, doc: 'Inbound message bytes (after decompression) per second per connection, token bucket (0 = unlimited).' },
  { key: 'limits.byteBurst', type: 'int', default: 2 * MiB, min: 1, max: 10_000_000_000, doc: 'Token bucket size for limits.byteRate.' },
  { key: 'limits.rateLimitGrace', type: 'int', default: 5000, min: 0, max: 3_600_000, doc: 'Milliseconds a connection may stay over its rate (socket paused, bucket never back to full) before it is closed with 4001.' },
  { key: 'limits.maxPendingRequests', type: 'int', default: 64, min: 1, max: 100_000, doc: 'Requests per connection whose handler has not settled; more get TOO_MANY_REQUESTS.' },
  { key: 'limits.maxFragments', type: 'int', default: 1024, min: 1, max: 1_000_000, doc: 'Fragments (continuation frames) per message; more closes with 1008 (ws maxFragments).' },
  { key: 'limits.maxBufferedChunks', type: 'int', default: 4096, min: 1, max: 1_000_000, doc: 'Unparsed inbound chunks ws may buffer per connection; more closes with 1008 (ws maxBufferedChunks).' },
  { key: 'limits.maxProtocolErrors', type: 'int', default: 10, min: 1, max: 1_000_000, doc: 'Rejected messages tolerated per connection before it is closed with 4500.' },

  { key: 'outbound.maxBufferedBytes', type: 'int', default: 1 * MiB, min: 1024, max: 1024 * MiB, doc: 'Per-connection outbound byte budget (bytes queued in the socket and in wiregate).' },
  { key: 'outbound.policy', type: 'enum', default: 'close', values: ['close', 'drop', 'conflate'], doc: 'What happens to a consumer over budget: `close` (4000 SLOW_CONSUMER), `drop` (skip deliveries, then send GAP) or `conflate` (hold back only the latest message per topic; once the socket drains, GAP with the number replaced, then that message; more than 4096 topics held back closes with 4000).' },
  { key: 'outbound.topicPolicies', type: 'list', default: [], doc: 'Per-topic overrides of outbound.policy as `pattern=close|drop|conflate` entries; the first matching pattern wins, e.g. `telemetry/#=conflate`.' },

  { key: 'broker', type: 'string', default: 'memory', doc: 'Where messages, sequence numbers, history, retained values and presence live: `memory` (this process only); `redis://[user:password@]host:port[/db]` (`rediss://` for TLS), shared by every gateway node using the same Redis and `brokerPrefix`; or `nats://[user:password@]host:port` (several comma-separated; `tls://` for TLS; `nats://token@host` for a token), a NATS server with JetStream (`nats-server -js`) that carries messages and sequence numbers but no history, retained values or presence (configuring them is refused at start). TLS (`rediss://`, `tls://`) verifies the server against the Node.js CA store: add a private CA with `NODE_EXTRA_CA_CERTS=<file>`. (`createGateway({ broker })` also takes a Broker instance.) Unreachable at start: `listen()` rejects (the CLI exits 3).' },
  { key: 'workers', type: 'int', default: 0, min: 0, max: 1024, doc: 'Processes `wiregate start` runs (node:cluster: one primary that does not serve, N workers sharing the port, each a full gateway; a crashed worker is replaced). 0: one per core (`os.availableParallelism()`) when `broker` is shared (redis://, rediss://, nats://, tls://), otherwise a single process; 1: a single process, no cluster. More than 1 needs a shared broker (with `memory` each worker would be a separate gateway). In cluster mode `/metrics` on any worker aggregates all workers and `/info` lists them. `createGateway` ignores it.' },
  { key: 'brokerStartTimeout', type: 'int', default: 0, min: 0, max: 24 * 3600_000, doc: 'How long the start keeps retrying an unreachable broker, in ms, with backoff (0: one attempt, then `listen()` rejects and the CLI exits 3). Use it when the gateway may start before its Redis / NATS.' },
  { key: 'brokerTimeout', type: 'int', default: 3000, min: 0, max: 600_000, doc: 'A network broker that leaves a ping (sent every brokerTimeout/3 ms) unanswered this long, in ms, counts as lost, like one whose connection dropped: /readyz answers 503, publishes and subscribes get ERROR 116 BROKER_UNAVAILABLE, local connections stay open, `wiregate_broker_up` is 0; Redis commands also time out after it. 0 turns the stall check off. See docs/delivery.md, "When the broker is lost".' },
  { key: 'brokerPrefix', type: 'string', default: 'wg:', doc: 'Prefix of every Redis key and channel (NATS: of every subject, trailing `:` dropped, and of the KV bucket `<prefix>_seq`): nodes with the same prefix form one gateway; different prefixes share a broker without meeting.' },
  { key: 'history.topics', type: 'list', default: [], doc: 'Topics whose messages are kept for recovery and HISTORY, as `<topic pattern>=<count>` or `<topic pattern>=<count>/<seconds>s` entries (the last N messages, and none older than T); the first matching pattern wins, e.g. `rooms/#=100/300s`. Other topics keep no history and cost nothing.' },
  { key: 'history.maxBytes', type: 'int', default: 64 * MiB, min: 1024, max: 64 * 1024 * MiB, doc: 'Memory cap of all kept history together (payload bytes plus 64 per message); past it the oldest messages of any topic are evicted (`wiregate_history_evictions_total`).' },
  { key: 'history.maxRecover', type: 'int', default: 300, min: 1, max: 100_000, doc: 'Most messages one SUBSCRIBE may recover (a client that missed more gets `recovered: false` and resynchronises, so a reconnect storm cannot become a memory spike); also the most retained values one SUBSCRIBE gets and the largest HISTORY `limit`.' },
  { key: 'retained.maxTopics', type: 'int', default: 100_000, min: 0, max: 100_000_000, doc: 'Most topics with a retained value (0 disables retained messages: `retain: true` gets ERROR NOT_ENABLED). A retained publish past this or `retained.maxBytes` is delivered but not retained, and the topic loses its older retained value (`wiregate_retained_rejected_total`).' },
  { key: 'retained.maxBytes', type: 'int', default: 64 * MiB, min: 0, max: 64 * 1024 * MiB, doc: 'Memory cap of all retained values together (payload bytes).' },
  { key: 'presence.topics', type: 'list', default: [], doc: 'Topic patterns whose subscribers are tracked for PRESENCE requests and join/leave events (exact-topic subscriptions only).' },
  { key: 'presence.ttl', type: 'int', default: 60_000, min: 1000, max: 3_600_000, doc: 'Milliseconds a presence entry lives unless its node refreshes it (every ttl/3); entries of a node that vanished expire after this.' },

  { key: 'heartbeat.interval', type: 'int', default: 30_000, min: 0, max: 3_600_000, doc: 'Milliseconds of silence after which a connection is pinged (0 disables heartbeats).' },
  { key: 'heartbeat.timeout', type: 'int', default: 10_000, min: 10, max: 3_600_000, doc: 'Milliseconds to wait for any frame after a ping before terminating the connection.' },

  { key: 'requestTimeout', type: 'int', default: 10_000, min: 1, max: 3_600_000, doc: 'Milliseconds a method handler may take before the caller gets TIMEOUT.' },
  { key: 'drainTimeout', type: 'int', default: 10_000, min: 0, max: 3_600_000, doc: 'On shutdown, milliseconds to wait for clients to close after 1001 before terminating them.' },

  { key: 'compression.preset', type: 'enum', default: 'off', values: ['off', 'fast', 'balanced', 'max', 'lowmem', 'custom'], doc: 'Named permessage-deflate settings (see the presets table); fields set explicitly override the preset.' },
  { key: 'compression.enabled', type: 'bool', default: false, doc: 'Negotiate permessage-deflate.' },
  { key: 'compression.threshold', type: 'int', default: 1024, min: 0, max: 64 * MiB, doc: 'Messages smaller than this many bytes are sent uncompressed.' },
  { key: 'compression.level', type: 'int', default: 1, min: 0, max: 9, doc: 'zlib compression level.' },
  { key: 'compression.memLevel', type: 'int', default: 8, min: 1, max: 9, doc: 'zlib memLevel (memory for the compressor state).' },
  { key: 'compression.serverMaxWindowBits', type: 'int', default: 15, min: 9, max: 15, doc: 'server_max_window_bits: the server compressor window.' },
  { key: 'compression.clientMaxWindowBits', type: 'int', default: 15, min: 9, max: 15, doc: 'client_max_window_bits requested from clients that support it.' },
  { key: 'compression.serverNoContextTakeover', type: 'bool', default: true, doc: 'server_no_context_takeover: reset the server compressor after each message.' },
  { key: 'compression.clientNoContextTakeover', type: 'bool', default: true, doc: 'client_no_context_takeover: ask clients to reset their compressor after each message.' },
  { key: 'compression.concurrencyLimit', type: 'int', default: 10, min: 1, max: 1024, doc: 'Concurrent zlib operations (ws limiter).' },

  { key: 'demo', type: 'bool', default: false, doc: 'Serve the demo page on GET /demo: a browser client (the `wiregate-client.js` bundle from `npm run build`) that subscribes, publishes and shows presence through the WebSocket endpoint, with exactly the rights of any other client.' },

  { key: 'httpPublish.apiKey', type: 'string', default: '', secret: true, doc: 'API key for `POST /v1/publish` (`Authorization: Bearer <key>` or `X-Api-Key`). Empty disables the route (404).' },
  { key: 'httpPublish.maxBodyBytes', type: 'int', default: 1 * MiB, min: 64, max: 64 * MiB, doc: 'Largest publish request body; larger gets HTTP 413.' },

  { key: 'auth.enabled', type: 'bool', default: false, doc: 'Require a JWT on every upgrade (HTTP 401 before the upgrade otherwise).' },
  { key: 'auth.secret', type: 'string', default: '', secret: true, doc: 'HS256/384/512 shared secret.' },
  { key: 'auth.publicKey', type: 'string', default: '', doc: 'PEM (SPKI) public key for RS*/PS*/ES*/EdDSA tokens. Checked at start: not a public key, a private key, or RSA under 2048 bits stops the gateway.' },
  { key: 'auth.jwksFile', type: 'string', default: '', doc: 'Path of a JWKS JSON file (keys picked by kid). Read and checked at start: every signature key must be a usable public key, and there must be one.' },
  { key: 'auth.issuer', type: 'string', default: '', doc: 'Required `iss` claim (empty = not checked).' },
  { key: 'auth.audience', type: 'string', default: '', doc: 'Required `aud` claim (empty = not checked).' },

  { key: 'metrics.enabled', type: 'bool', default: true, doc: 'Serve Prometheus metrics on GET /metrics.' },
  { key: 'metrics.eventLoopResolution', type: 'int', default: 100, min: 10, max: 10_000, doc: 'Sampling period (ms) of the event-loop delay histogram (`nodejs_eventloop_lag_p99_seconds` and friends). Each sample is a timer wake-up; on an idle server with 10k connections 20 ms cost 0.32% of a core, 100 ms 0.11%, 1000 ms 0.035%. A stall longer than the period is always seen.' },
  { key: 'log.level', type: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], doc: 'pino log level.' },
] as const satisfies readonly Field[];

export const FIELDS: readonly Field[] = TABLE;

export const FIELD_BY_KEY: ReadonlyMap<string, Field> = new Map(FIELDS.map((f) => [f.key, f]));

// ---- the config type, derived from the table ----------------------------------------------------

type Row = (typeof TABLE)[number];

/** TypeScript type of a row's value: enum values become a union of literals. */
type ValueOf<R> = R extends { type: 'int' }
  ? number
  : R extends { type: 'bool' }
    ? boolean
    : R extends { type: 'string' }
      ? string
      : R extends { type: 'enum'; values: readonly (infer V)[] }
        ? V
        : R extends { type: 'list' }
          ? readonly string[]
          : R extends { type: 'proxy' }
            ? TrustProxySetting
            : never;

type Head<K extends string> = K extends `${infer H}.${string}` ? H : K;
/** The rows under `H.`, with that prefix taken off their keys. */
type Under<R, H extends string> = R extends { key: `${H}.${infer Rest}` } ? Omit<R, 'key'> & { key: Rest } : never;
type Shape<R extends { key: string }> = {
  [H in Head<R['key']>]: [Extract<R, { key: H }>] extends [never] ? Shape<Under<R, H>> : ValueOf<Extract<R, { key: H }>>;
};
/** Flattens intersections and mapped types for readable hovers and error messages. */
type Expand<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]: Expand<T[K]> } : T;

/** The resolved configuration's type: one property per row, nested by the dotted keys. */
export type ConfigShape = Expand<Shape<Row>>;

/** WIREGATE_ + upper snake case of the dotted key: heartbeat.interval -> WIREGATE_HEARTBEAT_INTERVAL. */
export function envName(key: string): string {
  return 'WIREGATE_' + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/\./g, '_').toUpperCase();
}
