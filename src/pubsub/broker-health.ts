// Whether the broker can be used right now. A network broker reports losing and regaining its
// connection (BrokerStatusListener); a broker that keeps the connection but stops answering is
// found by a ping every `timeout / 3` ms that must be answered within `timeout` ms. While the broker
// is down, the hub refuses what needs it with BROKER_UNAVAILABLE (hub.up = false), /readyz is 503,
// and local connections stay open. The memory broker has no ping and never reports: always up.
import type { Logger } from 'pino';
import type { PresenceListener } from './broker.js';
import type { Hub } from './hub.js';

export interface BrokerHealthOptions {
  /** How long start() keeps retrying an unreachable broker, in ms (0: one attempt). */
  startTimeout: number;
  /** A ping unanswered for this long (ms) marks the broker down; 0 turns the stall check off. */
  timeout: number;
  log: Logger;
  /** Called on every change, after hub.up was set; `forMs`: how long the previous state lasted. */
  onChange(up: boolean, reason: string, forMs: number): void;
}

export class BrokerHealth {
  /** Why the broker is down ('' while up). */
  reason = '';
  /** When `up` last changed (ms since the epoch). */
  since = Date.now();
  /** The broker's own report: it has a connection (pings may still be unanswered). */
  private connected = true;
  private pingSent = 0;
  private pinging = false;
  private timer: ReturnType<typeof setInterval> | null = null;
  private stopped = false;

  constructor(
    private readonly hub: Hub,
    private readonly opts: BrokerHealthOptions,
  ) {}

  get up(): boolean {
    return this.hub.up;
  }

  /** Starts the broker, retrying with backoff for up to `startTimeout` ms; then watches it. */
  async start(onPresence: PresenceListener): Promise<void> {
    const deadline = Date.now() + this.opts.startTimeout;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.hub.start(onPresence, (connected, reason) => this.report(connected, reason));
        break;
      } catch (err) {
        const left = deadline - Date.now();
        if (left <= 0 || this.stopped) throw err;
        const wait = Math.min(left, Math.round(Math.min(5000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2)));
        this.opts.log.warn({ attempt: attempt + 1, retryInMs: wait }, `broker not reachable yet: ${err instanceof Error ? err.message : String(err)}`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
    if (this.hub.broker.ping !== undefined && this.opts.timeout > 0) {
      this.timer = setInterval(() => this.check(), Math.max(50, Math.floor(this.opts.timeout / 3)));
      this.timer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private report(connected: boolean, reason: string): void {
    if (this.stopped) return;
    this.connected = connected;
    if (!connected) this.set(false, reason);
    else if (this.hub.broker.ping === undefined || this.opts.timeout <= 0) this.set(true, '');
    else this.probe();
  }

  private check(): void {
    if (!this.pinging) return this.probe();
    if (Date.now() - this.pingSent >= this.opts.timeout) this.set(false, `stalled: no answer to a ping within ${this.opts.timeout} ms`);
  }

  private probe(): void {
    if (this.pinging || this.stopped) return;
    this.pinging = true;
    this.pingSent = Date.now();
    this.hub.broker.ping!().then(
      () => {
        this.pinging = false;
        if (this.connected) this.set(true, '');
      },
      (err: unknown) => {
        this.pinging = false;
        this.set(false, `ping failed: ${err instanceof Error ? err.message : String(err)}`);
      },
    );
  }

  private set(up: boolean, reason: string): void {
    if (this.stopped || up === this.hub.up) {
      if (!up) this.reason = reason;
      return;
    }
    const now = Date.now();
    const lasted = now - this.since;
    this.hub.up = up;
    this.reason = up ? '' : reason;
    this.since = now;
    this.opts.onChange(up, reason, lasted);
  }
}
