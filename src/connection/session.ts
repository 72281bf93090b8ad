// One WebSocket connection: inbound decoding and dispatch, outbound sends with a byte budget,
// subscriptions, pending requests. ws listeners are module-level functions that reach the session
// through a symbol on the WebSocket, so a connection allocates no closures.
import type { IncomingHttpHeaders } from 'node:http';
import type { WebSocket, RawData } from 'ws';
import { CloseCode, ErrorCode } from '../protocol/codes.js';
import {
  MsgType,
  MalformedFrameError,
  decode,
  decodeFrame,
  isPlainObject,
  encodeError,
  encodeGap,
  encodePayload,
  encodePong,
  encodeResult,
  encodeBinResultHead,
  validateClientMessage,
  type ClientMessage,
  type PublishOptions,
} from '../protocol/messages.js';
import type { Outgoing, Subscriber } from '../pubsub/hub.js';
import type { Beating } from '../heartbeat/heartbeat.js';
import { ReplyError } from '../errors.js';
import type { GatewayCore } from './core.js';
import { TokenBucket } from './rate.js';
import { newEnvelope, parseEnvelope } from '../protocol/envelope.js';
import { topicError } from '../protocol/topic.js';
import { beforeReceiverClose, fastPathSocket, installSyncInflate, senderIdle, sharedDeflateWindowBits } from '../transport/ws-internals.js';
import { wsFrameHeadInPlace, wsFrameInPlace } from '../transport/frame.js';
import { compressedFrame } from '../transport/deflate.js';
import type { Socket } from 'node:net';

const kSession = Symbol('wiregate.session');

/** What a connection looks like to application code (hooks and handlers). */
export interface Connection {
  readonly id: number;
  readonly ip: string;
  readonly url: string;
  /**
   * The upgrade request's headers: all of them during the `onConnection` hook, afterwards only
   * those named in the `retainHeaders` option (idle connections should not carry them).
   */
  readonly headers: IncomingHttpHeaders;
  readonly protocol: string;
  /** Authenticated user id, or null. */
  readonly userId: string | null;
  /** Verified token claims / identity attached at upgrade, or null. */
  readonly user: unknown;
  /** Patterns this connection is subscribed to. */
  readonly subscriptions: ReadonlySet<string>;
  /** Free slot for the application. */
  data: Record<string, unknown>;
  /** Closes the connection with a WebSocket close code (see CloseCode) and reason. */
  close(code?: number, reason?: string): void;
}

export interface RequestContext {
  readonly connection: Connection;
  readonly method: string;
  readonly requestId: number;
}

export interface SessionInit {
  ip: string;
  url: string;
  headers: IncomingHttpHeaders;
  protocol: string;
  batch: boolean;
  userId: string | null;
  user: unknown;
  /** ms epoch when the credentials expire, or null. */
  expiresAt: number | null;
  canPublish: ((topic: string) => boolean) | null;
  canSubscribe: ((pattern: string) => boolean) | null;
}

const PUBLISH_OPTS_DEFAULT: PublishOptions = {};
/** Scratch envelope: frames are handled synchronously, one at a time. */
const env = newEnvelope();

