// wiregate.v1 messages and their msgpack codec. Platform-neutral (browser and Node): no `node:`
// imports, Uint8Array rather than Buffer. See docs/protocol.md for the wire format.
//
// Every message is a msgpack array whose first element is the message type. A WebSocket binary
// frame holds one or more complete msgpack values back to back; each value is one message.
import { Packr, Unpackr, RESERVE_START_SPACE } from 'msgpackr';
import { ErrorCode } from './codes.js';
import { topicError, type TopicLimits } from './topic.js';
import { scanMsgpack, DEFAULT_MAX_DEPTH } from './scan.js';

export const PROTOCOL_VERSION = 1;
/** The subprotocol a client offers in Sec-WebSocket-Protocol. */
export const SUBPROTOCOL = 'wiregate.v1';
/** Same protocol, and the client accepts server frames that carry several messages. */
export const SUBPROTOCOL_BATCH = 'wiregate.v1.batch';

export const MsgType = {
  // client -> server
  SUBSCRIBE: 1,
  UNSUBSCRIBE: 2,
  PUBLISH: 3,
  REQUEST: 4,
  PING: 5,
  REFRESH: 6,
  HISTORY: 7,
  PRESENCE: 8,
  // server -> client
  RESULT: 16,
  ERROR: 17,
  MESSAGE: 18,
  PONG: 20,
  GAP: 21,
  PRESENCE_EVENT: 22,
} as const;
export type MsgTypeValue = (typeof MsgType)[keyof typeof MsgType];

/** Largest request id (ids are unsigned 32-bit; 0 means "no id / no ack wanted"). */
export const MAX_ID = 0xffffffff;

export type Subscribe = [type: 1, id: number, pattern: string, options?: Record<string, unknown>];
export type Unsubscribe = [type: 2, id: number, pattern: string];
export type Publish = [type: 3, id: number, topic: string, payload: unknown, options?: PublishOptions];
export type Request = [type: 4, id: number, method: string, payload?: unknown];
export type Ping = [type: 5, id: number];
export type Refresh = [type: 6, id: number, token: string];
export type History = [type: 7, id: number, topic: string, options?: Record<string, unknown>];
export type Presence = [type: 8, id: number, topic: string];
export type ClientMessage = Subscribe | Unsubscribe | Publish | Request | Ping | Refresh | History | Presence;

export interface PublishOptions {
  /** When true, the publishing connection does not receive its own message. */
  noEcho?: boolean;
  /** Keep this message as the topic's retained value (nil payload: clear it). */
  retain?: boolean;
}

export type Result = [type: 16, id: number, result?: unknown];
export type ErrorMsg = [type: 17, id: number, code: number, message: string];
export type Delivery = [type: 18, topic: string, seq: number, payload: unknown, flags?: number];
export type Pong = [type: 20, id: number];
export type Gap = [type: 21, topic: string, dropped: number];
export type PresenceEvent = [type: 22, topic: string, kind: 1 | 2, entry: { client: string; user: string | null; info: unknown }];
export type ServerMessage = Result | ErrorMsg | Delivery | Pong | Gap | PresenceEvent;

/** A message that failed validation: what to answer with. `id` is 0 when it could not be read. */
export interface ProtocolViolation {
  id: number;
  code: number;
  message: string;
}

// One shared Unpackr/Packr each: reuse is what makes msgpackr fast. `useRecords: false` keeps the
// wire standard msgpack (no msgpackr record extension), readable by any msgpack library.
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' } as ConstructorParameters<typeof Unpackr>[0]);
// encodeUndefinedAsNil: msgpackr's default encoding of `undefined` is an extension (d4 00 00) that the
// protocol refuses, so a handler result like {a: undefined} goes out as nil instead.
const packr = new Packr({ useRecords: false, variableMapSize: true, int64AsType: 'number', encodeUndefinedAsNil: true } as ConstructorParameters<typeof Packr>[0]);

