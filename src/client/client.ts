// WiregateClient: the wiregate.v1 client for browsers and Node. Platform-neutral: no `node:`
// imports; the WebSocket constructor is injected (index.ts passes `ws` in Node, browser.ts leaves
// globalThis.WebSocket). docs/client.md describes the behaviour, docs/protocol.md the wire.
import { MAX_ID, MsgType, SUBPROTOCOL, SUBPROTOCOL_BATCH, decodeFrame, encode } from '../protocol/messages.js';
import { topicError, topicMatches, isPattern } from '../protocol/topic.js';
import { ClientError } from './errors.js';
import { backoffDelay, closeAction, refusalAction, tokenExpiry } from './policy.js';
import type { ClientEvents, ClientOptions, ClientState, Message, PresenceEntry, SocketConstructor, SocketLike, StreamPosition, SubscribeOptions, Subscription } from './types.js';

const PROTOCOLS = [SUBPROTOCOL_BATCH, SUBPROTOCOL];
/** Client-side topic checks look at the syntax only: length and level limits are the server's to set. */
const NO_LIMITS = { maxLength: Infinity, maxLevels: Infinity };
/** Messages written in one turn share a frame up to this size (the server's maxPayload defaults to 64 KiB). */
const FRAME_BYTES = 16 * 1024;
/** A connection that lasted this long resets the backoff (a server that accepts and drops at once does not). */
const STABLE_MS = 5000;
const OPEN = 1;
/** Topics a wildcard subscription remembers for its duplicate check (about 100 bytes each). */
const SEEN_MAX = 10_000;

type Listener = (e: unknown) => void;

/** One message waiting for its RESULT / ERROR (or, unsent, for a connection). */
interface Call {
  id: number;
  /** What to send; null for a SUBSCRIBE, whose message is built when it is sent. */
  msg: unknown[] | null;
  ok(result: unknown): void;
  fail(err: ClientError): void;
  /** Wall-clock deadline (Infinity: none yet: queued publishes start their timeout when sent). */
  deadline: number;
  timeout: number;
  sent: boolean;
  /** Sent again after a reconnect if it was in flight (reads, subscribes); otherwise DISCONNECTED. */
  resend: boolean;
  /** subscribe(): the subscription this call confirms. */
  sub?: Sub;
}

class Sub implements Subscription {
  readonly exact: boolean;
  epoch: string | undefined;
  /** Exact topics: the stream position the client has (the resume point). */
  pos = 0;
  /** Per topic: the highest seq handed to the handler (drops repeats and anything older). */
  readonly seen = new Map<string, number>();
  /** The subscribe() call until the server first confirms it. */
  call: Call | null = null;
  /** While a broker GAP is being filled from history: the live messages that arrived meanwhile. */
  hold: Array<[topic: string, seq: number, payload: unknown, flags: number]> | null = null;
  active = true;

  constructor(
    private readonly client: WiregateClient,
    readonly pattern: string,
    readonly handler: (m: Message) => void,
    readonly opts: SubscribeOptions,
  ) {
    this.exact = !isPattern(pattern);
    if (opts.since !== undefined) {
      this.epoch = opts.since.epoch;
      this.pos = opts.since.seq;
    }
  }

  get position(): StreamPosition | null {
    return this.epoch === undefined ? null : { seq: this.pos, epoch: this.epoch };
  }

  unsubscribe(): Promise<void> {
    return this.client.unsubscribeSub(this);
  }

  /** Applies a SUBSCRIBE RESULT; returns `recovered`. */
  result(r: unknown): boolean {
    const p = r as { seq?: unknown; epoch?: unknown; recovered?: unknown } | undefined;
    if (typeof p !== 'object' || p === null || typeof p.epoch !== 'string' || typeof p.seq !== 'number') {
      // no position (a wildcard, or a topic without history): nothing to resume from later
      this.epoch = undefined;
      this.pos = 0;
      return false;
    }
    if (p.recovered === true) return true; // pos is since.seq: the missed messages follow
    if (p.epoch !== this.epoch) this.seen.clear(); // a new stream: its numbers start again
    this.epoch = p.epoch;
    this.pos = p.seq;
    return false;
  }

  /** A MESSAGE whose topic matches: hands it to the handler unless this subscription has it already. */
  offer(topic: string, seq: number, payload: unknown, flags: number): Message | null {
    const retained = flags === 1;
    const recovered = flags === 2;
    // replays belong to the exact-topic subscription that asked; retained values only to those that want them
    if ((recovered && topic !== this.pattern) || (retained && this.opts.retained === false)) return null;
    if (seq <= (this.seen.get(topic) ?? 0)) return null;
    if (!retained && this.exact) {
      if (seq <= this.pos) return null;
      this.pos = seq;
    }
    if (!this.exact) {
      // most recently seen last; a wildcard over very many topics forgets the least recent ones
      this.seen.delete(topic);
      if (this.seen.size >= SEEN_MAX) this.seen.delete(this.seen.keys().next().value!);
    }
    this.seen.set(topic, seq);
    const m: Message = { topic, payload, seq, retained, recovered };
    if (this.epoch !== undefined) m.epoch = this.epoch;
    return m;
  }
}