export class Session implements Subscriber, Beating, Connection {
  // hub / heartbeat fields (flat, numbers first)
  stamp = 0;
  lastActivity: number;
  pingAt = 0;
  pendingRequests = 0;
  protocolErrors = 0;
  /** Deliveries skipped under the `drop` policy since the last GAP, by topic. */
  private dropped: Map<string, number> | null = null;
  closing = false;
  /** Created on first subscribe: an idle connection carries no Set. */
  private subs: Set<string> | null = null;
  private appData: Record<string, unknown> | null = null;
  readonly ip: string;
  readonly url: string;
  headers: IncomingHttpHeaders;
  readonly protocol: string;
  readonly batch: boolean;
  userId: string | null;
  user: unknown;
  expiresAt: number | null;
  canPublish: ((topic: string) => boolean) | null;
  canSubscribe: ((pattern: string) => boolean) | null;
  readonly msgBucket: TokenBucket | null;
  readonly byteBucket: TokenBucket | null;
  /** Raw socket for pre-framed writes (null: use ws.send only). */
  private readonly sock: Socket | null;
  /** Messages this long or longer go through ws.send so ws can compress them (context takeover). */
  private readonly directMax: number;
  /** Server window bits when wiregate compresses for this connection itself (0 = it does not). */
  readonly zBits: number;
  /** Messages this long or longer are compressed by wiregate (when zBits > 0). */
  private readonly zMin: number;
  /** Socket corked until the gateway's end-of-tick flush. */
  corked = false;
  /** wiregate.v1.batch: messages waiting for this tick's frame, and their total size. */
  private batchParts: Uint8Array[] | null = null;
  private batchBytes = 0;
  /** Releases the synchronous inflater's per-connection state (null: none installed). */
  private releaseInflate: (() => void) | null = null;

  constructor(
    readonly id: number,
    readonly ws: WebSocket,
    readonly core: GatewayCore,
    init: SessionInit,
  ) {
    this.ip = init.ip;
    this.url = init.url;
    this.headers = init.headers;
    this.protocol = init.protocol;
    this.batch = init.batch;
    this.userId = init.userId;
    this.user = init.user;
    this.expiresAt = init.expiresAt;
    this.canPublish = init.canPublish;
    this.canSubscribe = init.canSubscribe;
    this.lastActivity = core.clock();
    const lim = core.config.limits;
    this.msgBucket = lim.messageRate > 0 ? new TokenBucket(lim.messageRate, lim.messageBurst) : null;
    this.byteBucket = lim.byteRate > 0 ? new TokenBucket(lim.byteRate, lim.byteBurst) : null;
    this.sock = core.fastPath ? fastPathSocket(ws) : null;
    const deflate = ws.extensions.includes('permessage-deflate');
    this.zBits = deflate && this.sock !== null ? sharedDeflateWindowBits(ws) : 0;
    this.zMin = core.config.compression.threshold;
    this.directMax = deflate && this.zBits === 0 ? core.config.compression.threshold : NO_LIMIT;
    if (deflate && core.fastPath) this.releaseInflate = installSyncInflate(ws);
    // A batch client's messages wait for the end of the tick outside the socket, while ws answers
    // a client's close frame (or a protocol error) with its own close frame at once: the batch
    // must be written first. Without that hook, no batching (sock null: ws.send only).
    if (this.batch && this.sock !== null && !beforeReceiverClose(ws, this)) this.sock = null;
    (ws as unknown as Record<symbol, Session>)[kSession] = this;
    ws.on('message', onMessage);
    ws.on('pong', onPong);
    ws.on('ping', onPong);
    ws.on('close', onClose);
    ws.on('error', onError);
  }

  /** Drops the upgrade headers except `keep` (called by the gateway after onConnection). */
  retainHeaders(keep: readonly string[]): void {
    const all = this.headers;
    if (keep.length === 0) {
      this.headers = NO_HEADERS;
      return;
    }
    const kept: IncomingHttpHeaders = {};
    for (const name of keep) {
      const k = name.toLowerCase();
      if (all[k] !== undefined) kept[k] = all[k] as string;
    }
    this.headers = kept;
  }

  get subscriptions(): ReadonlySet<string> {
    return this.subs ?? NO_SUBSCRIPTIONS;
  }

  get data(): Record<string, unknown> {
    return (this.appData ??= {});
  }

  set data(v: Record<string, unknown>) {
    this.appData = v;
  }

  // ---- outbound ------------------------------------------------------------------------------

