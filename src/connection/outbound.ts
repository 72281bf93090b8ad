// The outbound side of one connection: the byte budget and the slow-consumer policy (close, drop
// with GAPs, conflate), the batch subprotocol, and the choice between the fast path (pre-framed
// bytes written straight to the corked socket, settled at the end of the tick) and ws's public send.
//
// The budget measures what the peer has failed to read: bytes handed to the socket in EARLIER
// event-loop turns that the kernel has not taken yet. Bytes written during the current turn are
// still corked (not yet offered to the kernel) and never count, so a client that is sent a burst
// in one turn, or one message larger than the budget, is not mistaken for a slow reader. What
// the gateway can hold for one connection is therefore the budget plus one turn's sends.
//
// Conflation (policy CONFLATE): a delivery that finds the connection over budget is held back, at
// most one per topic: a newer message on the same topic replaces the held one (the shared Outgoing,
// never a copy) and counts as skipped. Once the backlog is back under the budget the connection
// gets, per topic in the order the topics were first held back, GAP [21, topic, skipped] (if any
// was skipped) and then the held message, paced: a catch-up stops once what is queued for the
// connection (this turn's writes included) exceeds the budget and goes on at the next drain, so it
// adds at most one message to what the gateway holds. More than MAX_CONFLATED_TOPICS topics held
// back closes with 4000.
// Nothing older is sent after something newer on a topic: a message for a topic that has one held
// back always takes its place. What tells us the backlog went down, without a timer:
// - fast path (raw socket): the socket's 'drain' event (a listener added the first time the
//   connection conflates). Node emits it when its buffer empties after having reached the
//   socket's writableHighWaterMark; a backlog over a budget of at least that size has reached it.
//   With a smaller budget, the raw writes carry a completion callback instead (see rawSent).
// - ws's public API (fast paths off, or what goes through ws.send anyway): ws.send's completion
//   callback, one closure per connection, which compares ws.bufferedAmount with the budget.
// A live delivery that finds the connection under budget also catches up first.
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { CloseCode } from '../protocol/codes.js';
import { encodeBinResultHead, encodeGap } from '../protocol/messages.js';
import { SlowPolicy, type Outgoing } from '../pubsub/hub.js';
import { wsFrameHeadInPlace, wsFrameInPlace } from '../transport/frame.js';
import type { TickSettled, TickWriter } from '../transport/writer.js';
import { beforeReceiverClose, fastPathSocket, senderIdle, sharedDeflateWindowBits, type FastPaths } from '../transport/ws-internals.js';
import type { Stats } from './core.js';

/** What the outbound side needs from the gateway, fixed at construction. */
export interface OutboundContext {
  readonly stats: Stats;
  readonly log: Logger;
  readonly writer: TickWriter;
  /** outbound.maxBufferedBytes */
  readonly budget: number;
  /** compression.threshold: messages this long or longer are compressed. */
  readonly compressMin: number;
  readonly fastPaths: FastPaths;
}

export abstract class Outbound implements TickSettled {
  /** Set once a close has begun (by us or the peer); nothing more is sent or processed. */
  closing = false;
  /** Handed to the writer for the end of this tick. */
  private scheduled = false;
  /** Socket corked until the end of the tick (fast path). */
  private corked = false;
  /** Bytes handed to the socket (or to ws) during this tick: not yet offered to the kernel. */
  private tickBytes = 0;
  /** wiregate.v1.batch: messages waiting for this tick's frame, and their total size. */
  private batchParts: Uint8Array[] | null = null;
  private batchBytes = 0;
  /** Deliveries skipped under the `drop` policy since the last GAP, by topic. */
  private dropped: Map<string, number> | null = null;
  /** Under the `conflate` policy: the latest held-back message per topic, in first-held order. */
  private conflated: Map<string, Conflated> | null = null;
  /** Something is owed once under budget again (dropped or conflated is set): one check on the hot path. */
  private lagging = false;
  /** The socket's 'drain' listener is installed (fast path, on the first conflation). */
  private drainWatched = false;
  /** ws.send's completion callback (created on the first ws.send): see drained(). */
  private sent: (() => void) | undefined = undefined;
  /** Completion callback of raw writes, only when the budget is below the socket's high-water mark ('drain' may not come). */
  private readonly rawSent: (() => void) | undefined;
  /** Live deliveries held back while a recovering SUBSCRIBE reads history, by topic (null: none). */
  private held: Map<string, Held> | null = null;
  /** Raw socket for pre-framed writes (null: ws.send only). */
  private readonly sock: Socket | null;
  /** Messages this long or longer go through ws.send so ws can compress them (context takeover). */
  private readonly directMax: number;
  /** Server window bits when wiregate compresses for this connection itself (0 = it does not). */
  readonly zBits: number;
  readonly batch: boolean;

