// Decoding and dispatch of client messages: one Dispatcher per gateway, stateless per message.
// A frame is decoded (PUBLISH and REQUEST in canonical shape through the envelope fast path, the
// rest through the general decoder), each message is validated, authorised and handed to the hub
// or a method handler, and the answer goes back through the session's outbound side.
import type { Logger } from 'pino';
import { CloseCode, ErrorCode } from '../protocol/codes.js';
import {
  MsgType,
  MalformedFrameError,
  decode,
  decodeFrame,
  isPlainObject,
  encodePayload,
  encodePong,
  encodeResult,
  validateClientMessage,
  type ClientMessage,
  type PublishOptions,
} from '../protocol/messages.js';
import { newEnvelope, parseEnvelope } from '../protocol/envelope.js';
import { topicError, type TopicLimits } from '../protocol/topic.js';
import type { Hub } from '../pubsub/hub.js';
import type { Credentials } from '../auth/credentials.js';
import { ReplyError } from '../errors.js';
import type { Hooks, MethodHandler, Stats } from './core.js';
import type { RequestTimer } from './requests.js';
import type { RequestContext, Session } from './session.js';

export interface DispatchContext {
  readonly stats: Stats;
  readonly log: Logger;
  readonly hub: Hub;
  readonly hooks: Readonly<Hooks>;
  readonly handlers: ReadonlyMap<string, MethodHandler>;
  readonly topicLimits: TopicLimits;
  readonly maxDepth: number;
  readonly maxSubscriptions: number;
  readonly maxPendingRequests: number;
  readonly requests: RequestTimer;
  readonly credentials: Credentials<Session>;
  draining(): boolean;
}

const PUBLISH_OPTS_DEFAULT: PublishOptions = {};
/** Scratch envelope: frames are handled synchronously, one at a time. */
const env = newEnvelope();
const MALFORMED = Symbol('malformed');
/** Binary results this large are written in two pieces instead of being copied into one buffer. */
const SPLIT_MIN = 1024;

export class Dispatcher {
  constructor(private readonly ctx: DispatchContext) {}

  /** Handles one inbound binary frame; returns the number of messages it held. */
  frame(s: Session, data: Buffer): number {
    const ctx = this.ctx;
    if (parseEnvelope(data, env, ctx.maxDepth)) {
      this.envelope(s, data);
      return 1;
    }
    let msgs: unknown[];
    try {
      msgs = decodeFrame(data, ctx.maxDepth);
    } catch (err) {
      if (err instanceof MalformedFrameError) {
        this.malformed(s);
        return 1;
      }
      throw err;
    }
    for (let i = 0; i < msgs.length; i++) {
      if (s.closing) return i;
      this.message(s, msgs[i]);
    }
    return msgs.length;
  }

  private malformed(s: Session): void {
    const stats = this.ctx.stats;
    stats.errors.set(-1, (stats.errors.get(-1) ?? 0) + 1);
    stats.malformedFrames++;
    s.close(CloseCode.INVALID_PAYLOAD, 'malformed msgpack');
  }

  /** Fast path: one canonical PUBLISH or REQUEST, payload still raw (see protocol/envelope.ts). */
  private envelope(s: Session, b: Buffer): void {
    const ctx = this.ctx;
    ctx.stats.messagesIn++;
    const { id, name } = env;
    if (env.type === MsgType.PUBLISH) {
      const err = topicError(name, false, ctx.topicLimits);
      if (err !== null) return s.sendError(id, ErrorCode.INVALID_TOPIC, err);
      let opts: PublishOptions = PUBLISH_OPTS_DEFAULT;
      if (env.optsEnd > env.optsStart) {
        const o = this.decodeSlice(s, b, env.optsStart, env.optsEnd);
        if (o === MALFORMED) return;
        if (o !== null && !isPlainObject(o)) return s.sendError(id, ErrorCode.BAD_REQUEST, 'options must be a map or nil');
        if (o !== null) opts = o as PublishOptions;
      }
      return this.publish(s, id, name, undefined, opts, b.subarray(env.payloadStart, env.payloadEnd));
    }
    if (name.length > 128) return s.sendError(id, ErrorCode.BAD_REQUEST, 'method must be a string of 1..128 characters');
    let payload: unknown;
    if (env.payloadEnd > env.payloadStart) {
      payload = this.decodeSlice(s, b, env.payloadStart, env.payloadEnd);
      if (payload === MALFORMED) return;
    }
    this.request(s, id, name, payload);
  }