  /**
   * Sends one message produced by a server encoder of protocol/messages.ts (they reserve
   * headroom for the frame header), applying the outbound byte budget. Returns false if not sent.
   */
  send(frame: Uint8Array): boolean {
    const ws = this.ws;
    if (ws.readyState !== 1) return false;
    const stats = this.core.stats;
    if (ws.bufferedAmount + this.batchBytes + frame.length > this.core.config.outbound.maxBufferedBytes) {
      this.core.slowConsumer(this);
      return false;
    }
    stats.messagesOut++;
    stats.bytesOut += frame.length;
    this.write(frame, null);
    return true;
  }

  /**
   * Writes one message. Fast path: a pre-framed buffer straight to the corked socket (coalesced
   * with everything else sent to this socket until the end of the tick). Fallback: ws.send, when
   * ws is compressing or queueing, or the message should be compressed.
   */
  private write(msg: Uint8Array, wire: Buffer | null): void {
    const sock = this.sock;
    if (sock !== null && msg.length < this.directMax && senderIdle(this.ws)) {
      if (!this.corked) {
        this.corked = true;
        sock.cork();
        this.core.corked(this);
      }
      const compress = this.zBits !== 0 && msg.length >= this.zMin;
      if (this.batch && !compress) {
        // wiregate.v1.batch: everything sent this tick leaves in one frame (see flushBatch)
        // (a message over the cap on its own is framed alone when the next one comes or the tick ends)
        if (this.batchParts !== null && this.batchBytes + msg.length > BATCH_MAX) this.flushBatch();
        (this.batchParts ??= []).push(msg);
        this.batchBytes += msg.length;
        return;
      }
      if (this.batchParts !== null) this.flushBatch(); // keep order with what is batched
      if (wire !== null) sock.write(wire);
      else if (this.zBits !== 0 && msg.length >= this.zMin) {
        this.core.stats.deflated++;
        sock.write(compressedFrame(msg, this.zBits, this.core.config.compression));
      } else sock.write(wsFrameInPlace(msg)); // every server encoder leaves headroom
    } else {
      if (this.batchParts !== null) this.flushBatch();
      this.ws.send(msg, SEND_OPTS);
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
    if (parts.length === 1) {
      this.sock!.write(wsFrameInPlace(parts[0]));
      return;
    }
    const h = total < 126 ? 2 : total < 65536 ? 4 : 10;
    const out = Buffer.allocUnsafe(h + total);
    let p = h;
    for (const m of parts) {
      out.set(m, p);
      p += m.length;
    }
    this.sock!.write(wsFrameInPlace(out.subarray(h)));
  }

  /**
   * A large binary result without copying it: the frame header and msgpack head are written, then
   * the caller's bytes themselves (one writev with everything else corked this tick). Only on the
   * uncompressed fast path; returns false to let the caller take the copying path.
   */
  private sendBinResult(id: number, bin: Uint8Array): boolean {
    const sock = this.sock;
    if (sock === null || this.directMax !== NO_LIMIT || (this.zBits !== 0 && bin.length >= this.zMin) || !senderIdle(this.ws)) return false;
    const ws = this.ws;
    if (ws.readyState !== 1) return true;
    const head = encodeBinResultHead(id, bin.length);
    const total = head.length + bin.length;
    if (ws.bufferedAmount + this.batchBytes + total > this.core.config.outbound.maxBufferedBytes) {
      this.core.slowConsumer(this);
      return true;
    }
    const stats = this.core.stats;
    stats.messagesOut++;
    stats.bytesOut += total;
    if (!this.corked) {
      this.corked = true;
      sock.cork();
      this.core.corked(this);
    }
    if (this.batchParts !== null) this.flushBatch();
    sock.write(wsFrameHeadInPlace(head, total));
    sock.write(bin);
    return true;
  }

  /**
   * Heartbeat ping: a shared pre-built frame on the fast path, ws.ping() otherwise. Written
   * straight away, not corked: a ping goes to a silent connection, so there is nothing to coalesce
   * it with, and a single write skips the cork/flush bookkeeping (if the socket is corked this
   * tick anyway, the frame simply joins what is queued, in order).
   */
  ping(): void {
    const sock = this.sock;
    if (sock !== null && senderIdle(this.ws)) sock.write(PING_FRAME);
    else this.ws.ping();
  }

  /** Called by the gateway once per tick for every socket corked during it. */
  uncork(): void {
    this.corked = false;
    if (this.batchParts !== null) this.settleBatch();
    this.sock!.uncork();
  }

  /** ws is about to write its own close frame (see beforeReceiverClose): the batch goes first. */
  beforeClose(): void {
    if (this.batchParts !== null) this.settleBatch();
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

  /** Hub delivery: shared frame, budget-checked; under the drop policy, counts the gap. */
  deliver(out: Outgoing, mayDrop: boolean): void {
    const ws = this.ws;
    const frame = out.msg;
    const topic = out.topic;
    if (ws.readyState !== 1) return;
    const budget = this.core.config.outbound.maxBufferedBytes;
    if (ws.bufferedAmount + this.batchBytes + frame.length > budget) {
      if (mayDrop) {
        const d = (this.dropped ??= new Map());
        d.set(topic, (d.get(topic) ?? 0) + 1);
        this.core.stats.deliveriesDropped++;
        return;
      }
      this.core.slowConsumer(this);
      return;
    }
    if (this.dropped !== null) this.flushGaps();
    const stats = this.core.stats;
    stats.messagesOut++;
    stats.bytesOut += frame.length;
    this.write(frame, this.zBits !== 0 && frame.length >= this.zMin ? this.core.sharedCompressed(out, this.zBits) : out.wire);
  }

  /** Tells the client which topics lost deliveries while it was over budget. */
  private flushGaps(): void {
    const d = this.dropped!;
    this.dropped = null;
    for (const [topic, n] of d) {
      const f = encodeGap(topic, n);
      this.core.stats.messagesOut++;
      this.core.stats.bytesOut += f.length;
      this.write(f, null);
    }
  }

  sendError(id: number, code: number, message: string): void {
    this.core.countError(code);
    this.send(encodeError(id, code, message));
  }

  close(code: number = CloseCode.NORMAL, reason = ''): void {
    if (this.closing) return;
    this.closing = true;
    // A socket paused by the rate limiter must read again to complete the closing handshake;
    // anything it reads from now on is discarded (closing).
    if (this.ws.isPaused) this.ws.resume();
    if (this.batchParts !== null) this.settleBatch(); // batched messages go before the close frame
    this.ws.close(code, reason);
  }

  // ---- inbound -------------------------------------------------------------------------------

  handleFrame(data: Buffer): void {
    if (parseEnvelope(data, env, this.core.maxDepth)) return this.handleEnvelope(data);
    let msgs: unknown[];
    try {
      msgs = decodeFrame(data, this.core.maxDepth);
    } catch (err) {
      if (err instanceof MalformedFrameError) {
        this.core.countError(-1);
        this.core.stats.malformedFrames++;
        this.close(CloseCode.INVALID_PAYLOAD, 'malformed msgpack');
        return;
      }
      throw err;
    }
    for (let i = 0; i < msgs.length; i++) {
      if (this.closing) return;
      this.handleMessage(msgs[i]);
    }
  }

  /** Fast path: one canonical PUBLISH or REQUEST, payload still raw (see protocol/envelope.ts). */
  private handleEnvelope(b: Buffer): void {
    const core = this.core;
    core.stats.messagesIn++;
    const { id, name } = env;
    if (env.type === MsgType.PUBLISH) {
      const err = topicError(name, false, core.topicLimits);
      if (err !== null) {
        this.sendError(id, ErrorCode.INVALID_TOPIC, err);
        return this.protocolError();
      }
      let opts: PublishOptions = PUBLISH_OPTS_DEFAULT;
      if (env.optsEnd > env.optsStart) {
        const o = this.decodeSlice(b, env.optsStart, env.optsEnd);
        if (o === MALFORMED) return;
        if (o !== null && !isPlainObject(o)) {
          this.sendError(id, ErrorCode.BAD_REQUEST, 'options must be a map or nil');
          return this.protocolError();
        }
        if (o !== null) opts = o as PublishOptions;
      }
      return this.onPublish(id, name, undefined, opts, b.subarray(env.payloadStart, env.payloadEnd));
    }
    if (name.length > 128) {
      this.sendError(id, ErrorCode.BAD_REQUEST, 'method must be a string of 1..128 characters');
      return this.protocolError();
    }
    let payload: unknown;
    if (env.payloadEnd > env.payloadStart) {
      payload = this.decodeSlice(b, env.payloadStart, env.payloadEnd);
      if (payload === MALFORMED) return;
    }
    this.onRequest(id, name, payload);
  }

  /** Decodes a slice that the structural scan accepted; unknown extensions still fail (1007). */
  private decodeSlice(b: Buffer, start: number, end: number): unknown {
    try {
      return decode(b.subarray(start, end));
    } catch {
      this.core.countError(-1);
      this.core.stats.malformedFrames++;
      this.close(CloseCode.INVALID_PAYLOAD, 'malformed msgpack');
      return MALFORMED;
    }
  }

  private handleMessage(m: unknown): void {
    const core = this.core;
    core.stats.messagesIn++;
    const bad = validateClientMessage(m, core.topicLimits);
    if (bad !== null) {
      this.sendError(bad.id, bad.code, bad.message);
      this.protocolError();
      return;
    }
    const msg = m as ClientMessage;
    switch (msg[0]) {
      case MsgType.PUBLISH:
        return this.onPublish(msg[1], msg[2], msg[3], msg[4] ?? PUBLISH_OPTS_DEFAULT, null);
      case MsgType.REQUEST:
        return this.onRequest(msg[1], msg[2], msg[3]);
      case MsgType.SUBSCRIBE:
        return this.onSubscribe(msg[1], msg[2]);
      case MsgType.UNSUBSCRIBE:
        return this.onUnsubscribe(msg[1], msg[2]);
      case MsgType.PING:
        this.send(encodePong(msg[1]));
        return;
      case MsgType.REFRESH:
        core.refresh(this, msg[1], msg[2]);
        return;
    }
  }

  protocolError(): void {
    if (++this.protocolErrors >= this.core.config.limits.maxProtocolErrors) {
      this.close(CloseCode.BAD_PROTOCOL, 'too many protocol errors');
    }
  }

  /** `raw`: the payload's msgpack bytes when the fast path kept them (then `payload` is unused). */
  private onPublish(id: number, topic: string, payload: unknown, opts: PublishOptions, raw: Uint8Array | null): void {
    const core = this.core;
    if (core.draining) return this.reply(id, ErrorCode.UNAVAILABLE, 'gateway is shutting down');
    if (this.canPublish !== null && !this.canPublish(topic)) {
      this.reply(id, ErrorCode.FORBIDDEN, `not allowed to publish to ${topic}`);
      return this.protocolError();
    }
    const hook = core.hooks.authorizePublish;
    if (hook === undefined) return this.doPublish(id, topic, payload, opts, raw);
    settle(
      () => hook(this, topic, raw !== null ? decode(raw) : payload),
      (ok) => (ok ? this.doPublish(id, topic, payload, opts, raw) : this.reply(id, ErrorCode.FORBIDDEN, `not allowed to publish to ${topic}`)),
      (err) => this.replyThrown(id, err),
    );
  }

  private doPublish(id: number, topic: string, payload: unknown, opts: PublishOptions, raw: Uint8Array | null): void {
    if (this.closing) return;
    const bytes = raw ?? encodePayload(payload);
    const exclude = opts.noEcho === true ? this.id : 0;
    let seq: number | Promise<number>;
    try {
      seq = this.core.hub.publish(topic, bytes, exclude);
    } catch (err) {
      return this.replyThrown(id, err);
    }
    this.core.stats.publishes++;
    if (id === 0) {
      if (typeof seq !== 'number') seq.catch((err) => this.core.log.error({ err }, 'publish failed'));
      return;
    }
    if (typeof seq === 'number') this.send(encodeResult(id, seq));
    else seq.then((s) => this.send(encodeResult(id, s)), (err) => this.replyThrown(id, err));
  }

  private onSubscribe(id: number, pattern: string): void {
    const core = this.core;
    if (this.subs !== null && this.subs.has(pattern)) return this.ok(id);
    if (this.subs !== null && this.subs.size >= core.config.limits.maxSubscriptions) {
      return this.reply(id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${core.config.limits.maxSubscriptions} subscriptions per connection`);
    }
    if (this.canSubscribe !== null && !this.canSubscribe(pattern)) {
      this.reply(id, ErrorCode.FORBIDDEN, `not allowed to subscribe to ${pattern}`);
      return this.protocolError();
    }
    const hook = core.hooks.authorizeSubscribe;
    if (hook === undefined) return this.doSubscribe(id, pattern);
    settle(
      () => hook(this, pattern),
      (ok) => (ok ? this.doSubscribe(id, pattern) : this.reply(id, ErrorCode.FORBIDDEN, `not allowed to subscribe to ${pattern}`)),
      (err) => this.replyThrown(id, err),
    );
  }

  private doSubscribe(id: number, pattern: string): void {
    if (this.closing || this.ws.readyState !== 1) return;
    const subs = (this.subs ??= new Set());
    if (subs.has(pattern)) return this.ok(id);
    if (subs.size >= this.core.config.limits.maxSubscriptions) {
      return this.reply(id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${this.core.config.limits.maxSubscriptions} subscriptions per connection`);
    }
    subs.add(pattern);
    this.core.stats.subscriptions++;
    const r = this.core.hub.subscribe(this, pattern);
    if (r === undefined) return this.ok(id);
    r.then(() => this.ok(id), (err) => this.replyThrown(id, err));
  }

  private onUnsubscribe(id: number, pattern: string): void {
    if (this.subs !== null && this.subs.delete(pattern)) {
      this.core.stats.subscriptions--;
      const r = this.core.hub.unsubscribe(this, pattern);
      if (r !== undefined) r.catch((err) => this.core.log.error({ err }, 'broker unsubscribe failed'));
    }
    this.ok(id);
  }

  private onRequest(id: number, method: string, payload: unknown): void {
    const core = this.core;
    const handler = core.handlers.get(method);
    if (handler === undefined) return this.reply(id, ErrorCode.UNKNOWN_METHOD, `unknown method ${method}`);
    if (core.draining) return this.reply(id, ErrorCode.UNAVAILABLE, 'gateway is shutting down');
    if (this.pendingRequests >= core.config.limits.maxPendingRequests) {
      return this.reply(id, ErrorCode.TOO_MANY_REQUESTS, `at most ${core.config.limits.maxPendingRequests} requests in flight per connection`);
    }
    core.stats.requests++;
    const ctx: RequestContext = { connection: this, method, requestId: id };
    let result: unknown;
    try {
      result = handler(ctx, payload);
    } catch (err) {
      return this.replyThrown(id, err);
    }
    if (!isThenable(result)) {
      this.sendResult(id, result);
      return;
    }
    this.pendingRequests++;
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      this.pendingRequests--;
      core.stats.requestTimeouts++;
      this.reply(id, ErrorCode.TIMEOUT, `method ${method} timed out after ${core.config.requestTimeout} ms`);
    }, core.config.requestTimeout);
    result.then(
      (value) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.pendingRequests--;
        this.sendResult(id, value);
      },
      (err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.pendingRequests--;
        this.replyThrown(id, err);
      },
    );
  }

  private sendResult(id: number, value: unknown): void {
    if (value instanceof Uint8Array && value.length >= SPLIT_MIN && this.sendBinResult(id, value)) return;
    let frame: Uint8Array;
    try {
      frame = encodeResult(id, value === undefined ? null : value);
    } catch (err) {
      this.core.log.error({ err }, 'cannot encode handler result');
      return this.reply(id, ErrorCode.INTERNAL, 'result could not be encoded');
    }
    this.send(frame);
  }

  private ok(id: number): void {
    if (id !== 0) this.send(encodeResult(id));
  }

  /** Sends an ERROR for request `id` (or a connection-level one when id is 0 and it matters). */
  reply(id: number, code: number, message: string): void {
    this.sendError(id, code, message);
  }

  replyThrown(id: number, err: unknown): void {
    if (err instanceof ReplyError) return this.reply(id, err.code, err.message);
    this.core.log.warn({ err, connection: this.id }, 'handler or hook failed');
    this.reply(id, ErrorCode.HANDLER_ERROR, 'handler failed');
  }

  /** Called once when the socket has closed: removes every subscription. */
  cleanup(): void {
    if (this.releaseInflate !== null) {
      this.releaseInflate();
      this.releaseInflate = null;
    }
    const subs = this.subs;
    if (subs === null) return;
    const hub = this.core.hub;
    for (const pattern of subs) {
      const r = hub.unsubscribe(this, pattern);
      if (r !== undefined) r.catch(() => {});
    }
    this.core.stats.subscriptions -= subs.size;
    this.subs = null;
  }
}

