// The browser bundle's stand-in for the `msgpackr` module (scripts/build-client.mjs redirects
// src/protocol's import here): decoding stays msgpackr's (its `unpack` entry alone), encoding is
// this small standard msgpack encoder, because msgpackr's encoder brings its decoder and a
// structures engine along (about 6 KiB gzip more; the bundle's goal is 15 KB in all: it is 14.2 KiB).
//
// It writes the standard forms msgpackr writes with wiregate's options (useRecords: false,
// variableMapSize, encodeUndefinedAsNil): the smallest integer, string, binary, array and map
// headers; float64 for other numbers; bigint as int64 / uint64; Date as the timestamp extension
// (-1); Map and plain objects as maps. test/client-msgpack.test.ts checks it against msgpackr
// byte for byte on generated values.
export { Unpackr } from 'msgpackr/unpack';

/** msgpackr's flag: `pack(value, RESERVE_START_SPACE | n)` leaves n bytes in front. */
export const RESERVE_START_SPACE = 2048;
const MAX_DEPTH = 1000;
let utf8: { encode(s: string): Uint8Array } | null = null; // made on first use: loading the bundle needs nothing of the platform

export class Packr {
  private buf = new Uint8Array(1024);
  private view = new DataView(this.buf.buffer);
  private pos = 0;

  constructor(_options?: unknown) {}

  pack(value: unknown, options = 0): Uint8Array {
    this.pos = options & RESERVE_START_SPACE ? options & 0xff : 0;
    this.value(value, 0);
    return this.buf.slice(0, this.pos);
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  private byte(b: number): void {
    this.room(1);
    this.buf[this.pos++] = b;
  }

  /** A type byte followed by an unsigned big-endian length of 1, 2 or 4 bytes. */
  private head(type: number, size: 1 | 2 | 4, n: number): void {
    this.room(1 + size);
    this.buf[this.pos++] = type;
    if (size === 1) this.buf[this.pos] = n;
    else if (size === 2) this.view.setUint16(this.pos, n);
    else this.view.setUint32(this.pos, n);
    this.pos += size;
  }

  private value(v: unknown, depth: number): void {
    if (depth > MAX_DEPTH) throw new RangeError('msgpack: value nested too deeply (or cyclic)');
    switch (typeof v) {
      case 'undefined':
        return this.byte(0xc0);
      case 'boolean':
        return this.byte(v ? 0xc3 : 0xc2);
      case 'number':
        return this.number(v);
      case 'bigint':
        this.room(9);
        this.buf[this.pos] = v >= 0n ? 0xcf : 0xd3;
        if (v >= 0n) this.view.setBigUint64(this.pos + 1, v);
        else this.view.setBigInt64(this.pos + 1, v);
        this.pos += 9;
        return;
      case 'string':
        return this.string(v);
      case 'object':
        if (v === null) return this.byte(0xc0);
        if (Array.isArray(v)) {
          const n = v.length;
          if (n < 16) this.byte(0x90 | n);
          else if (n < 0x10000) this.head(0xdc, 2, n);
          else this.head(0xdd, 4, n);
          for (let i = 0; i < n; i++) this.value(v[i], depth + 1);
          return;
        }
        if (v instanceof Uint8Array || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) {
          const b = v instanceof Uint8Array ? v : v instanceof ArrayBuffer ? new Uint8Array(v) : new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
          const n = b.length;
          if (n < 0x100) this.head(0xc4, 1, n);
          else if (n < 0x10000) this.head(0xc5, 2, n);
          else this.head(0xc6, 4, n);
          this.room(n);
          this.buf.set(b, this.pos);
          this.pos += n;
          return;
        }
        if (v instanceof Date) return this.date(v);
        if (v instanceof Map) return this.map([...v.entries()], depth);
        return this.map(Object.entries(v as Record<string, unknown>), depth);
      default:
        throw new TypeError(`msgpack: cannot encode a ${typeof v}`);
    }
  }

  private number(v: number): void {
    if (Number.isSafeInteger(v)) {
      if (v >= 0) {
        if (v < 0x80) return this.byte(v);
        if (v < 0x100) return this.head(0xcc, 1, v);
        if (v < 0x10000) return this.head(0xcd, 2, v);
        if (v < 0x100000000) return this.head(0xce, 4, v);
        this.room(9);
        this.buf[this.pos] = 0xcf;
        this.view.setBigUint64(this.pos + 1, BigInt(v));
        this.pos += 9;
        return;
      }
      if (v >= -32) return this.byte(v & 0xff);
      this.room(9);
      if (v >= -0x80) {
        this.buf[this.pos] = 0xd0;
        this.view.setInt8(this.pos + 1, v);
        this.pos += 2;
      } else if (v >= -0x8000) {
        this.buf[this.pos] = 0xd1;
        this.view.setInt16(this.pos + 1, v);
        this.pos += 3;
      } else if (v >= -0x80000000) {
        this.buf[this.pos] = 0xd2;
        this.view.setInt32(this.pos + 1, v);
        this.pos += 5;
      } else {
        this.buf[this.pos] = 0xd3;
        this.view.setBigInt64(this.pos + 1, BigInt(v));
        this.pos += 9;
      }
      return;
    }
    this.room(9);
    this.buf[this.pos] = 0xcb;
    this.view.setFloat64(this.pos + 1, v);
    this.pos += 9;
  }

  private string(s: string): void {
    const b = (utf8 ??= new TextEncoder()).encode(s);
    const n = b.length;
    if (n < 32) this.byte(0xa0 | n);
    else if (n < 0x100) this.head(0xd9, 1, n);
    else if (n < 0x10000) this.head(0xda, 2, n);
    else this.head(0xdb, 4, n);
    this.room(n);
    this.buf.set(b, this.pos);
    this.pos += n;
  }

  private map(entries: [unknown, unknown][], depth: number): void {
    const n = entries.length;
    if (n < 16) this.byte(0x80 | n);
    else if (n < 0x10000) this.head(0xde, 2, n);
    else this.head(0xdf, 4, n);
    for (const [k, v] of entries) {
      this.value(k, depth + 1);
      this.value(v, depth + 1);
    }
  }

  /** The timestamp extension (type -1): 32-bit seconds when whole and in range, else 96-bit. */
  private date(d: Date): void {
    const ms = d.getTime();
    const sec = Math.floor(ms / 1000);
    const nsec = (ms - sec * 1000) * 1e6;
    this.room(15);
    if (nsec === 0 && sec >= 0 && sec < 0x100000000) {
      this.buf[this.pos] = 0xd6;
      this.buf[this.pos + 1] = 0xff;
      this.view.setUint32(this.pos + 2, sec);
      this.pos += 6;
      return;
    }
    this.buf[this.pos] = 0xc7;
    this.buf[this.pos + 1] = 12;
    this.buf[this.pos + 2] = 0xff;
    this.view.setUint32(this.pos + 3, nsec);
    this.view.setBigInt64(this.pos + 7, BigInt(sec));
    this.pos += 15;
  }
}
