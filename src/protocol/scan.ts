// Structural pre-check of msgpack bytes, run before msgpackr allocates anything. Platform-neutral.
//
// Walks the bytes once without allocating: every declared length (string, binary, ext, array and
// map element counts) must fit in the bytes that remain, nesting is bounded, and the
// never-used byte 0xc1 is rejected. A tiny frame declaring a 4-billion-element array or a
// 60k-deep nest is refused here in O(frame length), so the decoder behind it never
// over-allocates or recurses deeply.
//
// The only extension type the protocol allows is the msgpack timestamp (-1) in its three standard
// forms; any other extension type (including msgpackr's private ones: undefined, Set, Error, RegExp,
// records...) and any malformed timestamp is rejected here. The PUBLISH fast path relays payloads
// without decoding them, so this scan is the only check such a payload gets: an extension a
// subscriber could not decode must be refused here, not by the decoder.

export const DEFAULT_MAX_DEPTH = 32;

/**
 * Returns the number of complete top-level values in `b`, or a negative number when the bytes are
 * malformed: -1 truncated / bad length, -2 too deep, -3 invalid byte (0xc1), -4 an extension other
 * than a well-formed timestamp, -5 a map key that is a bin, array, map or extension.
 */
export function scanMsgpack(b: Uint8Array, maxDepth = DEFAULT_MAX_DEPTH): number {
  const end = walk(b, 0, b.length, maxDepth, Infinity);
  return end < 0 ? end : walked;
}

/**
 * Offset just past the one complete value starting at `p` (bounded by `end` and `maxDepth`), or a
 * negative error as scanMsgpack. Lets a decoder slice a value's raw bytes without decoding it.
 */
export function valueEnd(b: Uint8Array, p: number, end: number, maxDepth = DEFAULT_MAX_DEPTH): number {
  return walk(b, p, end, maxDepth, 1);
}

/** Top-level values counted by the last walk(). */
let walked = 0;

/** Walks values from `start` until `n` or until `limit` top-level values are complete. */
function walk(b: Uint8Array, start: number, n: number, maxDepth: number, limit: number): number {
  // remaining[d] = values still expected at depth d (depth 0 is unbounded top level);
  // inMap[d] = the container at depth d is a map (its even-numbered children are keys)
  const remaining: number[] = [];
  const inMap: boolean[] = [];
  let depth = 0;
  let p = start;
  let values = 0;
  walked = 0;
  while (p < n && values < limit) {
    const t = b[p++];
    // A map key must be a string, integer, float, bool or nil: the decoders that turn maps into
    // objects (msgpackr's mapsAsObjects, JavaScript clients) cannot use a bin, array, map or
    // extension as a key, so such a payload is refused whatever the framing.
    if (depth > 0 && inMap[depth - 1] && (remaining[depth - 1] & 1) === 0 && ((t >= 0x80 && t <= 0x9f) || (t >= 0xc4 && t <= 0xc9) || (t >= 0xd4 && t <= 0xd8) || t >= 0xdc && t <= 0xdf)) return -5;
    let skip = 0; // bytes of body to skip
    let children = 0; // child values this value contains
    if (t <= 0x7f || t >= 0xe0 || (t >= 0xc0 && t <= 0xc3)) {
      if (t === 0xc1) return -3;
    } else if (t >= 0xa0 && t <= 0xbf) skip = t & 0x1f;
    else if (t >= 0x90 && t <= 0x9f) children = t & 0x0f;
    else if (t >= 0x80 && t <= 0x8f) children = (t & 0x0f) * 2;
    else {
      switch (t) {
        case 0xcc: case 0xd0: skip = 1; break;
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xca: case 0xce: case 0xd2: skip = 4; break;
        case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
        // Extensions: only the timestamp (type -1 = 0xff) as fixext 4, fixext 8 or ext 8 of length 12.
        case 0xd4: case 0xd5: case 0xd8: // fixext 1, 2, 16: no allowed extension has these sizes
          return p < n ? -4 : -1;
        case 0xd6: // fixext 4: timestamp 32 (uint32 seconds)
          if (p < n && b[p] !== 0xff) return -4;
          skip = 5;
          break;
        case 0xd7: // fixext 8: timestamp 64 (30-bit nanoseconds, 34-bit seconds)
          if (p < n && b[p] !== 0xff) return -4;
          if (p + 9 > n) return -1;
          if (((b[p + 1] << 22) | (b[p + 2] << 14) | (b[p + 3] << 6) | (b[p + 4] >>> 2)) >= 1e9) return -4;
          skip = 9;
          break;
        case 0xc4: case 0xd9: // bin8 / str8
          if (p + 1 > n) return -1;
          skip = b[p++];
          break;
        case 0xc5: case 0xda: // bin16 / str16
          if (p + 2 > n) return -1;
          skip = (b[p] << 8) | b[p + 1];
          p += 2;
          break;
        case 0xc6: case 0xdb: // bin32 / str32
          if (p + 4 > n) return -1;
          skip = ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
          p += 4;
          break;
        case 0xc7: // ext 8: only timestamp 96 (uint32 nanoseconds, int64 seconds)
          if (p + 2 > n) return -1;
          if (b[p] !== 12 || b[p + 1] !== 0xff) return -4;
          if (p + 14 > n) return -1;
          if (((b[p + 2] << 24) >>> 0) + ((b[p + 3] << 16) | (b[p + 4] << 8) | b[p + 5]) >= 1e9) return -4;
          skip = 14;
          break;
        case 0xc8: // ext 16: no allowed extension uses it
          return p + 3 <= n ? -4 : -1;
        case 0xc9: // ext 32: no allowed extension uses it
          return p + 5 <= n ? -4 : -1;
        case 0xdc: // array16
          if (p + 2 > n) return -1;
          children = (b[p] << 8) | b[p + 1];
          p += 2;
          break;
        case 0xdd: // array32
          if (p + 4 > n) return -1;
          children = ((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]);
          p += 4;
          break;
        case 0xde: // map16
          if (p + 2 > n) return -1;
          children = ((b[p] << 8) | b[p + 1]) * 2;
          p += 2;
          break;
        case 0xdf: // map32
          if (p + 4 > n) return -1;
          children = (((b[p] << 24) >>> 0) + ((b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3])) * 2;
          p += 4;
          break;
        default:
          return -3;
      }
    }
    if (skip > n - p) return -1;
    p += skip;
    // this value is complete unless it is a non-empty container
    if (children > 0) {
      if (children > n - p) return -1; // each child needs at least one byte
      if (depth >= maxDepth) return -2;
      inMap[depth] = (t >= 0x80 && t <= 0x8f) || t === 0xde || t === 0xdf;
      remaining[depth++] = children;
      continue;
    }
    // close finished containers
    while (depth > 0 && --remaining[depth - 1] === 0) depth--;
    if (depth === 0) values++;
  }
  if (depth !== 0 || values === 0) return -1;
  walked = values;
  return p;
}