  constructor(
    readonly ws: WebSocket,
    protected readonly ctx: OutboundContext,
    batch: boolean,
  ) {
    this.batch = batch;
    let sock = ctx.fastPaths.directWrites ? fastPathSocket(ws) : null;
    const deflate = ws.extensions.includes('permessage-deflate');
    this.zBits = deflate && sock !== null ? sharedDeflateWindowBits(ws) : 0;
    this.directMax = deflate && this.zBits === 0 ? ctx.compressMin : NO_LIMIT;
    // A batch client's messages wait for the end of the tick outside the socket, while ws answers
    // a client's close frame (or a protocol error) with its own close frame at once: the batch
    // must be written first. Without that hook, no batching (sock null: ws.send only).
    if (batch && sock !== null && !(ctx.fastPaths.closeHook && beforeReceiverClose(ws, this))) sock = null;
    this.sock = sock;
    this.rawSent = sock !== null && ctx.budget < sock.writableHighWaterMark ? () => this.drained() : undefined;
  }

  /** Whether this connection writes pre-framed bytes itself (else ws.send only). */
  get directWrites(): boolean {
    return this.sock !== null;
  }

  /** Bytes the peer has not taken from earlier turns (see the file comment). */
  get backlog(): number {
    const b = this.ws.bufferedAmount - this.tickBytes;
    return b > 0 ? b : 0;
  }

  /**
   * Sends one message produced by a server encoder of protocol/messages.ts (they reserve
   * headroom for the frame header), applying the budget. Returns false if not sent.
   */
  send(msg: Uint8Array): boolean {
    const ws = this.ws;
    if (ws.readyState !== 1) return false;
    if (ws.bufferedAmount - this.tickBytes > this.ctx.budget) {
      this.slowConsumer();
      return false;
    }
    const stats = this.ctx.stats;
    stats.messagesOut++;
    stats.bytesOut += msg.length;
    this.write(msg, null);
    return true;
  }

  /**
   * Hub delivery: shared bytes, budget-checked. Over budget, `policy` decides: close the
   * connection, drop the delivery (counted for a GAP) or hold it back as its topic's latest.
   */
  deliver(out: Outgoing, policy: SlowPolicy): void {
    const ws = this.ws;
    if (ws.readyState !== 1) return;
    if (this.held !== null) {
      const h = this.held.get(out.topic);
      if (h !== undefined) {
        if (h.list.length < MAX_HELD) h.list.push(out);
        else {
          h.dropped++; // the SUBSCRIBE answer then says recovered: false, or a GAP follows (see release)
          this.ctx.stats.deliveriesDropped++;
        }
        return;
      }
    }
    if (ws.bufferedAmount - this.tickBytes > this.ctx.budget) {
      if (policy === SlowPolicy.DROP) {
        const d = (this.dropped ??= new Map());
        d.set(out.topic, (d.get(out.topic) ?? 0) + 1);
        this.lagging = true;
        this.ctx.stats.deliveriesDropped++;
        return;
      }
      if (policy === SlowPolicy.CONFLATE) return this.conflate(out);
      this.slowConsumer();
      return;
    }
    if (this.lagging && this.catchUp(out)) return;
    const stats = this.ctx.stats;
    stats.messagesOut++;
    stats.bytesOut += out.msg.length;
    this.write(out.msg, out);
  }

