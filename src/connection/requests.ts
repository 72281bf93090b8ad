// Request timeouts for every connection from ONE timer. Every request gets the same timeout, so
// deadlines arrive in the order requests started: pending requests form a list in deadline order,
// a settled request unlinks itself in O(1), and a single timer is armed for the oldest deadline.
// (Before: a setTimeout per asynchronous request.)

export class PendingRequest {
  prev: PendingRequest | null = null;
  next: PendingRequest | null = null;
  /** False once settled or timed out: at most one answer per request. */
  live = true;
  constructor(
    readonly deadline: number,
    readonly onTimeout: () => void,
  ) {}
}

export class RequestTimer {
  private head: PendingRequest | null = null;
  private tail: PendingRequest | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private size = 0;

  constructor(
    /** Milliseconds a request may take. */
    readonly timeout: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Pending requests (for tests and metrics). */
  get pending(): number {
    return this.size;
  }

  /** Starts the clock for one request; `onTimeout` runs once if it has not settled in time. */
  start(onTimeout: () => void): PendingRequest {
    const r = new PendingRequest(this.now() + this.timeout, onTimeout);
    if (this.tail === null) this.head = this.tail = r;
    else {
      r.prev = this.tail;
      this.tail.next = r;
      this.tail = r;
    }
    this.size++;
    if (this.timer === null) this.arm(r.deadline);
    return r;
  }

  /** Marks `r` settled. Returns false if it had already timed out (then do not answer). */
  settle(r: PendingRequest): boolean {
    if (!r.live) return false;
    r.live = false;
    this.unlink(r);
    return true;
  }

  /** Cancels every pending request (gateway shutdown). */
  clear(): void {
    for (let r = this.head; r !== null; r = r.next) r.live = false;
    this.head = this.tail = null;
    this.size = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private unlink(r: PendingRequest): void {
    if (r.prev !== null) r.prev.next = r.next;
    else this.head = r.next;
    if (r.next !== null) r.next.prev = r.prev;
    else this.tail = r.prev;
    r.prev = r.next = null;
    this.size--;
    // The timer stays armed for an earlier deadline: it fires, finds nothing due, re-arms.
  }

  private arm(deadline: number): void {
    this.timer = setTimeout(this.fire, Math.max(0, Math.ceil(deadline - this.now())));
    this.timer.unref();
  }

  private readonly fire = (): void => {
    this.timer = null;
    const now = this.now();
    let r = this.head;
    while (r !== null && r.deadline <= now) {
      const next = r.next;
      r.live = false;
      this.unlink(r);
      r.onTimeout();
      r = next;
    }
    if (this.head !== null && this.timer === null) this.arm(this.head.deadline);
  };
}