  /** Decodes a slice that the structural scan accepted; anything msgpackr still refuses closes with 1007. */
  private decodeSlice(s: Session, b: Buffer, start: number, end: number): unknown {
    try {
      return decode(b.subarray(start, end));
    } catch {
      this.malformed(s);
      return MALFORMED;
    }
  }

  private message(s: Session, m: unknown): void {
    this.ctx.stats.messagesIn++;
    const bad = validateClientMessage(m, this.ctx.topicLimits);
    if (bad !== null) return s.sendError(bad.id, bad.code, bad.message);
    const msg = m as ClientMessage;
    switch (msg[0]) {
      case MsgType.PUBLISH:
        return this.publish(s, msg[1], msg[2], msg[3], msg[4] ?? PUBLISH_OPTS_DEFAULT, null);
      case MsgType.REQUEST:
        return this.request(s, msg[1], msg[2], msg[3]);
      case MsgType.SUBSCRIBE:
        return this.subscribe(s, msg[1], msg[2]);
      case MsgType.UNSUBSCRIBE:
        return this.unsubscribe(s, msg[1], msg[2]);
      case MsgType.PING:
        s.send(encodePong(msg[1]));
        return;
      case MsgType.REFRESH:
        return this.ctx.credentials.refresh(s, msg[1], msg[2]);
    }
  }

