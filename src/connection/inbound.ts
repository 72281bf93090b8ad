// Inbound rate limits of one connection: a message bucket and a byte bucket. Messages are counted,
// not frames (100 messages packed in one frame cost 100 tokens), and the limit is enforced by
// pausing the socket, so the kernel's TCP window pushes back on the sender:
//
//  - a frame is processed when both buckets are positive; its messages and bytes are then taken,
//    possibly running the buckets into debt (the frame was already read);
//  - while a bucket is in debt, frames are held (those ws had already read when the socket was
//    paused: at most one read's worth) and the socket is paused until the debt is repaid;
//  - a connection that stays over its rate - paused, and its buckets never back to full - for
//    longer than `limits.rateLimitGrace` is closed with 4001.
//
// The processed rate is therefore the configured rate (plus one frame of burst), never more.

import type { WebSocket } from 'ws';
import { TokenBucket } from './rate.js';
import type { Stats } from './core.js';

export interface ThrottleLimits {
  messageRate: number;
  messageBurst: number;
  byteRate: number;
  byteBurst: number;
  rateLimitGrace: number;
}

/** The session side of a throttle: processes one frame (returns its message count) or closes. */
export interface Throttled {
  readonly ws: WebSocket;
  readonly closing: boolean;
  processFrame(data: Buffer): number;
  rateLimited(): void;
}

export function throttleEnabled(l: ThrottleLimits): boolean {
  return l.messageRate > 0 || l.byteRate > 0;
}

export class InboundThrottle {
  private readonly msgs: TokenBucket | null;
  private readonly bytes: TokenBucket | null;
  /** Frames waiting for the buckets, in arrival order (null: none). */
  private held: Buffer[] | null = null;
  /** Start of the current over-rate episode (0: none). */
  private since = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly owner: Throttled,
    private readonly limits: ThrottleLimits,
    private readonly stats: Stats,
  ) {
    this.msgs = limits.messageRate > 0 ? new TokenBucket(limits.messageRate, limits.messageBurst) : null;
    this.bytes = limits.byteRate > 0 ? new TokenBucket(limits.byteRate, limits.byteBurst) : null;
  }

  /** A frame arrived from ws. */
  frame(data: Buffer): void {
    if (this.held !== null) {
      this.held.push(data);
      return;
    }
    if (!this.positive()) {
      this.held = [data];
      return this.pause();
    }
    this.process(data);
    if (this.inDebt() && !this.owner.closing) {
      this.held = [];
      this.pause();
    }
  }

  /** Stops the timer (connection closed). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.held = null;
  }

  /** Refills both buckets; true when both are positive (a frame may be processed). */
  private positive(): boolean {
    const now = performance.now();
    const m = this.msgs;
    const b = this.bytes;
    if ((m !== null && m.refill(now) <= 0) || (b !== null && b.refill(now) <= 0)) return false;
    // back to full: the over-rate episode is over
    if (this.since !== 0 && (m === null || m.full) && (b === null || b.full)) this.since = 0;
    return true;
  }

  private inDebt(): boolean {
    return (this.msgs !== null && this.msgs.tokens < 0) || (this.bytes !== null && this.bytes.tokens < 0);
  }

  /** Processes one frame and charges its messages and bytes (possibly into debt). */
  private process(data: Buffer): void {
    const n = this.owner.processFrame(data);
    if (this.msgs !== null) this.msgs.tokens -= n;
    if (this.bytes !== null) this.bytes.tokens -= data.length;
  }

  private pause(): void {
    const now = performance.now();
    if (this.since === 0) this.since = now;
    else if (now - this.since > this.limits.rateLimitGrace) {
      this.stop();
      this.stats.rateLimitCloses++;
      this.owner.rateLimited();
      return;
    }
    const ws = this.owner.ws;
    if (!ws.isPaused) {
      this.stats.rateLimitPauses++;
      ws.pause();
    }
    const wait = Math.max(this.msgs?.wait() ?? 0, this.bytes?.wait() ?? 0);
    this.timer = setTimeout(this.drain, Math.max(1, Math.ceil(wait)));
    this.timer.unref();
  }

  private readonly drain = (): void => {
    this.timer = null;
    const held = this.held;
    if (held === null || this.owner.closing) return;
    while (held.length > 0) {
      if (!this.positive()) return this.pause();
      this.process(held.shift()!);
      if (this.owner.closing) return this.stop();
    }
    if (!this.positive() || this.inDebt()) return this.pause();
    this.held = null;
    const ws = this.owner.ws;
    if (ws.isPaused && ws.readyState === 1) ws.resume();
  };
}
