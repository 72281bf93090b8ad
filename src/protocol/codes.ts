// Error and close codes of the wiregate wire protocol. Platform-neutral: no `node:` imports.
//
// These two tables are the single source of truth. docs/protocol.md reproduces them and
// test/codes.test.ts fails if the two drift apart.

/** Error codes carried in ERROR frames (`[17, id, code, message]`). Stable: never renumber. */
export const ErrorCode = {
  /** Unexpected failure inside the gateway. */
  INTERNAL: 100,
  /** Message has the wrong shape or field types (e.g. id not an unsigned integer). */
  BAD_REQUEST: 101,
  /** Message type number is not known to this protocol version. */
  UNKNOWN_TYPE: 102,
  /** Topic or topic pattern is empty, too long, has too many levels, bad characters or misplaced wildcards. */
  INVALID_TOPIC: 103,
  /** The connection is not allowed to subscribe to / publish on this topic. */
  FORBIDDEN: 104,
  /** Per-connection subscription limit reached. */
  TOO_MANY_SUBSCRIPTIONS: 105,
  /** REQUEST names a method nobody registered with `gateway.handle()`. */
  UNKNOWN_METHOD: 106,
  /** The method handler did not settle within the request timeout. */
  TIMEOUT: 107,
  /** The method handler threw an error that is not a `ReplyError`; its message is not exposed. */
  HANDLER_ERROR: 108,
  /** Message or byte rate exceeded; the message was not processed. */
  RATE_LIMITED: 109,
  /** The payload exceeds a size limit. */
  PAYLOAD_TOO_LARGE: 110,
  /** The gateway is shutting down and does not accept this operation. */
  UNAVAILABLE: 111,
  /** REFRESH carried a token that failed verification. */
  TOKEN_INVALID: 112,
  /** Operation needs authentication that the connection does not have. */
  UNAUTHORIZED: 113,
  /** Too many requests from this connection are still being handled. */
  TOO_MANY_REQUESTS: 114,
  /** The topic has no history (HISTORY) or presence (PRESENCE, presence events) configured. */
  NOT_ENABLED: 115,
  /**
   * The broker (Redis, NATS) is unreachable or not answering: the operation was not done, or for a
   * publish whose answer timed out, its outcome is unknown. Retry later; not counted as a protocol error.
   */
  BROKER_UNAVAILABLE: 116,
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;
export type ErrorCodeValue = (typeof ErrorCode)[ErrorCodeName];

/** First error code that applications may use for their own `ReplyError`s. */
export const APP_ERROR_CODE_MIN = 1000;

/**
 * The one rule for `limits.maxProtocolErrors`: an ERROR counts towards it when the client's own
 * message was at fault - malformed, not allowed, over a per-connection limit. Outcomes the client
 * did not cause (INTERNAL, TIMEOUT, HANDLER_ERROR, UNAVAILABLE while draining) and application
 * codes (>= 1000) never count. docs/protocol.md section 5 lists the same set; a test checks it.
 */
export const PROTOCOL_ERROR_CODES: ReadonlySet<number> = new Set<number>([
  ErrorCode.BAD_REQUEST,
  ErrorCode.UNKNOWN_TYPE,
  ErrorCode.INVALID_TOPIC,
  ErrorCode.FORBIDDEN,
  ErrorCode.TOO_MANY_SUBSCRIPTIONS,
  ErrorCode.UNKNOWN_METHOD,
  ErrorCode.RATE_LIMITED,
  ErrorCode.PAYLOAD_TOO_LARGE,
  ErrorCode.TOKEN_INVALID,
  ErrorCode.UNAUTHORIZED,
  ErrorCode.TOO_MANY_REQUESTS,
  ErrorCode.NOT_ENABLED,
]);

/**
 * WebSocket close codes the gateway uses. Ranges tell a client whether reconnecting makes sense:
 *  - 1001, 1011, 1012, 1013, 4000-4499: transient, reconnect with backoff;
 *  - 1000, 1002, 1003, 1007, 1008, 1009, 4500-4999: terminal, do not reconnect without a change
 *    (new token, new code, smaller messages).
 *  - 4100-4499 (transient) and 4600-4999 (terminal) are left for applications.
 */
export const CloseCode = {
  /** Normal closure (client or application initiated). */
  NORMAL: 1000,
  /** Server is shutting down (drain); reconnect, possibly to another instance. */
  GOING_AWAY: 1001,
  /** WebSocket protocol violation detected by ws (bad framing, unmasked client frame...). */
  PROTOCOL_ERROR: 1002,
  /** A text frame was received: wiregate speaks binary frames only. */
  UNSUPPORTED_DATA: 1003,
  /** A binary frame does not hold well-formed msgpack. */
  INVALID_PAYLOAD: 1007,
  /** Generic policy violation. */
  POLICY_VIOLATION: 1008,
  /** A message (after decompression) exceeds maxPayload. */
  MESSAGE_TOO_BIG: 1009,
  /** Unexpected server error. */
  INTERNAL_ERROR: 1011,
  /** The client reads too slowly: its outbound buffer exceeded the byte budget. */
  SLOW_CONSUMER: 4000,
  /** The client kept exceeding its message or byte rate. */
  RATE_LIMITED: 4001,
  /** The connection's token expired and was not refreshed in-band. Reconnect with a fresh token. */
  TOKEN_EXPIRED: 4002,
  /** Too many connections for this user. */
  CONNECTION_LIMIT: 4003,
  /** The client did not answer heartbeats in time (sent when the socket is still writable). */
  HEARTBEAT_TIMEOUT: 4004,
  /** Too many protocol errors (malformed messages) on one connection. */
  BAD_PROTOCOL: 4500,
  /** The connection's credentials are no longer valid (e.g. a REFRESH failed verification). */
  UNAUTHORIZED: 4501,
  /** The connection was closed by an application policy decision. */
  FORBIDDEN: 4502,
} as const;
export type CloseCodeName = keyof typeof CloseCode;
export type CloseCodeValue = (typeof CloseCode)[CloseCodeName];

const TERMINAL_STANDARD = new Set<number>([1000, 1002, 1003, 1007, 1008, 1009, 1010]);

/** Whether a client should try to reconnect after the connection closed with `code`. */
export function shouldReconnect(code: number): boolean {
  if (code >= 4500 && code <= 4999) return false;
  if (code >= 4000 && code <= 4499) return true;
  if (code >= 3000 && code <= 3999) return true;
  return !TERMINAL_STANDARD.has(code);
}

const errorNames = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
const closeNames = new Map<number, string>(Object.entries(CloseCode).map(([k, v]) => [v, k]));

export function errorCodeName(code: number): string {
  return errorNames.get(code) ?? (code >= APP_ERROR_CODE_MIN ? 'APPLICATION' : 'UNKNOWN');
}

export function closeCodeName(code: number): string {
  return closeNames.get(code) ?? 'UNKNOWN';
}
