/**
 * Token bucket that may go into debt: a message that arrives when the bucket is empty is still
 * taken (it was already read off the socket) and the debt tells the caller how long to pause
 * reading so the average rate holds.
 */
export class TokenBucket {
  tokens: number;
  private last: number;

  constructor(
    readonly rate: number,
    readonly burst: number,
    now = performance.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes `n` tokens; returns the milliseconds to wait until the bucket is out of debt (0 = fine). */
  take(n: number, now = performance.now()): number {
    const elapsed = now - this.last;
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rate;
  }
}