/** Encodes one message (or any value) as standard msgpack. */
export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Decodes a single msgpack value (throws on malformed input). */
export function decode(bytes: Uint8Array): unknown {
  // A lone bin value (raw bytes: the common IoT / game payload) is returned as a view, no decoder call.
  const t = bytes[0];
  const h = t === 0xc4 ? 2 : t === 0xc5 ? 3 : t === 0xc6 ? 5 : 0;
  if (h !== 0 && bytes.length >= h) {
    const n = t === 0xc4 ? bytes[1] : t === 0xc5 ? (bytes[1] << 8) | bytes[2] : ((bytes[1] << 24) >>> 0) + ((bytes[2] << 16) | (bytes[3] << 8) | bytes[4]);
    if (n === bytes.length - h) return bytes.subarray(h);
  }
  return unpackr.unpack(bytes);
}

const SCAN_ERRORS: Record<number, string> = {
  [-1]: 'truncated msgpack or a declared length beyond the frame',
  [-2]: 'msgpack nested too deeply',
  [-3]: 'invalid msgpack byte',
  [-4]: 'msgpack extension other than a well-formed timestamp',
  [-5]: 'msgpack map key that is not a string, number, bool or nil',
};

/** Thrown by decodeFrame for bytes that are not well-formed msgpack. */
export class MalformedFrameError extends Error {
  override name = 'MalformedFrameError';
}

/**
 * Decodes every msgpack value in a frame. Throws MalformedFrameError when the bytes are not
 * well-formed msgpack (truncated value, impossible declared length, nesting deeper than
 * `maxDepth`, reserved byte, an extension type other than the timestamp, a malformed timestamp).
 * The structure is checked before anything is allocated, see scan.ts.
 */
export function decodeFrame(bytes: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): unknown[] {
  const count = bytes.length === 0 ? -1 : scanMsgpack(bytes, maxDepth);
  if (count < 0) throw new MalformedFrameError(bytes.length === 0 ? 'empty frame' : SCAN_ERRORS[count]);
  if (count === 1) {
    try {
      return [unpackr.unpack(bytes)];
    } catch (err) {
      throw new MalformedFrameError((err as Error).message);
    }
  }
  try {
    return unpackr.unpackMultiple(bytes) as unknown[];
  } catch (err) {
    throw new MalformedFrameError((err as Error).message);
  }
}

function isId(v: unknown): v is number {
  return typeof v === 'number' && v >= 0 && v <= MAX_ID && Number.isInteger(v);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
}

const bad = (id: number, message: string): ProtocolViolation => ({ id, code: ErrorCode.BAD_REQUEST, message });

/**
 * Checks a decoded value against the client message schema. Returns null when `m` is a valid
 * ClientMessage (the caller can then read its fields by position), otherwise what to answer.
 */
