// Synchronous zlib streams that keep their state between calls.
//
// Node's public zlib API is either asynchronous (streams: every call goes through the threadpool,
// which is what makes ws's permessage-deflate slow) or synchronous one-shot (`deflateRawSync`
// builds and tears down a whole zlib context per call: for a 600 B telemetry message that setup is
// half the cost of deflating it, and a third of inflating it). This module drives a zlib stream's
// native handle synchronously, the way Node's own one-shot functions do (lib/zlib.js
// processChunkSync), but without closing it afterwards, so one context can be reset and reused
// for every message (no context takeover) or kept per connection (context takeover).
//
// It reaches into Node internals (`_handle.writeSync`, `_writeState`), present since Node 10 and
// unchanged through Node 22; `syncZlibSupported` is false when they are missing and callers fall
// back to the public API. test/zlib-sync.test.ts fails if Node changes them.
import { constants, createDeflateRaw, createInflateRaw, type DeflateRaw, type InflateRaw } from 'node:zlib';

interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}
interface EngineInternals {
  _handle: ZlibHandle | null;
  _writeState: Uint32Array;
}

/** Thrown when the input is not valid DEFLATE data (permessage-deflate: close 1007). */
export class InflateError extends Error {}
/** Thrown when inflating would produce more than the allowed number of bytes (close 1009). */
export class OutputLimitError extends RangeError {}

const SCRATCH_SIZE = 64 * 1024;
// One output scratch buffer for every engine: results are copied out of it before returning, and
// everything here is synchronous, so no two calls can interleave.
let scratch: Buffer | null = null;
const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);
const noop = (): void => {};

export class SyncZlib {
  private readonly engine: (DeflateRaw | InflateRaw) & EngineInternals;

  constructor(engine: DeflateRaw | InflateRaw) {
    this.engine = engine as (DeflateRaw | InflateRaw) & EngineInternals;
    // zlib reports data errors by destroying the stream, which emits 'error' on the next tick
    engine.on('error', noop);
  }

  /** False once the stream has failed or been closed; make a new one. */
  get usable(): boolean {
    return this.engine._handle !== null;
  }

  /**
   * Feeds `input` with a sync flush (and, with `trailer`, the 00 00 ff ff that permessage-deflate
   * strips from each message) and returns everything produced. Throws InflateError on bad data,
   * OutputLimitError past `limit` output bytes (the stream is then unusable: close or reset it).
   */
  write(input: Uint8Array, trailer: boolean, limit = Infinity): Buffer {
    const parts: Buffer[] = [];
    let total = this.feed(input, limit, parts, 0);
    if (trailer) total = this.feed(TRAILER, limit, parts, total);
    if (parts.length === 1) return parts[0];
    return Buffer.concat(parts, total);
  }

  private feed(input: Uint8Array, limit: number, parts: Buffer[], total: number): number {
    const e = this.engine;
    const handle = e._handle;
    if (handle === null) throw new InflateError('zlib stream is closed');
    const state = e._writeState;
    const out = (scratch ??= Buffer.allocUnsafe(SCRATCH_SIZE));
    let inOff = 0;
    let inLen = input.length;
    for (;;) {
      handle.writeSync(constants.Z_SYNC_FLUSH, input, inOff, inLen, out, 0, SCRATCH_SIZE);
      if (e._handle === null) throw new InflateError('invalid compressed data');
      const outLeft = state[0];
      const inLeft = state[1];
      const have = SCRATCH_SIZE - outLeft;
      inOff += inLen - inLeft;
      inLen = inLeft;
      if (have > 0) {
        total += have;
        if (total > limit) {
          this.close();
          throw new OutputLimitError('output limit exceeded');
        }
        parts.push(Buffer.from(out.subarray(0, have)));
      }
      // zlib stops either with output space left (all input consumed and flushed) or with a full
      // output buffer (call again: more input or more pending output).
      if (outLeft !== 0) return total;
    }
  }

  reset(): void {
    this.engine.reset();
  }

  close(): void {
    if (this.engine._handle !== null) this.engine.close();
  }
}

function probe(): boolean {
  try {
    const d = createDeflateRaw() as unknown as EngineInternals & { close(): void };
    const ok = typeof d._handle?.writeSync === 'function' && d._writeState instanceof Uint32Array && d._writeState.length === 2;
    d.close();
    return ok;
  } catch {
    return false;
  }
}

/** True when this Node exposes what SyncZlib needs. */
export const syncZlibSupported = probe();

export function createSyncDeflate(level: number, memLevel: number, windowBits: number): SyncZlib | null {
  return syncZlibSupported ? new SyncZlib(createDeflateRaw({ level, memLevel, windowBits })) : null;
}

export function createSyncInflate(windowBits: number): SyncZlib | null {
  return syncZlibSupported ? new SyncZlib(createInflateRaw({ windowBits })) : null;
}