const SEND_OPTS = { binary: true } as const;
/** Binary results this large are written in two pieces instead of being copied into one buffer. */
const SPLIT_MIN = 1024;
const MALFORMED = Symbol('malformed');
const NO_SUBSCRIPTIONS: ReadonlySet<string> = new Set<string>();
const NO_HEADERS: IncomingHttpHeaders = Object.freeze({});
/** directMax when every size may take the direct path (a small integer, unlike Infinity, is stored inline). */
const NO_LIMIT = 0x3fffffff;
/** Largest batched frame payload: more messages in a tick start another frame. */
const BATCH_MAX = 64 * 1024;
/** FIN + ping opcode, empty payload (servers never mask). */
const PING_FRAME = Buffer.from([0x89, 0x00]);

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/** Runs a hook that may return a value or a promise; calls ok/fail without an extra tick when sync. */
function settle<T>(fn: () => T | PromiseLike<T>, ok: (v: T) => void, fail: (err: unknown) => void): void {
  let r: T | PromiseLike<T>;
  try {
    r = fn();
  } catch (err) {
    return fail(err);
  }
  if (isThenable(r)) (r as PromiseLike<T>).then(ok, fail);
  else ok(r as T);
}

// ---- module-level ws listeners (this = the WebSocket) ------------------------------------------