  /**
   * Holds live deliveries of `topic` back (a recovering SUBSCRIBE is reading history): they are
   * merged after the history by `release`.
   */
  hold(topic: string): void {
    (this.held ??= new Map()).set(topic, { list: [], dropped: 0 });
  }

  /** Live messages of a held topic that did not fit (MAX_HELD). */
  heldDropped(topic: string): number {
    return this.held?.get(topic)?.dropped ?? 0;
  }

  /**
   * Ends a hold: delivers the held messages with seq > `after` (those the history or the position
   * already covered are skipped), in order. Returns how many live messages the hold could not keep.
   */
  release(topic: string, after: number): number {
    const h = this.held?.get(topic);
    if (h === undefined) return 0;
    this.held!.delete(topic);
    if (this.held!.size === 0) this.held = null;
    for (const out of h.list) if (out.seq > after) this.deliver(out, SlowPolicy.CLOSE);
    return h.dropped;
  }

  /**
   * A large binary result without copying it: the frame header and msgpack head are written, then
   * the caller's bytes themselves (one writev with everything else corked this tick). Only on the
   * uncompressed fast path; returns false to let the caller take the copying path.
   */
  sendBinResult(id: number, bin: Uint8Array): boolean {
    const sock = this.sock;
    if (sock === null || this.directMax !== NO_LIMIT || (this.zBits !== 0 && bin.length >= this.ctx.compressMin) || !senderIdle(this.ws)) return false;
    const ws = this.ws;
    if (ws.readyState !== 1) return true;
    if (ws.bufferedAmount - this.tickBytes > this.ctx.budget) {
      this.slowConsumer();
      return true;
    }
    const head = encodeBinResultHead(id, bin.length);
    const total = head.length + bin.length;
    const stats = this.ctx.stats;
    stats.messagesOut++;
    stats.bytesOut += total;
    this.cork(sock);
    if (this.batchParts !== null) this.flushBatch();
    const h = wsFrameHeadInPlace(head, total);
    this.tickBytes += h.length + bin.length;
    sock.write(h);
    sock.write(bin, this.rawSent);
    return true;
  }

  /**
   * Heartbeat ping: a shared pre-built frame on the fast path, ws.ping() otherwise. Written
   * straight away, not corked: a ping goes to a silent connection, so there is nothing to coalesce
   * it with (if the socket is corked this tick anyway, the frame simply joins what is queued).
   */
  ping(): void {
    const sock = this.sock;
    if (sock !== null && senderIdle(this.ws)) sock.write(PING_FRAME);
    else this.ws.ping();
  }

  /** The writer's end-of-tick call: the batch goes out, the socket is uncorked, a new turn begins. */
  endTick(): void {
    this.scheduled = false;
    this.tickBytes = 0;
    if (this.corked) {
      this.corked = false;
      if (this.batchParts !== null) this.settleBatch();
      this.sock!.uncork();
    }
  }

  /** ws is about to write its own close frame (see beforeReceiverClose): the batch goes first. */
  beforeClose(): void {
    if (this.batchParts !== null) this.settleBatch();
  }

  /** Starts a close with a close frame; batched messages go before it. */
  protected closeSocket(code: number, reason: string): void {
    this.closing = true;
    if (this.batchParts !== null) this.settleBatch();
    this.ws.close(code, reason);
  }

  private slowConsumer(): void {
    if (this.closing) return;
    this.ctx.stats.slowConsumerCloses++;
    this.ctx.log.debug({ buffered: this.ws.bufferedAmount }, 'slow consumer, closing');
    // Nothing more is queued for it, so memory stays bounded. The close frame queues behind the
    // backlog; a client still reading slowly sees 4000, a stuck one is cut off after a second.
    this.closing = true;
    this.ws.close(CloseCode.SLOW_CONSUMER, 'slow consumer');
    const ws = this.ws;
    setTimeout(() => {
      if (ws.readyState !== 3) ws.terminate();
    }, 1000).unref();
  }

