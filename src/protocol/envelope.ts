// Fast path for the two hottest client messages, PUBLISH and REQUEST, in their canonical shape:
// reads the envelope by hand and leaves the payload as a raw msgpack slice. A publish then goes
// to subscribers without decoding and re-encoding its payload. Anything unusual (other types,
// non-ASCII names, several messages in one frame, malformed bytes) returns false, and the caller
// takes the general path (decodeFrame + validateClientMessage), which produces the documented
// errors. A PUBLISH payload is relayed without ever being decoded, so valueEnd() is its only
// check: it refuses, as the general path does, every extension other than a well-formed
// timestamp (see scan.ts), and such a frame falls through to the general path, which closes with
// 1007. Platform-neutral.
import { MsgType, MAX_ID } from './messages.js';
import { valueEnd, DEFAULT_MAX_DEPTH } from './scan.js';

export interface Envelope {
  type: number;
  id: number;
  /** Topic (PUBLISH) or method (REQUEST). */
  name: string;
  /** Raw payload bytes [payloadStart, payloadEnd); equal offsets when absent (REQUEST without payload). */
  payloadStart: number;
  payloadEnd: number;
  /** Raw options bytes (PUBLISH 5th element), or equal offsets when absent. */
  optsStart: number;
  optsEnd: number;
}

export function newEnvelope(): Envelope {
  return { type: 0, id: 0, name: '', payloadStart: 0, payloadEnd: 0, optsStart: 0, optsEnd: 0 };
}

/** Fills `env` and returns true when `b` is exactly one canonical PUBLISH or REQUEST. */
export function parseEnvelope(b: Uint8Array, env: Envelope, maxDepth = DEFAULT_MAX_DEPTH): boolean {
  const n = b.length;
  if (n < 4) return false;
  const count = b[0] - 0x90;
  const type = b[1];
  if (type === MsgType.PUBLISH) {
    if (count !== 4 && count !== 5) return false;
  } else if (type === MsgType.REQUEST) {
    if (count !== 3 && count !== 4) return false;
  } else return false;
  // id: unsigned integer
  let p = 2;
  let id: number;
  const t = b[p];
  if (t < 0x80) {
    id = t;
    p += 1;
  } else if (t === 0xcc) {
    id = b[p + 1];
    p += 2;
  } else if (t === 0xcd) {
    id = (b[p + 1] << 8) | b[p + 2];
    p += 3;
  } else if (t === 0xce) {
    id = ((b[p + 1] << 24) >>> 0) + ((b[p + 2] << 16) | (b[p + 3] << 8) | b[p + 4]);
    p += 5;
  } else return false;
  if (p >= n || id > MAX_ID || (type === MsgType.REQUEST && id === 0)) return false;
  // name: ASCII string
  const s = b[p];
  let len: number;
  if (s >= 0xa0 && s <= 0xbf) {
    len = s & 0x1f;
    p += 1;
  } else if (s === 0xd9 && p + 1 < n) {
    len = b[p + 1];
    p += 2;
  } else return false;
  if (len === 0 || p + len > n) return false;
  let name = '';
  for (let i = p; i < p + len; i++) {
    const c = b[i];
    if (c >= 0x80) return false;
    name += String.fromCharCode(c);
  }
  p += len;
  env.type = type;
  env.id = id;
  env.name = name;
  const hasPayload = type === MsgType.PUBLISH || count === 4;
  if (hasPayload) {
    const e = valueEnd(b, p, n, maxDepth);
    if (e < 0) return false;
    env.payloadStart = p;
    env.payloadEnd = p = e;
  } else env.payloadStart = env.payloadEnd = p;
  if (type === MsgType.PUBLISH && count === 5) {
    const e = valueEnd(b, p, n, maxDepth);
    if (e < 0) return false;
    env.optsStart = p;
    env.optsEnd = p = e;
  } else env.optsStart = env.optsEnd = p;
  return p === n;
}
