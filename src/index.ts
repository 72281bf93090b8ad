// Public API.
export { createGateway, Gateway, type CreateGatewayOptions, type EmbedOptions, type PublishResult, type Authenticate } from './gateway.js';
export { ReplyError } from './errors.js';
export { resolveConfig, ConfigError, type GatewayConfig, type GatewayOptions } from './config/index.js';
export { COMPRESSION_PRESETS, FIELDS as CONFIG_FIELDS } from './config/schema.js';
export type { Connection, RequestContext } from './connection/session.js';
export type { Hooks, MethodHandler } from './connection/core.js';
export type { Broker, BrokerDeliver, BrokerFeatures, BrokerPublishOptions, BrokerPublishResult, HistoryPolicy, HistoryQuery, HistoryPage, Publication, PresenceEntry, PresenceListener, RetainedMessage, StreamPosition } from './pubsub/broker.js';
export { MemoryBroker } from './pubsub/memory-broker.js';
export { AuthError, type Identity } from './auth/jwt.js';
export * from './protocol/index.js';