  /** Holds `out` back as the latest of its topic (the connection is over budget, policy CONFLATE). */
  private conflate(out: Outgoing): void {
    let m = this.conflated;
    if (m === null) {
      m = this.conflated = new Map();
      this.lagging = true;
      if (this.sock !== null && !this.drainWatched) {
        this.drainWatched = true;
        this.sock.on('drain', () => this.drained());
      }
    }
    const held = m.get(out.topic);
    if (held !== undefined) {
      held.out = out;
      held.skipped++;
      this.ctx.stats.deliveriesConflated++;
      return;
    }
    if (m.size >= MAX_CONFLATED_TOPICS) {
      // memory stays bounded: a consumer this far behind on this many topics is closed as under `close`
      this.conflated = null;
      this.lagging = this.dropped !== null;
      this.slowConsumer();
      return;
    }
    m.set(out.topic, { out, skipped: 0 });
  }

  /**
   * Under budget again with something owed (a live delivery found it so): the drop policy's GAPs,
   * then the conflated topics (paced). A delivery for a topic that has a message held back takes
   * its place instead of going out now (order per topic); returns true when `out` was taken so.
   */
  private catchUp(out: Outgoing): boolean {
    if (this.dropped !== null) this.flushGaps();
    const m = this.conflated;
    let taken = false;
    if (m !== null) {
      const held = m.get(out.topic);
      if (held !== undefined) {
        held.out = out;
        held.skipped++;
        this.ctx.stats.deliveriesConflated++;
        taken = true;
      }
      this.flushConflated(m);
    }
    this.lagging = this.conflated !== null;
    return taken;
  }

  /**
   * The socket drained or a write completed (see the file comment): a conflating connection back
   * under its budget gets what was held back. Otherwise a later drain or completion comes.
   */
  private drained(): void {
    const m = this.conflated;
    if (m === null) return;
    if (this.ws.readyState !== 1) {
      // closed or closing: nothing more is sent, the held messages are let go
      this.conflated = null;
      this.lagging = this.dropped !== null;
      return;
    }
    if (this.ws.bufferedAmount - this.tickBytes > this.ctx.budget) return;
    if (this.dropped !== null) this.flushGaps();
    this.flushConflated(m);
    this.lagging = this.conflated !== null;
  }

  /**
   * Sends what the conflate policy held back, per topic in first-held order: GAP (when messages
   * were replaced), then the latest message. Paced: it stops once what is queued for the
   * connection (socket, ws, this turn's batch), this turn's writes included, exceeds the budget;
   * the rest waits for the next drain (a newer message for a waiting topic still takes its place).
   * Callers have seen the backlog of earlier turns under the budget, so with nothing written yet
   * this turn at least one topic goes out; and what this turn wrote brings another drain or
   * completion callback, so nothing is left waiting without one.
   */
  private flushConflated(m: Map<string, Conflated>): void {
    const ws = this.ws;
    const budget = this.ctx.budget;
    const stats = this.ctx.stats;
    for (const [topic, held] of m) {
      if (ws.bufferedAmount + this.batchBytes > budget) return;
      m.delete(topic);
      if (held.skipped > 0) {
        const g = encodeGap(topic, held.skipped);
        stats.messagesOut++;
        stats.bytesOut += g.length;
        this.write(g, null);
      }
      const out = held.out;
      stats.messagesOut++;
      stats.bytesOut += out.msg.length;
      this.write(out.msg, out);
    }
    this.conflated = null;
  }

  /** Tells the client which topics lost deliveries while it was over budget. */
  private flushGaps(): void {
    const d = this.dropped!;
    this.dropped = null;
    const stats = this.ctx.stats;
    for (const [topic, n] of d) {
      const f = encodeGap(topic, n);
      stats.messagesOut++;
      stats.bytesOut += f.length;
      this.write(f, null);
    }
  }

  private cork(sock: Socket): void {
    if (!this.scheduled) {
      this.scheduled = true;
      this.ctx.writer.schedule(this);
    }
    if (!this.corked) {
      this.corked = true;
      sock.cork();
    }
  }