function sessionOf(ws: WebSocket): Session {
  return (ws as unknown as Record<symbol, Session>)[kSession];
}

function onMessage(this: WebSocket, data: RawData, isBinary: boolean): void {
  const s = sessionOf(this);
  const core = s.core;
  s.lastActivity = core.clock();
  if (s.closing) return;
  const buf = data as Buffer; // binaryType 'nodebuffer': always a Buffer
  core.stats.framesIn++;
  core.stats.bytesIn += buf.length;
  if (!isBinary) {
    core.countError(-2);
    s.close(CloseCode.UNSUPPORTED_DATA, 'binary frames only');
    return;
  }
  if (s.msgBucket !== null || s.byteBucket !== null) {
    if (!core.admitInbound(s, buf.length)) return;
  }
  try {
    s.handleFrame(buf);
  } catch (err) {
    core.log.error({ err, connection: s.id }, 'unexpected error handling a frame');
    s.close(CloseCode.INTERNAL_ERROR, 'internal error');
  }
}

function onPong(this: WebSocket): void {
  const s = sessionOf(this);
  s.lastActivity = s.core.clock();
}

function onClose(this: WebSocket, code: number, reason: Buffer): void {
  sessionOf(this).core.closed(sessionOf(this), code, reason.toString());
}

function onError(this: WebSocket, err: Error): void {
  const s = sessionOf(this);
  s.core.onSocketError(s, err);
}
