// Server-side WebSocket framing for the outbound fast path: FIN + binary opcode, unmasked
// (RFC 6455 section 5.2: servers never mask). Used to frame a broadcast once and write the same
// bytes to every subscriber's socket.

import { HEADROOM } from '../protocol/messages.js';

/** Bytes to leave free in front of a message so a frame header can be written in place. */
export const WS_HEADROOM = HEADROOM;

function headerLength(len: number): number {
  return len < 126 ? 2 : len < 65536 ? 4 : 10;
}

function writeHeader(out: Uint8Array, p: number, len: number): void {
  out[p] = 0x82;
  if (len < 126) out[p + 1] = len;
  else if (len < 65536) {
    out[p + 1] = 126;
    out[p + 2] = len >>> 8;
    out[p + 3] = len & 0xff;
  } else {
    out[p + 1] = 127;
    const hi = Math.floor(len / 4294967296);
    out[p + 2] = hi >>> 24;
    out[p + 3] = (hi >>> 16) & 0xff;
    out[p + 4] = (hi >>> 8) & 0xff;
    out[p + 5] = hi & 0xff;
    out[p + 6] = len >>> 24;
    out[p + 7] = (len >>> 16) & 0xff;
    out[p + 8] = (len >>> 8) & 0xff;
    out[p + 9] = len & 0xff;
  }
}

/**
 * Frames a message that was encoded with at least WS_HEADROOM free bytes in front of it (in the
 * same ArrayBuffer, owned by the caller): writes the header in place, no copy.
 */
export function wsFrameInPlace(msg: Uint8Array): Buffer {
  return wsFrameHeadInPlace(msg, msg.length);
}

/**
 * Like wsFrameInPlace for the first piece of a message written in pieces: the header announces
 * `len` payload bytes (this piece and the ones written right after it); returns header + piece.
 */
export function wsFrameHeadInPlace(msg: Uint8Array, len: number): Buffer {
  const h = headerLength(len);
  const start = msg.byteOffset - h;
  if (start < 0) throw new RangeError('message has no headroom for a frame header');
  const out = Buffer.from(msg.buffer, start, h + msg.length);
  writeHeader(out, 0, len);
  return out;
}
