// The end-of-tick writer: every connection written to during one event-loop turn is settled once,
// after the poll phase (setImmediate), so all writes caused by that turn's inbound I/O reach each
// socket in one writev; and the framing and compression of broadcasts, computed once per message
// and shared by every subscriber.
import type { Outgoing } from '../pubsub/hub.js';
import { compressedFrame, type DeflateSettings } from './deflate.js';
import { wsFrameInPlace } from './frame.js';

/** Something that holds writes for the end of the tick. */
export interface TickSettled {
  /** Called once at the end of the turn in which it was scheduled. */
  endTick(): void;
}

export class TickWriter {
  /** Messages wiregate deflated itself (a broadcast counts once, however many subscribers). */
  deflated = 0;
  private pending: TickSettled[] = [];
  private scheduled = false;
  private readonly flush = (): void => {
    const list = this.pending;
    this.pending = [];
    this.scheduled = false;
    for (let i = 0; i < list.length; i++) list[i].endTick();
  };

  constructor(private readonly deflate: DeflateSettings) {}

  /** `s.endTick()` runs at the end of this turn; schedule each connection at most once per turn. */
  schedule(s: TickSettled): void {
    this.pending.push(s);
    if (!this.scheduled) {
      this.scheduled = true;
      // setImmediate runs after the poll phase: every write caused by the I/O of this loop
      // iteration (all inbound frames from all sockets) reaches each socket in one writev.
      setImmediate(this.flush);
    }
  }

  /** The uncompressed WebSocket frame of a broadcast, framed in place once (the message keeps headroom for it). */
  wire(out: Outgoing): Buffer {
    return (out.wire ??= wsFrameInPlace(out.msg));
  }

  /** The compressed frame of a broadcast for `bits` window bits, computed once per message. */
  compressed(out: Outgoing, bits: number): Buffer {
    if (out.zBits !== bits || out.z === null) {
      out.z = compressedFrame(out.msg, bits, this.deflate);
      this.deflated++;
      out.zBits = bits;
    }
    return out.z;
  }

  /** Compresses a message for one connection (not shared). */
  compressOne(msg: Uint8Array, bits: number): Buffer {
    this.deflated++;
    return compressedFrame(msg, bits, this.deflate);
  }
}