export function validateClientMessage(m: unknown, topicLimits: TopicLimits, maxMethodLength = 128): ProtocolViolation | null {
  if (!Array.isArray(m) || m.length === 0) return bad(0, 'message must be a non-empty array');
  const type = m[0];
  const id = isId(m[1]) ? (m[1] as number) : 0;
  if (typeof type !== 'number' || !Number.isInteger(type)) return bad(id, 'message type must be an integer');
  switch (type) {
    case MsgType.SUBSCRIBE:
    case MsgType.UNSUBSCRIBE: {
      if (m.length < 3 || m.length > 4 || (type === MsgType.UNSUBSCRIBE && m.length !== 3)) return bad(id, 'wrong number of fields');
      if (!isId(m[1])) return bad(0, 'id must be an unsigned 32-bit integer');
      if (m.length === 4 && !isPlainObject(m[3])) return bad(id, 'options must be a map');
      // a field of the wrong type is BAD_REQUEST; INVALID_TOPIC is for a string that breaks the rules
      if (typeof m[2] !== 'string') return bad(id, 'pattern must be a string');
      const err = topicError(m[2], true, topicLimits);
      return err === null ? null : { id, code: ErrorCode.INVALID_TOPIC, message: err };
    }
    case MsgType.PUBLISH: {
      if (m.length < 4 || m.length > 5) return bad(id, 'wrong number of fields');
      if (!isId(m[1])) return bad(0, 'id must be an unsigned 32-bit integer');
      if (m.length === 5 && m[4] !== null && !isPlainObject(m[4])) return bad(id, 'options must be a map or nil');
      if (typeof m[2] !== 'string') return bad(id, 'topic must be a string');
      const err = topicError(m[2], false, topicLimits);
      return err === null ? null : { id, code: ErrorCode.INVALID_TOPIC, message: err };
    }
    case MsgType.REQUEST: {
      if (m.length < 3 || m.length > 4) return bad(id, 'wrong number of fields');
      if (!isId(m[1]) || m[1] === 0) return bad(0, 'request id must be an unsigned 32-bit integer > 0');
      const method = m[2];
      if (typeof method !== 'string' || method.length === 0 || method.length > maxMethodLength) return bad(id, `method must be a string of 1..${maxMethodLength} characters`);
      return null;
    }
    case MsgType.PING:
      if (m.length !== 2 || !isId(m[1])) return bad(id, 'ping is [5, id]');
      return null;
    case MsgType.REFRESH:
      if (m.length !== 3 || !isId(m[1])) return bad(id, 'refresh is [6, id, token]');
      if (typeof m[2] !== 'string' || m[2].length === 0 || m[2].length > 8192) return bad(id, 'token must be a non-empty string');
      return null;
    case MsgType.HISTORY:
    case MsgType.PRESENCE: {
      const n = type === MsgType.HISTORY ? 4 : 3;
      if (m.length < 3 || m.length > n) return bad(id, 'wrong number of fields');
      if (!isId(m[1]) || m[1] === 0) return bad(0, 'id must be an unsigned 32-bit integer > 0');
      if (m.length === 4 && m[3] !== null && !isPlainObject(m[3])) return bad(id, 'options must be a map or nil');
      if (typeof m[2] !== 'string') return bad(id, 'topic must be a string');
      const err = topicError(m[2], false, topicLimits);
      return err === null ? null : { id, code: ErrorCode.INVALID_TOPIC, message: err };
    }
    default:
      return { id, code: ErrorCode.UNKNOWN_TYPE, message: `unknown message type ${type}` };
  }
}

// ---- server -> client encoders -------------------------------------------------------------
//
// Every server encoder leaves HEADROOM free bytes in front of the message it returns, in the same
// buffer and reserved for it, so a transport can write its frame header in place (no copy).

/** Free bytes reserved in front of every server-encoded message (enough for a WebSocket header). */
export const HEADROOM = 10;
const RESERVE = RESERVE_START_SPACE | HEADROOM;

// Small replies are carved from a shared 8 KiB slab, the way Node's Buffer pool works: allocating
// a fresh ArrayBuffer per reply showed up as ~10% of the echo profile. Kept small (and not used for
// broadcast frames) so a queued message pins at most 8 KiB besides itself.
const SLAB_SIZE = 8 * 1024;
const SLAB_MAX = 1024;
let slab = new Uint8Array(SLAB_SIZE);
let slabPos = 0;

function alloc(n: number): Uint8Array {
  if (n > SLAB_MAX) return new Uint8Array(n);
  if (slabPos + n > SLAB_SIZE) {
    slab = new Uint8Array(SLAB_SIZE);
    slabPos = 0;
  }
  const out = slab.subarray(slabPos, slabPos + n);
  slabPos = (slabPos + n + 7) & ~7;
  return out;
}

function packReserved(value: unknown): Uint8Array {
  return packr.pack(value, RESERVE).subarray(HEADROOM);
}

export function encodeResult(id: number, result?: unknown): Uint8Array {
  // Binary results (echo, blobs, raw device frames) skip the generic encoder: one allocation, one copy.
  if (result instanceof Uint8Array) return encodeBinResult(id, result);
  return packReserved(result === undefined ? [MsgType.RESULT, id] : [MsgType.RESULT, id, result]);
}