export class WiregateClient {
  private _state: ClientState = 'idle';
  private readonly WS: SocketConstructor;
  private readonly requestTimeout: number;
  private readonly backoff: { initialDelay: number; maxDelay: number; maxAttempts: number } | null;
  private readonly pingCfg: { interval: number; timeout: number } | null;
  private readonly queueMax: number;
  private readonly listeners: Record<string, Listener[] | undefined> = {};

  private sock: SocketLike | null = null;
  /** Bumped whenever the connection attempt in progress is abandoned; async steps check it. */
  private gen = 0;
  private everConnected = false;
  private openedAt = 0;
  /** Consecutive attempts since the last stable connection. */
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private connectWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  /** The HTTP answer that refused the current upgrade (a platform layer reports it: Node does, browsers cannot). */
  private refusal: { status: number; retryAfter: number; error: string } | null = null;

  private token: string | undefined;
  private tokenStale = false;
  private tokenFetch: Promise<string> | null = null;
  /** An auth failure (401, 4501) led to a token refresh; another one before a stable connection is terminal. */
  private authStrike = false;
  private refreshAt = 0;

  private nextId = 0;
  private readonly pending = new Map<number, Call>();
  /** While disconnected: publishes (fire-and-forget messages or Calls) and waiting calls, in order. */
  private outbox: Array<Call | unknown[]> = [];
  private queued = 0;
  private readonly subs = new Map<string, Sub>();
  private round = 0;

  private wbuf: Uint8Array[] = [];
  private wlen = 0;
  private wscheduled = false;

  private lastRx = 0;
  private pingDeadline = 0;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;

  constructor(
    readonly url: string,
    protected readonly options: ClientOptions = {},
  ) {
    const WS = (options.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket) as SocketConstructor | undefined;
    if (typeof WS !== 'function') throw new TypeError('no WebSocket implementation: pass options.WebSocket');
    this.WS = WS;
    this.token = options.token;
    this.requestTimeout = options.requestTimeout ?? 10_000;
    const r = options.reconnect;
    this.backoff = r === false ? null : { initialDelay: r?.initialDelay ?? 500, maxDelay: r?.maxDelay ?? 20_000, maxAttempts: r?.maxAttempts ?? Infinity };
    const p = options.ping;
    this.pingCfg = p === false ? null : { interval: p?.interval ?? 15_000, timeout: p?.timeout ?? 10_000 };
    this.queueMax = options.offlineQueue?.max ?? 1000;
  }

  get state(): ClientState {
    return this._state;
  }

  // ---- events ---------------------------------------------------------------------------------

  on<K extends keyof ClientEvents>(event: K, l: (e: ClientEvents[K]) => void): this {
    (this.listeners[event] ??= []).push(l as Listener);
    return this;
  }

  off(event: string, l: Function): this {
    const ls = this.listeners[event];
    const i = ls === undefined ? -1 : ls.indexOf(l as Listener);
    if (i !== -1) ls!.splice(i, 1);
    return this;
  }

  private emit<K extends keyof ClientEvents>(event: K, e: ClientEvents[K]): void {
    const ls = this.listeners[event];
    if (event === 'error' && (ls === undefined || ls.length === 0)) {
      console.warn('wiregate client:', e); // nobody listens: do not lose it silently
      return;
    }
    for (const l of ls === undefined ? [] : [...ls]) {
      try {
        (l as (e: ClientEvents[K]) => void)(e);
      } catch (err) {
        if (event !== 'error') this.emit('error', err as Error);
      }
    }
  }

  // ---- connection lifecycle ---------------------------------------------------------------------