  /**
   * Writes one message. Fast path: a pre-framed buffer straight to the corked socket (coalesced
   * with everything else sent to this socket until the end of the tick). Fallback: ws.send, when
   * ws is compressing or queueing, or the message should be compressed by ws. `out` is the shared
   * broadcast the message belongs to (its frames are cached there), or null.
   */
  private write(msg: Uint8Array, out: Outgoing | null): void {
    const sock = this.sock;
    if (sock !== null && msg.length < this.directMax && senderIdle(this.ws)) {
      this.cork(sock);
      const compress = this.zBits !== 0 && msg.length >= this.ctx.compressMin;
      if (this.batch && !compress) {
        // wiregate.v1.batch: everything sent this tick leaves in one frame (see flushBatch)
        // (a message over the cap on its own is framed alone when the next one comes or the tick ends)
        if (this.batchParts !== null && this.batchBytes + msg.length > BATCH_MAX) this.flushBatch();
        (this.batchParts ??= []).push(msg);
        this.batchBytes += msg.length;
        return;
      }
      if (this.batchParts !== null) this.flushBatch(); // keep order with what is batched
      const w = this.ctx.writer;
      const frame = compress ? (out !== null ? w.compressed(out, this.zBits) : w.compressOne(msg, this.zBits)) : out !== null ? w.wire(out) : wsFrameInPlace(msg);
      this.tickBytes += frame.length;
      sock.write(frame, this.rawSent);
    } else {
      if (this.batchParts !== null) this.flushBatch();
      if (!this.scheduled) {
        this.scheduled = true;
        this.ctx.writer.schedule(this);
      }
      this.tickBytes += msg.length;
      this.ws.send(msg, SEND_OPTS, (this.sent ??= () => this.drained()));
    }
  }

  /**
   * Writes the messages batched this tick as one frame: their msgpack values back to back (the
   * protocol's multi-message frame), copied once into a buffer that starts with the frame header.
   */
  private flushBatch(): void {
    const parts = this.batchParts!;
    const total = this.batchBytes;
    this.batchParts = null;
    this.batchBytes = 0;
    let frame: Buffer;
    if (parts.length === 1) frame = wsFrameInPlace(parts[0]);
    else {
      const h = total < 126 ? 2 : total < 65536 ? 4 : 10;
      const buf = Buffer.allocUnsafe(h + total);
      let p = h;
      for (const m of parts) {
        buf.set(m, p);
        p += m.length;
      }
      frame = wsFrameInPlace(buf.subarray(h));
    }
    this.tickBytes += frame.length;
    this.sock!.write(frame, this.rawSent);
  }

  /**
   * Writes the batch while the connection is open. Once it is closing without close() (a
   * slow-consumer close, ws answering the peer) a close frame is out and nothing may follow it:
   * the batch is dropped.
   */
  private settleBatch(): void {
    if (this.ws.readyState === 1) return this.flushBatch();
    this.batchParts = null;
    this.batchBytes = 0;
  }
}

/** A topic's message held back under the conflate policy, and how many older ones it replaced. */
interface Conflated {
  out: Outgoing;
  skipped: number;
}

/**
 * Most topics with a message held back per connection under the conflate policy; one more closes
 * the connection with 4000. With at most one (shared, never copied) message per topic, what a
 * conflating connection pins is bounded by this many messages.
 */
export const MAX_CONFLATED_TOPICS = 4096;
const SEND_OPTS = { binary: true } as const;
interface Held {
  list: Outgoing[];
  dropped: number;
}

/** Most live deliveries held per topic while a recovery reads history. */
const MAX_HELD = 10_000;
/** directMax when every size may take the direct path (a small integer, unlike Infinity, is stored inline). */
const NO_LIMIT = 0x3fffffff;
/** Largest batched frame payload: more messages in a tick start another frame. */
const BATCH_MAX = 64 * 1024;
/** FIN + ping opcode, empty payload (servers never mask). */
const PING_FRAME = Buffer.from([0x89, 0x00]);