function encodeBinResult(id: number, bin: Uint8Array): Uint8Array {
  const n = bin.length;
  const out = alloc(HEADROOM + 2 + 5 + 5 + n);
  const p = writeBinResultHead(out, HEADROOM, id, n);
  out.set(bin, p);
  return out.subarray(HEADROOM, p + n);
}

/**
 * The msgpack bytes of RESULT [16, id, bin] up to (not including) the bin's own bytes, with
 * HEADROOM reserved in front: a transport writes this head and then `bin` itself (scatter/gather),
 * so a large binary reply is never copied. Same bytes as encodeResult(id, bin) in two pieces.
 */
export function encodeBinResultHead(id: number, n: number): Uint8Array {
  const out = alloc(HEADROOM + 2 + 5 + 5);
  return out.subarray(HEADROOM, writeBinResultHead(out, HEADROOM, id, n));
}

function writeBinResultHead(out: Uint8Array, p: number, id: number, n: number): number {
  out[p++] = 0x93;
  out[p++] = MsgType.RESULT;
  p = writeUint(out, p, id);
  if (n < 256) {
    out[p++] = 0xc4;
    out[p++] = n;
  } else if (n < 65536) {
    out[p++] = 0xc5;
    out[p++] = n >>> 8;
    out[p++] = n & 0xff;
  } else {
    out[p++] = 0xc6;
    out[p++] = n >>> 24;
    out[p++] = (n >>> 16) & 0xff;
    out[p++] = (n >>> 8) & 0xff;
    out[p++] = n & 0xff;
  }
  return p;
}

export function encodeError(id: number, code: number, message: string): Uint8Array {
  return packReserved([MsgType.ERROR, id, code, message]);
}

export function encodePong(id: number): Uint8Array {
  return packReserved([MsgType.PONG, id]);
}

export function encodeGap(topic: string, dropped: number): Uint8Array {
  return packReserved([MsgType.GAP, topic, dropped]);
}

/** Encodes a payload value once; deliveries then embed these bytes without re-encoding. */
export function encodePayload(payload: unknown): Uint8Array {
  return packr.pack(payload);
}

/**
 * Builds a MESSAGE frame `[18, topic, seq, payload]` from an already-encoded payload. Used for
 * fan-out: the frame is built once per publish and the same bytes go to every subscriber.
 * `topic` must be a valid topic (ASCII only), which the hub guarantees.
 */
export function encodeDelivery(topic: string, seq: number, payload: Uint8Array, headroom = HEADROOM, flags = 0): Uint8Array {
  const tlen = topic.length;
  const out = new Uint8Array(headroom + 2 + 3 + tlen + 9 + payload.length + (flags === 0 ? 0 : 1));
  let p = headroom;
  out[p++] = flags === 0 ? 0x94 : 0x95; // fixarray(4), or 5 with the flags
  out[p++] = MsgType.MESSAGE;
  if (tlen < 32) out[p++] = 0xa0 | tlen;
  else if (tlen < 256) {
    out[p++] = 0xd9;
    out[p++] = tlen;
  } else {
    out[p++] = 0xda;
    out[p++] = tlen >>> 8;
    out[p++] = tlen & 0xff;
  }
  for (let i = 0; i < tlen; i++) out[p++] = topic.charCodeAt(i);
  p = writeUint(out, p, seq);
  out.set(payload, p);
  p += payload.length;
  if (flags !== 0) out[p++] = flags; // positive fixint
  return out.subarray(headroom, p);
}

/** MESSAGE flags (5th element; absent on live messages). */
export const DeliveryFlag = {
  /** The topic's retained value, sent when the subscription started. */
  RETAINED: 1,
  /** Replayed from history by a recovering SUBSCRIBE. */
  RECOVERED: 2,
} as const;