  /** Resolves once connected; rejects when the client closes (terminal close code, auth failure, close()). */
  connect(): Promise<void> {
    if (this._state === 'connected') return Promise.resolve();
    if (this._state === 'closed') return Promise.reject(new ClientError('CLOSED', 'client is closed'));
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this._state === 'idle' || (this._state === 'disconnected' && this.retryTimer === null)) {
      (globalThis as { addEventListener?: (t: string, l: () => void) => void }).addEventListener?.('online', this.onOnline);
      this.attempt = 0;
      this.schedule(0);
    }
    return p;
  }

  /** Closes with 1000 for good: pending calls and queued publishes fail with CLOSED. */
  close(): Promise<void> {
    if (this._state === 'closed') return Promise.resolve();
    const wasConnected = this._state === 'connected';
    // what this turn wrote (a publish without ack just before close()) still goes out, before the close frame
    if (wasConnected) this.flush();
    const sock = this.stop(new ClientError('CLOSED', 'client closed'));
    if (wasConnected) this.emit('disconnected', { code: 1000, reason: 'client closed', reconnect: false });
    if (sock === null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const safety = setTimeout(() => {
        sock.terminate?.();
        resolve();
      }, 2000);
      sock.onclose = () => {
        clearTimeout(safety);
        resolve();
      };
      try {
        sock.close(1000, 'client closed');
      } catch {
        sock.terminate?.();
      }
    });
  }

  /** Terminal: the client will not connect again. Returns the socket still to be closed, if any. */
  private stop(err: ClientError): SocketLike | null {
    this._state = 'closed';
    this.gen++;
    (globalThis as { removeEventListener?: (t: string, l: () => void) => void }).removeEventListener?.('online', this.onOnline);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.timer !== null) clearTimeout(this.timer);
    this.retryTimer = this.timer = null;
    this.timerAt = Infinity;
    const sock = this.detach();
    for (const c of [...this.pending.values()]) this.settle(c, err);
    for (const item of this.outbox) if (!Array.isArray(item)) this.settle(item, err);
    this.outbox = [];
    this.queued = 0;
    this.failConnect(err);
    return sock;
  }

  private failConnect(err: Error): void {
    const ws = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of ws) w.reject(err);
  }

  /** Waits `delay` (0: at once), then opens a socket (getting a token first when needed). */
  private schedule(delay: number): void {
    this.attempt++;
    this._state = 'connecting';
    this.emit('connecting', { attempt: this.attempt, delay });
    const gen = ++this.gen;
    const go = () => {
      this.retryTimer = null;
      if (gen === this.gen) void this.attemptNow(gen);
    };
    if (delay <= 0) go();
    else this.retryTimer = setTimeout(go, delay);
  }

  private async attemptNow(gen: number): Promise<void> {
    const exp = this.token === undefined ? null : tokenExpiry(this.token);
    if (this.options.getToken !== undefined && (this.token === undefined || this.tokenStale || (exp !== null && exp <= Date.now() + 1000))) {
      try {
        await this.fetchToken();
      } catch (err) {
        if (gen !== this.gen) return;
        this.emit('error', err as Error);
        return this.retry(0);
      }
      if (gen !== this.gen) return;
    }
    let sock: SocketLike;
    try {
      sock = this.createSocket(this.url, PROTOCOLS, this.token);
    } catch (err) {
      // a malformed URL: no attempt can succeed
      this.stop(new ClientError('CLOSED', `cannot connect: ${(err as Error).message}`));
      return;
    }
    this.sock = sock;
    this.refusal = null;
    sock.onopen = () => this.sock === sock && this.onOpen(sock);
    sock.onmessage = (e) => this.sock === sock && this.onData(e.data);
    sock.onclose = (e) => this.sock === sock && this.onClose(e.code, e.reason);
    sock.onerror = () => {}; // a close follows
  }

  /** Opens the WebSocket; the token travels as a `bearer.<jwt>` subprotocol entry (the one way browsers can send it). */
  protected createSocket(url: string, protocols: string[], token: string | undefined): SocketLike {
    const sock = new this.WS(url, token === undefined ? protocols : [...protocols, `bearer.${token}`]);
    sock.binaryType = 'arraybuffer';
    return sock;
  }

  /** For platform layers: the upgrade of `sock` was refused with this HTTP answer (its close follows). */
  protected refused(sock: SocketLike, refusal: { status: number; retryAfter: number; error: string }): void {
    if (this.sock === sock) this.refusal = refusal;
  }

  /**
   * Waits the backoff delay (plus a Retry-After the server asked for), or gives up after maxAttempts.
   * `attempt` counts the attempts since the last stable connection, so the n-th waits up to
   * initialDelay * 2^(n-1).
   */
  private retry(minDelay: number): void {
    const b = this.backoff;
    if (b === null) {
      this._state = 'disconnected';
      this.failConnect(new ClientError('DISCONNECTED', 'could not connect (reconnect: false)'));
      return;
    }
    if (this.attempt >= b.maxAttempts) {
      const err = new ClientError('DISCONNECTED', `gave up after ${this.attempt} attempts`);
      this._state = 'disconnected';
      this.failAll(err);
      this.failConnect(err);
      this.emit('error', err);
      return;
    }
    this.schedule(minDelay + backoffDelay(this.attempt, b.initialDelay, b.maxDelay));
  }

  private onOnline = (): void => {
    // the browser says the network is back: retry now instead of sleeping out the backoff
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.attempt--;
      this.schedule(0);
    } else if (this._state === 'connected' && this.pingCfg !== null && this.pingDeadline === 0) this.ping(Date.now());
  };

  private onOpen(sock: SocketLike): void {
    const now = Date.now();
    this._state = 'connected';
    this.openedAt = this.lastRx = now;
    this.pingDeadline = 0;
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.emit('connected', { protocol: sock.protocol, reconnected });
    const ws = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of ws) w.resolve();
    if (this.sock !== sock) return; // a listener closed it
    this.resubscribe();
    // what waited for the connection, in the order it was asked
    const out = this.outbox;
    this.outbox = [];
    this.queued = 0;
    for (const item of out) {
      if (Array.isArray(item)) this.write(item);
      else if (this.pending.get(item.id) === item) this.send(item, now);
    }
    for (const c of this.pending.values()) if (!c.sent && c.msg !== null) this.send(c, now); // reads in flight at the last disconnect
    if (this.pingCfg !== null) this.arm(now + this.pingCfg.interval);
    this.scheduleRefresh(this.token === undefined ? null : tokenExpiry(this.token));
  }

  private onClose(code: number, reason: string): void {
    const wasOpen = this._state === 'connected';
    const now = Date.now();
    this.detach();
    const refusal = this.refusal;
    this.refusal = null;
    // in-flight calls: reads and subscribes are sent again after the reconnect, the rest cannot be
    for (const c of [...this.pending.values()]) {
      if (!c.sent) continue;
      c.sent = false;
      if (!c.resend) this.settle(c, new ClientError('DISCONNECTED', 'connection lost before the answer'));
    }
    this.refreshAt = 0;
    if (wasOpen && now - this.openedAt >= STABLE_MS && code !== 4000 && code !== 4001) {
      this.attempt = 0; // a stable connection ended: start the backoff again (not when told to slow down)
      this.authStrike = false;
    }
    let action = closeAction(code);
    let wait = 0;
    let why = `closed with ${code}${reason ? ` (${reason})` : ''}`;
    if (refusal !== null) {
      const s = refusal.status;
      why = `upgrade refused: HTTP ${s}${refusal.error ? ` ${refusal.error}` : ''}`;
      action = refusalAction(s);
      wait = refusal.retryAfter;
    }
    if (action === 'refresh') {
      // 4002 is routine (the token ran out); 401 and 4501 say the token is bad: one fresh token may fix that, two never
      const authFailure = code !== 4002 || refusal !== null;
      if (this.options.getToken === undefined || (authFailure && this.authStrike)) action = 'terminal';
      else {
        if (authFailure) this.authStrike = true;
        this.tokenStale = true;
      }
    }
    const reconnect = action !== 'terminal' && this.backoff !== null;
    if (wasOpen || !reconnect) this.emit('disconnected', { code, reason: refusal === null ? reason : why, reconnect });
    if (this._state === 'closed') return; // a listener closed the client
    if (action === 'terminal') {
      this.stop(new ClientError('CLOSED', why, { closeCode: code, status: refusal?.status }));
      return;
    }
    this._state = 'disconnected';
    if (reconnect) this.retry(wait);
    else {
      const err = new ClientError('DISCONNECTED', why, { closeCode: code, status: refusal?.status });
      this.failConnect(err);
    }
  }

  /** Forgets the current socket (its late events are ignored) and returns it. */
  private detach(): SocketLike | null {
    const sock = this.sock;
    this.sock = null;
    this.wbuf = [];
    this.wlen = 0;
    this.pingDeadline = 0;
    if (sock !== null) {
      sock.onopen = sock.onmessage = sock.onclose = null;
      sock.onerror = () => {};
    }
    return sock;
  }

  /** The link is dead (no PONG) or the server broke the protocol: drop the socket, reconnect. */
  private dropLink(reason: string): void {
    const sock = this.detach();
    if (sock === null) return;
    if (sock.terminate !== undefined) sock.terminate();
    else sock.close();
    this.onClose(1006, reason);
  }

  // ---- writing ----------------------------------------------------------------------------------

  /** Queues a message for this turn's frame (several messages per frame, up to FRAME_BYTES). */
  private write(msg: unknown[]): void {
    const b = encode(msg);
    if (this.wlen > 0 && this.wlen + b.length > FRAME_BYTES) this.flush();
    this.wbuf.push(b);
    this.wlen += b.length;
    if (!this.wscheduled) {
      this.wscheduled = true;
      queueMicrotask(this.flush);
    }
  }

  private flush = (): void => {
    this.wscheduled = false;
    const bufs = this.wbuf;
    if (bufs.length === 0) return;
    let frame = bufs[0];
    if (bufs.length > 1) {
      frame = new Uint8Array(this.wlen);
      let p = 0;
      for (const b of bufs) {
        frame.set(b, p);
        p += b.length;
      }
    }
    this.wbuf = [];
    this.wlen = 0;
    const sock = this.sock;
    if (sock !== null && sock.readyState === OPEN) sock.send(frame);
  };

  private get writable(): boolean {
    return this._state === 'connected' && this.sock !== null;
  }

  private send(c: Call, now: number): void {
    c.sent = true;
    if (c.deadline === Infinity) {
      c.deadline = now + c.timeout;
      this.arm(c.deadline);
    }
    this.write(c.msg!);
  }

  private id(): number {
    do this.nextId = this.nextId >= MAX_ID ? 1 : this.nextId + 1;
    while (this.pending.has(this.nextId));
    return this.nextId;
  }

  /** Sends `msg` (id in position 1) now or once connected; settles with its RESULT or ERROR. */
  private call(msg: unknown[], timeout: number, resend: boolean, queue = false): Promise<unknown> {
    if (this._state === 'closed') return Promise.reject(new ClientError('CLOSED', 'client is closed'));
    return new Promise<unknown>((ok, fail) => {
      const now = Date.now();
      const c: Call = { id: msg[1] as number, msg, ok, fail, deadline: queue && !this.writable ? Infinity : now + timeout, timeout, sent: false, resend };
      if (queue && !this.writable) {
        if (this.queued >= this.queueMax) return fail(new ClientError('QUEUE_FULL', `offline queue is full (${this.queueMax} publishes)`));
        this.queued++;
      }
      this.pending.set(c.id, c);
      this.arm(c.deadline);
      if (this.writable) this.send(c, now);
      else this.outbox.push(c);
    });
  }

  private settle(c: Call, err: ClientError | null, result?: unknown): void {
    if (this.pending.get(c.id) === c) this.pending.delete(c.id);
    if (err === null) c.ok(result);
    else c.fail(err);
  }

  /** Fails everything waiting (the client gave up reconnecting); subscriptions stay for a later connect(). */
  private failAll(err: ClientError): void {
    for (const c of [...this.pending.values()]) this.settle(c, err);
    for (const item of this.outbox) if (!Array.isArray(item)) this.settle(item, err);
    this.outbox = [];
    this.queued = 0;
  }

  // ---- the one timer: liveness, call deadlines, token refresh -----------------------------------

  /** Makes the timer fire no later than `at` (wall clock). */
  private arm(at: number): void {
    if (at >= this.timerAt || at === Infinity) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.max(0, at - Date.now()));
  }

  /**
   * Every deadline is a wall-clock time compared with Date.now() whenever the timer fires: a timer
   * that fires late (a throttled background tab, a suspended laptop) finds the dead link and every
   * expired call at once, instead of starting a new wait.
   */
  private onTimer = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    const now = Date.now();
    let next = Infinity;
    const ping = this.pingCfg;
    if (ping !== null && this._state === 'connected') {
      if (this.pingDeadline !== 0 && now >= this.pingDeadline) this.dropLink('ping timeout');
      else if (this.pingDeadline === 0 && now - this.lastRx >= ping.interval) this.ping(now);
      if (this._state === 'connected') next = this.pingDeadline !== 0 ? this.pingDeadline : this.lastRx + ping.interval;
    }
    for (const c of [...this.pending.values()]) {
      if (c.deadline <= now) this.timeout(c);
      else if (c.deadline < next) next = c.deadline;
    }
    if (this.refreshAt !== 0) {
      if (now >= this.refreshAt) this.refreshInBand();
      else if (this.refreshAt < next) next = this.refreshAt;
    }
    if (next !== Infinity) this.arm(next);
  };

  private ping(now: number): void {
    this.write([MsgType.PING, 0]);
    this.pingDeadline = now + this.pingCfg!.timeout;
    this.arm(this.pingDeadline);
  }

  private timeout(c: Call): void {
    const sub = c.sub;
    if (sub !== undefined && sub.call === c) {
      // a subscribe() that never got its answer is abandoned; tell the server if it was asked
      this.subs.delete(sub.pattern);
      sub.active = false;
      if (c.sent && this.writable) this.write([MsgType.UNSUBSCRIBE, 0, sub.pattern]);
    }
    this.settle(c, new ClientError('TIMEOUT', `no answer within ${c.timeout} ms`));
  }

  // ---- tokens -----------------------------------------------------------------------------------

  /** getToken(), at most one call at a time: concurrent triggers share the promise. */
  private fetchToken(): Promise<string> {
    if (this.tokenFetch !== null) return this.tokenFetch;
    const getToken = this.options.getToken!;
    const p: Promise<string> = Promise.resolve()
      .then(getToken)
      .then((t) => {
        if (typeof t !== 'string' || t === '') throw new ClientError('UNAUTHORIZED', 'getToken() returned no token');
        this.token = t;
        this.tokenStale = false;
        return t;
      })
      .finally(() => {
        if (this.tokenFetch === p) this.tokenFetch = null;
      });
    this.tokenFetch = p;
    return p;
  }

  /** Plans the in-band REFRESH before `exp`: half the remaining lifetime before it, at most a minute. */
  private scheduleRefresh(exp: number | null): void {
    this.refreshAt = 0;
    if (exp === null || exp === 0 || this.options.getToken === undefined) return;
    const left = exp - Date.now();
    this.refreshAt = exp - Math.min(60_000, Math.max(0, left) / 2);
    this.arm(this.refreshAt);
  }

  private refreshInBand(): void {
    this.refreshAt = 0;
    const gen = this.gen;
    this.fetchToken().then(
      (token) => {
        if (gen !== this.gen || !this.writable) return; // the next connection uses the new token
        this.call([MsgType.REFRESH, this.id(), token], this.requestTimeout, false).then(
          (r) => {
            this.authStrike = false;
            this.scheduleRefresh((r as { expiresAt?: number } | undefined)?.expiresAt ?? null);
          },
          (err: ClientError) => {
            // 113: this server does not use JWTs; anything else: the 4002 close that follows is handled there
            if (err.code !== 113 && err.code !== 'DISCONNECTED' && err.code !== 'CLOSED') this.emit('error', err);
          },
        );
      },
      (err: Error) => this.emit('error', err),
    );
  }

  // ---- reading ----------------------------------------------------------------------------------

  private onData(data: unknown): void {
    this.lastRx = Date.now();
    this.pingDeadline = 0; // any frame proves the link
    if (typeof data === 'string') return; // the protocol has no text frames
    const bytes = data instanceof Uint8Array ? data : new Uint8Array(data as ArrayBuffer);
    let msgs: unknown[];
    try {
      msgs = decodeFrame(bytes);
    } catch (err) {
      this.emit('error', new ClientError('BAD_FRAME', `malformed frame from the server: ${(err as Error).message}`));
      return this.dropLink('malformed frame');
    }
    for (const m of msgs) {
      if (!Array.isArray(m)) continue;
      this.onMessage(m);
      if (this.sock === null) return;
    }
  }

  private onMessage(m: unknown[]): void {
    switch (m[0]) {
      case MsgType.RESULT:
      case MsgType.ERROR: {
        const c = this.pending.get(m[1] as number);
        if (m[0] === MsgType.ERROR) {
          const err = new ClientError(m[2] as number, String(m[3]));
          if (c !== undefined) this.settle(c, err);
          else this.emit('error', err); // id 0: a refused fire-and-forget publish
        } else if (c !== undefined) this.settle(c, null, m[2]);
        return;
      }
      case MsgType.MESSAGE: {
        const topic = m[1] as string;
        const flags = typeof m[4] === 'number' ? m[4] : 0;
        for (const sub of [...this.subs.values()]) {
          if (!sub.active || !topicMatches(sub.pattern, topic)) continue;
          if (sub.hold !== null) sub.hold.push([topic, m[2] as number, m[3], flags]);
          else this.deliver(sub, topic, m[2] as number, m[3], flags);
        }
        return;
      }
      case MsgType.GAP: {
        const topic = m[1] as string;
        const dropped = m[2] as number;
        const sub = dropped === 0 ? this.subs.get(topic) : undefined;
        if (sub !== undefined && sub.active) return this.brokerGap(sub);
        return this.emit('gap', { topic, dropped, recovered: false });
      }
      case MsgType.PRESENCE_EVENT:
        return this.emit('presence', { topic: m[1] as string, kind: m[2] === 1 ? 'join' : 'leave', entry: m[3] as PresenceEntry });
      default: // PONG (any frame counts as life) and types a later version may add
    }
  }

  private deliver(sub: Sub, topic: string, seq: number, payload: unknown, flags: number): void {
    const msg = sub.offer(topic, seq, payload, flags);
    if (msg === null) return;
    try {
      sub.handler(msg);
    } catch (err) {
      this.emit('error', err as Error);
    }
  }

  /**
   * GAP `[21, pattern, 0]`: the gateway lost its broker and has it back; messages may have been
   * missed and the numbering may have restarted under a new epoch (docs/delivery.md, "When the
   * broker is lost"). A topic with a known position is filled from HISTORY `since` while its live
   * messages wait; anything else forgets the numbers it saw. The 'gap' event says which it was.
   */
  private brokerGap(sub: Sub): void {
    if (sub.hold !== null) return; // a fill is running: it reads up to the present anyway
    if (!sub.exact || sub.epoch === undefined || sub.opts.recover === false) {
      sub.seen.clear();
      sub.epoch = undefined;
      sub.pos = 0;
      return this.emit('gap', { topic: sub.pattern, dropped: 0, recovered: false });
    }
    sub.hold = [];
    this.fill(sub, { seq: sub.pos, epoch: sub.epoch });
  }

  private fill(sub: Sub, since: StreamPosition): void {
    this.call([MsgType.HISTORY, this.id(), sub.pattern, { since }], this.requestTimeout, false).then(
      (r) => {
        if (!sub.active || sub.hold === null) return;
        const page = r as { seq: number; epoch: string; complete: boolean; more: boolean; messages: [number, number, unknown][] };
        if (page.epoch === sub.epoch && page.complete) {
          for (const [seq, , payload] of page.messages) this.deliver(sub, sub.pattern, seq, payload, 2);
          if (page.more && page.messages.length > 0) return this.fill(sub, { seq: page.messages[page.messages.length - 1][0], epoch: page.epoch });
          return this.release(sub, true);
        }
        // lost: the history no longer has them, or a new epoch numbers the topic from 1 again
        if (page.epoch !== sub.epoch) {
          sub.seen.clear();
          sub.epoch = page.epoch;
          sub.pos = 0;
        }
        this.release(sub, false);
      },
      (err: ClientError) => {
        if (err.code === 'DISCONNECTED' || err.code === 'CLOSED') {
          // the resubscription with since (from the position before the hole) takes over
          sub.hold = null;
          return;
        }
        sub.seen.clear();
        sub.epoch = undefined;
        sub.pos = 0;
        this.release(sub, false);
      },
    );
  }

  /** Hands over what arrived while a fill was running, then says whether the hole was filled. */
  private release(sub: Sub, recovered: boolean): void {
    const held = sub.hold ?? [];
    sub.hold = null;
    for (const [topic, seq, payload, flags] of held) this.deliver(sub, topic, seq, payload, flags);
    this.emit('gap', { topic: sub.pattern, dropped: 0, recovered });
  }

  // ---- subscriptions ----------------------------------------------------------------------------

  subscribe(pattern: string, handler: (m: Message) => void, opts: SubscribeOptions = {}): Promise<Subscription> {
    if (this._state === 'closed') return Promise.reject(new ClientError('CLOSED', 'client is closed'));
    const bad = topicError(pattern, true, NO_LIMITS);
    if (bad !== null) return Promise.reject(new ClientError(103, bad));
    if (this.subs.has(pattern)) return Promise.reject(new ClientError('ALREADY_SUBSCRIBED', `already subscribed to ${pattern}`));
    const sub = new Sub(this, pattern, handler, opts);
    this.subs.set(pattern, sub);
    return new Promise<Subscription>((resolve, reject) => {
      const c: Call = {
        id: this.id(),
        msg: null,
        ok: (r) => {
          sub.call = null;
          sub.result(r);
          resolve(sub);
        },
        fail: (err) => {
          if (this.subs.get(pattern) === sub) this.subs.delete(pattern);
          sub.active = false;
          reject(err);
        },
        deadline: Date.now() + this.requestTimeout,
        timeout: this.requestTimeout,
        sent: false,
        resend: true,
        sub,
      };
      sub.call = c;
      this.pending.set(c.id, c);
      this.arm(c.deadline);
      if (this.writable) this.sendSubscribe(sub, c, opts.since);
    });
  }

  private sendSubscribe(sub: Sub, c: Call, since: StreamPosition | undefined): void {
    const o: Record<string, unknown> = {};
    if (since !== undefined) o.since = { seq: since.seq, epoch: since.epoch };
    if (sub.opts.retained === false) o.retained = false;
    if (sub.opts.presence === true) o.presence = true;
    c.msg = Object.keys(o).length > 0 ? [MsgType.SUBSCRIBE, c.id, sub.pattern, o] : [MsgType.SUBSCRIBE, c.id, sub.pattern];
    c.sent = true;
    this.write(c.msg);
    c.msg = null; // rebuilt at the next send (the position moves on)
  }

  /** After a (re)connection: every subscription again, with `since` where a position is known. */
  private resubscribe(): void {
    const round = ++this.round;
    const results: { pattern: string; recovered: boolean; error?: Error }[] = [];
    let left = 0;
    const done = () => {
      if (--left === 0 && round === this.round) this.emit('resubscribed', { subscriptions: results });
    };
    for (const sub of this.subs.values()) {
      if (sub.call !== null) {
        if (!sub.call.sent) this.sendSubscribe(sub, sub.call, sub.opts.since);
        continue;
      }
      const entry: { pattern: string; recovered: boolean; error?: Error } = { pattern: sub.pattern, recovered: false };
      results.push(entry);
      left++;
      const recover = sub.exact && sub.epoch !== undefined && sub.opts.recover !== false;
      if (!recover) {
        // a new connection without recovery: no number seen before can be compared with the new ones
        sub.seen.clear();
        sub.epoch = undefined;
        sub.pos = 0;
      }
      this.resubscribeOne(sub, entry, recover ? { seq: sub.pos, epoch: sub.epoch! } : undefined, done);
    }
  }

  private resubscribeOne(sub: Sub, entry: { recovered: boolean; error?: Error }, since: StreamPosition | undefined, done: () => void): void {
    const c: Call = {
      id: this.id(),
      msg: null,
      ok: (r) => {
        entry.recovered = sub.result(r);
        done();
      },
      fail: (err) => {
        if (err.code === 'DISCONNECTED' || err.code === 'CLOSED') return; // this round is over
        if (err.code === 101 && since !== undefined && sub.active) {
          // "since.seq is ahead of the topic": the stored position is not this stream's; start over
          sub.seen.clear();
          sub.epoch = undefined;
          sub.pos = 0;
          return this.resubscribeOne(sub, entry, undefined, done);
        }
        entry.error = err;
        if (err.code !== 'TIMEOUT' && this.subs.get(sub.pattern) === sub) {
          this.subs.delete(sub.pattern);
          sub.active = false;
        }
        this.emit('error', new ClientError(err.code, `resubscribing ${sub.pattern}: ${err.message}`));
        done();
      },
      deadline: Date.now() + this.requestTimeout,
      timeout: this.requestTimeout,
      sent: false,
      resend: false,
    };
    this.pending.set(c.id, c);
    this.arm(c.deadline);
    this.sendSubscribe(sub, c, since);
  }

  /** @internal Subscription.unsubscribe(). */
  unsubscribeSub(sub: Sub): Promise<void> {
    if (!sub.active) return Promise.resolve();
    sub.active = false;
    if (this.subs.get(sub.pattern) === sub) this.subs.delete(sub.pattern);
    if (!this.writable) return Promise.resolve(); // the server forgets a subscription with its connection
    return this.call([MsgType.UNSUBSCRIBE, this.id(), sub.pattern], this.requestTimeout, false).then(
      () => undefined,
      (err: ClientError) => {
        if (err.code !== 'DISCONNECTED') throw err;
      },
    );
  }

  // ---- publish, request, history, presence --------------------------------------------------------

  /** ack (default true): resolves on the server's RESULT; ack: false: once written, or queued while disconnected. */
  publish(topic: string, payload: unknown, opts: { ack?: boolean; retain?: boolean; noEcho?: boolean; timeout?: number } = {}): Promise<void> {
    if (this._state === 'closed') return Promise.reject(new ClientError('CLOSED', 'client is closed'));
    const bad = topicError(topic, false, NO_LIMITS);
    if (bad !== null) return Promise.reject(new ClientError(103, bad));
    let o: Record<string, boolean> | undefined;
    if (opts.retain === true) o = { retain: true };
    if (opts.noEcho === true) (o ??= {}).noEcho = true;
    const id = opts.ack === false ? 0 : this.id();
    const msg = o === undefined ? [MsgType.PUBLISH, id, topic, payload] : [MsgType.PUBLISH, id, topic, payload, o];
    if (id !== 0) return this.call(msg, opts.timeout ?? this.requestTimeout, false, true).then(() => undefined);
    if (this.writable) this.write(msg);
    else if (this.queued >= this.queueMax) return Promise.reject(new ClientError('QUEUE_FULL', `offline queue is full (${this.queueMax} publishes)`));
    else {
      this.outbox.push(msg);
      this.queued++;
    }
    return Promise.resolve();
  }

  /** Calls a method the server application registered (gw.handle); resolves with its result. */
  request(method: string, params?: unknown, opts: { timeout?: number } = {}): Promise<unknown> {
    const id = this.id();
    return this.call(params === undefined ? [MsgType.REQUEST, id, method] : [MsgType.REQUEST, id, method, params], opts.timeout ?? this.requestTimeout, false);
  }

  /** What a topic's history holds (a topic matching history.topics on the server). */
  async history(
    topic: string,
    opts: { since?: StreamPosition; limit?: number; reverse?: boolean; timeout?: number } = {},
  ): Promise<{ publications: Message[]; position: StreamPosition; complete: boolean; more: boolean }> {
    const o: Record<string, unknown> = {};
    if (opts.since !== undefined) o.since = { seq: opts.since.seq, epoch: opts.since.epoch };
    if (opts.limit !== undefined) o.limit = opts.limit;
    if (opts.reverse !== undefined) o.reverse = opts.reverse;
    const r = (await this.call([MsgType.HISTORY, this.id(), topic, o], opts.timeout ?? this.requestTimeout, true)) as {
      seq: number;
      epoch: string;
      complete: boolean;
      more: boolean;
      messages: [number, number, unknown][];
    };
    const publications = r.messages.map(([seq, time, payload]): Message => ({ topic, payload, seq, epoch: r.epoch, retained: false, recovered: false, time }));
    return { publications, position: { seq: r.seq, epoch: r.epoch }, complete: r.complete, more: r.more };
  }

  /** Who is subscribed to exactly `topic` (a topic matching presence.topics on the server). */
  async presence(topic: string, opts: { timeout?: number } = {}): Promise<PresenceEntry[]> {
    return (await this.call([MsgType.PRESENCE, this.id(), topic], opts.timeout ?? this.requestTimeout, true)) as PresenceEntry[];
  }
}
