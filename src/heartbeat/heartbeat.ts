// Liveness for every connection from ONE shared timer. Each connection stores two numbers
// (lastActivity, pingAt) stamped with a coarse clock that only the timer advances, so marking
// activity on the hot path is a single field write and no connection owns a timer.

export interface Beating {
  /** Coarse time of the last inbound frame (message, pong or ping). */
  lastActivity: number;
  /** Coarse time the outstanding ping was sent; 0 when none is outstanding. */
  pingAt: number;
}

export interface HeartbeatOptions<T extends Beating> {
  /** Silence (ms) after which a connection is pinged. */
  interval: number;
  /** Time (ms) to wait for any inbound frame after a ping. */
  timeout: number;
  ping(conn: T): void;
  dead(conn: T): void;
  /** Clock, for tests. */
  now?: () => number;
}

export class Heartbeat<T extends Beating> {
  /** The coarse clock: advanced once per tick. Read it to stamp activity. */
  now: number;
  readonly tickMs: number;
  pings = 0;
  terminations = 0;
  private timer: ReturnType<typeof setInterval> | null = null;
  private readonly clock: () => number;

  constructor(
    private readonly conns: Iterable<T>,
    private readonly opts: HeartbeatOptions<T>,
  ) {
    // whole milliseconds: a small integer is stored inline in every connection's fields, where a
    // fractional clock value would be a separate 16-byte heap number per connection
    this.clock = opts.now ?? (() => Math.floor(performance.now()) + 1);
    this.now = this.clock();
    // Tick often enough that pings and timeouts fire within ~25% of their nominal time.
    this.tickMs = Math.max(5, Math.floor(Math.min(opts.interval, opts.timeout) / 4));
  }

  start(): void {
    if (this.timer || this.opts.interval <= 0) return;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One sweep. Public for tests and for callers that drive their own clock. */
  tick(): void {
    const now = (this.now = this.clock());
    const { interval, timeout } = this.opts;
    for (const c of this.conns) {
      if (c.pingAt !== 0) {
        // Any frame after the ping proves liveness (activity stamped with this.now >= pingAt).
        if (c.lastActivity >= c.pingAt) c.pingAt = 0;
        else {
          if (now - c.pingAt >= timeout) {
            this.terminations++;
            this.opts.dead(c);
          }
          continue;
        }
      }
      if (now - c.lastActivity >= interval) {
        c.pingAt = now;
        this.pings++;
        this.opts.ping(c);
      }
    }
  }
}