function writeUint(out: Uint8Array, p: number, n: number): number {
  if (n < 128) out[p++] = n;
  else if (n < 256) {
    out[p++] = 0xcc;
    out[p++] = n;
  } else if (n < 65536) {
    out[p++] = 0xcd;
    out[p++] = n >>> 8;
    out[p++] = n & 0xff;
  } else if (n < 4294967296) {
    out[p++] = 0xce;
    out[p++] = n >>> 24;
    out[p++] = (n >>> 16) & 0xff;
    out[p++] = (n >>> 8) & 0xff;
    out[p++] = n & 0xff;
  } else {
    const hi = Math.floor(n / 4294967296);
    const lo = n >>> 0;
    out[p++] = 0xcf;
    out[p++] = hi >>> 24;
    out[p++] = (hi >>> 16) & 0xff;
    out[p++] = (hi >>> 8) & 0xff;
    out[p++] = hi & 0xff;
    out[p++] = lo >>> 24;
    out[p++] = (lo >>> 16) & 0xff;
    out[p++] = (lo >>> 8) & 0xff;
    out[p++] = lo & 0xff;
  }
  return p;
}

// ---- recovery, history and presence ------------------------------------------------------------

/** Writes raw msgpack bytes (an already-encoded value) into a value being built by hand. */
function concatParts(parts: Uint8Array[], headroom: number): Uint8Array {
  let n = headroom;
  for (const q of parts) n += q.length;
  const out = new Uint8Array(n);
  let p = headroom;
  for (const q of parts) {
    out.set(q, p);
    p += q.length;
  }
  return out.subarray(headroom);
}

function arrayHeader(n: number): Uint8Array {
  return n < 16 ? Uint8Array.of(0x90 | n) : n < 65536 ? Uint8Array.of(0xdc, n >>> 8, n & 0xff) : Uint8Array.of(0xdd, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/** One stored message as HISTORY returns it: `[seq, time, payload]`, the payload's bytes as published. */
export interface HistoryItem {
  seq: number;
  time: number;
  payload: Uint8Array;
}

/**
 * RESULT of a HISTORY request: `[16, id, {seq, epoch, complete, more, messages: [[seq, time, payload], ...]}]`.
 * Payloads are embedded as the msgpack values they were published as (not re-encoded).
 */
export function encodeHistoryResult(id: number, head: { seq: number; epoch: string; complete: boolean; more: boolean }, items: readonly HistoryItem[]): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x93, ...packr.pack(MsgType.RESULT), ...packr.pack(id))];
  const map = packr.pack({ seq: head.seq, epoch: head.epoch, complete: head.complete, more: head.more });
  // the map gets a fifth key, messages: bump the fixmap count (4 keys -> 5)
  const m = Uint8Array.from(map);
  m[0] = 0x85;
  parts.push(m, packr.pack('messages'), arrayHeader(items.length));
  for (const it of items) parts.push(Uint8Array.of(0x93), packr.pack(it.seq), packr.pack(it.time), it.payload);
  return concatParts(parts, HEADROOM);
}

/** PRESENCE_EVENT `[22, topic, kind, {client, user, info}]`: kind 1 join, 2 leave; info as encoded. */
export function encodePresenceEvent(topic: string, kind: 1 | 2, entry: { client: string; user: string | null; info: Uint8Array | null }): Uint8Array {
  return concatParts([Uint8Array.of(0x94), packr.pack(MsgType.PRESENCE_EVENT), packr.pack(topic), packr.pack(kind), presenceEntry(entry)], HEADROOM);
}

function presenceEntry(e: { client: string; user: string | null; info: Uint8Array | null }): Uint8Array {
  const head = Uint8Array.from(packr.pack({ client: e.client, user: e.user }));
  head[0] = 0x83; // fixmap(2) -> fixmap(3): info follows
  return concatParts([head, packr.pack('info'), e.info ?? Uint8Array.of(0xc0)], 0);
}

/** RESULT of a PRESENCE request: `[16, id, [{client, user, info}, ...]]`. */
export function encodePresenceResult(id: number, entries: readonly { client: string; user: string | null; info: Uint8Array | null }[]): Uint8Array {
  const parts: Uint8Array[] = [Uint8Array.of(0x93, ...packr.pack(MsgType.RESULT), ...packr.pack(id)), arrayHeader(entries.length)];
  for (const e of entries) parts.push(presenceEntry(e));
  return concatParts(parts, HEADROOM);
}
