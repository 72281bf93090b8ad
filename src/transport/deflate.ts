// permessage-deflate on the outbound fast path (RFC 7692 section 7.2.1): compress a message with
// a fresh DEFLATE context, end with a sync flush, drop the trailing 00 00 ff ff, set RSV1.
//
// A message compressed from a fresh context never refers to earlier data, so it decodes on any
// client whatever that client's inflate state - as long as the server's own compressor also
// starts fresh for each message (server_no_context_takeover negotiated) and the window is not
// larger than the client accepted (server_max_window_bits). Under those two conditions one
// compressed broadcast frame is valid for every subscriber: compress once, share the bytes.
import { constants, deflateRawSync } from 'node:zlib';
import { createSyncDeflate, type SyncZlib } from './zlib-sync.js';

export interface DeflateSettings {
  level: number;
  memLevel: number;
}

// One compressor per distinct settings for the whole process, reset before every message: the
// same bytes as a fresh deflateRawSync, without building a zlib context each time (which was half
// the cost of compressing a 600 B message).
const deflaters = new Map<string, SyncZlib | null>();

function deflate(msg: Uint8Array, windowBits: number, s: DeflateSettings): Buffer {
  const key = `${s.level}:${s.memLevel}:${windowBits}`;
  let d = deflaters.get(key);
  if (d === undefined || (d !== null && !d.usable)) deflaters.set(key, (d = createSyncDeflate(s.level, s.memLevel, windowBits)));
  if (d === null) return deflateRawSync(msg, { level: s.level, memLevel: s.memLevel, windowBits, finishFlush: constants.Z_SYNC_FLUSH });
  d.reset();
  return d.write(msg, false);
}

/** Compresses `msg` and returns a complete WebSocket frame (FIN, RSV1, binary). */
export function compressedFrame(msg: Uint8Array, windowBits: number, s: DeflateSettings): Buffer {
  const z = deflate(msg, windowBits, s);
  const len = z.length - 4; // strip 00 00 ff ff
  const h = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(h + len);
  out[0] = 0xc2;
  if (h === 2) out[1] = len;
  else if (h === 4) {
    out[1] = 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 127;
    out.writeUInt32BE(Math.floor(len / 4294967296), 2);
    out.writeUInt32BE(len >>> 0, 6);
  }
  z.copy(out, h, 0, len);
  return out;
}
