// Options maps of SUBSCRIBE, PUBLISH and HISTORY: validated into typed values, or a message for a
// BAD_REQUEST answer. Unknown keys are ignored (a later minor version may add some). Platform-neutral.

/** Where a client stands in a topic's stream, as sent in `since`. */
export interface Since {
  seq: number;
  epoch: string;
}

export interface SubscribeOptions {
  /** Recover the messages after this position (exact topics only). */
  since: Since | null;
  /** Send the retained values of matching topics first (default true). */
  retained: boolean;
  /** Receive join/leave events of the topic (exact topics with presence enabled). */
  presence: boolean;
}

export interface HistoryOptions {
  since: Since | null;
  /** Most messages to return; null: the server's maximum. */
  limit: number | null;
  /** Newest first (not with `since`). */
  reverse: boolean;
}

export const DEFAULT_SUBSCRIBE_OPTIONS: SubscribeOptions = Object.freeze({ since: null, retained: true, presence: false });
export const DEFAULT_HISTORY_OPTIONS: HistoryOptions = Object.freeze({ since: null, limit: null, reverse: false });

/** Longest epoch string accepted from a client (server epochs are short). */
export const MAX_EPOCH_LENGTH = 64;

function since(v: unknown): Since | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'since must be a map {seq, epoch}';
  const { seq, epoch } = v as Record<string, unknown>;
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0) return 'since.seq must be an integer >= 0';
  if (typeof epoch !== 'string' || epoch.length === 0 || epoch.length > MAX_EPOCH_LENGTH) return `since.epoch must be a string of 1..${MAX_EPOCH_LENGTH} characters`;
  return { seq, epoch };
}

/** `since` of an options map: absent or nil is null; a string is the BAD_REQUEST message. */
function optionalSince(o: Record<string, unknown>): Since | null | string {
  return o.since === undefined || o.since === null ? null : since(o.since);
}

function bool(o: Record<string, unknown>, key: string, dflt: boolean): boolean | string {
  const v = o[key];
  if (v === undefined || v === null) return dflt;
  return typeof v === 'boolean' ? v : `${key} must be a boolean`;
}

/** SUBSCRIBE options (the caller checked it is a map); a string is the BAD_REQUEST message. */
export function subscribeOptions(o: Record<string, unknown> | undefined): SubscribeOptions | string {
  if (o === undefined) return DEFAULT_SUBSCRIBE_OPTIONS;
  const s = optionalSince(o);
  if (typeof s === 'string') return s;
  const retained = bool(o, 'retained', true);
  if (typeof retained === 'string') return retained;
  const presence = bool(o, 'presence', false);
  if (typeof presence === 'string') return presence;
  return { since: s, retained, presence };
}

/** HISTORY options; `maxLimit` is the server's cap (a larger limit is refused, not cut). */
export function historyOptions(o: Record<string, unknown> | undefined, maxLimit: number): HistoryOptions | string {
  if (o === undefined) return DEFAULT_HISTORY_OPTIONS;
  const s = optionalSince(o);
  if (typeof s === 'string') return s;
  let limit: number | null = null;
  if (o.limit !== undefined && o.limit !== null) {
    if (typeof o.limit !== 'number' || !Number.isSafeInteger(o.limit) || o.limit < 0) return 'limit must be an integer >= 0';
    if (o.limit > maxLimit) return `limit must be <= ${maxLimit}`;
    limit = o.limit;
  }
  const reverse = bool(o, 'reverse', false);
  if (typeof reverse === 'string') return reverse;
  if (reverse && s !== null) return 'reverse cannot be combined with since';
  return { since: s, limit, reverse };
}

/** PUBLISH `retain` option. */
export function publishRetain(o: Record<string, unknown> | null | undefined): boolean | string {
  if (o === undefined || o === null) return false;
  return bool(o, 'retain', false);
}
