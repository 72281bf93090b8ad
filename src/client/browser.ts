// The client SDK's browser entry: the same client on globalThis.WebSocket. Nothing here or below
// imports a `node:` module (scripts/build-client.mjs checks the bundle). In browsers the token
// travels as a `bearer.<jwt>` subprotocol entry, and a refused upgrade looks like any failed
// connection (close 1006): browsers expose neither its HTTP status nor its Retry-After.
export { WiregateClient } from './client.js';
export { ClientError } from './errors.js';
export { backoffDelay, closeAction, refusalAction, retryAfterMs, tokenExpiry, type CloseAction } from './policy.js';
export type * from './types.js';