  /** `raw`: the payload's msgpack bytes when the fast path kept them (then `payload` is unused). */
  private publish(s: Session, id: number, topic: string, payload: unknown, opts: PublishOptions, raw: Uint8Array | null): void {
    const ctx = this.ctx;
    if (ctx.draining()) return s.sendError(id, ErrorCode.UNAVAILABLE, 'gateway is shutting down');
    if (s.canPublish !== null && !s.canPublish(topic)) return s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to publish to ${topic}`);
    const hook = ctx.hooks.authorizePublish;
    if (hook === undefined) return this.doPublish(s, id, topic, payload, opts, raw);
    settle(
      () => hook(s, topic, raw !== null ? decode(raw) : payload),
      (ok) => (ok ? this.doPublish(s, id, topic, payload, opts, raw) : s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to publish to ${topic}`)),
      (err) => this.replyThrown(s, id, err),
    );
  }

  private doPublish(s: Session, id: number, topic: string, payload: unknown, opts: PublishOptions, raw: Uint8Array | null): void {
    if (s.closing) return;
    const ctx = this.ctx;
    const bytes = raw ?? encodePayload(payload);
    const exclude = opts.noEcho === true ? s.id : 0;
    let seq: number | Promise<number>;
    try {
      seq = ctx.hub.publish(topic, bytes, exclude);
    } catch (err) {
      return this.replyThrown(s, id, err);
    }
    ctx.stats.publishes++;
    if (id === 0) {
      if (typeof seq !== 'number') seq.catch((err) => ctx.log.error({ err }, 'publish failed'));
      return;
    }
    if (typeof seq === 'number') s.send(encodeResult(id, seq));
    else seq.then((n) => s.send(encodeResult(id, n)), (err) => this.replyThrown(s, id, err));
  }

  private subscribe(s: Session, id: number, pattern: string): void {
    const ctx = this.ctx;
    if (s.subscriptions.has(pattern)) return ok(s, id);
    if (s.subscriptions.size >= ctx.maxSubscriptions) {
      return s.sendError(id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${ctx.maxSubscriptions} subscriptions per connection`);
    }
    if (s.canSubscribe !== null && !s.canSubscribe(pattern)) return s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to subscribe to ${pattern}`);
    const hook = ctx.hooks.authorizeSubscribe;
    if (hook === undefined) return this.doSubscribe(s, id, pattern);
    settle(
      () => hook(s, pattern),
      (allowed) => (allowed ? this.doSubscribe(s, id, pattern) : s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to subscribe to ${pattern}`)),
      (err) => this.replyThrown(s, id, err),
    );
  }

  private doSubscribe(s: Session, id: number, pattern: string): void {
    if (s.closing || s.ws.readyState !== 1) return;
    const ctx = this.ctx;
    if (s.subscriptions.has(pattern)) return ok(s, id);
    // checked again: an asynchronous hook may have let other subscribes through meanwhile
    if (s.subscriptions.size >= ctx.maxSubscriptions) {
      return s.sendError(id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${ctx.maxSubscriptions} subscriptions per connection`);
    }
    s.addSubscription(pattern);
    ctx.stats.subscriptions++;
    const r = ctx.hub.subscribe(s, pattern);
    if (r === undefined) return ok(s, id);
    r.then(() => ok(s, id), (err) => this.replyThrown(s, id, err));
  }

  private unsubscribe(s: Session, id: number, pattern: string): void {
    if (s.removeSubscription(pattern)) {
      this.ctx.stats.subscriptions--;
      const r = this.ctx.hub.unsubscribe(s, pattern);
      if (r !== undefined) r.catch((err) => this.ctx.log.error({ err }, 'broker unsubscribe failed'));
    }
    ok(s, id);
  }

  private request(s: Session, id: number, method: string, payload: unknown): void {
    const ctx = this.ctx;
    const handler = ctx.handlers.get(method);
    if (handler === undefined) return s.sendError(id, ErrorCode.UNKNOWN_METHOD, `unknown method ${method}`);
    if (ctx.draining()) return s.sendError(id, ErrorCode.UNAVAILABLE, 'gateway is shutting down');
    if (s.pendingRequests >= ctx.maxPendingRequests) {
      return s.sendError(id, ErrorCode.TOO_MANY_REQUESTS, `at most ${ctx.maxPendingRequests} requests in flight per connection`);
    }
    ctx.stats.requests++;
    const rc: RequestContext = { connection: s, method, requestId: id };
    let result: unknown;
    try {
      result = handler(rc, payload);
    } catch (err) {
      return this.replyThrown(s, id, err);
    }
    if (!isThenable(result)) return this.result(s, id, result);
    s.pendingRequests++;
    const timer = ctx.requests;
    const pending = timer.start(() => {
      s.pendingRequests--;
      ctx.stats.requestTimeouts++;
      s.sendError(id, ErrorCode.TIMEOUT, `method ${method} timed out after ${timer.timeout} ms`);
    });
    result.then(
      (value) => {
        if (!timer.settle(pending)) return;
        s.pendingRequests--;
        this.result(s, id, value);
      },
      (err) => {
        if (!timer.settle(pending)) return;
        s.pendingRequests--;
        this.replyThrown(s, id, err);
      },
    );
  }

  private result(s: Session, id: number, value: unknown): void {
    if (value instanceof Uint8Array && value.length >= SPLIT_MIN && s.sendBinResult(id, value)) return;
    let frame: Uint8Array;
    try {
      frame = encodeResult(id, value === undefined ? null : value);
    } catch (err) {
      this.ctx.log.error({ err }, 'cannot encode handler result');
      return s.sendError(id, ErrorCode.INTERNAL, 'result could not be encoded');
    }
    s.send(frame);
  }

  private replyThrown(s: Session, id: number, err: unknown): void {
    if (err instanceof ReplyError) return s.sendError(id, err.code, err.message);
    this.ctx.log.warn({ err, connection: s.id }, 'handler or hook failed');
    s.sendError(id, ErrorCode.HANDLER_ERROR, 'handler failed');
  }
}

function ok(s: Session, id: number): void {
  if (id !== 0) s.send(encodeResult(id));
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && (typeof v === 'object' || typeof v === 'function') && typeof (v as { then?: unknown }).then === 'function';
}

/** Runs a hook that may return a value or a promise; calls ok/fail without an extra tick when sync. */
function settle<T>(fn: () => T | PromiseLike<T>, done: (v: T) => void, fail: (err: unknown) => void): void {
  let r: T | PromiseLike<T>;
  try {
    r = fn();
  } catch (err) {
    return fail(err);
  }
  if (isThenable(r)) (r as PromiseLike<T>).then(done, fail);
  else done(r as T);
}
