/**
 * Token bucket. `take` may run into debt: a message that arrives when the bucket is empty was
 * already read off the socket, and the debt says how long the caller must wait (pause reading)
 * for the average rate to hold.
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

  /** Adds the tokens earned since the last call; returns the balance (negative = in debt). */
  refill(now = performance.now()): number {
    const elapsed = now - this.last;
    this.last = now;
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.rate) / 1000);
    return this.tokens;
  }

  /** Takes `n` tokens; returns the milliseconds to wait until the bucket is out of debt (0 = fine). */
  take(n: number, now = performance.now()): number {
    this.refill(now);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : this.wait();
  }

  /** Milliseconds until the balance is positive again (0 when it is). */
  wait(): number {
    return this.tokens > 0 ? 0 : ((-this.tokens + 1e-6) * 1000) / this.rate;
  }

  /** Whether the bucket has refilled completely. */
  get full(): boolean {
    return this.tokens >= this.burst;
  }
}
