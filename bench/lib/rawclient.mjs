// A minimal WebSocket client on raw TCP for load generation: handshake by hand, pre-built masked
// frames, an incremental parser for server frames. It does just enough to keep a server busy
// without becoming the bottleneck (the `ws` client tops out near 90k msgs/s per core).
//
// Frames are masked with an all-zero key, so a pre-built frame is its own payload and can be
// patched in place (ids, timestamps). Servers unmask it like any other key.
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';

let pending = [];
let scheduled = false;
function flush() {
  const list = pending;
  pending = [];
  scheduled = false;
  for (const c of list) c.uncork();
}
function scheduleUncork(c) {
  pending.push(c);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

/** Builds a complete masked client frame (opcode 2 binary unless given; rsv1: compressed). */
export function clientFrame(payload, opcode = 2, rsv1 = false) {
  const len = payload.length;
  const h = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const out = Buffer.allocUnsafe(h + 4 + len);
  out[0] = 0x80 | (rsv1 ? 0x40 : 0) | opcode;
  if (h === 2) out[1] = 0x80 | len;
  else if (h === 4) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  out.writeUInt32BE(0, h); // mask key 0
  payload.copy ? payload.copy(out, h + 4) : out.set(payload, h + 4);
  return out;
}

/** Offset of the payload inside a frame built by clientFrame. */
export function payloadOffset(len) {
  return (len < 126 ? 2 : len < 65536 ? 4 : 10) + 4;
}

const PONG_EMPTY = clientFrame(Buffer.alloc(0), 0xa);

/**
 * Opens a WebSocket. `onMessage(buf, start, end)` is called per complete data frame (no copy:
 * valid only during the call). Resolves with { socket, send(buf), close() }.
 */
export function open(url, { protocol, onMessage, onClose, extensions } = {}) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ host: u.hostname, port: Number(u.port), noDelay: true });
    const key = randomBytes(16).toString('base64');
    let handshaken = false;
    let buf = Buffer.alloc(0);
    let corked = false;
    const api = {
      socket,
      // writes issued during one loop iteration leave in one writev, so the load generator
      // spends its CPU on messages rather than syscalls
      send: (frame) => {
        if (!corked) {
          corked = true;
          socket.cork();
          scheduleUncork(api);
        }
        socket.write(frame);
      },
      uncork: () => {
        corked = false;
        socket.uncork();
      },
      close: () => socket.destroy(),
    };
    socket.on('connect', () => {
      socket.write(
        `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
          (protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : '') +
          (extensions ? `Sec-WebSocket-Extensions: ${extensions}\r\n` : '') +
          '\r\n',
      );
    });
    socket.on('error', (err) => {
      if (!handshaken) reject(err);
    });
    socket.on('close', () => onClose?.());
    socket.on('data', (chunk) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!handshaken) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.subarray(0, end).toString();
        if (!head.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          return reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
        }
        handshaken = true;
        api.extensions = /\r\nsec-websocket-extensions: *([^\r]*)/i.exec(head)?.[1] ?? '';
        buf = buf.subarray(end + 4);
        resolve(api);
      }
      // parse as many complete frames as there are
      let p = 0;
      const n = buf.length;
      while (n - p >= 2) {
        const b0 = buf[p];
        let len = buf[p + 1] & 0x7f;
        let h = 2;
        if (len === 126) {
          if (n - p < 4) break;
          len = buf.readUInt16BE(p + 2);
          h = 4;
        } else if (len === 127) {
          if (n - p < 10) break;
          len = Number(buf.readBigUInt64BE(p + 2));
          h = 10;
        }
        if (n - p < h + len) break;
        const op = b0 & 0x0f;
        if (op === 0x9) socket.write(PONG_EMPTY);
        else if (op === 0x8) socket.end();
        else if (op !== 0xa) onMessage?.(buf, p + h, p + h + len, api);
        p += h + len;
      }
      buf = p === n ? Buffer.alloc(0) : buf.subarray(p);
    });
  });
}

/** Reads a msgpack unsigned integer at `p`; returns [value, nextOffset]. */
export function readUint(b, p) {
  const t = b[p];
  if (t < 0x80) return [t, p + 1];
  if (t === 0xcc) return [b[p + 1], p + 2];
  if (t === 0xcd) return [b.readUInt16BE(p + 1), p + 3];
  if (t === 0xce) return [b.readUInt32BE(p + 1), p + 5];
  if (t === 0xcf) return [Number(b.readBigUInt64BE(p + 1)), p + 9];
  return [-1, p + 1];
}

/** msgpack bin header for `size` bytes. */
export function binHeader(size) {
  if (size < 256) return Buffer.from([0xc4, size]);
  if (size < 65536) return Buffer.from([0xc5, size >> 8, size & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = 0xc6;
  b.writeUInt32BE(size, 1);
  return b;
}

/** msgpack str for an ASCII string. */
export function str(s) {
  if (s.length < 32) return Buffer.concat([Buffer.from([0xa0 | s.length]), Buffer.from(s)]);
  return Buffer.concat([Buffer.from([0xd9, s.length]), Buffer.from(s)]);
}

/** uint32 in msgpack (always 5 bytes so it can be patched in place). */
export function u32(n) {
  const b = Buffer.alloc(5);
  b[0] = 0xce;
  b.writeUInt32BE(n, 1);
  return b;
}

/** Wall-clock milliseconds with sub-microsecond resolution, comparable across processes. */
export const now = () => performance.timeOrigin + performance.now();
