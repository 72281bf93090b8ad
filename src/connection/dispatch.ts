// Decoding and dispatch of client messages: one Dispatcher per gateway, stateless per message.
// A frame is decoded (PUBLISH and REQUEST in canonical shape through the envelope fast path, the
// rest through the general decoder), each message is validated, authorised and handed to the hub
// or a method handler, and the answer goes back through the session's outbound side.
import type { Logger } from 'pino';
import { CloseCode, ErrorCode } from '../protocol/codes.js';
import {
  DeliveryFlag,
  HEADROOM,
  encodeDelivery,
  encodeGap,
  encodeHistoryResult,
  encodePresenceResult,
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
import { isPattern, topicError, type TopicLimits } from '../protocol/topic.js';
import { historyOptions, subscribeOptions, type HistoryOptions, type SubscribeOptions } from '../protocol/options.js';
import type { Presence } from '../pubsub/presence.js';
import { BrokerUnavailable, type Hub } from '../pubsub/hub.js';
import { isThenable } from '../util/thenable.js';
import type { BrokerPublishResult, RetainedMessage, StreamPosition } from '../pubsub/broker.js';
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
  readonly presence: Presence<Session>;
  /** history.maxRecover: most messages one SUBSCRIBE replays (recovered or retained), largest HISTORY limit. */
  readonly maxRecover: number;
  /** retained.maxTopics is 0. */
  readonly retainedOff: boolean;
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
        return this.subscribe(s, msg[1], msg[2], msg[3]);
      case MsgType.UNSUBSCRIBE:
        return this.unsubscribe(s, msg[1], msg[2]);
      case MsgType.PING:
        s.send(encodePong(msg[1]));
        return;
      case MsgType.REFRESH:
        return this.ctx.credentials.refresh(s, msg[1], msg[2]);
      case MsgType.HISTORY:
        return this.history(s, msg[1], msg[2], msg[3]);
      case MsgType.PRESENCE:
        return this.presence(s, msg[1], msg[2]);
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
    let retain = false;
    if (opts !== PUBLISH_OPTS_DEFAULT && opts.retain !== undefined) {
      if (typeof opts.retain !== 'boolean') return s.sendError(id, ErrorCode.BAD_REQUEST, 'retain must be a boolean');
      retain = opts.retain;
      if (retain && ctx.retainedOff) {
        return s.sendError(id, ErrorCode.NOT_ENABLED, ctx.hub.broker.features.retained ? 'retained messages are disabled (retained.maxTopics = 0)' : 'the broker keeps no retained messages');
      }
    }
    let r: BrokerPublishResult | Promise<BrokerPublishResult>;
    try {
      r = ctx.hub.publish(topic, bytes, exclude, retain);
    } catch (err) {
      return this.replyThrown(s, id, err);
    }
    ctx.stats.publishes++;
    if (id === 0) {
      // no RESULT for id 0, but a refusal is still sent (protocol.md, "id 0")
      if (isThenable(r)) r.catch((err) => this.replyThrown(s, 0, err));
      return;
    }
    if (!isThenable(r)) s.send(encodeResult(id, r.seq));
    else r.then((a) => s.send(encodeResult(id, a.seq)), (err) => this.replyThrown(s, id, err));
  }

  private subscribe(s: Session, id: number, pattern: string, options: Record<string, unknown> | undefined): void {
    const ctx = this.ctx;
    const o = subscribeOptions(options);
    if (typeof o === 'string') return s.sendError(id, ErrorCode.BAD_REQUEST, o);
    const exact = !isPattern(pattern);
    if (o.since !== null && !exact) return s.sendError(id, ErrorCode.BAD_REQUEST, 'since (recovery) needs a topic without wildcards');
    if (o.presence && !exact) return s.sendError(id, ErrorCode.BAD_REQUEST, 'presence events need a topic without wildcards');
    if (o.presence && !ctx.presence.enabled(pattern)) return s.sendError(id, ErrorCode.NOT_ENABLED, `no presence is kept for ${pattern}`);
    if (s.subscriptions.has(pattern)) return o.since === null ? ok(s, id) : alreadySubscribed(s, id, pattern);
    if (s.subscriptions.size >= ctx.maxSubscriptions) {
      return s.sendError(id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${ctx.maxSubscriptions} subscriptions per connection`);
    }
    if (s.canSubscribe !== null && !s.canSubscribe(pattern)) return s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to subscribe to ${pattern}`);
    const hook = ctx.hooks.authorizeSubscribe;
    if (hook === undefined) return this.doSubscribe(s, id, pattern, o);
    settle(
      () => hook(s, pattern),
      (allowed) => (allowed ? this.doSubscribe(s, id, pattern, o) : s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to subscribe to ${pattern}`)),
      (err) => this.replyThrown(s, id, err),
    );
  }

  /**
   * Subscribes, then answers in this order: RESULT (with `{seq, epoch}` for an exact topic that
   * keeps history or when recovering, and `recovered`), the recovered messages (flag RECOVERED),
   * the retained values of matching topics (flag RETAINED; not after a successful recovery), then
   * live messages. Live messages published while history is read are held and merged by seq, so
   * none is lost or repeated whatever the broker's latency.
   */
  private doSubscribe(s: Session, id: number, pattern: string, o: SubscribeOptions): void {
    if (s.closing || s.ws.readyState !== 1) return;
    const ctx = this.ctx;
    if (s.subscriptions.has(pattern)) return o.since === null ? ok(s, id) : alreadySubscribed(s, id, pattern);
    // checked again: an asynchronous hook may have let other subscribes through meanwhile
    if (s.subscriptions.size >= ctx.maxSubscriptions) {
      return s.sendError(id, ErrorCode.TOO_MANY_SUBSCRIPTIONS, `at most ${ctx.maxSubscriptions} subscriptions per connection`);
    }
    if (!ctx.hub.up) return this.replyThrown(s, id, new BrokerUnavailable('the broker is unreachable; try again later'));
    const exact = !isPattern(pattern);
    const position = exact && (o.since !== null || ctx.hub.historyPolicy(pattern) !== null);
    const retained = o.retained && ctx.hub.broker.features.retained && !ctx.retainedOff;
    s.addSubscription(pattern);
    ctx.stats.subscriptions++;
    // Live messages wait while the position or history is read (a network broker answers later):
    // released after the answer, from the position on, so none arrives before its RESULT or twice.
    if (position) s.hold(pattern);
    // A SUBSCRIBE answered with an ERROR leaves no subscription behind.
    const done = (err: unknown) => {
      if (position) s.release(pattern, Infinity);
      this.unsubscribe(s, 0, pattern);
      this.replyThrown(s, id, err);
    };
    then(
      ctx.hub.subscribe(s, pattern),
      () => {
        if (exact && ctx.presence.enabled(pattern)) {
          ctx.presence.join(s, pattern);
          if (o.presence) ctx.presence.watch(s, pattern);
        }
        if (!position && !retained) return ok(s, id);
        const since = o.since;
        if (since === null || !ctx.hub.broker.features.history) {
          if (!position) return this.sendRetained(s, id, pattern, null, retained, 0, done);
          // a broker that keeps no history (NATS) cannot recover: the position, and recovered: false
          const head = (pos: StreamPosition) => (since === null ? { seq: pos.seq, epoch: pos.epoch } : { seq: pos.seq, epoch: pos.epoch, recovered: false });
          return then(ctx.hub.position(pattern), (pos) => this.sendRetained(s, id, pattern, head(pos), retained, pos.seq, done), done);
        }
        then(
          ctx.hub.history(pattern, { since, limit: ctx.maxRecover }),
          (page) => {
            if (s.closing) return;
            const pos = page.position;
            if (!page.complete && since.epoch === pos.epoch && since.seq > pos.seq) {
              // a position this topic never reached: refuse, and undo the subscription
              s.release(pattern, Infinity);
              this.unsubscribe(s, 0, pattern);
              return s.sendError(id, ErrorCode.BAD_REQUEST, `since.seq ${since.seq} is ahead of the topic (seq ${pos.seq})`);
            }
            // all or nothing: the window held everything and no live message was lost while reading
            const recovered = page.complete && !page.more && s.heldDropped(pattern) === 0;
            if (!recovered) {
              // the client resynchronises: the current position, retained values, then what follows it
              return this.sendRetained(s, id, pattern, { seq: pos.seq, epoch: pos.epoch, recovered: false }, retained, pos.seq, done);
            }
            if (id !== 0) s.send(encodeResult(id, { seq: pos.seq, epoch: pos.epoch, recovered: true }));
            let last = since.seq;
            for (const pub of page.publications) {
              s.send(encodeDelivery(pattern, pub.seq, pub.payload, HEADROOM, DeliveryFlag.RECOVERED));
              last = pub.seq;
            }
            ctx.stats.recovered += page.publications.length;
            this.release(s, pattern, last);
          },
          done,
        );
      },
      done,
    );
  }

  /**
   * RESULT (with `head` when given), the retained values matching `pattern` (when `retained`),
   * then the held live messages after `after` (and after a retained value of the topic itself).
   */
  private sendRetained(s: Session, id: number, pattern: string, head: Record<string, unknown> | null, retained: boolean, after: number, fail: (err: unknown) => void): void {
    const finish = (list: readonly RetainedMessage[]) => {
      if (s.closing) return;
      if (id !== 0) s.send(head === null ? encodeResult(id) : encodeResult(id, head));
      let last = after;
      for (const r of list) {
        s.send(encodeDelivery(r.topic, r.seq, r.payload, HEADROOM, DeliveryFlag.RETAINED));
        if (r.topic === pattern && r.seq > last) last = r.seq;
      }
      this.release(s, pattern, last);
    };
    if (!retained) return finish([]);
    then(this.ctx.hub.retained(pattern, this.ctx.maxRecover), finish, fail);
  }

  /** Ends a hold; live messages the hold could not keep are reported as a GAP. */
  private release(s: Session, topic: string, after: number): void {
    const dropped = s.release(topic, after);
    if (dropped > 0) s.send(encodeGap(topic, dropped));
  }

  private unsubscribe(s: Session, id: number, pattern: string): void {
    if (s.removeSubscription(pattern)) {
      this.ctx.stats.subscriptions--;
      if (!isPattern(pattern)) {
        this.ctx.presence.leave(s, pattern);
        this.ctx.presence.unwatch(s, pattern);
      }
      const r = this.ctx.hub.unsubscribe(s, pattern);
      if (r !== undefined) r.catch((err) => this.ctx.log.error({ err }, 'broker unsubscribe failed'));
    }
    ok(s, id);
  }

  /** HISTORY `[7, id, topic, options?]`. */
  private history(s: Session, id: number, topic: string, options: Record<string, unknown> | null | undefined): void {
    const ctx = this.ctx;
    const o = historyOptions(options ?? undefined, ctx.maxRecover);
    if (typeof o === 'string') return s.sendError(id, ErrorCode.BAD_REQUEST, o);
    if (ctx.hub.historyPolicy(topic) === null) return s.sendError(id, ErrorCode.NOT_ENABLED, `no history is kept for ${topic}`);
    this.authorizeRead(s, id, topic, () => this.readHistory(s, id, topic, o));
  }

  /** Reading a topic's history or presence needs what subscribing to it needs: token permissions and the authorizeSubscribe hook. */
  private authorizeRead(s: Session, id: number, topic: string, go: () => void): void {
    if (s.canSubscribe !== null && !s.canSubscribe(topic)) return s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to read ${topic}`);
    const hook = this.ctx.hooks.authorizeSubscribe;
    if (hook === undefined) return go();
    settle(
      () => hook(s, topic),
      (allowed) => (allowed ? go() : s.sendError(id, ErrorCode.FORBIDDEN, `not allowed to read ${topic}`)),
      (err) => this.replyThrown(s, id, err),
    );
  }

  private readHistory(s: Session, id: number, topic: string, o: HistoryOptions): void {
    if (s.closing) return;
    const ctx = this.ctx;
    const since = o.since;
    then(
      ctx.hub.history(topic, { since: since ?? undefined, limit: o.limit ?? ctx.maxRecover, reverse: o.reverse }),
      (page) => {
        const pos = page.position;
        if (since !== null && !page.complete && since.epoch === pos.epoch && since.seq > pos.seq) {
          return s.sendError(id, ErrorCode.BAD_REQUEST, `since.seq ${since.seq} is ahead of the topic (seq ${pos.seq})`);
        }
        s.send(encodeHistoryResult(id, { seq: pos.seq, epoch: pos.epoch, complete: page.complete, more: page.more }, page.publications));
      },
      (err) => this.replyThrown(s, id, err),
    );
  }

  /** PRESENCE `[8, id, topic]`. */
  private presence(s: Session, id: number, topic: string): void {
    const ctx = this.ctx;
    if (!ctx.presence.enabled(topic)) return s.sendError(id, ErrorCode.NOT_ENABLED, `no presence is kept for ${topic}`);
    this.authorizeRead(s, id, topic, () =>
      then(
        ctx.hub.presence(topic),
        (entries) => s.send(encodePresenceResult(id, entries)),
        (err) => this.replyThrown(s, id, err),
      ),
    );
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
    if (err instanceof BrokerUnavailable) {
      if (err.cause !== undefined) this.ctx.log.warn({ err: err.cause, connection: s.id }, 'broker operation failed');
      return s.sendError(id, err.code, err.message);
    }
    if (err instanceof ReplyError) return s.sendError(id, err.code, err.message);
    this.ctx.log.warn({ err, connection: s.id }, 'handler or hook failed');
    s.sendError(id, ErrorCode.HANDLER_ERROR, 'handler failed');
  }
}

function alreadySubscribed(s: Session, id: number, pattern: string): void {
  s.sendError(id, ErrorCode.BAD_REQUEST, `already subscribed to ${pattern}: unsubscribe before recovering with since`);
}

function ok(s: Session, id: number): void {
  if (id !== 0) s.send(encodeResult(id));
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

/** Calls `ok` with a value or a promise's value: synchronously when it is not a promise (no extra tick). */
function then<T>(v: T | PromiseLike<T>, ok: (v: T) => void, fail: (err: unknown) => void): void {
  if (isThenable(v)) (v as PromiseLike<T>).then(ok, fail);
  else {
    try {
      ok(v as T);
    } catch (err) {
      fail(err);
    }
  }
}
